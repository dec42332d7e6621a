"""Legal holds (log/audit/holds.py): the legal-hold records (round trip, refusals), placing and releasing through the
log with the legal_holds row committed in the same transaction as each entry (RowInsert, RowUpdate), and the matcher
`ActiveHolds` over the audit index tables, field by field.

The matcher's tests write index rows straight into the tables (through `Log.write`, as the sequencer would with each
event) so that each case states exactly what the index holds; the HTTP and erasure tests use real events.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select

from log.audit.canonical import canonicalize
from log.audit.errors import InvalidEvent
from log.audit.holds import (
    LEGAL_HOLD_TYPE, ActiveHolds, HoldBook, HoldChange, HoldScope, format_hold_change, parse_hold_change,
    parse_scope, select_holds,
)
from log.audit.schema import parse_timestamp_ms
from log.audit.tables import (
    EVENT_COLUMNS, audit_event_blobs, audit_event_context, audit_event_tokens, audit_events, legal_holds,
    vault_tokens,
)
from log.errors import Conflict, InvalidInput, NotFound, StorageError
from log.service import Log, LogConfig
from log.storage import RowUpdate
from tests.postgres import fresh_database

T0 = parse_timestamp_ms("2026-03-01T00:00:00.000Z")
SUBJECT = "vt." + "a" * 26      # a data subject's token
SUBJECT_EMAIL = "vt." + "b" * 26  # another token of the same subject (its e-mail address's mapping)
OTHER = "vt." + "c" * 26


def _clock() -> float:
    return (T0 + 86_400_000) / 1000


def _run(tmp_path, work, database_url: str | None = None):
    config = LogConfig(data_dir=tmp_path / "data", origin="example.com/holds", batch_max_age=0.002,
                       database_url=database_url)

    async def main():
        log = await Log.open(config)
        try:
            return await work(log, HoldBook(log, clock=_clock))
        finally:
            await log.close()

    return asyncio.run(main())


# -- records ----------------------------------------------------------------------------------------------------

FULL_SCOPE = {"tenant": "acme", "run_ids": ["run-2", "run-1"], "context": [{"name": "case_id", "value": "C-7"}],
              "subjects": [SUBJECT], "actor_id": "agent-1", "from": "2026-01-01T00:00:00.000Z",
              "to": "2026-02-01T00:00:00.000Z"}


@pytest.mark.parametrize("scope", [{"tenant": "acme"}, FULL_SCOPE])
@pytest.mark.parametrize("change", ["placed", "released"])
def test_a_hold_change_round_trips(scope, change):
    parsed = HoldChange(change, "0123456789abcdef", parse_scope(scope), "litigation", "case 2026-17", T0)
    wire = format_hold_change(parsed)
    assert wire["type"] == LEGAL_HOLD_TYPE and wire["tenant"] == "acme"
    assert parse_hold_change(wire) == parsed
    assert parse_hold_change(format_hold_change(parse_hold_change(wire))) == parsed
    assert wire["scope"].get("run_ids", ["run-1"])[0] == "run-1"  # lists sorted: one canonical form per scope


def _placed(**changes) -> dict:
    wire = format_hold_change(HoldChange("placed", "0123456789abcdef", parse_scope(FULL_SCOPE), "why", "ref", T0))
    for name, value in changes.items():
        if value is ...:
            del wire[name]
        else:
            wire[name] = value
    return wire


def _scope(**changes) -> dict:
    scope = dict(FULL_SCOPE)
    for name, value in changes.items():
        if value is ...:
            del scope[name]
        else:
            scope[name] = value
    return _placed(scope=scope)


REFUSED = {
    "wrong type": (_placed(type="auditlog.blob-erasure/v1"), "$.type"),
    "unknown change": (_placed(change="extended"), "$.change"),
    "hold id not hex": (_placed(hold_id="HOLD-1"), "$.hold_id"),
    "no reason": (_placed(reason=""), "$.reason"),
    "blank reason": (_placed(reason="   "), "$.reason"),
    "placement without reference": (_placed(reference=""), "$.reference"),
    "reason too long": (_placed(reason="x" * 1025), "$.reason"),
    "tenant not the scope's": (_placed(tenant="globex"), "$.tenant"),
    "extra field": (_placed(extra=1), "$.extra"),
    "missing at": (_placed(at=...), "$.at"),
    "bad at": (_placed(at="yesterday"), "$.at"),
    "scope without tenant": (_scope(tenant=...), "$.scope.tenant"),
    "scope field unknown": (_scope(case_id="C-1"), "$.scope.case_id"),
    "empty run list": (_scope(run_ids=[]), "$.scope.run_ids"),
    "run id not a token": (_scope(run_ids=["run 1"]), "$.scope.run_ids[0]"),
    "context item not a pair": (_scope(context=[{"name": "case_id"}]), "$.scope.context[0]"),
    "context name not an id name": (_scope(context=[{"name": "Case", "value": "C"}]), "$.scope.context[0].name"),
    "subject not a vault token": (_scope(subjects=["alice@example.com"]), "$.scope.subjects[0]"),
    "too many subjects": (_scope(subjects=[SUBJECT] * 257), "$.scope.subjects"),
    "to before from": (_scope(to="2025-12-31T23:59:59.999Z"), "$.scope.to"),
    "from without milliseconds": (_scope(**{"from": "2026-01-01T00:00:00Z"}), "$.scope.from"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_malformed_hold_change_is_refused_naming_the_field(name):
    wire, field = REFUSED[name]
    with pytest.raises(InvalidEvent) as caught:
        parse_hold_change(wire)
    assert caught.value.field == field


def test_a_deletion_refusal_round_trips_and_names_what_it_refused():
    refusal = HoldChange("deletion-refused", "0123456789abcdef", parse_scope(FULL_SCOPE), "", "case 17", T0,
                         ("blob", "a" * 64))
    wire = format_hold_change(refusal)
    assert wire["refused"] == {"kind": "blob", "item": "a" * 64}
    assert parse_hold_change(wire) == refusal
    for bad, field in (({"kind": "entry", "item": "1"}, "$.refused"), ({"kind": "blob", "item": "A" * 64},
                                                                       "$.refused.item")):
        with pytest.raises(InvalidEvent) as caught:
            parse_hold_change({**wire, "refused": bad})
        assert caught.value.field == field
    with pytest.raises(InvalidEvent) as caught:  # only a refusal names what it refused
        parse_hold_change({**_placed(), "refused": wire["refused"]})
    assert caught.value.field == "$.refused"


def test_a_release_may_have_an_empty_reference():
    wire = _placed(change="released", reference="")
    assert parse_hold_change(wire).reference == ""


# -- placing and releasing --------------------------------------------------------------------------------------

def test_placing_and_releasing_write_entries_and_the_row_together(tmp_path):
    async def work(log, book):
        placed = await book.place({"tenant": "acme", "run_ids": ["run-1"]}, "litigation", "case 17")
        released = await book.release(placed.hold.hold_id, "case closed", "order 9")
        with pytest.raises(Conflict):
            await book.release(placed.hold.hold_id, "again")
        with pytest.raises(NotFound):
            await book.release("0" * 16, "no such hold")
        with pytest.raises(InvalidInput) as caught:
            await book.place({"tenant": "acme"}, "litigation", "")
        assert caught.value.field == "reference"
        with pytest.raises(InvalidInput) as caught:
            await book.place({"tenant": "acme", "run_ids": []}, "litigation", "case 18")
        assert caught.value.field == "scope.run_ids"
        other = await book.place({"tenant": "globex"}, "audit", "case 19")

        entries = {i: (await log.entry(i)).data for i in range(log.size)}
        assert len(entries) == 3  # the refusals wrote nothing
        first, second = (parse_hold_change_bytes(entries[i]) for i in (placed.index, released.index))
        assert (first.change, second.change) == ("placed", "released")
        assert first.hold_id == second.hold_id == placed.hold.hold_id
        assert second.scope == first.scope and second.reason == "case closed" and second.reference == "order 9"

        holds = await book.list()
        assert [h.hold_id for h in holds] == [placed.hold.hold_id, other.hold.hold_id]
        assert (holds[0].placed_idx, holds[0].released_idx, holds[0].active) == (placed.index, released.index, False)
        assert holds[0].released_at == second.at and holds[1].active
        assert [h.hold_id for h in await book.list(active=True)] == [other.hold.hold_id]
        assert [h.hold_id for h in await book.list(tenant="acme")] == [placed.hold.hold_id]
        assert released.hold.to_json()["released_index"] == released.index

    _run(tmp_path, work)


def parse_hold_change_bytes(data: bytes) -> HoldChange:
    import json
    change = parse_hold_change(json.loads(data))
    assert canonicalize(format_hold_change(change)) == data  # stored in canonical form
    return change


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_row_update_that_finds_no_open_row_fails_its_whole_batch(tmp_path, backend):
    """The guard under `released_row`: an entry whose RowUpdate changes no row is not stored at all (on either
    backend), so a release entry never exists without its row."""

    async def work(log, book):
        placed = await book.place({"tenant": "acme"}, "litigation", "case 17")
        size = log.size
        stray = RowUpdate(legal_holds.name, ("hold_id",), ("f" * 16,), "released_idx", ("released_at",), (1,))
        with pytest.raises(StorageError):
            await log.add_entries([b'{"stray":1}'], rows=[[stray]])
        assert log.size == size
        await book.release(placed.hold.hold_id, "done")
        twice = RowUpdate(legal_holds.name, ("hold_id",), (placed.hold.hold_id,), "released_idx", ("released_at",),
                          (2,))
        with pytest.raises(StorageError):  # released already: released_idx is no longer NULL
            await log.add_entries([b'{"stray":2}'], rows=[[twice]])
        assert log.size == size + 1
        assert await log.add_entries([b'{"after":1}']) is not None  # the log goes on

    if backend == "sqlite":
        _run(tmp_path, work)
    else:
        with fresh_database() as url:
            _run(tmp_path, work, url)


# -- the matcher ---------------------------------------------------------------------------------------------------

def _event_row(idx: int, tenant="acme", run_id="run-1", actor_id="agent-1", ts=T0) -> dict:
    values = dict.fromkeys(EVENT_COLUMNS, "x")
    values.update(idx=idx, tenant=tenant, run_id=run_id, actor_id=actor_id, ts=ts, parent_event_id=None,
                  event_id=f"ev-{idx}", actor_type="agent", event_type="model_call")
    return values


class Index:
    """Rows of the audit index, written as the sequencer writes them with each event."""

    def __init__(self):
        self.events, self.context, self.tokens, self.blobs, self.vault = [], [], [], [], []

    def event(self, idx, *, context=(), tokens=(), blobs=(), **fields):
        self.events.append(_event_row(idx, **fields))
        tenant = fields.get("tenant", "acme")
        self.context += [{"idx": idx, "name": n, "value": v} for n, v in context]
        self.tokens += [{"idx": idx, "token": t, "tenant": tenant} for t in tokens]
        self.blobs += [{"idx": idx, "sha256": s, "tenant": tenant} for s in blobs]

    def mapping(self, subject, token, tenant="acme"):
        self.vault.append({"tenant": tenant, "token": token, "subject": subject, "sealed": b"x", "created_at": 0})

    async def store(self, log):
        def write(tx):
            for table, rows in ((audit_events, self.events), (audit_event_context, self.context),
                                (audit_event_tokens, self.tokens), (audit_event_blobs, self.blobs),
                                (vault_tokens, self.vault)):
                if rows:
                    tx.execute_many(insert(table), rows)
        await log.write(write)


def _world() -> Index:
    index = Index()
    index.event(1)                                                        # acme run-1 agent-1 at T0
    index.event(2, run_id="run-2")
    index.event(3, actor_id="agent-2")
    index.event(4, ts=T0 + 1000)
    index.event(5, context=[("case_id", "C-7"), ("customer_id", "cu-1")])
    index.event(6, context=[("case_id", "C-8")])
    index.event(7, tokens=[SUBJECT_EMAIL], blobs=["a" * 64])
    index.event(8, tenant="globex", context=[("case_id", "C-7")], blobs=["a" * 64, "b" * 64])
    index.event(9, run_id="run-2", context=[("case_id", "C-7")], blobs=["c" * 64])
    index.event(10, tokens=[OTHER])
    index.mapping(SUBJECT, SUBJECT)
    index.mapping(SUBJECT, SUBJECT_EMAIL)
    return index


ACME = list(range(1, 8)) + [9, 10]

SCOPES = {  # scope -> the acme/globex events it holds, among 1..10
    "tenant alone": ({"tenant": "acme"}, ACME),
    "other tenant": ({"tenant": "globex"}, [8]),
    "run ids": ({"tenant": "acme", "run_ids": ["run-2"]}, [2, 9]),
    "actor": ({"tenant": "acme", "actor_id": "agent-2"}, [3]),
    "context any of": ({"tenant": "acme", "context": [{"name": "case_id", "value": "C-7"},
                                                      {"name": "case_id", "value": "C-8"}]}, [5, 6, 9]),
    "context name and value both": ({"tenant": "acme", "context": [{"name": "customer_id", "value": "C-7"}]}, []),
    "subject by a mapping's token": ({"tenant": "acme", "subjects": [SUBJECT]}, [7]),
    "a value token named itself": ({"tenant": "acme", "subjects": [OTHER]}, [10]),
    "from inclusive": ({"tenant": "acme", "from": "2026-03-01T00:00:01.000Z"}, [4]),
    "to inclusive": ({"tenant": "acme", "to": "2026-03-01T00:00:00.000Z"}, [i for i in ACME if i != 4]),
    "to one ms earlier": ({"tenant": "acme", "to": "2026-02-28T23:59:59.999Z"}, []),
    "range of one instant": ({"tenant": "acme", "from": "2026-03-01T00:00:01.000Z",
                              "to": "2026-03-01T00:00:01.000Z"}, [4]),
    "every field at once (AND)": ({"tenant": "acme", "run_ids": ["run-2"],
                                   "context": [{"name": "case_id", "value": "C-7"}]}, [9]),
    "AND that nothing meets": ({"tenant": "acme", "run_ids": ["run-2"], "actor_id": "agent-2"}, []),
}


@pytest.mark.parametrize("name", sorted(SCOPES))
def test_a_hold_covers_exactly_the_events_its_scope_matches(tmp_path, name):
    scope, expected = SCOPES[name]

    async def work(log, book):
        await _world().store(log)
        placed = await book.place(scope, "litigation", "case 17")
        holds = await book.active()
        held = await log.read(lambda tx: holds.for_events(tx, list(range(0, 12))))
        assert held == dict.fromkeys(expected, placed.hold.hold_id)

    _run(tmp_path, work)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_holds_for_blobs_subjects_and_their_release(tmp_path, backend):
    async def work(log, book):
        await _world().store(log)
        blobs = ["a" * 64, "b" * 64, "c" * 64, "d" * 64]

        async def ask():
            holds = await book.active()
            return await log.read(lambda tx: (
                holds.for_blobs(tx, blobs), holds.for_subject(tx, "acme", SUBJECT),
                holds.for_subject(tx, "acme", OTHER), holds.for_subject(tx, "globex", SUBJECT)))

        assert await ask() == ({}, None, None, None)

        # A hold on case C-7 in globex: event 8 is held, and with it both blobs it cites (a is cited by acme's
        # event 7 too: one held citation is enough).
        case = (await book.place({"tenant": "globex", "context": [{"name": "case_id", "value": "C-7"}]},
                                 "litigation", "case 17")).hold.hold_id
        assert await ask() == ({"a" * 64: case, "b" * 64: case}, None, None, None)

        # A hold on run-1 of acme: event 7 (run-1, it has the subject's e-mail token) is held, so the subject is.
        run = (await book.place({"tenant": "acme", "run_ids": ["run-1"]}, "audit", "ref")).hold.hold_id
        blobs_held, subject, other, elsewhere = await ask()
        assert subject == run and elsewhere is None
        assert blobs_held == {"a" * 64: run, "b" * 64: case}  # the hold of the earliest held event citing it
        assert other == run  # event 10 (run-1) has OTHER's token

        # A hold naming the subject holds it even without an event in scope; releasing ends each hold.
        await book.release(run, "audit over")
        named = (await book.place({"tenant": "acme", "subjects": [SUBJECT],
                                   "from": "2030-01-01T00:00:00.000Z"}, "dsar dispute", "ref")).hold.hold_id
        assert await ask() == ({"a" * 64: case, "b" * 64: case}, named, None, None)
        await book.release(named, "settled")
        await book.release(case, "closed")
        assert await ask() == ({}, None, None, None)

        # A tenant-wide hold holds every subject of its tenant, with events or not.
        wide = (await book.place({"tenant": "acme"}, "regulator", "ref")).hold.hold_id
        holds = await book.active()
        assert await log.read(lambda tx: (holds.for_subject(tx, "acme", "vt." + "z" * 26),
                                          holds.for_blobs(tx, blobs))) == (wide, {"a" * 64: wide, "c" * 64: wide})

    if backend == "sqlite":
        _run(tmp_path, work)
    else:
        with fresh_database() as url:
            _run(tmp_path, work, url)


class _NoQueries:
    def execute(self, statement):
        raise AssertionError(f"no query expected without holds: {statement}")


def test_without_active_holds_the_matcher_runs_no_query():
    holds = ActiveHolds([], {}, T0)
    tx = _NoQueries()
    assert not holds
    assert holds.for_events(tx, list(range(100_000))) == {}
    assert holds.for_blobs(tx, ["a" * 64]) == {}
    assert holds.for_subject(tx, "acme", SUBJECT) is None


def test_the_matcher_answers_for_more_indices_than_one_chunk(tmp_path):
    async def work(log, book):
        index = Index()
        for idx in range(1, 1201):
            index.event(idx, run_id="run-odd" if idx % 2 else "run-even")
        await index.store(log)
        placed = await book.place({"tenant": "acme", "run_ids": ["run-odd"]}, "litigation", "case 17")
        holds = await book.active()
        held = await log.read(lambda tx: holds.for_events(tx, list(range(1, 1201))))
        assert sorted(held) == list(range(1, 1201, 2))
        assert set(held.values()) == {placed.hold.hold_id}
        # The matcher works on the writer's transaction too (a deletion decides inside its own).
        assert len(await log.write(lambda tx: holds.for_events(tx, list(range(1, 1201))))) == 600

    _run(tmp_path, work)


def test_the_row_of_every_hold_agrees_with_its_entries(tmp_path):
    async def work(log, book):
        for n in range(3):
            receipt = await book.place({"tenant": f"t{n}"}, "why", f"ref {n}")
            if n != 1:
                await book.release(receipt.hold.hold_id, "done")
        rows = await log.read(lambda tx: select_holds(tx))
        raw = await log.read(lambda tx: tx.execute(select(legal_holds.c.hold_id, legal_holds.c.scope)))
        assert len(rows) == len(raw) == 3
        for hold in rows:
            placed = parse_hold_change_bytes((await log.entry(hold.placed_idx)).data)
            assert (placed.change, placed.hold_id, placed.scope, placed.at) == (
                "placed", hold.hold_id, hold.scope, hold.placed_at)
            if hold.released_idx is not None:
                released = parse_hold_change_bytes((await log.entry(hold.released_idx)).data)
                assert (released.change, released.hold_id, released.at) == ("released", hold.hold_id,
                                                                             hold.released_at)
        assert [h.active for h in rows] == [False, True, False]

    _run(tmp_path, work)


def test_a_scope_object_names_what_it_covers():
    scope = parse_scope({"tenant": "acme"})
    assert scope == HoldScope("acme") and scope.tenant_wide
    assert not parse_scope({"tenant": "acme", "to": "2026-01-01T00:00:00.000Z"}).tenant_wide
