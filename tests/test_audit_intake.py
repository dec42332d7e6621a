"""Steps 1-3 of audit ingest (log/audit/intake.py): what `check_body` derives from a body, checked against the
RFC 8785 library, the envelope parser and the idempotency key's definition; refusals stay at their position."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
import rfc8785

from log.audit.errors import InvalidEvent
from log.audit.intake import check_body
from log.audit.records import parse_envelope
from log.audit.tables import EVENT_COLUMNS

STAMP_MS = int(datetime.datetime(2026, 11, 18, 7, 6, 40, 123000, tzinfo=datetime.timezone.utc).timestamp() * 1000)
NOW = STAMP_MS + 60_000


def _event(n: int, **extra) -> dict:
    return {"schema": "auditlog.event/v1", "event_id": f"ev-{n}", "trace_id": f"tr-{n // 2}", "run_id": "run-1",
            "timestamp": "2026-11-18T07:06:40.123Z", "tenant": "acme", "actor": {"type": "agent", "id": "a-1"},
            "event_type": "tool_call", **extra}


def _envelope(event: dict) -> dict:
    return {"producer": "gateway-1", "key_id": "0123456789abcdef",
            "signature": base64.b64encode(bytes(range(64))).decode(), "event": event}


def test_each_envelope_is_checked_and_its_derived_values_match_their_definitions():
    events = [_event(0), _event(1, parent_event_id="ev-0", context={"case_id": "c-9", "alert_id": "al-1"}),
              _event(2, extensions={"note": "é ü", "n": 3})]
    single, checked = check_body(json.dumps({"events": [_envelope(e) for e in events]}).encode(), NOW)
    assert single is False and len(checked) == 3
    for event, item in zip(events, checked):
        envelope = parse_envelope(_envelope(event)) if "note" not in event else None
        canonical = rfc8785.dumps(event)
        assert item.event_bytes == canonical
        assert item.entry == rfc8785.dumps({**_envelope(event), "type": "auditlog.envelope/v1"})
        assert item.entry == envelope.entry_bytes()
        assert item.signature == bytes(range(64)) and (item.producer, item.key_id) == ("gateway-1", "0123456789abcdef")
        assert item.timestamp_ms == STAMP_MS
        assert item.idempotency_key == hashlib.sha256(
            b"auditlog.event/v1 idempotency\x00gateway-1\x00" + event["event_id"].encode()).digest()
        assert item.content_hash == hashlib.sha256(canonical).digest()
        row = dict(zip(EVENT_COLUMNS, item.event_row))
        assert row == {"tenant": "acme", "producer": "gateway-1", "event_id": event["event_id"], "run_id": "run-1",
                       "trace_id": event["trace_id"], "parent_event_id": event.get("parent_event_id"),
                       "actor_type": "agent", "actor_id": "a-1", "event_type": "tool_call", "ts": STAMP_MS}
        assert item.context_rows == tuple((event.get("context") or {}).items())


def test_a_refused_envelope_is_refused_at_its_position_and_the_others_still_pass():
    bad_time = _event(1, timestamp="2026-02-30T00:00:00.000Z")
    future = _event(2, timestamp="2027-01-01T00:00:00.000Z")
    body = {"events": [_envelope(_event(0)), _envelope(bad_time), _envelope(future), {"producer": "x"},
                       _envelope(_event(4))]}
    single, checked = check_body(json.dumps(body).encode(), NOW)
    assert not single
    assert [type(item).__name__ for item in checked] == [
        "CheckedEnvelope", "InvalidEvent", "InvalidEvent", "InvalidEvent", "CheckedEnvelope"]
    assert checked[1].field == "$.event.timestamp" and "real date" in str(checked[1].errors)
    assert checked[2].field == "$.event.timestamp" and "ahead of the log's clock" in str(checked[2])
    assert checked[4].event_id == "ev-4"


def test_one_envelope_is_a_single_submission():
    single, checked = check_body(json.dumps(_envelope(_event(7))).encode(), NOW)
    assert single is True and [c.event_id for c in checked] == ["ev-7"]


@pytest.mark.parametrize("body, field", [
    (b"{not json", "$"),
    (b'{"events": [], "more": 1}', "$"),
    (b'{"events": []}', "$.events"),
    (json.dumps({"events": [{}] * 1001}).encode(), "$.events"),
])
def test_a_body_that_is_no_submission_is_refused_whole(body, field):
    with pytest.raises(InvalidEvent) as refused:
        check_body(body, NOW)
    assert refused.value.field == field
