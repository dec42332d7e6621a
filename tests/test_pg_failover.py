"""The PostgreSQL writer when its connection or its advisory lock goes: every commit is fenced (it checks, inside
its own transaction, that this session still holds the sequencer lock), so a writer that lost the lock never
commits, while the writer that took it over does."""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest

from log.errors import SequencerLockHeld, StorageError
from log.hashing import hash_leaf
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

