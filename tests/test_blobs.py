"""The content-addressed blob store: checked on the way in and out, atomic, idempotent, deletable."""

import hashlib
import os

import pytest

from log.blobs import BlobMismatch, BlobNotFound, FileBlobStore, check_digest
from log.errors import InvalidInput, StorageError

DATA = b"a full prompt, kept apart from the log"
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path):
    return FileBlobStore(tmp_path / "blobs")


def test_put_get_delete(store):
    assert not store.exists(DIGEST)
    assert store.put(DIGEST, DATA) is True
    assert store.put(DIGEST, DATA) is False  # idempotent
    assert store.exists(DIGEST) and store.get(DIGEST) == DATA
    assert store.delete(DIGEST) is True and store.delete(DIGEST) is False
    with pytest.raises(BlobNotFound):
        store.get(DIGEST)


def test_refuses_bytes_that_do_not_match(store):
    with pytest.raises(BlobMismatch):
        store.put(DIGEST, DATA + b"!")
    assert not store.exists(DIGEST)


@pytest.mark.parametrize("name", ["", "A" * 64, "a" * 63, "../" + "a" * 61, "g" * 64])
def test_names_are_digests(store, name):
    with pytest.raises(InvalidInput):
        check_digest(name)
    with pytest.raises(InvalidInput):
        store.get(name)


def test_corruption_on_disk_is_never_served(store):
    store.put(DIGEST, DATA)
    path = store.root / DIGEST[:2] / DIGEST[2:4] / DIGEST
    path.write_bytes(DATA[:-1] + b"?")
    with pytest.raises(StorageError):
        store.get(DIGEST)


def test_no_temporary_files_left_and_crash_leftovers_ignored(store):
    store.put(DIGEST, DATA)
    directory = store.root / DIGEST[:2] / DIGEST[2:4]
    assert os.listdir(directory) == [DIGEST]
    (directory / ".tmp-crashed").write_bytes(b"partial")
    assert store.get(DIGEST) == DATA


def test_empty_blob(store):
    empty = hashlib.sha256(b"").hexdigest()
    store.put(empty, b"")
    assert store.get(empty) == b""
