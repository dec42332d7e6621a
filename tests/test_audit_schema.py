"""auditlog.event/v1: every required field, every field's type, the semantic timestamp check, and the two
validators (compiled and reference) agreeing on what is valid."""

import copy
import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log.audit.errors import InvalidEvent
from log.errors import InvalidInput
from log.audit.schema import (
    EVENT_SCHEMA, EVENT_TYPES, field_errors, format_timestamp_ms, parse_timestamp_ms, validate_event,
)

REQUIRED = ("schema", "event_id", "trace_id", "run_id", "timestamp", "tenant", "actor", "event_type")

FULL = {
    "schema": "auditlog.event/v1",
    "event_id": "evt-0002",
    "trace_id": "trace-7",
    "run_id": "run-42",
    "parent_event_id": "evt-0001",
    "timestamp": "2026-11-23T14:05:09.123Z",
    "tenant": "acme-bank",
    "actor": {"type": "agent", "id": "kyc-agent", "run_id": "run-42"},
    "on_behalf_of": {"type": "user", "id": "u_81f2"},
    "event_type": "model_call",
    "context": {"case_id": "case-9", "alert_id": "al-3", "customer_id": "cust_8f3a", "claim_id": "cl-1"},
    "snapshot": {"model_id": "m-2026-10", "prompt_version": "p7", "tool_versions": {"search": "1.2"},
                 "retrieval_index_version": "idx-5", "policy_snapshot": "pol-11"},
    "policy": {"decision": "allow", "matched_rule": "r-12", "snapshot": "pol-11"},
    "approval": {"required": True, "approver": {"type": "user", "id": "u_9"},
                 "approved_at": "2026-11-23T14:05:08.000Z", "review_dwell_ms": 5120},
    "input": {"sha256": "a" * 64, "media_type": "text/plain", "size": 120},
    "output": {"sha256": "b" * 64},
    "metadata": {"input_tokens": 1000, "output_tokens": 20, "latency_ms": 800, "cost": "0.0123",
                 "currency": "EUR"},
    "outcome": {"status": "success", "reason": "done"},
    "error": {"code": "E1", "message": "m", "retryable": False},
    "extensions": {"anything": [1, {"goes": None}]},
}
MINIMAL = {k: FULL[k] for k in REQUIRED}


def test_full_and_minimal_events_are_valid():
    assert validate_event(copy.deepcopy(FULL)) == FULL
    assert validate_event(copy.deepcopy(MINIMAL)) == MINIMAL
    jsonschema.Draft202012Validator.check_schema(EVENT_SCHEMA)


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_field(name):
    event = copy.deepcopy(FULL)
    del event[name]
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event)
    assert [e.field for e in caught.value.errors] == [f"$.{name}"]
    assert caught.value.field == f"$.{name}"


# (path, a wrong value): each must be refused with an error at exactly that path.
WRONG = [
    ("schema", "auditlog.event/v2"), ("event_id", 7), ("event_id", "has space"), ("event_id", ""),
    ("event_id", "x" * 129), ("trace_id", None), ("run_id", ["r"]), ("parent_event_id", 1),
    ("parent_event_id", "a@b"), ("timestamp", "2026-11-23T14:05:09Z"), ("timestamp", "2026-11-23T14:05:09.123+01:00"),
    ("timestamp", 1700000000), ("timestamp", "2026-02-30T00:00:00.000Z"), ("tenant", "Jane Doe"),
    ("actor", "agent"), ("actor.type", "robot"), ("actor.id", "jane@example.com"), ("actor.run_id", 5),
    ("actor.extra", "x"), ("on_behalf_of", "u1"), ("on_behalf_of.type", "org"), ("on_behalf_of.id", None),
    ("event_type", "thinking"), ("event_type", None), ("context", []), ("context.case_id", 9),
    ("context.customer_id", "John Smith"), ("context.Bad-Name", "x"), ("snapshot", "s"), ("snapshot.model_id", 3),
    ("snapshot.tool_versions", ["a"]), ("snapshot.tool_versions.search", 1), ("snapshot.other", "x"),
    ("policy.decision", "maybe"), ("policy.matched_rule", 1), ("approval.required", "yes"),
    ("approval.approver", "u_9"), ("approval.approved_at", "yesterday"), ("approval.review_dwell_ms", -1),
    ("approval.review_dwell_ms", 1.5), ("input", "a" * 64), ("input.sha256", "A" * 64), ("input.sha256", "a" * 63),
    ("input.size", -1), ("input.media_type", 1), ("output.sha256", None), ("metadata.input_tokens", "10"),
    ("metadata.output_tokens", 2**53), ("metadata.latency_ms", True), ("metadata.cost", 0.5),
    ("metadata.cost", "1e3"), ("metadata.currency", "eur"), ("metadata.other", 1), ("outcome", "success"),
    ("outcome.status", "ok"), ("error", "boom"), ("error.code", 5), ("error.retryable", "no"), ("extensions", []),
    ("unknown_top_level", 1),
]


def _set(event: dict, path: str, value) -> str:
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    target[last] = value
    return "$." + path if last != "Bad-Name" else "$.context"


@pytest.mark.parametrize("path,value", WRONG, ids=[f"{p}={v!r}"[:60] for p, v in WRONG])
def test_every_field_type(path, value):
    event = copy.deepcopy(FULL)
    expected = _set(event, path, value)
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event)
    fields = [e.field for e in caught.value.errors]
    parent = expected.rsplit(".", 1)[0]
    assert expected in fields or (parent in fields and path.split(".")[-1] not in EVENT_SCHEMA["properties"]), fields


def test_every_error_is_listed_at_once():
    event = copy.deepcopy(FULL)
    del event["tenant"]
    event["actor"]["type"] = "robot"
    event["input"]["sha256"] = "nope"
    fields = [e.field for e in field_errors(event)]
    assert fields == ["$.actor.type", "$.input.sha256", "$.tenant"]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type(event_type):
    validate_event({**MINIMAL, "event_type": event_type})


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 253402300799999))
def test_timestamps_round_trip(ms):
    assert parse_timestamp_ms(format_timestamp_ms(ms)) == ms


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
       st.integers(0, 99), st.integers(0, 999))
def test_timestamps_parse_as_the_standard_library_reads_them_twice_over(year, month, day, hour, minute, second, ms):
    # The second parse finds the date in the cache of dates seen: both must agree with datetime, and a date that
    # does not exist must never get into the cache.
    import datetime

    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=datetime.timezone.utc)
        expected = round(moment.timestamp() * 1000) if year >= 1970 else None
    except ValueError:
        expected = None
    assert parse_timestamp_ms(text) == expected
    assert parse_timestamp_ms(text) == expected


def test_the_published_schema_is_plain_json():
    assert json.loads(json.dumps(EVENT_SCHEMA)) == EVENT_SCHEMA


_mutations = st.sampled_from(WRONG)


@settings(max_examples=200, deadline=None)
@given(st.lists(_mutations, max_size=3), st.lists(st.sampled_from(REQUIRED), max_size=2))
def test_compiled_and_reference_validators_agree(mutations, removals):
    event = copy.deepcopy(FULL)
    for path, value in mutations:
        try:
            _set(event, path, value)
        except (KeyError, TypeError):
            pass
    for name in removals:
        event.pop(name, None)
    try:
        validate_event(event)
        fast_ok = True
    except InvalidEvent:
        fast_ok = False
    assert fast_ok == (not field_errors(event))


@pytest.mark.parametrize("path", ["event_id", "run_id", "tenant", "actor.id", "context.case_id", "input.sha256"])
def test_a_final_newline_is_not_part_of_a_token(path):
    # JSON Schema patterns are ECMA-262, where `$` is the end of the string; Python's `$` also matches before a
    # final newline. Both validators must refuse, naming the field.
    event = copy.deepcopy(FULL)
    target = event
    for part in path.split(".")[:-1]:
        target = target[part]
    _set(event, path, target[path.split(".")[-1]] + "\n")
    with pytest.raises(InvalidEvent) as refused:
        validate_event(event)
    assert refused.value.field == "$." + path
    assert [e.field for e in field_errors(event)] == ["$." + path]


def test_envelope_tokens_and_ids_refuse_a_final_newline():
    from log.audit.records import parse_envelope
    from log.blobs import check_digest

    envelope = {"producer": "agent-1", "key_id": "0123456789abcdef", "signature": "A" * 86 + "==",
                "event": copy.deepcopy(MINIMAL)}
    assert parse_envelope(envelope).producer == "agent-1"
    for field in ("producer", "key_id"):
        with pytest.raises(InvalidEvent) as refused:
            parse_envelope({**envelope, field: envelope[field] + "\n"})
        assert refused.value.field == f"$.{field}"
    with pytest.raises(InvalidInput):
        check_digest("a" * 64 + "\n")
    assert check_digest("a" * 64) == "a" * 64
