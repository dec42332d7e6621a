"""log/signed_history.py: the record of what the key signed, and the start-up checks that keep a log from forking."""

from __future__ import annotations

import asyncio
import os

import pytest

from log.errors import ForkRefused
from log.keys import write_signer_key
from log.note_keys import generate_signer_key, parse_signer_key
from log.service import Log, LogConfig
from log.signed_history import SignedHistory, SignedRecord, check_database, history_path, read_record, root_at
from log.storage import StoredCheckpoint
from log.checkpoint import Checkpoint, sign_checkpoint
from tests.reference_tree import mth


def _signer(origin="test.example/log"):
    return parse_signer_key(generate_signer_key(origin)[0])


def _stored(signer, size, root=b"\x01" * 32):
    return StoredCheckpoint(size, root, sign_checkpoint(Checkpoint(signer.name, size, root), signer), 0)


def test_the_record_survives_a_torn_slot_and_keeps_the_newest(tmp_path):
    signer = _signer()
    path = tmp_path / "log.state"
    history = SignedHistory(path, signer, None)
    for size in range(1, 6):
        history.record(size, bytes([size]) * 32)
    history.close()
    assert read_record(path, signer) == SignedRecord(5, b"\x05" * 32)
    # A crash tore the slot written last (size 5): the other slot (size 4) is still whole.
    data = bytearray(path.read_bytes())
    newest = 64 * (5 % 2)
    data[newest + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert read_record(path, signer) == SignedRecord(4, b"\x04" * 32)
    # Reopened, it counts on from the intact slot and overwrites the torn one.
    history = SignedHistory(path, signer, SignedRecord(4, b"\x04" * 32))
    history.record(6, b"\x06" * 32)
    history.close()
    assert read_record(path, signer) == SignedRecord(6, b"\x06" * 32)


def test_a_record_of_another_key_or_with_no_intact_slot_is_refused(tmp_path):
    signer = _signer()
    path = tmp_path / "log.state"
    history = SignedHistory(path, signer, None)
    history.record(1, b"\x01" * 32)
    history.close()
    with pytest.raises(ForkRefused, match="records checkpoints of key"):
        read_record(path, _signer())
    path.write_bytes(os.urandom(128))
    with pytest.raises(ForkRefused, match="no readable record"):
        read_record(path, signer)
    assert read_record(tmp_path / "absent", signer) is None


@pytest.mark.parametrize("stored_size, root, message", [
    (None, None, "is empty"),
    (3, b"\x07" * 32, "holds only size 3"),
    (5, b"\x08" * 32, "another tree at that size"),
])
def test_check_database_refuses_what_would_fork(tmp_path, stored_size, root, message):
    signer = _signer()
    stored = None if stored_size is None else _stored(signer, stored_size, root)
    with pytest.raises(ForkRefused, match=message):
        check_database(signer, SignedRecord(5, b"\x07" * 32), stored, "db", key_file=tmp_path / "log.key")


def test_check_database_accepts_the_same_tree_and_a_database_ahead_of_the_record(tmp_path):
    signer = _signer()
    record = SignedRecord(5, b"\x07" * 32)
    key_file = tmp_path / "log.key"
    check_database(signer, record, _stored(signer, 5, b"\x07" * 32), "db", key_file=key_file)
    check_database(signer, record, _stored(signer, 9), "db", key_file=key_file, root_at_size={5: b"\x07" * 32}.get)
    # Ahead, but not over the tree the key signed at 5.
    with pytest.raises(ForkRefused, match="another tree"):
        check_database(signer, record, _stored(signer, 9), "db", key_file=key_file,
                       root_at_size={5: b"\x09" * 32}.get)
    check_database(signer, None, None, "db", key_file=key_file)  # a new log
    check_database(None, None, None, "db", key_file=key_file)  # a new log, its key still to be made


def test_check_database_refuses_another_keys_log(tmp_path):
    other = _signer()
    with pytest.raises(ForkRefused, match="did not sign"):
        check_database(_signer(), None, _stored(other, 2), "db", key_file=tmp_path / "log.key")
    with pytest.raises(ForkRefused, match="already holds the log test.example/log of size 2"):
        check_database(None, None, _stored(other, 2), "db", key_file=tmp_path / "log.key")


def test_the_record_follows_every_commit_and_a_refused_open_creates_nothing(tmp_path):
    config = LogConfig(data_dir=tmp_path / "data", origin="test.example/log")
    key_file = config.resolved_key_file()

    async def scenario():
        log = await Log.open(config)
        try:
            assert read_record(history_path(key_file), log.signer) == SignedRecord(0, log.checkpoint.root_hash)
            await log.add_entries([b"a", b"b", b"c"])
            assert log._history.last == SignedRecord(3, log.checkpoint.root_hash)
        finally:
            await log.close()
        assert read_record(history_path(key_file), log.signer).size == 3
        for size in range(4):  # the root at each size, recomputed from the tiles of the tree of 3
            assert root_at(log.store, size) == mth([b"a", b"b", b"c"][:size])

        # The same data dir against another (empty) database: refused, and nothing is made for it.
        elsewhere = tmp_path / "elsewhere" / "log.db"
        with pytest.raises(ForkRefused, match="signed test.example/log at size 3"):
            await Log.open(LogConfig(data_dir=config.data_dir, database_url=f"sqlite:///{elsewhere}"))
        assert not elsewhere.parent.exists()

        # A new data dir over this database: refused before a key is written.
        other = LogConfig(data_dir=tmp_path / "other", origin="test.example/log",
                          database_url=config.resolved_database_url())
        with pytest.raises(ForkRefused, match="already holds the log"):
            await Log.open(other)
        assert not other.data_dir.exists()

        # A key made ahead (keygen) that has signed nothing starts a new log.
        fresh = LogConfig(data_dir=tmp_path / "fresh")
        write_signer_key(fresh.resolved_key_file(), "test.example/fresh")
        log = await Log.open(fresh)
        await log.close()

    asyncio.run(scenario())
