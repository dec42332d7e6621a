"""Several servers on one PostgreSQL log, in one process: `Log.open` on a database whose sequencer lock another Log
holds stands by (it reads, refuses writes as retriable, tries for the lock); when the sequencer closes, dies or is
deposed it takes over from what the database holds; the lease's epoch fences off a writer that lost it; a session
that goes quiet for a lease is ended by PostgreSQL and frees the lock.

The same with real processes, SIGKILL and SIGSTOP: tests/e2e/test_ha_failover.py."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time

import psycopg
import pytest

from log.errors import SequencerLockHeld, StorageUnavailable
from log.keys import KEY_FILE_NAME
from log.service import Log, LogConfig
from log.storage import SequencerClaim
from log.storage.engine import upgrade_schema
from log.storage.store import SqlLogStore
from tests.postgres import ADMIN_URL, fresh_database


@pytest.fixture
def database():
    with fresh_database() as url:
        yield url


def _config(tmp_path, name: str, url: str, **overrides) -> LogConfig:
    return LogConfig(data_dir=tmp_path / name, database_url=url, origin="ha.example/log",
                     advertise_url=f"http://{name}.invalid:8080", batch_max_age=0.005, **overrides)


def _share_key(tmp_path, source: str, *targets: str) -> None:
    for target in targets:
        (tmp_path / target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / source / KEY_FILE_NAME, tmp_path / target / KEY_FILE_NAME)


async def _until(condition, seconds: float = 15.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.02)


def _stored_checkpoints(url: str) -> list[tuple[int, bytes]]:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        return [(size, bytes(root)) for size, root in
                conn.execute("SELECT size, root_hash FROM checkpoints ORDER BY size").fetchall()]


def _terminate_writer(url: str, epoch: int) -> None:
    """End the database session that holds the sequencer lock, as an operator (or a network cut) would."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        done = admin.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s", (database,)).fetchall()
    assert done, f"no session of {database} held an advisory lock (epoch {epoch})"


async def _two_servers(tmp_path, database) -> tuple[Log, Log]:
    """Two Logs on one database with one key: the first sequences, the second stands by."""
    first = await Log.open(_config(tmp_path, "one", database))
    _share_key(tmp_path, "one", "two")
    return first, await Log.open(_config(tmp_path, "two", database))


def test_a_second_server_stands_by_reads_and_takes_over_when_the_sequencer_closes(tmp_path, database):
    asyncio.run(_stand_by_and_take_over(tmp_path, database))


async def _stand_by_and_take_over(tmp_path, database):
    first, second = await _two_servers(tmp_path, database)
    roles: list[str] = []

    async def heard(role: str) -> None:
        roles.append(role)

    second.on_role_change(heard)
    try:
        assert (first.role, second.role) == ("sequencer", "standby")
        lease = await second.sequencer_lease()
        assert (lease.epoch, lease.url) == (1, "http://one.invalid:8080")
        receipt = await first.add_entries([b"entry %d" % i for i in range(300)])
        # A standby serves what the database holds: a size a client learned from the sequencer is there.
        assert (await second.entry(299)).data == b"entry 299"
        assert await second.inclusion_proof(5, receipt.checkpoint.size) == \
            await first.inclusion_proof(5, receipt.checkpoint.size)
        with pytest.raises(StorageUnavailable):  # writes: retriable, never a 500
            await second.add_entries([b"refused"])
        assert second.write_unavailable.startswith("standby")

        await first.close()
        await _until(lambda: second.role == "sequencer", what="the standby's takeover")
        assert roles == ["sequencer"]
        assert second.checkpoint.size == 300 and second.checkpoint.root_hash == receipt.checkpoint.root_hash
        more = await second.add_entries([b"after the takeover"])
        assert more.first_index == 300
        lease = await second.sequencer_lease()
        assert (lease.epoch, lease.url) == (2, "http://two.invalid:8080")
    finally:
        await second.close()
        await first.close()
    sizes = [size for size, _ in _stored_checkpoints(database)]
    assert sizes == sorted(set(sizes)) and sizes[-1] == 301


def test_a_sequencer_whose_session_is_ended_steps_down_and_the_log_goes_on_without_a_fork(tmp_path, database):
    asyncio.run(_step_down_and_go_on(tmp_path, database))


async def _step_down_and_go_on(tmp_path, database):
    first, second = await _two_servers(tmp_path, database)
    try:
        await first.add_entries([b"before %d" % i for i in range(10)])
        _terminate_writer(database, 1)
        # Whoever takes the lock next (either server) sequences from what was committed; the other stands by.
        # Until then writes are refused as retriable; a client retries at whichever server sequences now.
        deadline = time.monotonic() + 15
        while True:
            sequencer = first if first.role == "sequencer" else second
            try:
                receipt = await sequencer.add_entries([b"after"])
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "no server took over"
                await asyncio.sleep(0.05)
        assert {first.role, second.role} == {"sequencer", "standby"}
        assert receipt.first_index == 10
        assert (await sequencer.sequencer_lease()).epoch >= 2
    finally:
        await second.close()
        await first.close()
    stored = _stored_checkpoints(database)
    sizes = [size for size, _ in stored]
    assert sizes == sorted(set(sizes)), "one checkpoint per size, sizes increasing"


def test_the_lease_epoch_fences_off_a_writer_that_still_holds_the_lock(database):
    upgrade_schema(database)
    store = SqlLogStore(database)
    try:
        writer = store.acquire_writer(SequencerClaim("http://a.invalid", "a", 3.0))
        try:
            assert writer.epoch == 1
            plain = database.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute("UPDATE sequencer_lease SET epoch = epoch + 1")  # another takeover, as far as the row says
            from tests.test_pg_failover import _batch
            with pytest.raises(SequencerLockHeld):
                writer.commit_batch(_batch(0, b"fenced off by the epoch"))
            assert not writer.holding
        finally:
            writer.close()
        assert store.read_entries(0, 1) == []
    finally:
        store.close()


def test_a_sequencer_session_that_goes_quiet_for_a_lease_is_ended_and_frees_the_lock(database):
    upgrade_schema(database)
    store = SqlLogStore(database)
    try:
        quiet = store.acquire_writer(SequencerClaim("http://a.invalid", "a", 1.0))
        quiet._heartbeat_stop.set()  # as if the process were paused: nothing more reaches its session
        quiet._heartbeat.join()
        with pytest.raises(SequencerLockHeld):
            store.acquire_writer(SequencerClaim("http://b.invalid", "b", 1.0))
        deadline = time.monotonic() + 10
        while True:
            try:
                taker = store.acquire_writer(SequencerClaim("http://b.invalid", "b", 3.0))
                break
            except SequencerLockHeld:
                assert time.monotonic() < deadline, "the quiet session kept the lock"
                time.sleep(0.1)
        try:
            assert taker.epoch == 2 and store.sequencer_lease().url == "http://b.invalid"
            with contextlib.suppress(Exception):  # its connection is gone: the driver says so
                quiet.check()
            assert not quiet.holding
        finally:
            taker.close()
            with contextlib.suppress(Exception):
                quiet.close()
    finally:
        store.close()


def test_a_sequencer_stalled_inside_a_copy_is_ended_by_another_server_after_the_lease(database):
    """A process paused in the middle of a COPY leaves its session 'active', waiting for data: PostgreSQL's idle
    timeouts never end it. Another server ends it once it has waited longer than the lease; nothing of it commits."""
    upgrade_schema(database)
    store = SqlLogStore(database)
    try:
        stalled = store.acquire_writer(SequencerClaim("http://a.invalid", "a", 1.0))
        stalled._heartbeat_stop.set()
        stalled._heartbeat.join()
        cursor = stalled._conn.cursor()
        copying = cursor.copy("COPY entries (idx, data, leaf_hash, received_at) FROM STDIN")
        copy = copying.__enter__()
        copy.write_row((0, b"half sent", b"\x00" * 32, 1))  # and then the process stops sending
        stalled._conn.pgconn.flush()
        assert store.end_stalled_sequencer(30.0) is None  # not yet stalled for a lease
        deadline = time.monotonic() + 10
        while (ended := store.end_stalled_sequencer(1.0)) is None:
            assert time.monotonic() < deadline, "the stalled sequencer's session was never ended"
            time.sleep(0.2)
        assert ended > 0
        while True:
            try:
                taker = store.acquire_writer(SequencerClaim("http://b.invalid", "b", 3.0))
                break
            except SequencerLockHeld:
                assert time.monotonic() < deadline + 5, "the lock was not freed"
                time.sleep(0.1)
        try:
            assert taker.epoch == 2
        finally:
            taker.close()
        with contextlib.suppress(Exception):
            copying.__exit__(None, None, None)
        with contextlib.suppress(Exception):
            stalled.close()
        assert store.read_entries(0, 1) == []
    finally:
        store.close()
