"""Steps 1-3 of audit ingest (see service.py): a request body to checked envelopes, with no state but the clock.

`check_body` parses a submission (one envelope, or `{"events": [...]}`) and, per envelope, checks its shape and
its event against the schema, computes the RFC 8785 bytes the signature covers and the log entry, and derives
once what later steps need: the timestamp in milliseconds, the idempotency key's parts and the index row values
(the event's row, its context ids, the blobs it refers to). It needs neither the registry nor the database.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from log.audit.canonical import MAX_DEPTH, check_depth, parse_json
from log.audit.errors import InvalidEvent
from log.audit.records import parse_envelope
from log.audit.schema import content_media_types, content_references, parse_timestamp_ms
from log.errors import LogError
from log.tiles import MAX_ENTRY_SIZE

MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
MAX_BATCH = 1000
IDEMPOTENCY_DOMAIN = b"auditlog.event/v1 idempotency\x00"


class CheckedEnvelope(NamedTuple):
    """An envelope that passed steps 1-3: what steps 4-8 need, as plain values."""

    producer: str
    key_id: str
    signature: bytes
    event_bytes: bytes  # RFC 8785 bytes of the event: what the signature covers
    entry: bytes  # the log entry: the canonical envelope
    event_id: str
    tenant: str
    timestamp_ms: int
    idempotency_key: bytes  # SHA-256 over (producer, event_id): names the event
    content_hash: bytes  # SHA-256 of event_bytes: tells a retry from a conflicting reuse
    event_row: tuple  # audit_events values in the order of tables.EVENT_COLUMNS
    context_rows: tuple[tuple[str, str], ...]  # audit_event_context (name, value) pairs
    blobs: tuple[str, ...]  # audit_event_blobs: the SHA-256 (hex) of each blob the event refers to, each once
    blob_media_types: tuple[str | None, ...] = ()  # beside `blobs`: each reference's media_type, where given


def idempotency_key_of(producer: str, event_id: str) -> bytes:
    return hashlib.sha256(IDEMPOTENCY_DOMAIN + producer.encode() + b"\x00" + event_id.encode()).digest()


def check_body(body: bytes, now: int) -> tuple[bool, list[CheckedEnvelope | LogError]]:
    """(whether the body was a single envelope, one CheckedEnvelope or refusal per envelope, in order).

    Raises InvalidEvent when the body is not a submission at all (not JSON, not a batch object, too many).
    """
    parsed = parse_json(body)
    value = parsed.value
    single = not (isinstance(value, dict) and "events" in value)
    if single:
        items = [value]
    else:
        if set(value) != {"events"}:
            raise InvalidEvent("a batch is an object with only an events list", "$")
        items = value["events"]
        if not isinstance(items, list) or not items:
            raise InvalidEvent("events must be a non-empty list of envelopes", "$.events")
        if len(items) > MAX_BATCH:
            raise InvalidEvent(f"a batch holds at most {MAX_BATCH} envelopes, not {len(items)}", "$.events")
    out: list[CheckedEnvelope | LogError] = []
    for obj in items:
        try:
            out.append(check_envelope(obj, parsed.exact, now))
        except LogError as exc:
            out.append(exc)
        except RecursionError:  # nested just under the parser's limit, too deep for a recursive check after it
            out.append(InvalidEvent("the envelope nests objects and arrays too deeply", "$.event"))
    return single, out


def check_envelope(obj: Any, exact: bool, now: int) -> CheckedEnvelope:
    """Steps 1-3 for one envelope object of a document parsed by `parse_json` (whose `exact` flag is given)."""
    envelope = parse_envelope(obj, exact=exact)
    event = envelope.event
    extensions = event.get("extensions")
    if extensions:  # the schema's one free-form value (the rest is bounded by it): what is stored must encode again
        check_depth(extensions, "$.event.extensions", MAX_DEPTH - 2)
    ts = parse_timestamp_ms(event["timestamp"])
    if ts > now + MAX_FUTURE_SKEW_MS:
        raise InvalidEvent(f"the event timestamp is more than {MAX_FUTURE_SKEW_MS // 1000} s ahead of the "
                           f"log's clock", "$.event.timestamp")
    size = len(envelope.event_bytes) + 200
    if size > MAX_ENTRY_SIZE:
        raise InvalidEvent(f"the envelope is about {size} bytes; the limit is {MAX_ENTRY_SIZE}: put large "
                           f"content in blobs and refer to it by sha256", "$.event")
    actor = event["actor"]
    event_id = event["event_id"]
    return CheckedEnvelope(
        envelope.producer, envelope.key_id, envelope.signature, envelope.event_bytes, envelope.entry_bytes(),
        event_id, event["tenant"], ts,
        idempotency_key_of(envelope.producer, event_id), hashlib.sha256(envelope.event_bytes).digest(),
        (event["tenant"], envelope.producer, event_id, event["run_id"], event["trace_id"],
         event.get("parent_event_id"), actor["type"], actor["id"], event["event_type"], ts),
        tuple((event.get("context") or {}).items()),
        content_references(event),
        content_media_types(event),
    )
