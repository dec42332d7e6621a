"""The producer registry: key ids, the validity rules (registry.py), rotation, revocation, and the registry-change
and envelope records with their round trips."""

import base64

import pytest
from nacl.signing import SigningKey

from log.audit.canonical import canonicalize
from log.audit.errors import (
    BadSignature, InvalidEvent, KeyExpired, KeyRevoked, RegistryConflict, TenantForbidden, UnknownKey,
    UnknownProducer,
)
from log.audit.records import (
    Envelope, format_blob_erasure, format_registry_change, parse_blob_erasure, parse_entry, parse_envelope,
    parse_registry_change, registry_change,
)
from log.audit.registry import RETIREMENT_GRACE_MS, Registry, key_id_for
from tests.test_audit_schema import MINIMAL

T0 = 1_800_000_000_000
SEED = bytes(range(32))
PUBLIC = bytes(SigningKey(SEED).verify_key)
KEY_ID = key_id_for(PUBLIC)


def _registry(**key_fields) -> Registry:
    registry = Registry()
    registry.apply(registry_change("producer-registered", "p1", T0, tenants=("acme",)))
    registry.apply(registry_change("key-added", "p1", T0, key_id=KEY_ID, public_key=PUBLIC,
                                   not_before=key_fields.get("not_before", T0), not_after=None))
    return registry


def test_key_id_is_sha256_prefix():
    import hashlib

    assert KEY_ID == hashlib.sha256(PUBLIC).hexdigest()[:16]
    with pytest.raises(Exception):
        key_id_for(b"short")


def test_lookups_name_what_is_unknown():
    registry = _registry()
    with pytest.raises(UnknownProducer):
        registry.key("nobody", KEY_ID)
    with pytest.raises(UnknownKey):
        registry.key("p1", "0" * 16)
    with pytest.raises(TenantForbidden):
        registry.check_tenant("p1", "other")
    registry.check_tenant("p1", "acme")


def test_signature():
    key = _registry().key("p1", KEY_ID)
    message = canonicalize(MINIMAL)
    key.verify(message, SigningKey(SEED).sign(message).signature)
    with pytest.raises(BadSignature):
        key.verify(message + b" ", SigningKey(SEED).sign(message).signature)
    with pytest.raises(BadSignature):
        key.verify(message, SigningKey(bytes(32)).sign(message).signature)


def test_validity_window_and_rotation():
    registry = _registry()
    key = registry.key("p1", KEY_ID)
    key.check_usable(T0, T0)
    with pytest.raises(KeyExpired):
        key.check_usable(T0 - 1, T0)  # dated before the key existed
    registry.apply(registry_change("key-retired", "p1", T0 + 1000, key_id=KEY_ID, not_after=T0 + 1000))
    key = registry.key("p1", KEY_ID)
    key.check_usable(T0 + 999, T0 + 1000 + RETIREMENT_GRACE_MS - 1)  # late delivery within the grace period
    with pytest.raises(KeyExpired):
        key.check_usable(T0 + 999, T0 + 1000 + RETIREMENT_GRACE_MS)
    with pytest.raises(KeyExpired):
        key.check_usable(T0 + 1000, T0 + 1000)
    assert key.valid_at(T0 + 999) and not key.valid_at(T0 + 1000)  # old events stay verifiable
    with pytest.raises(RegistryConflict):
        registry.check(registry_change("key-retired", "p1", T0 + 2000, key_id=KEY_ID, not_after=T0 + 2000))


def test_revocation_refuses_everything_new_and_invalidates_from_its_time():
    registry = _registry()
    registry.apply(registry_change("key-revoked", "p1", T0 + 5000, key_id=KEY_ID, revoked_at=T0 + 3000))
    key = registry.key("p1", KEY_ID)
    with pytest.raises(KeyRevoked):
        key.check_usable(T0 + 1, T0 + 5001)  # even an event dated before the revocation
    assert key.valid_at(T0 + 2999) and not key.valid_at(T0 + 3000)
    with pytest.raises(RegistryConflict):
        registry.check(registry_change("key-revoked", "p1", T0 + 6000, key_id=KEY_ID, revoked_at=T0 + 6000))


def test_registry_conflicts():
    registry = _registry()
    with pytest.raises(RegistryConflict):
        registry.check(registry_change("producer-registered", "p1", T0, tenants=("x",)))
    with pytest.raises(RegistryConflict):
        registry.check(registry_change("key-added", "p1", T0, key_id=KEY_ID, public_key=PUBLIC, not_before=T0,
                                       not_after=None))
    with pytest.raises(RegistryConflict):
        registry.check(registry_change("key-added", "p2", T0, key_id=KEY_ID, public_key=PUBLIC, not_before=T0,
                                       not_after=None))


CHANGES = [
    registry_change("producer-registered", "p1", T0, tenants=("b", "a"), reason="onboarding"),
    registry_change("key-added", "p1", T0, key_id=KEY_ID, public_key=PUBLIC, not_before=T0, not_after=None),
    registry_change("key-added", "p1", T0, key_id=KEY_ID, public_key=PUBLIC, not_before=T0, not_after=T0 + 9),
    registry_change("key-retired", "p1", T0, key_id=KEY_ID, not_after=T0 + 5),
    registry_change("key-revoked", "p1", T0, key_id=KEY_ID, revoked_at=T0 + 5, reason="laptop stolen"),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c["change"] for c in CHANGES])
def test_registry_change_round_trip(change):
    wire = format_registry_change(change)
    again = parse_registry_change(wire)
    assert format_registry_change(again) == wire
    kind, parsed = parse_entry(canonicalize(wire))
    assert kind == "registry-change" and parsed == again


@pytest.mark.parametrize("mutation", [
    {"change": "key-deleted"}, {"producer": "a b"}, {"at": "now"}, {"key_id": "0" * 16},
    {"public_key": base64.b64encode(b"x" * 31).decode()}, {"not_after": "2020-01-01T00:00:00.000Z"},
    {"extra": 1}, {"type": "auditlog.other/v1"},
])
def test_registry_change_parser_refuses(mutation):
    wire = {**format_registry_change(CHANGES[2]), **mutation}
    with pytest.raises(InvalidEvent):
        parse_registry_change(wire)


def _envelope() -> Envelope:
    canonical = canonicalize(MINIMAL)
    return Envelope("p1", KEY_ID, SigningKey(SEED).sign(canonical).signature, MINIMAL, canonical)


def test_envelope_entry_is_canonical_and_round_trips():
    envelope = _envelope()
    data = envelope.entry_bytes()
    assert data == canonicalize({**envelope.to_json(), "type": "auditlog.envelope/v1"})
    kind, parsed = parse_entry(data)
    assert kind == "envelope" and parsed == envelope
    assert parse_envelope(envelope.to_json()) == envelope


@pytest.mark.parametrize("mutation,field", [
    ({"producer": "a b"}, "$.producer"), ({"key_id": "XYZ"}, "$.key_id"), ({"signature": "abc"}, "$.signature"),
    ({"signature": base64.b64encode(b"x" * 63).decode()}, "$.signature"), ({"extra": 1}, "$.extra"),
    ({"event": {**MINIMAL, "tenant": 5}}, "$.event.tenant"),
])
def test_envelope_parser_names_the_field(mutation, field):
    with pytest.raises(InvalidEvent) as caught:
        parse_envelope({**_envelope().to_json(), **mutation})
    assert caught.value.field == field


def test_non_canonical_entries_are_refused():
    data = _envelope().entry_bytes()
    with pytest.raises(InvalidEvent):
        parse_entry(data.replace(b'{"event":', b'{ "event":'))


def test_blob_erasure_round_trip():
    wire = format_blob_erasure("c" * 64, T0, "retention period over")
    assert parse_entry(canonicalize(wire)) == ("blob-erasure", parse_blob_erasure(wire))
    assert format_blob_erasure(*parse_blob_erasure(wire).values()) == wire
