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


# --- writer(): a blob in pieces, never whole in memory -------------------------------------------------------------

def _leftovers(store) -> list:
    return [path for path in store.root.rglob("*") if path.is_file()]


def test_a_writer_stores_pieces_exactly(store):
    pieces = [os.urandom(1 << 20) for _ in range(3)] + [b"tail"]
    digest = hashlib.sha256(b"".join(pieces)).hexdigest()
    writer = store.writer(digest)
    for piece in pieces:
        writer.write(piece)
    assert not store.exists(digest)  # nothing visible before commit
    assert writer.commit() is True
    assert store.get(digest) == b"".join(pieces)
    assert _leftovers(store) == [store._path(digest)]  # no temporary file beside it
    again = store.writer(digest)
    again.write(b"".join(pieces))
    assert again.commit() is False  # idempotent; the existing blob is only checked, not rewritten


def test_a_writer_whose_bytes_do_not_match_leaves_nothing(store):
    writer = store.writer(DIGEST)
    writer.write(DATA + b"!")
    with pytest.raises(BlobMismatch):
        writer.commit()
    assert not store.exists(DIGEST) and _leftovers(store) == []


def test_an_aborted_writer_leaves_nothing(store):
    writer = store.writer(DIGEST)
    writer.write(DATA[:10])
    writer.abort()
    writer.abort()  # idempotent
    assert not store.exists(DIGEST) and _leftovers(store) == []


def test_a_writer_refuses_more_than_the_maximum(store, monkeypatch):
    monkeypatch.setattr("log.blobs.MAX_BLOB_SIZE", 16)
    writer = store.writer(DIGEST)
    writer.write(b"x" * 16)
    with pytest.raises(InvalidInput):
        writer.write(b"x")
    assert _leftovers(store) == []


def test_the_default_writer_goes_through_put(tmp_path):
    from log.blobs import BlobStore

    class Plain(BlobStore):  # a store that implements only the four methods
        def __init__(self):
            self.inner = FileBlobStore(tmp_path / "plain")

        def put(self, digest, data):
            return self.inner.put(digest, data)

        def get(self, digest):
            return self.inner.get(digest)

        def exists(self, digest):
            return self.inner.exists(digest)

        def delete(self, digest):
            return self.inner.delete(digest)

    plain = Plain()
    writer = plain.writer(DIGEST)
    writer.write(DATA[:5])
    writer.write(DATA[5:])
    assert writer.commit() is True and plain.get(DIGEST) == DATA
