"""The token vault (log/audit/vault.py, vault_keys.py) over a real Log on SQLite: tokens, sealing, the master key,
detokenisation logged first, crypto-shredding, the index of tokens in events, RFC 3394 vectors."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from log.access import Principal
from log.audit.canonical import parse_json
from log.audit.service import AuditService
from log.audit.tables import audit_event_tokens, vault_subject_keys, vault_tokens
from log.audit.canonical import canonicalize
from log.audit.lifecycle_names import is_vault_token, token_sha256, tokens_in_event
from log.audit.vault import (
    VAULT_ACCESS_TYPE, SubjectErased, Vault, VaultIntegrityError, format_vault_access, parse_vault_access, token_of,
    token_of_reference,
)
from log.audit.vault_keys import (
    MASTER_KEY_ENV, MASTER_KEY_FILE, LocalMasterKey, MasterKeyMismatch, load_master_key, unwrap_key, wrap_key,
)
from log.blobs import FileBlobStore
from log.errors import InvalidInput, StorageUnavailable, Unavailable
from log.service import Log, LogConfig
from tests.test_audit_blobs import Producer, _event, _setup, _submit

ORIGIN = "example.com/vault"
VECTORS = Path(__file__).parent / "vectors" / "rfc3394" / "vectors.json"
READER = Principal("token:reader1", "vault-reader", frozenset({"acme"}))


def _clock() -> float:
    return datetime.datetime(2026, 12, 7, 10, 0, 1, tzinfo=datetime.timezone.utc).timestamp()


def _config(tmp_path) -> LogConfig:
    return LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002)


def _run(tmp_path, work, master: LocalMasterKey | None = None):
    master = master or LocalMasterKey(b"k" * 32)

    async def main():
        log = await Log.open(_config(tmp_path))
        try:
            audit = await AuditService.open(log, FileBlobStore(tmp_path / "blobs"), clock=_clock,
                                            vault_master_key=master)
            try:
                return await work(log, audit)
            finally:
                await audit.close()
        finally:
            await log.close()

    return asyncio.run(main())


def _db_bytes(tmp_path) -> bytes:
    out = b""
    for path in (tmp_path / "data").glob("auditlog.db*"):
        out += path.read_bytes()
    return out


# --- RFC 3394 ----------------------------------------------------------------------------------------------------

def test_aes_key_wrap_matches_the_rfc_3394_vectors():
    vectors = json.loads(VECTORS.read_text())["vectors"]
    assert len(vectors) == 6
    for v in vectors:
        kek, data, wrapped = (bytes.fromhex(v[name]) for name in ("kek", "key_data", "ciphertext"))
        assert wrap_key(kek, data) == wrapped, v["section"]
        assert unwrap_key(kek, wrapped) == data, v["section"]
        if len(kek) == 32:  # the local master key is AES-256: the same bytes through the interface
            assert LocalMasterKey(kek).wrap(data) == wrapped
            assert LocalMasterKey(kek).unwrap(wrapped) == data


@pytest.mark.parametrize("mutation", ["flip-first-bit", "flip-last-bit", "truncate", "extend", "other-kek"])
def test_unwrap_refuses_altered_bytes_and_other_keys(mutation):
    v = json.loads(VECTORS.read_text())["vectors"][-1]
    kek, wrapped = bytes.fromhex(v["kek"]), bytearray(bytes.fromhex(v["ciphertext"]))
    if mutation == "flip-first-bit":
        wrapped[0] ^= 0x80
    elif mutation == "flip-last-bit":
        wrapped[-1] ^= 1
    elif mutation == "truncate":
        wrapped = wrapped[:-8]
    elif mutation == "extend":
        wrapped += bytes(8)
    else:
        kek = bytes(32)
    with pytest.raises(MasterKeyMismatch):
        LocalMasterKey(kek).unwrap(bytes(wrapped))


def test_master_key_sources_file_then_environment_then_generated(tmp_path):
    data = tmp_path / "data"
    key, where, created = load_master_key(data, environ={})
    assert created and where == str(data / MASTER_KEY_FILE)
    assert (data / MASTER_KEY_FILE).stat().st_mode & 0o777 == 0o600
    again, _, created = load_master_key(data, environ={})
    assert not created and again.key_id == key.key_id
    other = LocalMasterKey(os.urandom(32))
    from_env, where, _ = load_master_key(data, environ={MASTER_KEY_ENV: other.encoded()})
    assert where == MASTER_KEY_ENV and from_env.key_id == other.key_id
    file = tmp_path / "operator.key"
    third = LocalMasterKey(os.urandom(32))
    file.write_text(third.encoded() + "\n")
    from_file, where, _ = load_master_key(data, file, environ={MASTER_KEY_ENV: other.encoded()})
    assert where == str(file) and from_file.key_id == third.key_id
    assert str(third.encoded()) not in repr(third)


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_bad_master_key_is_refused_naming_where_it_came_from(tmp_path, text):
    file = tmp_path / "bad.key"
    file.write_text(text)
    with pytest.raises(InvalidInput, match="bad.key"):
        load_master_key(tmp_path, file, environ={})
    with pytest.raises(InvalidInput, match=MASTER_KEY_ENV):
        load_master_key(tmp_path, environ={MASTER_KEY_ENV: text or "x"})
    with pytest.raises(InvalidInput, match="cannot read"):
        load_master_key(tmp_path, tmp_path / "missing.key", environ={})


# --- tokens ------------------------------------------------------------------------------------------------------

def test_tokens_are_deterministic_per_tenant_and_differ_across_tenants(tmp_path):
    async def work(log, audit):
        vault = audit.vault
        a1 = await vault.tokenize("acme", "cust-1", ["alice@example.com", "+44 20 7946 0000", "alice@example.com"])
        a2 = await vault.tokenize("acme", "cust-2", ["alice@example.com"])
        g = await vault.tokenize("globex", "cust-1", ["alice@example.com"])
        return a1, a2, g, await vault.subject_token("acme", "cust-1")

    a1, a2, g, subject = _run(tmp_path, work)
    assert all(is_vault_token(t) for t in [*a1.tokens, *g.tokens, a1.subject])
    assert a1.tokens[0] == a1.tokens[2] == a2.tokens[0]  # same value, same tenant: same token (any subject)
    assert a1.tokens[0] != a1.tokens[1]
    assert g.tokens[0] != a1.tokens[0] and g.subject != a1.subject  # another tenant: another token
    assert a1.subject == subject != a2.subject
    assert a1.created == 3  # the reference and two distinct values


@settings(max_examples=300)
@given(key=st.binary(min_size=32, max_size=32), value=st.text(min_size=1))
def test_the_fast_token_is_base32_of_the_hmac_as_defined(key, value):
    try:
        value.encode()
    except UnicodeEncodeError:
        return
    assert token_of(key, value) == token_of_reference(key, value)
    assert is_vault_token(token_of(key, value))


def test_tokens_survive_a_restart_and_repeats_store_nothing_new(tmp_path):
    first = _run(tmp_path, lambda log, audit: audit.vault.tokenize("acme", "cust-1", ["v1", "v2"]))
    again = _run(tmp_path, lambda log, audit: audit.vault.tokenize("acme", "cust-1", ["v2", "v1", "v3"]))
    assert again.subject == first.subject
    assert again.tokens[:2] == first.tokens[::-1]
    assert again.created == 1


def test_tokens_in_event_finds_tokens_anywhere_in_any_string():
    t1, t2 = "vt." + "a" * 26, "vt." + "b2" * 13
    event = {"context": {"customer_id": t1}, "note": f"asked about {t2}.", "x": [f"\n{t1}"],
             "not": ["xvt." + "c" * 26, "vt." + "d" * 27, "vt." + "e" * 25], t2: 1}
    assert tokens_in_event(json.dumps(event).encode()) == sorted({t1, t2})
    assert tokens_in_event(b'{"a":"b"}') == []


def test_no_value_or_subject_reference_is_stored_or_logged_in_clear(tmp_path):
    reference, secret = "customer-4711-ref", "alice.secret@example.com"

    async def work(log, audit):
        out = await audit.vault.tokenize("acme", reference, [secret])
        answer = await audit.vault.detokenize("acme", out.tokens, "fraud investigation 12", READER)
        entries = [(await log.entry(i)).data for i in range(log.size)]
        return answer, entries

    answer, entries = _run(tmp_path, work)
    assert answer.values[0].value == secret
    for blob in [_db_bytes(tmp_path), *entries]:
        assert secret.encode() not in blob
        assert reference.encode() not in blob


def test_limits_and_bad_input_are_refused_naming_the_field(tmp_path):
    async def work(log, audit):
        vault = audit.vault
        cases = [
            (("acme", "s", ["x" * 4097]), "values[0]"),
            (("acme", "s", ["ok", ""]), "values[1]"),
            (("acme", "s", ["ok", 7]), "values[1]"),
            (("acme", "s", ["\ud800"]), "values[0]"),
            (("acme", "s", []), "values"),
            (("acme", "s", "abc"), "values"),
            (("acme", "s", ["v"] * 10_001), "values"),
            (("acme", "", ["v"]), "subject"),
            (("bad tenant", "s", ["v"]), "tenant"),
        ]
        fields = []
        for args, _ in cases:
            with pytest.raises(InvalidInput) as caught:
                await vault.tokenize(*args)
            fields.append(caught.value.field)
        assert fields == [field for _, field in cases]
        token = (await vault.tokenize("acme", "s", ["v"])).tokens[0]
        for tokens, purpose, field in [([token], "", "purpose"), ([token], "   ", "purpose"),
                                       ([token], "p" * 1001, "purpose"), ([], "p", "tokens"),
                                       (["vt.nope"], "p", "tokens[0]"), ([token] * 501, "p", "tokens")]:
            with pytest.raises(InvalidInput) as caught:
                await vault.detokenize("acme", tokens, purpose, READER)
            assert caught.value.field == field
        return log.size

    assert _run(tmp_path, work) == 0  # nothing refused was logged


# --- detokenising ------------------------------------------------------------------------------------------------

def test_detokenize_logs_first_and_answers_each_token(tmp_path):
    async def work(log, audit):
        vault = audit.vault
        out = await vault.tokenize("acme", "cust-1", ["alice", "bob"])
        unknown = "vt." + "q" * 26
        other_tenant = (await vault.tokenize("globex", "cust-1", ["carol"])).tokens[0]
        answer = await vault.detokenize("acme", [out.tokens[1], unknown, out.tokens[0], other_tenant, out.subject],
                                        "chargeback 991", READER)
        entry = (await log.entry(answer.index)).data
        return out, unknown, other_tenant, answer, entry

    out, unknown, other_tenant, answer, entry = _run(tmp_path, work)
    assert [v.to_json() for v in answer.values] == [
        {"token": out.tokens[1], "status": "found", "value": "bob"},
        {"token": unknown, "status": "unknown"},
        {"token": out.tokens[0], "status": "found", "value": "alice"},
        {"token": other_tenant, "status": "unknown"},  # a token of another tenant is not this tenant's
        {"token": out.subject, "status": "found", "value": "cust-1"},
    ]
    record = parse_json(entry).value
    assert record["type"] == VAULT_ACCESS_TYPE
    assert record["token_sha256"] == sorted(token_sha256(t) for t in
                                            {out.tokens[1], unknown, out.tokens[0], other_tenant, out.subject})
    assert (record["tenant"], record["credential"], record["role"], record["purpose"]) == (
        "acme", "token:reader1", "vault-reader", "chargeback 991")
    assert record["at"] == "2026-12-07T10:00:01.000Z"


def test_vault_access_records_round_trip_and_mutations_are_refused():
    tokens = ["vt." + "b" * 26, "vt." + "a" * 26, "vt." + "b" * 26]
    record = format_vault_access("acme", READER, "court order 2026/77", tokens, 1_796_000_000_123)
    parsed = parse_vault_access(parse_json(canonicalize(record)).value)
    assert parsed == {"tenant": "acme", "credential": "token:reader1", "role": "vault-reader",
                      "purpose": "court order 2026/77", "token_sha256": sorted({token_sha256(t) for t in tokens}),
                      "at": 1_796_000_000_123}
    mutations = {
        "other type": {**record, "type": "auditlog.blob-erasure/v1"},
        "extra member": {**record, "value": "alice"},
        "missing purpose": {k: v for k, v in record.items() if k != "purpose"},
        "empty purpose": {**record, "purpose": ""},
        "unsorted hashes": {**record, "token_sha256": record["token_sha256"][::-1]},
        "repeated hash": {**record, "token_sha256": record["token_sha256"][:1] * 2},
        "a token, not its hash": {**record, "token_sha256": [tokens[0]]},
        "no hashes": {**record, "token_sha256": []},
        "bad time": {**record, "at": "yesterday"},
    }
    for name, mutated in mutations.items():
        with pytest.raises(InvalidInput):
            parse_vault_access(mutated)
            pytest.fail(name)


class _RefusingLog:
    """A Log whose add_entries fails (a database outage): everything else passes through."""

    def __init__(self, log):
        self._log = log

    def __getattr__(self, name):
        return getattr(self._log, name)

    async def add_entries(self, *args, **kwargs):
        raise StorageUnavailable("storage is unavailable: database unreachable; retry later", "database unreachable")


def test_no_entry_no_answer(tmp_path):
    async def work(log, audit):
        out = await audit.vault.tokenize("acme", "cust-1", ["alice"])
        refusing = Vault(_RefusingLog(log), audit.vault.master_key, clock=_clock)
        reads = []
        original_read = log.read

        async def counting_read(*args, **kwargs):
            reads.append(args)
            return await original_read(*args, **kwargs)

        log.read = counting_read
        try:
            with pytest.raises(StorageUnavailable):
                await refusing.detokenize("acme", out.tokens, "support ticket 5", READER)
        finally:
            log.read = original_read
            refusing.close()
        return reads

    assert _run(tmp_path, work) == []  # no mapping was even read


def test_a_tampered_sealed_value_is_refused(tmp_path):
    async def work(log, audit):
        out = await audit.vault.tokenize("acme", "cust-1", ["alice", "bob"])
        v = vault_tokens.c

        def swap(tx):  # bob's sealed bytes under alice's token: authentic ciphertext, wrong row
            rows = dict(tx.execute(sa.select(v.token, v.sealed).where(v.token.in_(out.tokens))))
            tx.execute(sa.update(vault_tokens).where(v.token == out.tokens[0]).values(sealed=rows[out.tokens[1]]))

        await log.write(swap)
        with pytest.raises(VaultIntegrityError):
            await audit.vault.detokenize("acme", [out.tokens[0]], "p", READER)

        def flip(tx):
            sealed = bytearray(tx.execute(sa.select(v.sealed).where(v.token == out.tokens[1]))[0][0])
            sealed[-1] ^= 1
            tx.execute(sa.update(vault_tokens).where(v.token == out.tokens[1]).values(sealed=bytes(sealed)))

        await log.write(flip)
        with pytest.raises(VaultIntegrityError):
            await audit.vault.detokenize("acme", [out.tokens[1]], "p", READER)

    _run(tmp_path, work)


def test_a_wrong_master_key_is_refused_at_start(tmp_path):
    _run(tmp_path, lambda log, audit: audit.vault.tokenize("acme", "cust-1", ["alice"]))
    with pytest.raises(MasterKeyMismatch, match="master key"):
        _run(tmp_path, lambda log, audit: None, master=LocalMasterKey(b"w" * 32))


class _ImpostorKey(LocalMasterKey):
    """Another key claiming the vault's key id: the unwrap check catches it."""

    @property
    def key_id(self) -> str:
        return LocalMasterKey(b"k" * 32).key_id


def test_a_wrong_master_key_with_the_right_id_is_refused_at_start(tmp_path):
    _run(tmp_path, lambda log, audit: audit.vault.tokenize("acme", "cust-1", ["alice"]))
    with pytest.raises(MasterKeyMismatch):
        _run(tmp_path, lambda log, audit: None, master=_ImpostorKey(b"w" * 32))


def test_a_service_without_a_master_key_has_an_unavailable_vault(tmp_path):
    async def main():
        log = await Log.open(_config(tmp_path))
        audit = await AuditService.open(log, FileBlobStore(tmp_path / "blobs"))
        try:
            with pytest.raises(Unavailable, match="master key"):
                await audit.vault.tokenize("acme", "s", ["v"])
        finally:
            await audit.close()
            await log.close()

    asyncio.run(main())


# --- erasure -----------------------------------------------------------------------------------------------------

def test_shred_makes_values_unrecoverable_and_leaves_tokens_in_events(tmp_path):
    producer = Producer()

    async def work(log, audit):
        vault = audit.vault
        await _setup(audit, producer)
        out = await vault.tokenize("acme", "cust-1", ["alice", "shared"])
        keep = await vault.tokenize("acme", "cust-2", ["shared"])
        await _submit(audit, producer, _event(1, "acme", context={"customer_id": out.subject},
                                              extensions={"note": f"refund for {out.tokens[0]}"}))
        mine = await vault.tokens_of_subject("acme", out.subject)
        first = await vault.shred_subject("acme", out.subject, 42)
        repeat = await vault.shred_subject("acme", out.subject, 43)
        answer = await vault.detokenize("acme", [out.tokens[0], out.subject, out.tokens[1]], "p", READER)
        with pytest.raises(SubjectErased) as erased:
            await vault.tokenize("acme", "cust-1", ["new"])
        after = await vault.tokens_of_subject("acme", out.subject)
        never = await vault.shred_subject("acme", "vt." + "z" * 26, 44)
        indexed = await log.read(lambda tx: tx.execute(
            sa.select(audit_event_tokens.c.token).order_by(audit_event_tokens.c.token)))
        state = await vault.subject_state("acme", out.subject)
        return out, keep, mine, first, repeat, answer, erased.value, after, never, indexed, state

    out, keep, mine, first, repeat, answer, erased, after, never, indexed, state = _run(tmp_path, work)
    assert mine == after == sorted({out.subject, *out.tokens})
    assert first.destroyed and first.erasure_idx == 42
    assert not repeat.destroyed and repeat.erasure_idx == 42  # idempotent: the first erasure stays on record
    assert [v.status for v in answer.values] == ["erased", "erased", "found"]  # "shared" is cust-2's value too
    assert answer.values[2].value == "shared"
    assert erased.index == 42
    assert not never.destroyed and never.erasure_idx == 44
    assert sorted(t for t, in indexed) == sorted([out.subject, out.tokens[0]])  # the events keep their tokens
    assert state["erasure_idx"] == 42 and state["erased_at"] is not None
    # the wrapped key is gone from the database, not only marked
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'auditlog.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(vault_subject_keys.c.subject, vault_subject_keys.c.wrapped_key)).all()
    engine.dispose()
    assert {s: w for s, w in rows}[out.subject] is None
    assert {s: w for s, w in rows}[keep.subject] is not None


def test_a_tokenisation_racing_an_erasure_stores_nothing(tmp_path):
    async def work(log, audit):
        vault = audit.vault
        out = await vault.tokenize("acme", "cust-1", ["alice"])
        real_row = vault._subject_row

        async def stale_row(tenant, subject):  # read before the erasure committed
            row = await real_row(tenant, subject)
            await vault.shred_subject(tenant, subject, 7)
            return row

        vault._subject_row = stale_row
        with pytest.raises(SubjectErased):
            await vault.tokenize("acme", "cust-1", ["late value"])
        vault._subject_row = real_row
        return out, await vault.tokens_of_subject("acme", out.subject)

    out, tokens = _run(tmp_path, work)
    assert tokens == sorted([out.subject, out.tokens[0]])


def test_the_vault_on_postgresql(tmp_path):
    from tests.postgres import fresh_database

    async def work(log, audit):
        vault = audit.vault
        out = await vault.tokenize("acme", "cust-1", ["alice", "bob"])
        again = await vault.tokenize("acme", "cust-1", ["bob", "carol"])
        found = await vault.detokenize("acme", [*out.tokens, again.tokens[1]], "p", READER)
        await vault.shred_subject("acme", out.subject, 3)
        gone = await vault.detokenize("acme", out.tokens, "p", READER)
        return out, again, found, gone

    with fresh_database() as url:
        config = LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002, database_url=url)

        async def main():
            log = await Log.open(config)
            audit = await AuditService.open(log, FileBlobStore(tmp_path / "blobs"), clock=_clock,
                                            vault_master_key=LocalMasterKey(b"k" * 32))
            try:
                return await work(log, audit)
            finally:
                await audit.close()
                await log.close()

        out, again, found, gone = asyncio.run(main())
    assert again.created == 1 and again.tokens[0] == out.tokens[1]
    assert [v.value for v in found.values] == ["alice", "bob", "carol"]
    assert [v.status for v in gone.values] == ["erased", "erased"]


def test_a_takeover_under_another_master_key_refuses_vault_calls(tmp_path):
    """A server that finds, on taking over, the vault under another master key cannot stop: it refuses every vault
    call (Unavailable, naming the mismatch) instead of wrapping new keys under its own."""
    async def work(log, audit):
        await audit.vault.tokenize("acme", "cust-1", ["alice"])
        other = Vault(log, LocalMasterKey(b"w" * 32), clock=_clock)
        try:
            await other.check_master_key(refuse_calls=True)
            with pytest.raises(Unavailable, match="master key"):
                await other.tokenize("acme", "cust-2", ["bob"])
            with pytest.raises(Unavailable, match="master key"):
                await other.detokenize("acme", ["vt." + "a" * 26], "p", READER)
            await audit.vault.check_master_key(refuse_calls=True)  # the right key: nothing refused
            return (await audit.vault.tokenize("acme", "cust-2", ["bob"])).created
        finally:
            other.close()

    assert _run(tmp_path, work) == 2
