"""Evidence bundles: one run's timeline, self-contained and checkable offline with nothing but the log's key.

A bundle (JSON, `"format": "auditlog.evidence/v1"`):

    format, run_id, origin, log_key   the log; `log_key` is informational, the verifier is told the key
    checkpoint                        the signed checkpoint note (text) every proof below leads to
    events                            the run's entries in causal order: {index, entry (base64), inclusion_proof}
    registry                          every registry-change entry of the producers and keys used, log order,
                                      in the same form: the producer keys are proven from the log, not asserted
    producer_keys                     a summary of the keys those records define (checked, not trusted)

`verify_bundle` is the checklist below, followed in order; it stops at the first failure with an EvidenceError
naming the check and the entry, and otherwise returns a report (with warnings for parent links that leave the
run, which a run started from another run has).

1. The bundle has the expected format and fields.
2. The log key parses; the bundle names no other key.
3. The checkpoint is signed by that key and its origin is the key's name.
4. Every registry entry is included in the checkpoint (its inclusion proof leads to the root), is a
   registry-change record in canonical form, and applies to the registry built from the ones before it.
5. Every event entry is included in the checkpoint and is an envelope in canonical form, for this run.
6. Its producer and key are in that registry, the Ed25519 signature over the canonical event verifies, the key
   was valid at the event's timestamp (registry.py, rule 1) and the producer may write for the event's tenant.
7. No (producer, event_id) appears twice, and the events are in causal order: each parent in the bundle comes
   before its children, ties by timestamp then index, and no cycle.
8. The producer_keys summary says what the registry entries say.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from log.audit.errors import EvidenceError
from log.audit.records import parse_entry
from log.audit.registry import Registry
from log.audit.schema import format_timestamp_ms, parse_timestamp_ms
from log.audit.timeline import Node, causal_order
from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import LogError
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion

FORMAT = "auditlog.evidence/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _proven(index: int, data: bytes, proof: list[bytes]) -> dict:
    return {"index": index, "entry": _b64(data), "inclusion_proof": [_b64(h) for h in proof]}


def build_bundle(*, origin: str, log_key: str, checkpoint_note: bytes, run_id: str,
                 events: list[tuple[int, bytes, list[bytes]]],
                 registry_entries: list[tuple[int, bytes, list[bytes]]]) -> dict:
    """The bundle's JSON object. `events` in causal order, `registry_entries` in log order, each
    (index, entry bytes, inclusion proof in `checkpoint_note`)."""
    registry = Registry()
    for _, data, _ in sorted(registry_entries):
        registry.apply(parse_entry(data)[1])
    return {
        "format": FORMAT, "run_id": run_id, "origin": origin, "log_key": log_key,
        "checkpoint": checkpoint_note.decode(),
        "events": [_proven(*e) for e in events],
        "registry": [_proven(*r) for r in sorted(registry_entries)],
        "producer_keys": _key_summary(registry),
    }


def _key_summary(registry: Registry) -> list[dict]:
    def when(ms: int | None) -> str | None:
        return None if ms is None else format_timestamp_ms(ms)

    return [
        {"producer": key.producer, "key_id": key.key_id, "public_key": key.public_key_b64(),
         "not_before": when(key.not_before), "not_after": when(key.not_after), "revoked_at": when(key.revoked_at)}
        for producer in registry.producers() for key in sorted(producer.keys.values(), key=lambda k: k.key_id)
    ]


@dataclass
class EvidenceReport:
    run_id: str
    checkpoint: Checkpoint
    events: int
    registry_entries: int
    producers: list[str]
    warnings: list[str] = field(default_factory=list)


def _fail(message: str) -> EvidenceError:
    return EvidenceError(message)


def _entry(item: Any, where: str, checkpoint: Checkpoint) -> tuple[int, bytes]:
    """Decode one proven entry and check its inclusion in the checkpoint (steps 4 and 5, first half)."""
    if not isinstance(item, dict) or set(item) != {"index", "entry", "inclusion_proof"}:
        raise _fail(f"{where}: must have exactly index, entry and inclusion_proof")
    index, proof = item["index"], item["inclusion_proof"]
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(proof, list):
        raise _fail(f"{where}: index must be an integer and inclusion_proof a list")
    try:
        data = base64.b64decode(item["entry"], validate=True)
        hashes = [base64.b64decode(h, validate=True) for h in proof]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _fail(f"{where}: bad base64: {exc}") from exc
    try:
        verify_inclusion(hash_leaf(data), index, checkpoint.size, hashes, checkpoint.root_hash)
    except LogError as exc:
        raise _fail(f"{where} (index {index}): not included in the checkpoint of size {checkpoint.size}: "
                    f"{exc}") from exc
    return index, data


def verify_bundle(bundle: Any, log_key: str) -> EvidenceReport:
    """Steps 1-8 of the module docstring. Raises EvidenceError at the first check that does not hold."""
    # 1. format
    required = {"format", "run_id", "checkpoint", "events", "registry"}
    if not isinstance(bundle, dict) or not required <= set(bundle):
        raise _fail(f"1. not an evidence bundle: it needs {', '.join(sorted(required))}")
    if bundle["format"] != FORMAT:
        raise _fail(f"1. format is {bundle['format']!r}, not {FORMAT!r}")
    if not isinstance(bundle["events"], list) or not isinstance(bundle["registry"], list):
        raise _fail("1. events and registry must be lists")
    run_id = bundle["run_id"]

    # 2. the log key
    try:
        verifier = parse_verifier_key(log_key.strip())
    except LogError as exc:
        raise _fail(f"2. the log key does not parse: {exc}") from exc
    if bundle.get("log_key") not in (None, log_key.strip()):
        raise _fail(f"2. the bundle names log key {bundle['log_key']!r}, not the one given")

    # 3. the checkpoint
    try:
        checkpoint, _ = open_checkpoint(str(bundle["checkpoint"]).encode(), verifier)
    except LogError as exc:
        raise _fail(f"3. the checkpoint does not verify with the log key: {exc}") from exc

    # 4. registry entries
    registry = Registry()
    last = -1
    for i, item in enumerate(bundle["registry"]):
        where = f"4. registry[{i}]"
        index, data = _entry(item, where, checkpoint)
        if index <= last:
            raise _fail(f"{where} (index {index}): registry entries must be in increasing log order")
        last = index
        try:
            kind, change = parse_entry(data)
            if kind != "registry-change":
                raise _fail(f"{where} (index {index}): a {kind} record, not a registry change")
            registry.apply(change)
        except LogError as exc:
            raise _fail(f"{where} (index {index}): {exc}") from exc

    # 5, 6. events
    nodes: list[Node] = []
    seen: dict[tuple[str, str], int] = {}
    producers: set[str] = set()
    for i, item in enumerate(bundle["events"]):
        where = f"5. events[{i}]"
        index, data = _entry(item, where, checkpoint)
        try:
            kind, envelope = parse_entry(data)
        except LogError as exc:
            raise _fail(f"{where} (index {index}): {exc}") from exc
        if kind != "envelope":
            raise _fail(f"{where} (index {index}): a {kind} record, not an audit event")
        event = envelope.event
        if event["run_id"] != run_id:
            raise _fail(f"{where} (index {index}): belongs to run {event['run_id']!r}, not {run_id!r}")
        where = f"6. events[{i}] (index {index}, event {event['event_id']})"
        ts = parse_timestamp_ms(event["timestamp"])
        try:
            key = registry.key(envelope.producer, envelope.key_id)
            key.verify(envelope.event_bytes, envelope.signature)
            if not key.valid_at(ts):
                raise _fail(f"{where}: key {key.key_id} was not valid at {event['timestamp']}")
            registry.check_tenant(envelope.producer, event["tenant"])
        except EvidenceError:
            raise
        except LogError as exc:
            raise _fail(f"{where}: {exc}") from exc
        ident = (envelope.producer, event["event_id"])
        if ident in seen:
            raise _fail(f"7. events[{i}] (index {index}): event {event['event_id']} of {envelope.producer} "
                        f"appears twice (also events[{seen[ident]}])")
        seen[ident] = i
        producers.add(envelope.producer)
        nodes.append(Node(index, event["event_id"], event.get("parent_event_id"), ts))

    # 7. causal order
    ordering = causal_order(nodes)
    if ordering.cycles:
        raise _fail(f"7. events[{ordering.cycles[0]}] (index {nodes[ordering.cycles[0]].index}) is on a cycle of "
                    f"parent links")
    for position, expected in enumerate(ordering.order):
        if expected != position:
            node = nodes[position]
            raise _fail(f"7. events[{position}] (index {node.index}, event {node.event_id}) is out of causal "
                        f"order: events[{expected}] (index {nodes[expected].index}) belongs there")
    warnings = [f"event {nodes[p].event_id}: parent {parent} is not in this run"
                for p, parent in sorted(ordering.external_parents.items())]

    # 8. the key summary
    if "producer_keys" in bundle:
        if bundle["producer_keys"] != _key_summary(registry):
            raise _fail("8. producer_keys says something the registry entries do not")
    return EvidenceReport(run_id, checkpoint, len(nodes), len(bundle["registry"]), sorted(producers), warnings)
