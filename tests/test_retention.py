"""Retention policies and runs (log/audit/retention.py) and pruned entries (log/prune.py) in process: precedence,
what is due, holds kept, the run's entry and deletion list, resumption, and that every proof and checkpoint of the
log still holds once entries are pruned (SQLite, and PostgreSQL for the run itself)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time

import pytest
import sqlalchemy as sa

from log import proofs
from log.audit import retention as retention_module
from log.audit.canonical import parse_json
from log.audit.lifecycle_names import deletion_list_sha256
from log.audit.records import parse_entry
from log.audit.retention import (
    Retention, blob_retention_until, parse_policy, parse_run, policy_change,
)
from log.audit.service import AuditService, EventQuery
from log.blobs import FileBlobStore
from log.bundles import decode_entry_bundle
from log.errors import EntryPruned, InvalidInput, NotFound
from log.hashing import hash_leaf
from log.service import Log, LogConfig
from log.tiles import TileID
from tests.postgres import fresh_database
from tests.test_audit_blobs import Producer, _clock, _event, _ref, digest

ORIGIN = "example.com/retention"


def _later(days: float):
    """A clock `days` ahead of now: what was logged a moment ago is `days` old by it."""
    return lambda: time.time() + days * 86_400


async def _world(tmp_path, database_url=None, *, days_ahead: float = 100, chunk: int = 2000, config=None):
    from log.audit.vault_keys import LocalMasterKey

    config = config or LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002,
                                 database_url=database_url)
    log = await Log.open(config)
    blobs = FileBlobStore(tmp_path / "blobs")
    audit = await AuditService.open(log, blobs, clock=_clock, vault_master_key=LocalMasterKey(b"k" * 32))
    producer = Producer()
    await audit.register_producer(producer.name, ["acme", "globex"])
    await audit.add_key(producer.name, producer.public, not_before=0)
    return log, audit, producer, Retention(log, blobs, vault=audit.vault, hold_lock=audit.holds.lock,
                                           clock=_later(days_ahead), chunk=chunk)


async def _submit(audit, producer, *events) -> list[int]:
    result = await audit.submit(json.dumps({"events": [producer.envelope(e) for e in events]}).encode())
    return [r.index for r in result.results]


def _run(coroutine_fn, *args):
    return asyncio.run(coroutine_fn(*args))


# -- the deletion list and the records ---------------------------------------------------------------------------

def test_the_deletion_list_hash_is_of_sorted_lines_whatever_the_order():
    items = [("entry", "10"), ("blob", "ab" * 32), ("entry", "9"), ("subject", "acme/vt.aaaa")]
    expected = hashlib.sha256(b"".join(sorted(f"{k} {i}\n".encode() for k, i in items))).hexdigest()
    assert deletion_list_sha256(items) == expected == deletion_list_sha256(reversed(items))
    assert deletion_list_sha256([]) == hashlib.sha256(b"").hexdigest()
    assert deletion_list_sha256(items[:3]) != expected  # every item counts


@pytest.mark.parametrize(("record_class", "selector", "days", "field"), [
    ("event", "model_call", 30, None),
    ("event", "*", 0, None),
    ("blob", "media_type:text/plain", 90, None),
    ("blob", "event_type:tool_call", 90, None),
    ("subject", "*", 365, None),
    ("event", "no_such_type", 30, "selector"),
    ("blob", "model_call", 30, "selector"),          # a blob selector names its kind
    ("blob", "media_type:not a type", 30, "selector"),
    ("subject", "model_call", 30, "selector"),
    ("record", "*", 30, "record_class"),
    ("event", "*", -1, "retain_days"),
    ("event", "*", 36_501, "retain_days"),
    ("event", "*", True, "retain_days"),
])
def test_policies_are_checked_field_by_field(record_class, selector, days, field):
    if field is None:
        change = policy_change("acme", record_class, selector, days, "GDPR art. 5(1)(e)", 1_765_000_000_000)
        from log.audit.retention import format_policy
        assert parse_policy(format_policy(change)) == change  # round trip
        return
    from log.audit.errors import InvalidEvent
    with pytest.raises(InvalidEvent) as caught:
        policy_change("acme", record_class, selector, days, "r", 1_765_000_000_000)
    assert caught.value.field == f"$.{field}"


def test_a_run_record_round_trips_and_is_parsed_as_a_log_entry():
    from log.audit.canonical import canonicalize
    from log.audit.retention import format_run
    run = {"tenant": "acme", "policies": [7, 3], "deleted": {"entry": 2, "blob": 1}, "skipped": {"hold-1": 4},
           "list_sha256": "0" * 64, "at": 1_765_000_000_000}
    wire = format_run(run)
    assert wire["deleted"] == {"entry": 2, "blob": 1, "subject": 0} and wire["policies"] == [3, 7]
    kind, parsed = parse_entry(canonicalize(wire))
    assert kind == "retention-run" and parsed == parse_run(wire) and parsed["skipped"] == {"hold-1": 4}


# -- policies and runs -------------------------------------------------------------------------------------------

async def _precedence(tmp_path, database_url=None):
    log, audit, producer, retention = await _world(tmp_path, database_url)
    try:
        model = await _submit(audit, producer, _event(1, "acme"), _event(2, "acme"))
        tool = await _submit(audit, producer, _event(3, "acme", event_type="tool_call"))
        other = await _submit(audit, producer, _event(4, "globex"))
        star = await retention.set_policy("acme", "event", "*", 30, "default: 30 days")
        keep = await retention.set_policy("acme", "event", "tool_call", 3650, "tool calls: 10 years")
        assert [p.selector for p in await retention.policies("acme")] == ["*", "tool_call"]
        # The policy entries are in the log, canonical, and parse as policies.
        assert parse_entry((await log.entry(keep.index)).data)[0] == "retention-policy"

        [result] = await retention.run("acme")
        assert result.deleted == {"entry": 2, "blob": 0, "subject": 0}
        assert result.policies == [star.index]  # the * policy pruned; tool_call's kept its event
        for index in model:
            with pytest.raises(EntryPruned) as caught:
                await log.entry(index)
            assert caught.value.deletion_index == result.index and caught.value.index == index
        assert parse_entry((await log.entry(tool[0])).data)[0] == "envelope"
        assert parse_entry((await log.entry(other[0])).data)[0] == "envelope"  # another tenant: no policy
        with pytest.raises(EntryPruned) as caught:  # the bundle too, on both backends
            await log.tile(TileID(None, 0, other[0] + 1))
        assert caught.value.pruned == dict.fromkeys(model, result.index)
        # The readers show a pruned event as pruned: where, its leaf hash, the run that deleted it.
        page = await audit.query_events(EventQuery(tenant="acme"))
        assert [e.index for e in page.events] == tool
        assert [(e.index, e.deletion_index, e.event_id) for e in page.pruned] == [
            (model[0], result.index, "ev-1"), (model[1], result.index, "ev-2")]
        assert page.pruned[0].leaf_hash == (await log.read(lambda tx: tx.execute(sa.text(
            f"SELECT leaf_hash FROM entries WHERE idx = {model[0]}"))))[0][0]
        timeline = await audit.timeline("run-acme")
        assert [e.index for e in timeline.events] == tool and [e.index for e in timeline.pruned] == model

        # The run's entry commits to the list the deletions route serves.
        record = parse_run(parse_json((await log.entry(result.index)).data).value)
        listed = await retention.deletion(result.index)
        assert listed["items"] == [["entry", str(i)] for i in sorted(model, key=lambda i: f"entry {i}\n")]
        assert record["list_sha256"] == listed["list_sha256"] == deletion_list_sha256(
            ("entry", str(i)) for i in model)
        assert listed["type"] == "auditlog.retention-run/v1"
        with pytest.raises(NotFound):
            await retention.deletion(keep.index)

        # A second run finds nothing: no entry. Removing the tool_call policy lets * cover tool calls.
        assert (await retention.run("acme"))[0].index is None
        await retention.set_policy("acme", "event", "tool_call", None, "covered by the default now")
        with pytest.raises(InvalidInput):
            await retention.set_policy("acme", "event", "tool_call", None, "again")
        [again] = await retention.run()
        assert again.tenant == "acme" and again.deleted["entry"] == 1
        with pytest.raises(EntryPruned):
            await log.entry(tool[0])
        runs = await retention.runs()
        assert [r["index"] for r in runs] == [result.index, again.index]
        assert all(r["finished_at"] is not None for r in runs)
    finally:
        await audit.close()
        await log.close()


def test_the_most_specific_policy_wins_and_a_run_prunes_what_is_due(tmp_path):
    _run(_precedence, tmp_path)


def test_the_most_specific_policy_wins_and_a_run_prunes_what_is_due_on_postgresql(tmp_path):
    with fresh_database() as url:
        _run(_precedence, tmp_path, url)


def test_nothing_is_due_before_its_days_are_over(tmp_path):
    async def work():
        log, audit, producer, _ = await _world(tmp_path)
        retention = Retention(log, audit.blobs, clock=_later(29.9))
        try:
            await _submit(audit, producer, _event(1, "acme"))
            await retention.set_policy("acme", "event", "*", 30, "30 days")
            assert (await retention.run("acme"))[0].index is None
            assert await retention.runs() == []
        finally:
            await audit.close()
            await log.close()

    _run(work)


def test_pruning_keeps_every_proof_and_checkpoint_and_readers_answer_410(tmp_path):
    async def work():
        log, audit, producer, retention = await _world(tmp_path)
        try:
            indices = await _submit(audit, producer, *[_event(n, "acme" if n % 3 else "globex") for n in range(300)])
            before = log.checkpoint
            # A read-only Log on the same database (what a read worker and a standby serve from), its full bundle
            # cached before the prune.
            reader = await Log.open_reader(log.config)
            assert decode_entry_bundle(await reader.tile(TileID(None, 0, 256)))[1]
            await retention.set_policy("acme", "event", "*", 7, "one week")
            [result] = await retention.run("acme")
            try:
                with pytest.raises(EntryPruned):
                    await reader.tile(TileID(None, 0, 256))  # the cached bundle is not served
                with pytest.raises(EntryPruned):
                    await reader.entry(indices[1])
            finally:
                await reader.close()
            pruned = [i for n, i in enumerate(indices) if n % 3]
            assert result.deleted["entry"] == len(pruned)
            after = log.checkpoint

            # Every leaf (pruned or not) still proves into both checkpoints, from the stored leaf hashes.
            leaf_hashes = await log.read(lambda tx: {i: bytes(h) for i, h in tx.execute(
                sa.text("SELECT idx, leaf_hash FROM entries ORDER BY idx"))})
            for index in range(0, after.size, 7):
                proof = await log.inclusion_proof(index, after.size)
                proofs.verify_inclusion(leaf_hashes[index], index, after.size, proof, after.root_hash)
            consistency = await log.consistency_proof(before.size, after.size)
            proofs.verify_consistency(before.size, after.size, consistency, before.root_hash, after.root_hash)

            # The bundle: 410 with every pruned entry and the rest as they are (pruned ones as zero bytes).
            with pytest.raises(EntryPruned) as caught:
                await log.tile(TileID(None, 0, 256))
            gone = caught.value
            assert set(gone.pruned) == {i for i in pruned if i < 256}
            assert set(gone.pruned.values()) == {result.index}
            present = decode_entry_bundle(gone.present)
            for position, data in enumerate(present):
                if position in gone.pruned:
                    assert data == b""
                else:
                    assert hash_leaf(data) == leaf_hashes[position]
            # The events query shows the others; pruned events leave the audit index rows that carried contents.
            page = await audit.query_events(EventQuery(tenant="globex", limit=1000))
            assert len(page.events) == 100
            rows = await log.read(lambda tx: tx.execute(sa.text("SELECT count(*) FROM pruned_entries")))
            assert rows[0][0] == len(pruned)
        finally:
            await audit.close()
            await log.close()

    _run(work)


def test_blobs_go_when_every_citation_is_past_and_stay_while_one_is_not(tmp_path):
    async def work():
        log, audit, producer, retention = await _world(tmp_path)
        try:
            for name in ("old-prompt", "shared", "kept"):
                await audit.put_blob(digest(name), name.encode())
            await _submit(audit, producer, _event(1, "acme", input=_ref("old-prompt"), output=_ref("shared")),
                          _event(2, "globex", input=_ref("shared")),
                          _event(3, "acme", event_type="tool_call", input=_ref("kept")))
            await retention.set_policy("acme", "blob", "event_type:model_call", 90, "raw payloads: 90 days")
            until = await log.read(lambda tx: blob_retention_until(
                tx, "acme", [digest("old-prompt"), digest("kept")], int(time.time() * 1000)))
            assert set(until) == {digest("old-prompt")}  # kept: no policy of acme covers tool_call payloads
            assert until[digest("old-prompt")][1] > 0 and until[digest("old-prompt")][0] > time.time() * 1000

            [result] = await retention.run("acme")
            # shared: globex cites it and has no policy: kept. kept: no policy covers it.
            assert result.deleted == {"entry": 0, "blob": 1, "subject": 0}
            assert not audit.blobs.exists(digest("old-prompt"))
            assert audit.blobs.exists(digest("shared")) and audit.blobs.exists(digest("kept"))
            assert (await retention.deletion(result.index))["items"] == [["blob", digest("old-prompt")]]

            await retention.set_policy("globex", "blob", "*", 10, "ten days")
            await retention.run("acme")
            assert not audit.blobs.exists(digest("shared"))

            # The media type's policy wins over the event type's, whatever its days.
            await retention.set_policy("acme", "blob", "event_type:tool_call", 3650, "tool payloads: 10 years")
            assert (await retention.run("acme"))[0].index is None
            await retention.set_policy("acme", "blob", "media_type:text/plain", 1, "plain text: a day")
            [by_media] = await retention.run("acme")
            assert by_media.deleted["blob"] == 1 and not audit.blobs.exists(digest("kept"))
        finally:
            await audit.close()
            await log.close()

    _run(work)


def test_what_a_hold_covers_is_kept_and_counted_and_the_next_run_after_release_takes_it(tmp_path):
    async def work():
        log, audit, producer, retention = await _world(tmp_path)
        try:
            held = await _submit(audit, producer, _event(1, "acme", run_id="case-9", output=_ref("held-answer")))
            free = await _submit(audit, producer, _event(2, "acme"))
            await audit.put_blob(digest("held-answer"), b"held-answer")
            placed = await audit.holds.place({"tenant": "acme", "run_ids": ["case-9"]}, "litigation", "case 9")
            hold_id = placed.hold.hold_id
            await retention.set_policy("acme", "event", "*", 1, "a day")
            await retention.set_policy("acme", "blob", "*", 1, "a day")
            [result] = await retention.run("acme")
            assert result.deleted == {"entry": 1, "blob": 0, "subject": 0}
            assert result.skipped == {hold_id: 2}  # the event and the blob it cites
            assert parse_run(parse_json((await log.entry(result.index)).data).value)["skipped"] == {hold_id: 2}
            assert parse_entry((await log.entry(held[0])).data)[0] == "envelope"
            assert audit.blobs.exists(digest("held-answer"))
            with pytest.raises(EntryPruned):
                await log.entry(free[0])
            await audit.holds.release(hold_id, "case closed")
            [after] = await retention.run("acme")
            assert after.deleted == {"entry": 1, "blob": 1, "subject": 0} and after.skipped == {}
            assert not audit.blobs.exists(digest("held-answer"))
        finally:
            await audit.close()
            await log.close()

    _run(work)


def test_an_interrupted_run_is_finished_from_its_list_and_nothing_is_half_pruned(tmp_path, monkeypatch):
    async def work():
        log, audit, producer, retention = await _world(tmp_path, chunk=10)
        try:
            indices = await _submit(audit, producer, *[_event(n, "acme") for n in range(35)])
            await retention.set_policy("acme", "event", "*", 1, "a day")
            real = retention_module.prune_entries
            calls = []

            def failing(tx, chunk, deletion_idx, now_ms, **kwargs):
                calls.append(len(chunk))
                if len(calls) == 2:
                    raise RuntimeError("the process died here")
                return real(tx, chunk, deletion_idx, now_ms, **kwargs)

            monkeypatch.setattr(retention_module, "prune_entries", failing)
            with pytest.raises(RuntimeError):
                await retention.run("acme")
            monkeypatch.setattr(retention_module, "prune_entries", real)

            def state(tx):
                return [tuple(r) for r in tx.execute(sa.text(
                    "SELECT e.idx, length(e.data), p.deletion_idx FROM entries e "
                    "LEFT JOIN pruned_entries p ON p.idx = e.idx ORDER BY e.idx"))]

            rows = {idx: (length, deletion) for idx, length, deletion in await log.read(state)}
            # Every entry is whole, or empty with its pruned row; only the first chunk was pruned.
            assert all((length == 0) == (deletion is not None) for length, deletion in rows.values())
            assert sum(1 for i in indices if rows[i][1] is not None) == 10
            [unfinished] = await retention.runs()
            assert unfinished["finished_at"] is None

            assert await retention.resume() == 1
            rows = {idx: (length, deletion) for idx, length, deletion in await log.read(state)}
            assert all(rows[i] == (0, unfinished["index"]) for i in indices)
            assert (await retention.runs())[0]["finished_at"] is not None
            assert await retention.resume() == 0
        finally:
            await audit.close()
            await log.close()

    _run(work)


# -- over HTTP ---------------------------------------------------------------------------------------------------

def test_the_routes_set_policies_run_and_answer_410_naming_the_deletion(log_config):
    from aiohttp.test_utils import TestClient, TestServer

    from api.server.app import create_app
    from api.server.audit_routes import AUDIT
    from tests.credentials import ADMIN, ADMIN_TOKEN

    producer = Producer()

    async def main():
        app = create_app(log_config, admin_token=ADMIN_TOKEN, retention_interval=0)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            audit = app[AUDIT]
            await audit.register_producer(producer.name, ["acme"])
            await audit.add_key(producer.name, producer.public, not_before=0)
            indices = await _submit(audit, producer, *[_event(n, "acme") for n in range(3)])
            await asyncio.sleep(0.01)

            bad = await client.post("/api/v1/retention/policies", json={
                "tenant": "acme", "record_class": "event", "selector": "nope", "retain_days": 1, "reason": "r"})
            assert bad.status == 400 and (await bad.json())["field"] == "selector"
            missing = await client.post("/api/v1/retention/policies", json={"tenant": "acme"})
            assert missing.status == 400
            set_ = await client.post("/api/v1/retention/policies", json={
                "tenant": "acme", "record_class": "event", "selector": "*", "retain_days": 0, "reason": "test"})
            assert set_.status == 201
            policies = await (await client.get("/api/v1/retention/policies?tenant=acme")).json()
            assert [p["index"] for p in policies["policies"]] == [(await set_.json())["index"]]

            ran = await client.post("/api/v1/retention/runs", json={"tenant": "acme"})
            assert ran.status == 200
            [run] = (await ran.json())["runs"]
            assert run["deleted"] == {"entry": 3, "blob": 0, "subject": 0} and run["index"] is not None

            gone = await client.get(f"/api/v1/entries/{indices[0]}")
            body = await gone.json()
            assert gone.status == 410 and body["type"] == "urn:auditlog:problem:entry-pruned"
            assert body["deletion_index"] == run["index"] and body["index"] == indices[0]
            assert f"/api/v1/deletions/{run['index']}" in body["detail"]
            bundle = await client.get("/tile/entries/000.p/" + str(run["index"] + 1))
            body = await bundle.json()
            assert bundle.status == 410
            assert [p["index"] for p in body["pruned"]] == indices
            assert len(decode_entry_bundle(__import__("base64").b64decode(body["bundle"]))) == run["index"] + 1
            assert (await client.get(f"/api/v1/entries/{run['index']}")).status == 200  # the run's own entry

            listed = await (await client.get(f"/api/v1/deletions/{run['index']}")).json()
            assert listed["list_sha256"] == run["list_sha256"] and len(listed["items"]) == 3
            assert (await client.get("/api/v1/deletions/0")).status == 404
            assert (await client.get("/api/v1/deletions/x")).status == 400
            runs = await (await client.get("/api/v1/retention/runs")).json()
            assert [r["index"] for r in runs["runs"]] == [run["index"]]
            assert (await client.post("/api/v1/retention/runs", json={"bogus": 1})).status == 400
            metrics = await (await client.get("/metrics")).text()
            assert "auditlog_retention_entries_pruned_total 3" in metrics

    asyncio.run(main())


# -- fsck ----------------------------------------------------------------------------------------------------------

def test_db_check_takes_pruned_entries_as_pruned_and_names_one_no_run_lists(tmp_path):
    from log.audit.retention import entries_listed
    from log.fsck import check_log, check_newest_entries
    from log.storage.store import SqlLogStore

    async def work():
        log, audit, producer, retention = await _world(tmp_path)
        try:
            await _submit(audit, producer, *[_event(n, "acme") for n in range(20)])
            await retention.set_policy("acme", "event", "*", 1, "a day")
            [result] = await retention.run("acme")
            return log.signer.verifier, result
        finally:
            await audit.close()
            await log.close()

    verifier, result = _run(work)
    url = f"sqlite:///{tmp_path / 'data' / 'auditlog.db'}"
    store = SqlLogStore(url)
    try:
        report = check_log(store, verifier, deletions=entries_listed)
        assert report.ok, report.disagreements
        assert report.pruned == 20
        check_newest_entries(store, report.size)  # the start-up check takes pruned entries too
        with store.engine.begin() as conn:
            first = conn.exec_driver_sql("SELECT min(idx) FROM pruned_entries").scalar()
            conn.exec_driver_sql(f"DELETE FROM deletion_items WHERE item = '{first}'")
            conn.exec_driver_sql(f"UPDATE entries SET data = x'7b7d' WHERE idx = {first + 1}")
        report = check_log(store, verifier, deletions=entries_listed)
        assert report.counts["pruned"] == 2
        assert {d.where for d in report.disagreements} == {f"entry {first}", f"entry {first + 1}"}
    finally:
        store.close()


# -- auditlog verify ---------------------------------------------------------------------------------------------

def test_verify_is_valid_with_pruned_entries_and_names_a_prune_no_list_accounts_for(tmp_path, log_config,
                                                                                     live_server):
    from api.client.log_client import LogClient
    from api.client.monitor import INTEGRITY, verify_log
    from api.server.app import create_app
    from tests.credentials import ADMIN_TOKEN

    async def build():
        log, audit, producer, retention = await _world(tmp_path, config=log_config)
        try:
            await _submit(audit, producer, *[_event(n, "acme" if n % 4 else "globex") for n in range(600)])
            await retention.set_policy("acme", "event", "*", 1, "a day")
            [result] = await retention.run("acme")
            await _submit(audit, producer, _event(1000, "globex"))  # the log goes on after the run
            return log.verifier_key, result
        finally:
            await audit.close()
            await log.close()

    key, result = _run(build)
    tampered = LogConfig(data_dir=tmp_path / "tampered", batch_max_age=0.002)
    shutil.copytree(log_config.data_dir, tampered.data_dir)
    url = live_server(create_app(log_config, admin_token=ADMIN_TOKEN))

    async def verify(url):
        async with LogClient(url, key, token=ADMIN_TOKEN) as client:
            return await verify_log(client)

    report = asyncio.run(verify(url))
    assert report.status == "valid", report.problems
    assert len(report.pruned) == result.deleted["entry"] == 450
    assert set(report.pruned.values()) == {result.index}
    assert "pruned 450" in report.summary()

    # A prune its run's list does not name: the list served no longer hashes to what the run's entry commits to.
    engine = sa.create_engine(f"sqlite:///{tampered.data_dir / 'auditlog.db'}")
    with engine.begin() as conn:
        first = conn.exec_driver_sql("SELECT min(idx) FROM pruned_entries").scalar()
        conn.exec_driver_sql(f"DELETE FROM deletion_items WHERE item = '{first}'")
        # An entry emptied without a pruned row: served as an empty entry, which does not hash to its leaf.
        conn.exec_driver_sql("UPDATE entries SET data = x'' WHERE idx = 0")
    engine.dispose()
    report = asyncio.run(verify(live_server(create_app(tampered, admin_token=ADMIN_TOKEN))))
    assert report.status == "invalid"
    messages = [p.message for p in report.problems if p.kind == INTEGRITY]
    assert any(f"the deletion list of entry {result.index} hashes to" in m for m in messages), messages
    assert report.tampered == [0]


# -- static publishing -------------------------------------------------------------------------------------------

def test_a_static_copy_replaces_pruned_bundles_and_verifies(tmp_path):
    from api.client.log_client import LogClient
    from api.client.monitor import verify_log
    from api.server.publishing import TilePublisher
    from tests.conftest import serve_app
    from tests.test_publishing import static_app

    directory = tmp_path / "published"

    async def main():
        log, audit, producer, retention = await _world(tmp_path)
        try:
            await _submit(audit, producer, *[_event(n, "acme" if n % 2 else "globex") for n in range(300)])
            publisher = TilePublisher(log, directory, entry_bundles=True, pruned_look_interval=0)
            assert await publisher.publish_once()
            assert (directory / "tile/entries/000").exists()
            await retention.set_policy("acme", "event", "*", 1, "a day")
            [result] = await retention.run("acme")
            assert await publisher.publish_once()  # the new checkpoint, and the bundles the run pruned replaced
            assert not (directory / "tile/entries/000").exists()
            assert (directory / "tile/entries/000.pruned.json").exists()
            listed = json.loads((directory / f"api/v1/deletions/{result.index}").read_text())
            assert listed == await retention.deletion(result.index)
            async with serve_app(static_app(directory)) as url:
                async with LogClient(url, log.verifier_key) as client:
                    report = await verify_log(client)
            assert report.status == "valid", report.problems
            assert len(report.pruned) == 150 and report.contents_unchecked is None
        finally:
            await audit.close()
            await log.close()

    asyncio.run(main())


def test_a_subject_past_its_policy_since_its_newest_event_is_shredded_unless_held(tmp_path):
    async def work():
        log, audit, producer, _ = await _world(tmp_path)
        try:
            customer = await audit.vault.tokenize("acme", "customer-1", ["alice@example.com"])
            held = await audit.vault.tokenize("acme", "customer-2", ["bob@example.com"])
            await _submit(audit, producer, _event(1, "acme", context={"customer_id": customer.tokens[0]}),
                          _event(2, "acme", context={"customer_id": held.tokens[0]}))
            await audit.holds.place({"tenant": "acme", "subjects": [held.subject]}, "dispute", "case 12")
            recent = Retention(log, audit.blobs, vault=audit.vault, hold_lock=audit.holds.lock, clock=_later(29))
            later = Retention(log, audit.blobs, vault=audit.vault, hold_lock=audit.holds.lock, clock=_later(31))
            await recent.set_policy("acme", "subject", "*", 30, "customer data: 30 days after the last event")
            assert (await recent.run("acme"))[0].index is None  # the newest event is 29 days old
            [result] = await later.run("acme")
            assert result.deleted == {"entry": 0, "blob": 0, "subject": 1} and len(result.skipped) == 1
            assert (await later.deletion(result.index))["items"] == [["subject", f"acme/{customer.subject}"]]
            erased = await audit.vault.subject_state("acme", customer.subject)
            assert erased["erasure_idx"] == result.index
            assert (await audit.vault.subject_state("acme", held.subject)).get("erasure_idx") is None
        finally:
            await audit.close()
            await log.close()

    _run(work)
