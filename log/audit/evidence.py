"""Evidence bundles: one run's timeline (or one data subject's events), self-contained and checkable offline with the
log's key, and with the witnesses' keys and the TSA's certificate for the cosignatures and the timestamp it carries.
Evidence survives deletion (issue 20): what retention pruned, which blobs were deleted and which data subjects were
erased are stated in the bundle, each statement proven against the log entry that records the deletion.

A bundle (JSON, `"format": "auditlog.evidence/v3"`; v2 has the first block of fields only):

    format, run_id, origin, log_key   the run and the log; `log_key` is informational, the verifier is told the key
    checkpoint                        the signed checkpoint note (text) every proof below leads to: the log's
                                      signature, then the witnesses' cosignature lines it has
    timestamp                         base64 DER RFC 3161 TimeStampResp over the checkpoint note's exact bytes, or null
    events                            the run's entries still present, in causal order: {index, entry (base64),
                                      inclusion_proof}
    registry                          every registry-change entry of the producers and keys used, log order,
                                      in the same form: the producer keys are proven from the log, not asserted
    producer_keys                     a summary of the keys those records define (checked, not trusted)
  v3 adds:
    subject          in place of run_id, in a data subject's access bundle: {tenant, subject, tokens}; the events are
                     those of `tenant` that carry one of `tokens` (the subject's vault tokens; `subject` is the
                     token of the subject reference, never the reference)
    pruned_events    the events whose contents retention removed, log order: {index, leaf_hash (base64),
                     inclusion_proof, deletion_index}. The leaf hash, which the log keeps, is proven at the index,
                     and the deletion entry lists the index; the entry's bytes are gone, so its signature, its run
                     and its contents can no longer be checked: that it belonged to this run is the log's word
    deleted_blobs    blobs that present events cite and that are deleted: {sha256, deletion_index}. The events'
                     signed references still prove which content was used (its hash), not what it said
    missing_blobs    blobs that present events cite, gone with no deletion record in the log: [sha256, ...]
    erased_subjects  data subjects whose vault key was destroyed (crypto-shredding) and whose tokens present events
                     carry: {tenant, subject, tokens, deletion_index}. The tokens stay in the events; the values
                     behind them are unrecoverable. Which subject a token belonged to is the vault's word
    deletions        the entries recording those deletions, log order: {index, entry, inclusion_proof, items}.
                     Types: auditlog.retention-run/v1, auditlog.subject-erasure/v1 (their `list_sha256` commits to
                     their deletion list), auditlog.blob-erasure/v1 (one blob, no list). `items` is the deletion
                     list as GET /api/v1/deletions/{index} serves it ([[kind, item], ...], kinds entry, blob,
                     subject, sorted), or null when it is longer than the server carries (MAX_CARRIED_ITEMS): then
                     the claims on it are checked against the entry's type and tenant only, and a warning says so
    policies         the retention-policy entries the carried retention runs applied, log order: {index, entry,
                     inclusion_proof}: under which policy (record class, selector, days, reason) a run deleted

The server (`AuditService.evidence`, `AuditService.subject_evidence`) builds v2 for a run that lost nothing, so
that verifiers from before issue 20 still read it, and v3 when something of it was deleted and for every subject
bundle. It picks the checkpoint as an entry bundle's is picked: the newest timestamped one that covers every entry
the bundle proves, else the newest witnessed one covering them, else the latest. `auditlog.evidence/v1` bundles
(before issue 17) have no `timestamp` and a checkpoint without cosignatures; they still verify with the log key,
and fail any witness or timestamp check asked of them.

`verify_bundle` is checks 1-8, 11 and 12 below, which need nothing but the log's key; checks 9 and 10 need witness/
and are `api.client.evidence.verify_run_bundle`, the entry point verifiers call (checks 11 and 12 came with v3 and
took the next numbers, so that 9 and 10 still mean what they meant). It stops at the first failure with an
EvidenceError whose message starts with the check's number and name, and otherwise returns a report (with warnings
for parent links that leave the run, which a run started from another run has, and for claims on a deletion list
the bundle does not carry).

 1 format        the format is v1, v2 or v3, the bundle has exactly that format's fields, each of its type; a v3
                 bundle names a run or a subject, not both, and has present or pruned events
 2 log key       the log key parses; the bundle names no other key
 3 checkpoint    the checkpoint is signed by that key, its origin is the key's name and the bundle's `origin`
 4 registry      every registry entry is included in the checkpoint (its inclusion proof leads to the root), is a
                 registry-change record in canonical form, and applies to the registry built from the ones before it
 5 events        every event entry is included in the checkpoint and is an envelope in canonical form, for this run
                 (a subject bundle: of the subject's tenant, carrying one of its tokens)
 6 signatures    its producer and key are in that registry, the Ed25519 signature over the canonical event
                 verifies, the key was valid at the event's timestamp (registry.py, rule 1) and the producer may
                 write for the event's tenant
 7 causal order  no (producer, event_id) appears twice, and the events are in causal order: each parent in the
                 bundle comes before its children, ties by timestamp then index, and no cycle
 8 producer keys the producer_keys summary says what the registry entries say
 9 cosignatures  (api/client/evidence.py, when witness keys are given) as an entry bundle's check 5
10 timestamp     (api/client/evidence.py, when a TSA certificate is given) as an entry bundle's check 6
11 deletion records  every deletion and policy entry is included in the checkpoint, in increasing log order, and is
                 a record of its type in canonical form with the fields checked here; a carried deletion list is
                 well formed, sorted, without repeats, and its SHA-256 is the entry's `list_sha256`; the policies
                 are exactly those the carried retention runs name, each of the run's tenant
12 deletions     every pruned event's leaf hash is included at its index, no present event has that index, and its
                 deletion, a later retention run, lists `entry <index>`; every deleted blob is cited by a present
                 event and its deletion removed it (a blob erasure of that sha256, or `blob <sha256>` in the list);
                 every missing blob is cited and not also claimed deleted; every erased subject's tokens are
                 carried by present events of its tenant and its deletion erased it (a subject erasure of that
                 tenant and subject, or `subject <tenant>/<subject>` in the list); every carried deletion backs a
                 claim
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from log.audit.canonical import canonicalize, parse_json
from log.audit.errors import EvidenceError, InvalidEvent
from log.audit.lifecycle_names import deletion_list_sha256, is_vault_token, tokens_in_event
from log.audit.records import BLOB_ERASURE_TYPE, parse_blob_erasure, parse_entry
from log.audit.registry import Registry
from log.audit.schema import TOKEN_PATTERN, content_references, format_timestamp_ms, parse_timestamp_ms, python_regex
from log.audit.timeline import Node, causal_order
from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import LogError
from log.hashing import hash_leaf
from log.note import Note
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion

FORMAT = "auditlog.evidence/v3"
FORMAT_V2 = "auditlog.evidence/v2"  # issue 17 to 20: built still for a run that lost nothing
FORMAT_V1 = "auditlog.evidence/v1"  # before issue 17: no timestamp, no cosignatures; verified, never built

# The lifecycle records a bundle proves deletions with (log/audit/retention.py and holds.py write them).
RETENTION_RUN_TYPE = "auditlog.retention-run/v1"
SUBJECT_ERASURE_TYPE = "auditlog.subject-erasure/v1"
RETENTION_POLICY_TYPE = "auditlog.retention-policy/v1"
DELETION_TYPES = (RETENTION_RUN_TYPE, SUBJECT_ERASURE_TYPE, BLOB_ERASURE_TYPE)
DELETION_KINDS = ("entry", "blob", "subject")

# A deletion list longer than this is not carried (items null): a run that pruned 10^5 entries would make every
# bundle citing it megabytes long. Its claims are then checked against the deletion entry alone, with a warning.
MAX_CARRIED_ITEMS = 10_000

_REQUIRED = {"format", "run_id", "origin", "checkpoint", "events", "registry"}
_OPTIONAL = {"log_key", "producer_keys"}
_V3_LISTS = ("pruned_events", "deleted_blobs", "missing_blobs", "erased_subjects", "deletions", "policies")
FIELDS = {  # each format's required fields (v3: run_id or subject, checked apart)
    FORMAT: (_REQUIRED - {"run_id"}) | {"timestamp", *_V3_LISTS},
    FORMAT_V2: _REQUIRED | {"timestamp"},
    FORMAT_V1: _REQUIRED,
}

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
_TENANT = python_regex(TOKEN_PATTERN)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _proven(index: int, data: bytes, proof: list[bytes]) -> dict:
    return {"index": index, "entry": _b64(data), "inclusion_proof": [_b64(h) for h in proof]}


@dataclass(frozen=True)
class PrunedEvent:
    """An event entry whose contents retention removed: its leaf hash stays, proven at its index."""

    index: int
    leaf_hash: bytes
    inclusion_proof: list[bytes]
    deletion_index: int


@dataclass(frozen=True)
class ErasedSubject:
    tenant: str
    subject: str  # the subject's token
    tokens: tuple[str, ...]  # its tokens that the bundle's present events carry
    deletion_index: int


@dataclass(frozen=True)
class Deletions:
    """What of a bundle's events was deleted, and the log entries that record it (see the module docstring), as
    the server found them; each entry (index, bytes, inclusion proof), deletion `items` per deletion index for the
    lists the bundle carries (absent: too long to carry; blob erasures have none)."""

    pruned_events: list[PrunedEvent] = field(default_factory=list)
    deleted_blobs: dict[str, int] = field(default_factory=dict)  # sha256 -> deletion index
    missing_blobs: list[str] = field(default_factory=list)
    erased_subjects: list[ErasedSubject] = field(default_factory=list)
    deletions: list[tuple[int, bytes, list[bytes]]] = field(default_factory=list)
    items: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    policies: list[tuple[int, bytes, list[bytes]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pruned_events or self.deleted_blobs or self.missing_blobs or self.erased_subjects)


def build_bundle(*, origin: str, log_key: str, checkpoint_note: bytes, run_id: str | None = None,
                 subject: dict | None = None,
                 events: list[tuple[int, bytes, list[bytes]]],
                 registry_entries: list[tuple[int, bytes, list[bytes]]],
                 timestamp: bytes | None = None, deletions: Deletions | None = None) -> dict:
    """The bundle's JSON object. `events` in causal order, `registry_entries` in log order, each
    (index, entry bytes, inclusion proof in `checkpoint_note`); `checkpoint_note` with the cosignature lines it has,
    `timestamp` the TimeStampResp over exactly those bytes (or None). A run's (`run_id`) bundle without deletions
    is v2; with deletions, or a subject's ({tenant, subject, tokens}), v3."""
    if (run_id is None) == (subject is None):
        raise ValueError("a bundle is of a run or of a subject")
    registry = Registry()
    for _, data, _ in sorted(registry_entries):
        registry.apply(parse_entry(data)[1])
    v3 = subject is not None or bool(deletions)
    bundle: dict[str, Any] = {"format": FORMAT if v3 else FORMAT_V2}
    if run_id is not None:
        bundle["run_id"] = run_id
    else:
        bundle["subject"] = {"tenant": subject["tenant"], "subject": subject["subject"],
                             "tokens": sorted(set(subject["tokens"]))}
    bundle.update({
        "origin": origin, "log_key": log_key,
        "checkpoint": checkpoint_note.decode(),
        "timestamp": None if timestamp is None else _b64(timestamp),
        "events": [_proven(*e) for e in events],
        "registry": [_proven(*r) for r in sorted(registry_entries)],
        "producer_keys": _key_summary(registry),
    })
    if v3:
        d = deletions or Deletions()
        bundle.update({
            "pruned_events": [{"index": p.index, "leaf_hash": _b64(p.leaf_hash),
                               "inclusion_proof": [_b64(h) for h in p.inclusion_proof],
                               "deletion_index": p.deletion_index}
                              for p in sorted(d.pruned_events, key=lambda p: p.index)],
            "deleted_blobs": [{"sha256": sha, "deletion_index": index}
                              for sha, index in sorted(d.deleted_blobs.items())],
            "missing_blobs": sorted(d.missing_blobs),
            "erased_subjects": [{"tenant": e.tenant, "subject": e.subject, "tokens": sorted(set(e.tokens)),
                                 "deletion_index": e.deletion_index}
                                for e in sorted(d.erased_subjects, key=lambda e: (e.tenant, e.subject))],
            "deletions": [{**_proven(index, data, proof),
                           "items": None if index not in d.items else [list(i) for i in sorted(d.items[index])]}
                          for index, data, proof in sorted(d.deletions)],
            "policies": [_proven(*p) for p in sorted(d.policies)],
        })
    return bundle


def _key_summary(registry: Registry) -> list[dict]:
    def when(ms: int | None) -> str | None:
        return None if ms is None else format_timestamp_ms(ms)

    return [
        {"producer": key.producer, "key_id": key.key_id, "public_key": key.public_key_b64(),
         "not_before": when(key.not_before), "not_after": when(key.not_after), "revoked_at": when(key.revoked_at)}
        for producer in registry.producers() for key in sorted(producer.keys.values(), key=lambda k: k.key_id)
    ]


@dataclass(frozen=True)
class DeletionRecord:
    """A carried deletion entry, as checked (check 11)."""

    index: int
    type: str
    tenant: str | None  # None: a blob erasure (an admin's, across tenants)
    at: int  # Unix ms
    reason: str | None
    list_sha256: str | None  # None: a blob erasure
    items: frozenset[tuple[str, str]] | None  # None: not carried (or a blob erasure)
    record: dict  # the whole record, as logged
    policies: tuple[int, ...] = ()  # a retention run's policy entries


@dataclass(frozen=True)
class PolicyRecord:
    index: int
    tenant: str
    record_class: str
    selector: str
    retain_days: int | None
    reason: str
    at: int


@dataclass(frozen=True)
class DeletedItem:
    """One checked statement of a v3 bundle: `kind` (entry, blob, subject) `item` (an index, a sha256, a
    tenant/subject) was deleted by the deletion entry `deletion`, under `policies` (a retention run's)."""

    kind: str
    item: str
    deletion: DeletionRecord
    policies: tuple[PolicyRecord, ...] = ()
    listed: bool = True  # False: the deletion list was not carried, so membership was not checked

    def describe(self) -> str:
        what = {"entry": f"event entry {self.item} pruned", "blob": f"blob {self.item} deleted",
                "subject": f"subject {self.item} erased (vault key destroyed)"}[self.kind]
        by = f"by {self.deletion.type.removeprefix('auditlog.')} entry {self.deletion.index} at " \
             f"{format_timestamp_ms(self.deletion.at)}"
        text = f"{what} {by}"
        if self.policies:
            text += " under " + "; ".join(
                f"policy entry {p.index} ({p.record_class} {p.selector}: "
                f"{'removed' if p.retain_days is None else f'{p.retain_days} days'}"
                f"{', ' + p.reason if p.reason else ''})" for p in self.policies)
        elif self.deletion.reason:
            text += f": {self.deletion.reason}"
        return text


@dataclass
class EvidenceReport:
    run_id: str | None  # None: a subject's bundle
    checkpoint: Checkpoint
    events: int  # present events
    registry_entries: int
    producers: list[str]
    warnings: list[str] = field(default_factory=list)
    format: str = FORMAT
    note: Note | None = None  # the checkpoint note as opened (with its cosignature lines), for checks 9 and 10
    note_bytes: bytes = b""  # its exact bytes, which the timestamp token covers
    timestamp: bytes | None = None  # the token the bundle carries (not checked here: check 10)
    subject: dict | None = None  # a subject bundle's {tenant, subject, tokens}
    pruned_events: int = 0
    deleted: list[DeletedItem] = field(default_factory=list)  # checks 11 and 12: what was deleted, when, why
    missing_blobs: list[str] = field(default_factory=list)


_NAMES = {1: "format", 2: "log key", 3: "checkpoint", 4: "registry", 5: "events", 6: "signatures",
          7: "causal order", 8: "producer keys", 11: "deletion records", 12: "deletions"}


def _fail(check: int, detail: str) -> EvidenceError:
    return EvidenceError(check, _NAMES[check], detail)


def _decode_proof(item: dict, check: int, where: str) -> list[bytes]:
    proof = item["inclusion_proof"]
    if not isinstance(proof, list):
        raise _fail(check, f"{where}: inclusion_proof must be a list")
    try:
        return [base64.b64decode(h, validate=True) for h in proof]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _fail(check, f"{where}: bad base64: {exc}") from exc


def _index(item: dict, name: str, check: int, where: str) -> int:
    value = item[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(check, f"{where}: {name} must be a non-negative integer")
    return value


def _included(leaf_hash: bytes, index: int, hashes: list[bytes], check: int, where: str,
              checkpoint: Checkpoint) -> None:
    try:
        verify_inclusion(leaf_hash, index, checkpoint.size, hashes, checkpoint.root_hash)
    except LogError as exc:
        raise _fail(check, f"{where} (index {index}): not included in the checkpoint of size {checkpoint.size}: "
                    f"{exc}") from exc


def _entry(item: Any, check: int, where: str, checkpoint: Checkpoint, extra: frozenset = frozenset()) \
        -> tuple[int, bytes]:
    """Decode one proven entry and check its inclusion in the checkpoint (checks 4, 5 and 11, first half).
    `extra`: the fields beside index, entry and inclusion_proof the item has (checked by the caller)."""
    if not isinstance(item, dict) or set(item) != {"index", "entry", "inclusion_proof"} | extra:
        names = ", ".join(["index", "entry", *sorted(extra)])
        raise _fail(check, f"{where}: must have exactly {names} and inclusion_proof")
    index = item["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(item["inclusion_proof"], list):
        raise _fail(check, f"{where}: index must be an integer and inclusion_proof a list")
    try:
        data = base64.b64decode(item["entry"], validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _fail(check, f"{where}: bad base64: {exc}") from exc
    hashes = _decode_proof(item, check, where)
    _included(hash_leaf(data), index, hashes, check, where, checkpoint)
    return index, data


def _check_format(bundle: Any) -> bytes | None:
    """Check 1; returns the timestamp token's bytes (None when the bundle has none)."""
    if not isinstance(bundle, dict):
        raise _fail(1, f"not an evidence bundle: a JSON {type(bundle).__name__}, not an object")
    fmt = bundle.get("format")
    if fmt not in FIELDS:
        raise _fail(1, f"format is {str(fmt)[:80]!r}, not {FORMAT!r} (or {FORMAT_V2!r}, {FORMAT_V1!r})")
    required = FIELDS[fmt]
    selection: set[str] = set()
    if fmt == FORMAT:
        selection = {"run_id", "subject"} & set(bundle)
        if len(selection) != 1:
            raise _fail(1, f"a {fmt} bundle names a run (run_id) or a subject (subject): exactly one of them")
    missing = required - set(bundle)
    if missing:
        raise _fail(1, f"a {fmt} bundle needs {', '.join(sorted(missing))}")
    unknown = set(bundle) - required - _OPTIONAL - selection
    if unknown:
        raise _fail(1, f"a {fmt} bundle has no field {', '.join(repr(u[:40]) for u in sorted(unknown))}: "
                    f"nothing would check it")
    for name in ("origin", "checkpoint", *({"run_id"} & set(bundle))):
        if not isinstance(bundle[name], str):
            raise _fail(1, f"{name} must be a string")
    if "subject" in bundle:
        _check_subject(bundle["subject"])
    if not isinstance(bundle["events"], list) or not isinstance(bundle["registry"], list):
        raise _fail(1, "events and registry must be lists")
    for name in _V3_LISTS:
        if name in bundle and not isinstance(bundle[name], list):
            raise _fail(1, f"{name} must be a list")
    if not bundle["events"] and not bundle.get("pruned_events"):
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


def _check_subject(subject: Any) -> None:
    if not isinstance(subject, dict) or set(subject) != {"tenant", "subject", "tokens"}:
        raise _fail(1, "subject must be an object with exactly tenant, subject and tokens")
    if not isinstance(subject["tenant"], str) or not _TENANT.match(subject["tenant"]):
        raise _fail(1, "subject.tenant must be a tenant name")
    if not isinstance(subject["subject"], str) or not is_vault_token(subject["subject"]):
        raise _fail(1, "subject.subject must be a vault token (vt. and 26 base32 characters)")
    tokens = subject["tokens"]
    if not isinstance(tokens, list) or not all(isinstance(t, str) and is_vault_token(t) for t in tokens):
        raise _fail(1, "subject.tokens must be a list of vault tokens")
    if tokens != sorted(set(tokens)):
        raise _fail(1, "subject.tokens must be sorted, without repeats")


def verify_bundle(bundle: Any, log_key: str) -> EvidenceReport:
    """Checks 1-8, 11 and 12 of the module docstring (what the log's key alone can check). Raises EvidenceError at
    the first check that does not hold. Verifiers call `api.client.evidence.verify_run_bundle`, which adds checks
    9 and 10."""
    # 1. format
    token = _check_format(bundle)
    run_id = bundle.get("run_id")
    subject = bundle.get("subject")

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
    events: list[tuple[dict, bytes]] = []  # (event, its canonical bytes)
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
        if run_id is not None and event["run_id"] != run_id:
            raise _fail(5, f"{where} (index {index}): belongs to run {event['run_id']!r}, not {run_id!r}")
        if subject is not None:
            if event["tenant"] != subject["tenant"]:
                raise _fail(5, f"{where} (index {index}): an event of tenant {event['tenant']!r}, not of the "
                            f"subject's tenant {subject['tenant']!r}")
            if not set(tokens_in_event(envelope.event_bytes)) & set(subject["tokens"]):
                raise _fail(5, f"{where} (index {index}): carries none of the subject's tokens")
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
        events.append((event, envelope.event_bytes))

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
    outside = "this subject's events" if subject is not None else "this run"
    warnings = [f"event {nodes[p].event_id}: parent {parent} is not in {outside}"
                + (" (it may be one of the pruned events, whose ids are gone)" if bundle.get("pruned_events") else "")
                for p, parent in sorted(ordering.external_parents.items())]

    # 8. the key summary
    if "producer_keys" in bundle:
        if bundle["producer_keys"] != _key_summary(registry):
            raise _fail(8, "producer_keys says something the registry entries do not")

    report = EvidenceReport(run_id, checkpoint, len(nodes), len(bundle["registry"]), sorted(producers), warnings,
                            bundle["format"], note, note_bytes, token, subject)
    if bundle["format"] == FORMAT:
        records, policies = _check_deletion_records(bundle, checkpoint)  # 11
        _check_deletions(bundle, checkpoint, nodes, events, records, policies, report)  # 12
    return report


# -- checks 11 and 12: what was deleted ------------------------------------------------------------------------------
def _record_field(record: dict, name: str, where: str, kind: str = "string") -> Any:
    value = record.get(name)
    ok = {"string": isinstance(value, str),
          "sha256": isinstance(value, str) and bool(_SHA256_HEX.match(value)),
          "time": isinstance(value, str) and parse_timestamp_ms(value) is not None,
          "tenant": isinstance(value, str) and bool(_TENANT.match(value)),
          "token": isinstance(value, str) and bool(is_vault_token(value))}[kind]
    if not ok:
        raise _fail(11, f"{where}: a {record.get('type')} record whose {name} is not a {kind}: {str(value)[:80]!r}")
    return parse_timestamp_ms(value) if kind == "time" else value


def _canonical_record(data: bytes, where: str) -> dict:
    try:
        record = parse_json(data).value
        if not isinstance(record, dict) or canonicalize(record) != data:
            raise _fail(11, f"{where}: not a record in RFC 8785 canonical form")
    except InvalidEvent as exc:
        raise _fail(11, f"{where}: not a JSON record: {exc}") from exc
    return record


def _check_items(value: Any, where: str) -> frozenset[tuple[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(i, list) and len(i) == 2 and i[0] in DELETION_KINDS and isinstance(i[1], str) for i in value):
        raise _fail(11, f"{where}: items must be null or a list of [kind, item] (kinds {', '.join(DELETION_KINDS)})")
    pairs = [(kind, item) for kind, item in value]
    if pairs != sorted(set(pairs)):
        raise _fail(11, f"{where}: items must be sorted, without repeats")
    return frozenset(pairs)


def _check_deletion_records(bundle: dict, checkpoint: Checkpoint) \
        -> tuple[dict[int, DeletionRecord], dict[int, PolicyRecord]]:
    """Check 11: the deletion and policy entries, proven and parsed."""
    records: dict[int, DeletionRecord] = {}
    last = -1
    for i, item in enumerate(bundle["deletions"]):
        where = f"deletions[{i}]"
        index, data = _entry(item, 11, where, checkpoint, frozenset({"items"}))
        where = f"{where} (index {index})"
        if index <= last:
            raise _fail(11, f"{where}: deletion entries must be in increasing log order")
        last = index
        record = _canonical_record(data, where)
        kind = record.get("type")
        items = _check_items(item["items"], where)
        if kind == BLOB_ERASURE_TYPE:
            try:
                erasure = parse_blob_erasure(record)
            except InvalidEvent as exc:
                raise _fail(11, f"{where}: {exc}") from exc
            if items is not None:
                raise _fail(11, f"{where}: a blob erasure has no deletion list: items must be null")
            records[index] = DeletionRecord(index, kind, None, erasure["at"], erasure["reason"], None,
                                            frozenset({("blob", erasure["sha256"])}), record)
            continue
        if kind not in DELETION_TYPES:
            raise _fail(11, f"{where}: a {str(kind)[:60]!r} record, not a deletion ({', '.join(DELETION_TYPES)})")
        tenant = _record_field(record, "tenant", where, "tenant")
        at = _record_field(record, "at", where, "time")
        list_sha256 = _record_field(record, "list_sha256", where, "sha256")
        policies: tuple[int, ...] = ()
        reason = record.get("reason") if isinstance(record.get("reason"), str) else None
        if kind == RETENTION_RUN_TYPE:
            named = record.get("policies")
            if not isinstance(named, list) or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < index
                                                      for p in named):
                raise _fail(11, f"{where}: a retention run's policies must be the indices of earlier entries")
            policies = tuple(sorted(set(named)))
        else:
            _record_field(record, "subject", where, "token")
        if items is not None and deletion_list_sha256(items) != list_sha256:
            raise _fail(11, f"{where}: its deletion list hashes to {deletion_list_sha256(items)}, the entry commits "
                        f"to {list_sha256}")
        records[index] = DeletionRecord(index, kind, tenant, at, reason, list_sha256, items, record, policies)

    named = {p: d for d in records.values() for p in d.policies}
    policies_found: dict[int, PolicyRecord] = {}
    last = -1
    for i, item in enumerate(bundle["policies"]):
        where = f"policies[{i}]"
        index, data = _entry(item, 11, where, checkpoint)
        where = f"{where} (index {index})"
        if index <= last:
            raise _fail(11, f"{where}: policy entries must be in increasing log order")
        last = index
        record = _canonical_record(data, where)
        if record.get("type") != RETENTION_POLICY_TYPE:
            raise _fail(11, f"{where}: a {str(record.get('type'))[:60]!r} record, not a {RETENTION_POLICY_TYPE}")
        if index not in named:
            raise _fail(11, f"{where}: no carried retention run applied this policy: nothing would check it")
        days = record.get("retain_days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
            raise _fail(11, f"{where}: retain_days must be null or a non-negative integer")
        policy = PolicyRecord(index, _record_field(record, "tenant", where, "tenant"),
                              _record_field(record, "record_class", where),
                              _record_field(record, "selector", where), days,
                              record.get("reason") if isinstance(record.get("reason"), str) else "",
                              _record_field(record, "at", where, "time"))
        if policy.tenant != named[index].tenant:
            raise _fail(11, f"{where}: a policy of tenant {policy.tenant!r}, applied by retention run "
                        f"{named[index].index} of tenant {named[index].tenant!r}")
        policies_found[index] = policy
    for policy_index, run in sorted(named.items()):
        if policy_index not in policies_found:
            raise _fail(11, f"retention run {run.index} applied policy entry {policy_index}, which the bundle does "
                        f"not carry")
    return records, policies_found


def _check_deletions(bundle: dict, checkpoint: Checkpoint, nodes: list[Node], events: list[tuple[dict, bytes]],
                     records: dict[int, DeletionRecord], policies: dict[int, PolicyRecord],
                     report: EvidenceReport) -> None:
    """Check 12: every deletion claim against a proven deletion entry; fills the report's `deleted`."""
    used: set[int] = set()
    unlisted: dict[int, int] = {}

    def claim(kind: str, item: str, deletion_index: Any, where: str, tenant: str | None) -> None:
        if not isinstance(deletion_index, int) or isinstance(deletion_index, bool) or deletion_index not in records:
            raise _fail(12, f"{where}: its deletion_index {str(deletion_index)[:40]} is not one of the bundle's "
                        f"deletion entries")
        record = records[deletion_index]
        if tenant is not None and record.tenant is not None and record.tenant != tenant:
            raise _fail(12, f"{where}: deletion entry {record.index} is of tenant {record.tenant!r}, not {tenant!r}")
        if record.type == SUBJECT_ERASURE_TYPE and kind == "subject" and \
                item != f"{record.tenant}/{record.record['subject']}":
            raise _fail(12, f"{where}: subject erasure {record.index} erased {record.tenant}/"
                        f"{record.record['subject']}, not {item}")
        if kind == "entry" and record.type != RETENTION_RUN_TYPE:
            raise _fail(12, f"{where}: entries are pruned by retention runs, and entry {record.index} is a "
                        f"{record.type}")
        listed = record.items is not None
        if listed and (kind, item) not in record.items:
            raise _fail(12, f"{where}: deletion entry {record.index}'s list has no `{kind} {item}`")
        if not listed:
            unlisted[record.index] = unlisted.get(record.index, 0) + 1
        used.add(record.index)
        report.deleted.append(DeletedItem(kind, item, record, tuple(policies[p] for p in record.policies), listed))

    present = {node.index for node in nodes}
    last = -1
    for i, item in enumerate(bundle["pruned_events"]):
        where = f"pruned_events[{i}]"
        if not isinstance(item, dict) or set(item) != {"index", "leaf_hash", "inclusion_proof", "deletion_index"}:
            raise _fail(12, f"{where}: must have exactly index, leaf_hash, inclusion_proof and deletion_index")
        index = _index(item, "index", 12, where)
        try:
            leaf_hash = base64.b64decode(item["leaf_hash"], validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise _fail(12, f"{where}: bad base64: {exc}") from exc
        if len(leaf_hash) != 32:
            raise _fail(12, f"{where}: leaf_hash must be 32 bytes")
        if index <= last:
            raise _fail(12, f"{where} (index {index}): pruned events must be in increasing log order")
        last = index
        if index in present:
            raise _fail(12, f"{where} (index {index}): is also a present event")
        _included(leaf_hash, index, _decode_proof(item, 12, where), 12, where, checkpoint)
        if isinstance(item["deletion_index"], int) and item["deletion_index"] <= index:
            raise _fail(12, f"{where} (index {index}): deletion entry {item['deletion_index']} comes before it")
        claim("entry", str(index), item["deletion_index"], f"{where} (index {index})",
              None if report.subject is None else report.subject["tenant"])
    report.pruned_events = len(bundle["pruned_events"])

    cited: dict[str, set[str]] = {}  # sha256 -> tenants of the present events citing it
    carried: dict[str, set[str]] = {}  # tenant -> vault tokens its present events carry
    for event, event_bytes in events:
        for sha in content_references(event):
            cited.setdefault(sha, set()).add(event["tenant"])
        carried.setdefault(event["tenant"], set()).update(tokens_in_event(event_bytes))

    claimed_blobs: set[str] = set()
    last_sha = ""
    for i, item in enumerate(bundle["deleted_blobs"]):
        where = f"deleted_blobs[{i}]"
        if not isinstance(item, dict) or set(item) != {"sha256", "deletion_index"}:
            raise _fail(12, f"{where}: must have exactly sha256 and deletion_index")
        sha = item["sha256"]
        if not isinstance(sha, str) or not _SHA256_HEX.match(sha):
            raise _fail(12, f"{where}: sha256 must be 64 lowercase hex digits")
        if sha <= last_sha:
            raise _fail(12, f"{where}: deleted blobs must be sorted by sha256, without repeats")
        last_sha = sha
        if sha not in cited:
            raise _fail(12, f"{where}: blob {sha} is cited by none of the bundle's events")
        tenants = cited[sha]
        claim("blob", sha, item["deletion_index"], f"{where} (blob {sha})",
              next(iter(tenants)) if len(tenants) == 1 else None)
        claimed_blobs.add(sha)
    missing = bundle["missing_blobs"]
    if not all(isinstance(sha, str) and _SHA256_HEX.match(sha) for sha in missing) or missing != sorted(set(missing)):
        raise _fail(12, "missing_blobs must be a sorted list of distinct sha256 hex digests")
    for sha in missing:
        if sha not in cited or sha in claimed_blobs:
            raise _fail(12, f"missing blob {sha}: " + ("claimed deleted too" if sha in claimed_blobs
                                                         else "cited by none of the bundle's events"))
        report.warnings.append(f"blob {sha} is cited by the events but gone, and the log has no record of its "
                               f"deletion")
    report.missing_blobs = list(missing)

    last_key: tuple[str, str] = ("", "")
    for i, item in enumerate(bundle["erased_subjects"]):
        where = f"erased_subjects[{i}]"
        if not isinstance(item, dict) or set(item) != {"tenant", "subject", "tokens", "deletion_index"}:
            raise _fail(12, f"{where}: must have exactly tenant, subject, tokens and deletion_index")
        tenant, subject, tokens = item["tenant"], item["subject"], item["tokens"]
        if not isinstance(tenant, str) or not _TENANT.match(tenant) or not isinstance(subject, str) \
                or not is_vault_token(subject):
            raise _fail(12, f"{where}: tenant must be a tenant name and subject a vault token")
        if (tenant, subject) <= last_key:
            raise _fail(12, f"{where}: erased subjects must be sorted by tenant and subject, without repeats")
        last_key = (tenant, subject)
        if not isinstance(tokens, list) or not tokens or tokens != sorted(set(tokens)) or not all(
                isinstance(t, str) and is_vault_token(t) for t in tokens):
            raise _fail(12, f"{where}: tokens must be a sorted, non-empty list of distinct vault tokens")
        absent = [t for t in tokens if t not in carried.get(tenant, ())]
        if absent:
            raise _fail(12, f"{where}: token {absent[0]} is in none of the bundle's events of tenant {tenant!r}")
        claim("subject", f"{tenant}/{subject}", item["deletion_index"], f"{where} ({tenant}/{subject})", tenant)

    unused = sorted(set(records) - used)
    if unused:
        raise _fail(12, f"deletion entry {unused[0]} backs none of the bundle's claims: nothing would check it")
    for index, count in sorted(unlisted.items()):
        report.warnings.append(f"{count} claim{'s' if count > 1 else ''} on deletion entry {index} checked against "
                               f"the entry only: its list (longer than the bundle carries) is served by "
                               f"GET /api/v1/deletions/{index}")


__all__ = ["DELETION_TYPES", "FORMAT", "FORMAT_V1", "FORMAT_V2", "MAX_CARRIED_ITEMS", "DeletedItem", "Deletions",
           "DeletionRecord", "ErasedSubject", "EvidenceReport", "PolicyRecord", "PrunedEvent", "build_bundle",
           "verify_bundle"]
