"""The PostgreSQL writer when its connection or its advisory lock goes: every commit is fenced (it checks, inside
its own transaction, that this session still holds the sequencer lock), so a writer that lost the lock never
commits, while the writer that took it over does."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg
import pytest

from log.errors import SequencerLockHeld, StorageError, StorageUnavailable
from log.hashing import hash_leaf
from log.note_keys import generate_signer_key, parse_signer_key
from log.sequencer import LOCK_HELD_ELSEWHERE, Sequencer, load_tree_state
from log.storage import BatchWrite, StoredCheckpoint
from log.storage.engine import upgrade_schema
from log.storage.store import SqlLogStore
from tests.postgres import fresh_database


@pytest.fixture
def pg_store():
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        upgrade_schema(url)
        store = SqlLogStore(url)
        stack.callback(store.close)
        yield store


def _batch(index: int, entry: bytes) -> BatchWrite:
    return BatchWrite(first_index=index, entries=[entry], leaf_hashes=[hash_leaf(entry)], received_at=1,
                      checkpoint=StoredCheckpoint(index + 1, hash_leaf(entry), b"note %d" % index, 1))


def _acquire_when_free(store, seconds: float = 10.0):
    """A writer, once the lock is free: a terminated backend lets go of it a moment after pg_terminate_backend."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return store.acquire_writer()
        except SequencerLockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sessions_url(store) -> str:
    return store.url.replace("postgresql+psycopg://", "postgresql://")


def test_a_writer_whose_lock_was_released_behind_its_back_cannot_commit_and_the_new_holder_can(pg_store):
    first = pg_store.acquire_writer()
    try:
        first.commit_batch(_batch(0, b"by the first writer"))
        # The session lets go of the lock without the writer knowing (as a lost session would), and another
        # writer takes it.
        first._conn.execute("SELECT pg_advisory_unlock_all()")
        first._conn.commit()
        second = pg_store.acquire_writer()
        try:
            with pytest.raises(SequencerLockHeld):
                first.commit_batch(_batch(1, b"fenced off"))
            assert not first.holding
            with pytest.raises(SequencerLockHeld):  # and it stays fenced off
                first.commit_batch(_batch(1, b"fenced off again"))
            second.commit_batch(_batch(1, b"by the second writer"))
        finally:
            second.close()
    finally:
        first.close()
    assert pg_store.read_entries(0, 10) == [b"by the first writer", b"by the second writer"]
    assert pg_store.latest_checkpoint().size == 2


def test_a_writer_whose_backend_was_terminated_cannot_commit_and_a_second_writer_can(pg_store):
    first = pg_store.acquire_writer()
    try:
        first.commit_batch(_batch(0, b"before"))
        pid = first._conn.info.backend_pid
        with psycopg.connect(_sessions_url(pg_store), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        second = _acquire_when_free(pg_store)  # the lock went with the session
        try:
            with pytest.raises(StorageError):
                first.commit_batch(_batch(1, b"lost"))
            assert not first.holding
            second.commit_batch(_batch(1, b"after"))
        finally:
            second.close()
    finally:
        first.close()
    assert pg_store.read_entries(0, 10) == [b"before", b"after"]


def test_work_only_batches_are_fenced_too(pg_store):
    writer = pg_store.acquire_writer()
    try:
        writer._conn.execute("SELECT pg_advisory_unlock_all()")
        writer._conn.commit()
        with pytest.raises(SequencerLockHeld):
            writer.commit_batch(BatchWrite(first_index=0, work=[lambda tx: None]))
    finally:
        writer.close()


# -- the sequencer over a writer that loses its connection or its lock --------------------------------------------

@pytest.fixture
def signer():
    return parse_signer_key(generate_signer_key("test.example/log")[0])


async def _until_written(sequencer, entry: bytes, seconds: float = 15.0):
    """Submit `entry` until it is acknowledged, as a producer retries 503s; its receipt and how long it took."""
    started = time.monotonic()
    while True:
        try:
            return await sequencer.submit([entry]), time.monotonic() - started
        except StorageUnavailable:
            if time.monotonic() - started > seconds:
                raise
            await asyncio.sleep(0.02)


def _terminate(store, pid: int) -> None:
    with psycopg.connect(_sessions_url(store), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_the_sequencer_writes_again_after_its_backend_is_terminated(pg_store, signer):
    async def scenario():
        sequencer = Sequencer(pg_store, pg_store.acquire_writer(), signer)
        await sequencer.start()
        try:
            acknowledged = [await sequencer.submit([b"before"])]
            for round_ in range(3):
                _terminate(pg_store, sequencer._writer._conn.info.backend_pid)
                with pytest.raises(StorageUnavailable):  # the first batch after it: outcome unknown, never acknowledged
                    await sequencer.submit([b"lost %d" % round_])
                receipt, _ = await _until_written(sequencer, b"after %d" % round_)
                acknowledged.append(receipt)
                assert sequencer.unavailable is None
            return acknowledged, sequencer.stats.batch_failures
        finally:
            await sequencer.close()

    acknowledged, failures = asyncio.run(scenario())
    assert failures == 3
    for receipt in acknowledged:
        stored = pg_store.read_entry(receipt.first_index)
        assert stored.leaf_hash == receipt.leaf_hashes[0]
    state = load_tree_state(pg_store, signer)
    assert state.published.size == pg_store.entry_count() == acknowledged[-1].first_index + 1


def test_a_sequencer_that_lost_its_lock_to_another_writer_commits_nothing_until_it_has_it_again(pg_store, signer):
    async def scenario():
        sequencer = Sequencer(pg_store, pg_store.acquire_writer(), signer)
        await sequencer.start()
        try:
            await sequencer.submit([b"before"])
            conn = sequencer._writer._conn
            conn.execute("SELECT pg_advisory_unlock_all()")  # the writer thread is idle: no batch is in flight
            conn.commit()
            other = pg_store.acquire_writer()
            with pytest.raises(StorageUnavailable):
                await sequencer.submit([b"fenced off"])
            await asyncio.sleep(0.3)
            assert sequencer.unavailable == LOCK_HELD_ELSEWHERE
            with pytest.raises(StorageUnavailable):
                await sequencer.submit([b"refused"])
            size_meanwhile = pg_store.entry_count()
            other.close()
            receipt, _ = await _until_written(sequencer, b"after")
            return size_meanwhile, receipt
        finally:
            await sequencer.close()

    size_meanwhile, receipt = asyncio.run(scenario())
    assert size_meanwhile == 1
    assert pg_store.read_entries(0, 10) == [b"before", b"after"] and receipt.first_index == 1


def test_a_sequencer_that_finds_the_log_grown_by_another_writer_stops_for_good(pg_store, signer):
    async def scenario():
        sequencer = Sequencer(pg_store, pg_store.acquire_writer(), signer)
        await sequencer.start()
        try:
            await sequencer.submit([b"before"])
            _terminate(pg_store, sequencer._writer._conn.info.backend_pid)
            # Another server on the same database (and key) takes the lock at once and writes.
            other = Sequencer(pg_store, _acquire_when_free(pg_store), signer)
            await other.start()
            await other.submit([b"by the other server"])
            with pytest.raises(StorageUnavailable):
                await sequencer.submit([b"lost"])
            await other.close()
            deadline = time.monotonic() + 15
            while sequencer.broken is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            # for good: refused as unavailable (503, never 500), the reason naming the stop, until a restart
            with pytest.raises(StorageUnavailable) as refused:
                await sequencer.submit([b"refused"])
            assert refused.value.reason.startswith("stopped: ")
            return sequencer.broken
        finally:
            await sequencer.close()

    broken = asyncio.run(scenario())
    assert "not the tree this writer committed" in str(broken)
    assert pg_store.read_entries(0, 10) == [b"before", b"by the other server"]


async def _until(condition, seconds: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_an_idle_sequencer_notices_a_lost_lock_at_once_and_says_so(pg_store, signer):
    """No write comes to find out: the idle writer asks the database every second, so `unavailable` (and /readyz)
    tells the truth, and the writer takes the lock back when it is free."""
    async def scenario():
        sequencer = Sequencer(pg_store, pg_store.acquire_writer(), signer)
        await sequencer.start()
        try:
            await sequencer.submit([b"before"])
            writer = sequencer._writer
            with writer._lock:  # not while the writer thread checks its connection
                writer._conn.execute("SELECT pg_advisory_unlock_all()")
                writer._conn.commit()
            other = _acquire_when_free(pg_store)
            noticed = await _until(lambda: sequencer.unavailable == LOCK_HELD_ELSEWHERE)
            other.close()
            await _until(lambda: sequencer.unavailable is None)
            receipt = await sequencer.submit([b"after"])
            return noticed, receipt
        finally:
            await sequencer.close()

    noticed, receipt = asyncio.run(scenario())
    assert noticed < 5 and receipt.first_index == 1


def test_an_idle_sequencer_whose_backend_is_terminated_reconnects_before_the_next_write(pg_store, signer):
    async def scenario():
        sequencer = Sequencer(pg_store, pg_store.acquire_writer(), signer)
        await sequencer.start()
        try:
            await sequencer.submit([b"before"])
            lost = sequencer._writer
            _terminate(pg_store, lost._conn.info.backend_pid)
            await _until(lambda: sequencer._writer is not lost and sequencer.unavailable is None)
            failures = sequencer.stats.batch_failures
            return await sequencer.submit([b"after"]), failures
        finally:
            await sequencer.close()

    receipt, failures = asyncio.run(scenario())
    assert failures == 0 and receipt.first_index == 1  # the write after it found a writer ready


def test_a_failed_commit_that_landed_after_all_is_recorded_beside_the_key_once_reloaded(pg_store, signer, tmp_path):
    from log.signed_history import SignedHistory
    from tests.test_sequencer import FaultyWriter

    history = SignedHistory(tmp_path / "log.state", signer, None)

    async def scenario():
        writer = FaultyWriter(pg_store.acquire_writer(), fail_on_call=3, persisted=True)
        sequencer = Sequencer(pg_store, writer, signer, history=history)
        await sequencer.start()
        try:
            await sequencer.submit([b"before"])
            with pytest.raises(StorageError):
                await sequencer.submit([b"landed after all"])
            await _until(lambda: sequencer.published.size == 2)
            return sequencer.published
        finally:
            await sequencer.close()

    try:
        published = asyncio.run(scenario())
        assert (history.last.size, history.last.root_hash) == (2, published.root_hash)
    finally:
        history.close()


def test_postgresql_connections_give_up_after_the_connect_timeout():
    """A reconnect attempt to a host that drops packets must fail in bounded time, not the kernel's TCP timeout:
    every connection of the log's engines (the writer's and a read-only one) carries libpq's connect_timeout."""
    from log import defaults
    from log.storage.engine import make_engine, normalize_database_url

    with fresh_database() as url:
        for read_only in (False, True):
            engine = make_engine(normalize_database_url(url), read_only=read_only)
            try:
                with engine.connect() as conn:
                    parameters = conn.connection.dbapi_connection.info.get_parameters()
                assert parameters.get("connect_timeout") == str(defaults.DATABASE_CONNECT_TIMEOUT), parameters
            finally:
                engine.dispose()
