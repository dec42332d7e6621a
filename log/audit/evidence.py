"""Evidence bundles: one run's timeline, self-contained and checkable offline with the log's key, and with the
witnesses' keys and the TSA's certificate for the cosignatures and the timestamp it carries.

A bundle (JSON, `"format": "auditlog.evidence/v2"`):

    format, run_id, origin, log_key   the run and the log; `log_key` is informational, the verifier is told the key
    checkpoint                        the signed checkpoint note (text) every proof below leads to: the log's
                                      signature, then the witnesses' cosignature lines it has
    timestamp                         base64 DER RFC 3161 TimeStampResp over the checkpoint note's exact bytes, or null
    events                            the run's entries in causal order: {index, entry (base64), inclusion_proof}
    registry                          every registry-change entry of the producers and keys used, log order,
                                      in the same form: the producer keys are proven from the log, not asserted
    producer_keys                     a summary of the keys those records define (checked, not trusted)

The server (`AuditService.evidence`) picks the checkpoint as an entry bundle's is picked: the newest timestamped one
that covers every event of the run, else the newest witnessed one covering them, else the latest.
`auditlog.evidence/v1` bundles (before issue 17) have no `timestamp` and a checkpoint without cosignatures; they
still verify with the log key, and fail any witness or timestamp check asked of them.

`verify_bundle` is checks 1-8 below, which need nothing but the log's key; checks 9 and 10 need witness/ and are
`api.client.evidence.verify_run_bundle`, the entry point verifiers call. It stops at the first failure with an
EvidenceError whose message starts with the check's number and name, and otherwise returns a report (with warnings
for parent links that leave the run, which a run started from another run has).

 1 format        the format is v1 or v2, the bundle has exactly that format's fields, each of its type
 2 log key       the log key parses; the bundle names no other key
 3 checkpoint    the checkpoint is signed by that key, its origin is the key's name and the bundle's `origin`
 4 registry      every registry entry is included in the checkpoint (its inclusion proof leads to the root), is a
                 registry-change record in canonical form, and applies to the registry built from the ones before it
 5 events        every event entry is included in the checkpoint and is an envelope in canonical form, for this run
 6 signatures    its producer and key are in that registry, the Ed25519 signature over the canonical event
                 verifies, the key was valid at the event's timestamp (registry.py, rule 1) and the producer may
                 write for the event's tenant
 7 causal order  no (producer, event_id) appears twice, and the events are in causal order: each parent in the
                 bundle comes before its children, ties by timestamp then index, and no cycle
 8 producer keys the producer_keys summary says what the registry entries say
 9 cosignatures  (api/client/evidence.py, when witness keys are given) as an entry bundle's check 5
10 timestamp     (api/client/evidence.py, when a TSA certificate is given) as an entry bundle's check 6
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
from log.note import Note
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion

FORMAT = "auditlog.evidence/v2"
FORMAT_V1 = "auditlog.evidence/v1"  # before issue 17: no timestamp, no cosignatures; verified, never built

_REQUIRED = {"format", "run_id", "origin", "checkpoint", "events", "registry"}
_OPTIONAL = {"log_key", "producer_keys"}
FIELDS = {FORMAT: _REQUIRED | {"timestamp"}, FORMAT_V1: _REQUIRED}  # each format's required fields


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _proven(index: int, data: bytes, proof: list[bytes]) -> dict:
    return {"index": index, "entry": _b64(data), "inclusion_proof": [_b64(h) for h in proof]}


def build_bundle(*, origin: str, log_key: str, checkpoint_note: bytes, run_id: str,
                 events: list[tuple[int, bytes, list[bytes]]],
                 registry_entries: list[tuple[int, bytes, list[bytes]]],
                 timestamp: bytes | None = None) -> dict:
    """The bundle's JSON object. `events` in causal order, `registry_entries` in log order, each
    (index, entry bytes, inclusion proof in `checkpoint_note`); `checkpoint_note` with the cosignature lines it has,
    `timestamp` the TimeStampResp over exactly those bytes (or None)."""
    registry = Registry()
    for _, data, _ in sorted(registry_entries):
        registry.apply(parse_entry(data)[1])
    return {
        "format": FORMAT, "run_id": run_id, "origin": origin, "log_key": log_key,
        "checkpoint": checkpoint_note.decode(),
        "timestamp": None if timestamp is None else _b64(timestamp),
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
    format: str = FORMAT
    note: Note | None = None  # the checkpoint note as opened (with its cosignature lines), for checks 9 and 10
    note_bytes: bytes = b""  # its exact bytes, which the timestamp token covers
    timestamp: bytes | None = None  # the token the bundle carries (not checked here: check 10)


_NAMES = {1: "format", 2: "log key", 3: "checkpoint", 4: "registry", 5: "events", 6: "signatures",
          7: "causal order", 8: "producer keys"}


def _fail(check: int, detail: str) -> EvidenceError:
    return EvidenceError(check, _NAMES[check], detail)


def _entry(item: Any, check: int, where: str, checkpoint: Checkpoint) -> tuple[int, bytes]:
    """Decode one proven entry and check its inclusion in the checkpoint (checks 4 and 5, first half)."""
    if not isinstance(item, dict) or set(item) != {"index", "entry", "inclusion_proof"}:
        raise _fail(check, f"{where}: must have exactly index, entry and inclusion_proof")
    index, proof = item["index"], item["inclusion_proof"]
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(proof, list):
        raise _fail(check, f"{where}: index must be an integer and inclusion_proof a list")
    try:
        data = base64.b64decode(item["entry"], validate=True)
        hashes = [base64.b64decode(h, validate=True) for h in proof]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _fail(check, f"{where}: bad base64: {exc}") from exc
    try:
        verify_inclusion(hash_leaf(data), index, checkpoint.size, hashes, checkpoint.root_hash)
    except LogError as exc:
        raise _fail(check, f"{where} (index {index}): not included in the checkpoint of size {checkpoint.size}: "
                    f"{exc}") from exc
    return index, data


def _check_format(bundle: Any) -> bytes | None:
    """Check 1; returns the timestamp token's bytes (None when the bundle has none)."""
    if not isinstance(bundle, dict):
        raise _fail(1, f"not an evidence bundle: a JSON {type(bundle).__name__}, not an object")
    fmt = bundle.get("format")
    if fmt not in FIELDS:
        raise _fail(1, f"format is {str(fmt)[:80]!r}, not {FORMAT!r} (or {FORMAT_V1!r})")
    required = FIELDS[fmt]
    missing = required - set(bundle)
    if missing:
        raise _fail(1, f"a {fmt} bundle needs {', '.join(sorted(missing))}")
    unknown = set(bundle) - required - _OPTIONAL
    if unknown:
        raise _fail(1, f"a {fmt} bundle has no field {', '.join(repr(u[:40]) for u in sorted(unknown))}: "
                    f"nothing would check it")
    for name in ("run_id", "origin", "checkpoint"):
        if not isinstance(bundle[name], str):
            raise _fail(1, f"{name} must be a string")
    if not isinstance(bundle["events"], list) or not isinstance(bundle["registry"], list):
        raise _fail(1, "events and registry must be lists")
    if not bundle["events"]:
        raise _fail(1, "the bundle has no events: it would prove nothing about the run")
    if bundle.get("log_key") is not None and not isinstance(bundle["log_key"], str):
        raise _fail(1, "log_key must be a string")
    if "producer_keys" in bundle and not isinstance(bundle["producer_keys"], list):
        raise _fail(1, "producer_keys must be a list")
    token = bundle.get("timestamp")
    if token is None:
        return None
    try:
        if not isinstance(token, str):
            raise TypeError
        return base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _fail(1, "timestamp must be null or a base64 string") from None


def verify_bundle(bundle: Any, log_key: str) -> EvidenceReport:
    """Checks 1-8 of the module docstring (what the log's key alone can check). Raises EvidenceError at the first
    check that does not hold. Verifiers call `api.client.evidence.verify_run_bundle`, which adds checks 9 and 10."""
    # 1. format
    token = _check_format(bundle)
    run_id = bundle["run_id"]

    # 2. the log key
    try:
        verifier = parse_verifier_key(log_key.strip())
    except LogError as exc:
        raise _fail(2, f"the log key does not parse: {exc}") from exc
    if bundle.get("log_key") not in (None, log_key.strip()):
        raise _fail(2, f"the bundle names log key {str(bundle['log_key'])[:80]!r}, not the one given")

    # 3. the checkpoint
    note_bytes = bundle["checkpoint"].encode()
    try:
        checkpoint, note = open_checkpoint(note_bytes, verifier)
    except LogError as exc:
        raise _fail(3, f"the checkpoint does not verify with the log key: {exc}") from exc
    if bundle["origin"] != checkpoint.origin:
        raise _fail(3, f"the bundle says origin {bundle['origin'][:80]!r}, its checkpoint is of "
                    f"{checkpoint.origin!r}")

    # 4. registry entries
    registry = Registry()
    last = -1
    for i, item in enumerate(bundle["registry"]):
        where = f"registry[{i}]"
        index, data = _entry(item, 4, where, checkpoint)
        if index <= last:
            raise _fail(4, f"{where} (index {index}): registry entries must be in increasing log order")
        last = index
        try:
            kind, change = parse_entry(data)
            if kind != "registry-change":
                raise _fail(4, f"{where} (index {index}): a {kind} record, not a registry change")
            registry.apply(change)
        except EvidenceError:
            raise
        except LogError as exc:
            raise _fail(4, f"{where} (index {index}): {exc}") from exc

    # 5, 6. events
    nodes: list[Node] = []
    seen: dict[tuple[str, str], int] = {}
    producers: set[str] = set()
    for i, item in enumerate(bundle["events"]):
        where = f"events[{i}]"
        index, data = _entry(item, 5, where, checkpoint)
        try:
            kind, envelope = parse_entry(data)
        except LogError as exc:
            raise _fail(5, f"{where} (index {index}): {exc}") from exc
        if kind != "envelope":
            raise _fail(5, f"{where} (index {index}): a {kind} record, not an audit event")
        event = envelope.event
        if event["run_id"] != run_id:
            raise _fail(5, f"{where} (index {index}): belongs to run {event['run_id']!r}, not {run_id!r}")
        where = f"events[{i}] (index {index}, event {event['event_id']})"
        ts = parse_timestamp_ms(event["timestamp"])
        try:
            key = registry.key(envelope.producer, envelope.key_id)
            key.verify(envelope.event_bytes, envelope.signature)
            if not key.valid_at(ts):
                raise _fail(6, f"{where}: key {key.key_id} was not valid at {event['timestamp']}")
            registry.check_tenant(envelope.producer, event["tenant"])
        except EvidenceError:
            raise
        except LogError as exc:
            raise _fail(6, f"{where}: {exc}") from exc
        ident = (envelope.producer, event["event_id"])
        if ident in seen:
            raise _fail(7, f"events[{i}] (index {index}): event {event['event_id']} of {envelope.producer} "
                        f"appears twice (also events[{seen[ident]}])")
        seen[ident] = i
        producers.add(envelope.producer)
        nodes.append(Node(index, event["event_id"], event.get("parent_event_id"), ts))

    # 7. causal order
    ordering = causal_order(nodes)
    if ordering.cycles:
        raise _fail(7, f"events[{ordering.cycles[0]}] (index {nodes[ordering.cycles[0]].index}) is on a cycle of "
                    f"parent links")
    for position, expected in enumerate(ordering.order):
        if expected != position:
            node = nodes[position]
            raise _fail(7, f"events[{position}] (index {node.index}, event {node.event_id}) is out of causal "
                        f"order: events[{expected}] (index {nodes[expected].index}) belongs there")
    warnings = [f"event {nodes[p].event_id}: parent {parent} is not in this run"
                for p, parent in sorted(ordering.external_parents.items())]

    # 8. the key summary
    if "producer_keys" in bundle:
        if bundle["producer_keys"] != _key_summary(registry):
            raise _fail(8, "producer_keys says something the registry entries do not")
    return EvidenceReport(run_id, checkpoint, len(nodes), len(bundle["registry"]), sorted(producers), warnings,
                          bundle["format"], note, note_bytes, token)
