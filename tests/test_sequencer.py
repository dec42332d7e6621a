"""The sequencer and the store together: batching, durability, recovery after failures, idempotency keys.

Faults are injected on both sides of the commit point ("failed and not persisted", "failed but persisted"), and
after every scenario the whole stored tree is re-verified against the naive reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time

import pytest
from sqlalchemy import update

from log.errors import Conflict, SequencerLockHeld, StorageError, StorageUnavailable, Unavailable
from log.hashing import hash_leaf
from log.note_keys import generate_signer_key, parse_signer_key
from log.sequencer import IdempotencyKey, Sequencer, load_tree_state
from log.storage import RowInsert
from log.storage.schema import tiles
from log.storage.engine import sqlite_url_for
from log.storage.store import SqlLogStore
from tests.postgres import fresh_database
from tests.reference_tree import mth
from tests.schema_template import upgrade_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = sqlite_url_for(tmp_path / "log.db")
        else:
            url = stack.enter_context(fresh_database())
        upgrade_schema(url)
        store = SqlLogStore(url)
        stack.callback(store.close)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE test_rows (idx BIGINT, label VARCHAR(40))")
        yield store


@pytest.fixture
def signer():
    return parse_signer_key(generate_signer_key("test.example/log")[0])


def _verify_whole_tree(store, signer):
    """Everything stored agrees: entries, tiles, checkpoint (startup reconciliation) and the naive root."""
    state = load_tree_state(store, signer)
    size = state.published.size
    entries = store.read_entries(0, size)
    assert len(entries) == size
    assert state.published.root_hash == mth(entries)
    return entries


class FaultyWriter:
    """Wraps a real writer and fails one commit, before or after the real commit point."""

    def __init__(self, inner, fail_on_call: int, persisted: bool):
        self.inner, self.fail_on_call, self.persisted, self.calls = inner, fail_on_call, persisted, 0

    def commit_batch(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            if self.persisted:
                self.inner.commit_batch(*args, **kwargs)
                raise StorageError("injected: connection lost after the commit")
            raise StorageError("injected: disk full before the commit")
        self.inner.commit_batch(*args, **kwargs)

    def close(self):
        self.inner.close()


async def _run(store, signer, scenario, writer=None, **options):
    sequencer = Sequencer(store, writer or store.acquire_writer(), signer, **options)
    await sequencer.start()
    try:
        return await scenario(sequencer)
    finally:
        await sequencer.close()


def test_concurrent_submissions_get_consecutive_indices(store, signer):
    entries = [f"entry {i}".encode() for i in range(500)]

    async def scenario(sequencer):
        receipts = await asyncio.gather(*(sequencer.submit([e]) for e in entries))
        return receipts, sequencer.stats

    receipts, stats = asyncio.run(_run(store, signer, scenario, batch_size=64))
    assert sorted(r.first_index for r in receipts) == list(range(500))
    for entry, receipt in zip(entries, receipts):
        assert receipt.leaf_hashes == [hash_leaf(entry)]
        assert receipt.checkpoint.size > receipt.first_index
    assert stats.entries_integrated == 500
    at_most_64 = dict(stats.batch_size.cumulative())[64]
    assert at_most_64 == stats.batch_size.count == stats.batches_committed  # no batch exceeded the size limit
    assert stats.batches_committed >= 500 // 64
    stored = _verify_whole_tree(store, signer)
    assert sorted(stored) == sorted(entries)


def test_entries_of_every_size_and_byte_are_stored_exactly_with_their_hash_and_time(store, signer):
    """What the writer encodes itself (PostgreSQL's binary COPY stream, SQLite's padded multi-row INSERT) comes
    back byte for byte: empty and maximal entries, every byte value, lengths around the encodings' edges, and more
    than a MiB in one batch (the COPY stream goes out in pieces)."""
    entries = [b"", b"\x00", b"\xff\xff", bytes(range(256)), b"\xff" * 4096, bytes(range(256)) * 255 + b"\x01" * 255,
               b"PGCOPY\n\xff\r\n\x00", b"\xff\xff" + bytes(30), b"x" * 32]
    entries += [bytes([n]) * 65535 for n in range(17)] + [b"after the first piece"]
    assert max(map(len, entries)) == 65535 and sum(map(len, entries)) > 1 << 20

    async def scenario(sequencer):
        return await sequencer.submit(entries)

    before = int(time.time() * 1000)
    receipt = asyncio.run(_run(store, signer, scenario))
    after = int(time.time() * 1000)
    for offset, entry in enumerate(entries):
        stored = store.read_entry(receipt.first_index + offset)
        assert (stored.index, stored.data, stored.leaf_hash) == (receipt.first_index + offset, entry, hash_leaf(entry))
        assert before <= stored.received_at <= after
    assert _verify_whole_tree(store, signer) == entries


def test_a_multi_entry_submission_gets_consecutive_indices(store, signer):
    async def scenario(sequencer):
        return await asyncio.gather(sequencer.submit([b"a", b"b", b"c"]), sequencer.submit([b"d", b"e"]))

    first, second = asyncio.run(_run(store, signer, scenario))
    assert [o.index for o in first.outcomes] == [first.first_index + i for i in range(3)]
    assert [o.index for o in second.outcomes] == [second.first_index + i for i in range(2)]
    _verify_whole_tree(store, signer)


@pytest.mark.parametrize("persisted", [False, True], ids=["failed-not-persisted", "failed-but-persisted"])
def test_a_failed_commit_fails_its_batch_closed_and_the_log_recovers(store, signer, persisted):
    async def scenario(sequencer):
        await sequencer.submit([b"before"])
        with pytest.raises(StorageError):
            await sequencer.submit([b"during 1", b"during 2"])
        after = await sequencer.submit([b"after"])
        return after

    writer = FaultyWriter(store.acquire_writer(), fail_on_call=3, persisted=persisted)  # call 1: empty checkpoint
    after = asyncio.run(_run(store, signer, scenario, writer=writer))
    stored = _verify_whole_tree(store, signer)
    if persisted:
        assert stored == [b"before", b"during 1", b"during 2", b"after"]
        assert after.first_index == 3
    else:
        assert stored == [b"before", b"after"]
        assert after.first_index == 1


def test_a_failure_the_log_cannot_recover_from_fails_what_waits_and_refuses_the_rest(store, signer, monkeypatch):
    import log.sequencer

    async def scenario(sequencer):
        await sequencer.submit([b"before"])

        def cannot_reload(*args):
            raise StorageError("injected: the database went away")

        monkeypatch.setattr(log.sequencer, "load_tree_state", cannot_reload)
        outcomes = await asyncio.gather(*(sequencer.submit([b"lost %d" % i]) for i in range(5)),
                                        return_exceptions=True)
        # later writes are refused as unavailable (503 over HTTP, never 500), naming why the log stopped
        with pytest.raises(StorageUnavailable, match="injected: the database went away") as after:
            await sequencer.submit([b"after"])
        assert after.value.reason.startswith("stopped: ")
        with pytest.raises(StorageUnavailable):
            await sequencer.submit_work(lambda tx: None)
        return outcomes, sequencer.broken

    writer = FaultyWriter(store.acquire_writer(), fail_on_call=3, persisted=False)
    outcomes, broken = asyncio.run(_run(store, signer, scenario, writer=writer))
    assert all(isinstance(o, StorageError) for o in outcomes)  # the failed batch, and whatever queued behind it
    assert isinstance(broken, StorageError)
    assert _verify_whole_tree(store, signer) == [b"before"]


def test_a_writer_thread_that_dies_fails_what_waits_instead_of_leaving_it_hanging(store, signer, monkeypatch):
    async def scenario(sequencer):
        await sequencer.submit([b"before"])

        def bug(*args):
            raise RuntimeError("injected: a bug in the batch loop")

        monkeypatch.setattr(sequencer._batches, "_cut", bug)  # the writer thread cuts its next batch
        with pytest.raises(StorageError):
            await asyncio.wait_for(sequencer.submit([b"lost"]), 30)
        with pytest.raises(StorageUnavailable):
            await sequencer.submit([b"after"])
        return sequencer.broken

    broken = asyncio.run(_run(store, signer, scenario))
    assert isinstance(broken, RuntimeError)
    assert _verify_whole_tree(store, signer) == [b"before"]


class BlockingWriter:
    """Wraps a real writer; every commit waits until `release` is set (entered: set when one is waiting)."""

    def __init__(self, inner):
        self.inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def commit_batch(self, *args, **kwargs):
        self.entered.set()
        self.release.wait(30)
        return self.inner.commit_batch(*args, **kwargs)

    def close(self):
        self.inner.close()


def test_a_full_queue_refuses_more_and_close_still_commits_what_was_queued(store, signer):
    writer = BlockingWriter(store.acquire_writer())
    writer.release.set()  # the start-up checkpoint

    async def scenario():
        sequencer = Sequencer(store, writer, signer, batch_size=4, max_pending=6)
        await sequencer.start()
        writer.release.clear()
        writer.entered.clear()
        first = asyncio.create_task(sequencer.submit([b"first"]))
        await asyncio.get_running_loop().run_in_executor(None, writer.entered.wait, 30)  # the writer holds it
        queued = [asyncio.create_task(sequencer.submit([b"q%d" % i, b"r%d" % i])) for i in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable):
            await sequencer.submit([b"one too many"])  # 6 entries wait already
        writer.release.set()
        await sequencer.close()  # finishes what is queued before it stops
        with pytest.raises(Unavailable):
            await sequencer.submit([b"after close"])
        return await first, [await task for task in queued]

    first, queued = asyncio.run(scenario())
    assert first.first_index == 0
    assert sorted(r.first_index for r in queued) == [1, 3, 5]
    assert _verify_whole_tree(store, signer) == [b"first", b"q0", b"r0", b"q1", b"r1", b"q2", b"r2"]


def test_a_lingering_batch_waits_for_more_entries_until_it_is_full(store, signer):
    async def scenario(sequencer):
        first = asyncio.create_task(sequencer.submit([b"a"]))
        await asyncio.sleep(0.05)  # well inside the linger: the writer is still waiting for more
        rest = await asyncio.gather(sequencer.submit([b"b"]), sequencer.submit([b"c"]))
        return [await first, *rest], sequencer.stats.batches_committed

    receipts, batches = asyncio.run(_run(store, signer, scenario, batch_size=3, batch_linger=5, batch_max_age=10))
    # Full at three entries: one batch, cut without waiting out the 5 s linger (the scenario would time out first).
    assert batches == 1
    assert [r.first_index for r in receipts] == [0, 1, 2]
    assert receipts[0].checkpoint == receipts[2].checkpoint


def test_what_one_pass_of_the_event_loop_submits_is_one_batch_and_a_lone_entry_waits_out_no_age(store, signer):
    import time

    async def scenario(sequencer):
        # The batch age is a ceiling, not a floor: with 60 s of it, a lone entry is still committed at once.
        lone = await asyncio.wait_for(sequencer.submit([b"lone"]), 10)

        async def submit_from_a_busy_pass(n):
            time.sleep(0.002)  # a request's share of a busy pass; the writer thread gets the GIL meanwhile
            return await sequencer.submit([b"burst %d" % n])

        burst = await asyncio.wait_for(asyncio.gather(*(submit_from_a_busy_pass(n) for n in range(20))), 10)
        return lone, burst, sequencer.stats.batches_committed

    lone, burst, batches = asyncio.run(_run(store, signer, scenario, batch_max_age=60))
    assert lone.first_index == 0
    # All twenty were queued in one pass of the loop: one batch, not a first one cut as soon as the writer woke.
    assert sorted(r.first_index for r in burst) == list(range(1, 21))
    assert {r.checkpoint.size for r in burst} == {21}
    assert batches == 2


def test_restart_resumes_from_the_stored_frontier(store, signer):
    async def fill(sequencer):
        for chunk in range(5):
            await sequencer.submit([f"{chunk}-{i}".encode() for i in range(123)])

    asyncio.run(_run(store, signer, fill))
    asyncio.run(_run(store, signer, fill))
    stored = _verify_whole_tree(store, signer)
    assert len(stored) == 2 * 5 * 123


def test_only_one_writer_per_database(store, signer):
    writer = store.acquire_writer()
    try:
        with pytest.raises(SequencerLockHeld):
            store.acquire_writer()
    finally:
        writer.close()
    store.acquire_writer().close()  # released on close


def test_startup_refuses_a_checkpoint_signed_by_another_key(store, signer):
    async def fill(sequencer):
        await sequencer.submit([b"x"])

    asyncio.run(_run(store, signer, fill))
    other = parse_signer_key(generate_signer_key("test.example/log")[0])
    with pytest.raises(StorageError, match="does not verify"):
        load_tree_state(store, other)


def test_startup_refuses_tiles_that_disagree_with_the_checkpoint(store, signer):
    async def fill(sequencer):
        await sequencer.submit([f"{i}".encode() for i in range(300)])

    asyncio.run(_run(store, signer, fill))
    edge = store.read_tiles([(0, 1)])[(0, 1)].data
    with store.engine.begin() as conn:
        conn.execute(update(tiles).where(tiles.c.level == 0, tiles.c.idx == 1).values(data=edge + edge[:32]))
    with pytest.raises(StorageError, match="right-edge tile"):
        load_tree_state(store, signer)


def test_startup_refuses_entries_beyond_the_checkpoint(store, signer):
    async def fill(sequencer):
        await sequencer.submit([b"a", b"b"])

    asyncio.run(_run(store, signer, fill))
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO entries (idx, data, leaf_hash, received_at) VALUES (2, %s, %s, 0)"
            % (("x'00'", "x'" + "00" * 32 + "'") if store.dialect == "sqlite"
               else ("'\\x00'::bytea", "'\\x" + "00" * 32 + "'::bytea"))
        )
    with pytest.raises(StorageError, match="holds 3 entries"):
        load_tree_state(store, signer)


def test_idempotency_keys_make_retries_safe(store, signer):
    def key(name, content):
        return IdempotencyKey(name.encode(), hash_leaf(content))

    def rows(label):
        return [[RowInsert("test_rows", ("label",), (label,))]]

    async def scenario(sequencer):
        first = await sequencer.submit([b"event A"], [key("A", b"event A")], rows("A"))
        retry = await sequencer.submit([b"event A"], [key("A", b"event A")], rows("A again"))
        # The same key twice in one batch, and a conflicting reuse, submitted concurrently.
        together = await asyncio.gather(
            sequencer.submit([b"event B"], [key("B", b"event B")], rows("B")),
            sequencer.submit([b"event B"], [key("B", b"event B")], rows("B again")),
            sequencer.submit([b"other"], [key("A", b"other")], rows("conflict")),
            sequencer.submit([b"plain"]),
        )
        return first, retry, together

    first, retry, (b1, b2, conflict, plain) = asyncio.run(_run(store, signer, scenario))
    assert first.outcomes[0].duplicate is False
    assert retry.outcomes[0].index == first.outcomes[0].index and retry.outcomes[0].duplicate
    assert retry.outcomes[0].leaf_hash == first.outcomes[0].leaf_hash
    assert b1.outcomes[0].index == b2.outcomes[0].index
    assert [b1.outcomes[0].duplicate, b2.outcomes[0].duplicate].count(True) == 1
    assert isinstance(conflict.outcomes[0], Conflict)
    assert conflict.outcomes[0].index == first.outcomes[0].index, "a conflict names the entry holding the key"
    stored = _verify_whole_tree(store, signer)
    assert stored.count(b"event A") == 1 and stored.count(b"event B") == 1 and b"other" not in stored
    assert plain.first_index == len(stored) - 1 or b"plain" in stored
    with store.engine.connect() as conn:
        labels = dict(conn.exec_driver_sql("SELECT label, idx FROM test_rows").fetchall())
    assert set(labels) == {"A", "B"}, "rows are stored with new entries only"
    assert labels["A"] == first.outcomes[0].index and labels["B"] == b1.outcomes[0].index


def test_a_large_keyed_batch_stores_every_key_and_row_at_its_index(store, signer):
    # 700 keyed entries with rows in one submission: more than one multi-row INSERT per table on SQLite (256 rows
    # a statement), and a remainder; then the same keys again, all found, in more than one lookup query (500).
    count = 700
    entries = [f"entry {n}".encode() for n in range(count)]
    keys = [IdempotencyKey(f"key {n}".encode(), hash_leaf(entry)) for n, entry in enumerate(entries)]
    rows = [[RowInsert("test_rows", ("label",), (f"label {n}",))] for n in range(count)]

    async def scenario(sequencer):
        await sequencer.submit([b"before"])
        first = await sequencer.submit(entries, keys, rows)
        again = await sequencer.submit(entries, keys, rows)
        return first, again

    first, again = asyncio.run(_run(store, signer, scenario))
    assert [o.index for o in first.outcomes] == list(range(1, count + 1))
    assert not any(o.duplicate for o in first.outcomes)
    assert [(o.index, o.leaf_hash, o.duplicate) for o in again.outcomes] == [
        (o.index, o.leaf_hash, True) for o in first.outcomes]
    stored = _verify_whole_tree(store, signer)
    assert stored[1:] == entries
    with store.engine.connect() as conn:
        labels = dict(conn.exec_driver_sql("SELECT label, idx FROM test_rows").fetchall())
        stored_keys = dict(conn.exec_driver_sql("SELECT idx, content_hash FROM entry_keys").fetchall())
    assert labels == {f"label {n}": n + 1 for n in range(count)}
    assert {idx: bytes(h) for idx, h in stored_keys.items()} == {n + 1: k.content_hash for n, k in enumerate(keys)}


@contextlib.contextmanager
def _sqlite_writer(path):
    """A fresh SQLite store at `path` and its writer (which holds the write lock), closed afterwards."""
    url = sqlite_url_for(path)
    upgrade_schema(url)
    store = SqlLogStore(url)
    writer = store.acquire_writer()
    try:
        yield writer
    finally:
        writer.close()
        store.close()


def test_sqlite_second_process_cannot_take_the_write_lock(tmp_path, signer):
    with _sqlite_writer(tmp_path / "log.db"):
        other = sqlite3.connect(tmp_path / "log.db", timeout=0.2, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        assert other.execute("SELECT count(*) FROM entries").fetchone() == (0,)  # readers are not blocked


def test_sqlite_writer_keeps_statement_journals_in_memory(tmp_path, signer):
    # Each multi-row INSERT of a batch journals the pages it changes; on disk that meant a temp file created,
    # filled with ~100 pages and deleted per audit batch.
    with _sqlite_writer(tmp_path / "log.db") as writer:
        assert writer._conn.execute("PRAGMA temp_store").fetchone() == (2,)  # 2: MEMORY


def test_work_runs_in_the_writer_transaction_and_fails_alone(store, signer):
    from sqlalchemy import column, insert, select, table

    test_rows = table("test_rows", column("idx"), column("label"))

    def add(label):
        return lambda tx: tx.execute(insert(test_rows).values(idx=-1, label=label))

    def broken(tx):
        tx.execute(insert(test_rows).values(idx=-2, label="undone"))
        raise ValueError("work failed after writing")

    def read(tx):
        return tx.execute(select(test_rows.c.label).order_by(test_rows.c.label))

    async def scenario(sequencer):
        results = await asyncio.gather(
            sequencer.submit_work(add("kept")),
            sequencer.submit_work(broken),
            sequencer.submit([b"entry"]),
            return_exceptions=True,
        )
        seen = await sequencer.submit_work(read)
        return results, seen

    (ok, failed, receipt), seen = asyncio.run(_run(store, signer, scenario))
    assert isinstance(failed, ValueError)
    assert receipt.first_index == 0
    assert seen == [("kept",)]
    assert _verify_whole_tree(store, signer) == [b"entry"]


def test_entries_are_found_by_leaf_hash_in_indexed_chunks_and_in_the_tail(store, signer):
    from log.storage.schema import LEAF_INDEX_CHUNK

    total = LEAF_INDEX_CHUNK + 300
    entries = [f"e{i}".encode() for i in range(total)]
    entries[LEAF_INDEX_CHUNK + 7] = entries[5]  # a repeat: the lookup answers the first index

    async def fill(sequencer):
        for start in range(0, total, 4096):
            await sequencer.submit(entries[start:start + 4096])

    asyncio.run(_run(store, signer, fill, batch_size=4096))
    with store.engine.connect() as conn:
        indexed = conn.exec_driver_sql("SELECT count(*), max(chunk) FROM leaf_index").fetchone()
    assert tuple(indexed) == (LEAF_INDEX_CHUNK, 0), "exactly the completed chunk is indexed"
    for index in (0, 1234, LEAF_INDEX_CHUNK - 1, LEAF_INDEX_CHUNK, total - 1):
        assert store.find_leaf_hash(hash_leaf(entries[index])) == index
    assert store.find_leaf_hash(hash_leaf(entries[5])) == 5
    assert store.find_leaf_hash(hash_leaf(b"never logged")) is None


def test_sqlite_wal_stays_bounded_while_the_writer_holds_its_lock(tmp_path, signer, monkeypatch):
    import os

    import log.storage.writers as writers

    monkeypatch.setattr(writers, "WAL_TRUNCATE_BYTES", 1 << 20)
    url = sqlite_url_for(tmp_path / "log.db")
    upgrade_schema(url)
    store = SqlLogStore(url)
    sizes = []

    async def fill(sequencer):
        for batch in range(40):
            await sequencer.submit([os.urandom(200) for _ in range(1024)])  # ~250 KiB of WAL a batch
            sizes.append(os.path.getsize(tmp_path / "log.db-wal"))

    try:
        asyncio.run(_run(store, signer, fill))
        _verify_whole_tree(store, signer)
    finally:
        store.close()
    assert max(sizes) < 4 << 20, f"the WAL grew to {max(sizes)} bytes"
    assert min(sizes[10:]) < 1 << 20, "the WAL was never truncated"


def test_new_entries_are_the_outcomes_of_consecutive_indices():
    from log.sequencer import BatchReceipt, EntryOutcome, NewEntries

    hashes = [bytes([i]) * 32 for i in range(5)]
    outcomes = NewEntries(10, hashes)
    expected = [EntryOutcome(10 + i, h) for i, h in enumerate(hashes)]
    assert len(outcomes) == 5 and list(outcomes) == expected and outcomes == expected
    assert outcomes[0] == expected[0] and outcomes[-1] == expected[-1] and outcomes[4].duplicate is False
    for bad in (5, -6):
        with pytest.raises(IndexError):
            outcomes[bad]
    part = outcomes[1:3]
    assert isinstance(part, NewEntries) and list(part) == expected[1:3] and part.first_index == 11
    assert list(outcomes[3:]) == expected[3:] and list(outcomes[7:]) == []
    with pytest.raises(ValueError):
        outcomes[::2]
    receipt = BatchReceipt(part, None)
    assert receipt.first_index == 11 and receipt.leaf_hashes == hashes[1:3]


def test_a_receipts_first_index_is_its_first_non_conflict_outcome_and_none_when_all_conflict():
    from log.errors import Conflict
    from log.sequencer import BatchReceipt, EntryOutcome, Published

    published = Published(9, bytes(32), b"note")
    conflict = Conflict("this idempotency key already stands for different content, at index 3")
    duplicate, new = EntryOutcome(3, bytes([3]) * 32, duplicate=True), EntryOutcome(8, bytes([8]) * 32)
    assert BatchReceipt([conflict, new, duplicate], published).first_index == 8
    assert BatchReceipt([new, duplicate], published).first_index == 8  # the first outcome's, as before
    assert BatchReceipt([duplicate, conflict], published).first_index == 3
    assert BatchReceipt([conflict, conflict], published).first_index is None


def test_an_idempotency_plan_becomes_outcomes_with_new_entries_at_consecutive_indices_in_plan_order():
    from log.errors import Conflict
    from log.sequencer import NEW, Again, EntryOutcome, Known, _outcomes
    from log.storage import KeyedEntry

    h = [bytes([i]) * 32 for i in range(3)]
    stored = KeyedEntry(4, b"content".ljust(32, b"."), b"stored".ljust(32, b"."))
    conflict = Conflict("this idempotency key already stands for different content, at index 4")
    plan = [NEW, Again(0), Known(stored), conflict, NEW, Again(1), NEW]
    assert _outcomes(plan, 10, h) == [
        EntryOutcome(10, h[0]), EntryOutcome(10, h[0], True), EntryOutcome(4, stored.leaf_hash, True), conflict,
        EntryOutcome(11, h[1]), EntryOutcome(11, h[1], True), EntryOutcome(12, h[2]),
    ]


def test_sqlite_multi_row_inserts_use_one_statement_per_256_rows_of_few_shapes_and_keep_every_row_in_order():
    # Each statement is a moment the writer gives up the GIL and must win it back from the event loop, so rows go
    # in as few statements as possible; and each distinct statement is prepared again once it falls out of the
    # connection's statement cache (128), which costs more than running it: any row count uses a few fixed shapes,
    # padded with all-NULL rows that must never reach the table.
    import sqlite3

    from log.storage.writers import SqliteWriter

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (a INTEGER NOT NULL, b TEXT, c INTEGER)")
    db.execute("CREATE TABLE u (k INTEGER PRIMARY KEY, v TEXT)")
    writer = object.__new__(SqliteWriter)
    writer._values_statements = {}
    shapes = set()
    for count in range(0, 600):
        rows = [(n, f"label {n}" if n % 3 else None, n * 2) for n in range(count)]
        statements = []

        class Recorder:
            def execute(self, sql, params):
                statements.append(sql)
                shapes.add(sql)
                assert sql.count("?") == len(params)
                db.execute(sql, params)

        db.execute("DELETE FROM t")
        writer._insert_many(Recorder(), "INSERT INTO t (a, b, c)", 3, rows)
        assert db.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == rows
        assert len(statements) == -(-count // 256)
    assert len(shapes) == 9  # 1, 2, 4, ... 256 rows

    # With a conflict clause (the tiles' upsert): existing rows are replaced, padding is not inserted.
    db.execute("INSERT INTO u VALUES (1, 'old'), (2, 'old')")
    writer._insert_many(db, "INSERT INTO u (k, v)", 2, [(2, "new"), (3, "new"), (4, "new")],
                        " ON CONFLICT (k) DO UPDATE SET v = excluded.v")
    assert db.execute("SELECT k, v FROM u ORDER BY k").fetchall() == [(1, "old"), (2, "new"), (3, "new"), (4, "new")]
