"""A content-addressed blob store for audit payloads (full prompts, outputs, retrieved documents).

Blobs live apart from the log: an event refers to a blob by its SHA-256, so a blob can be deleted (erasure,
retention) without changing any entry, tile or proof. The name of a blob IS its SHA-256 (64 lowercase hex
digits); bytes are checked against it on the way in and on the way out.

`BlobStore` is the contract; `FileBlobStore` keeps blobs on the local disk, and a bucket-backed store can
implement the same methods later. A blob too big to hold in memory is stored through `BlobStore.writer(digest)`:
its bytes go to the store as they come, hashed on the way, and become a blob only if they hash to `digest`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from log.disk import fsync_directory
from log.errors import InvalidInput, NotFound, StorageError

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
MAX_BLOB_SIZE = 64 * 1024 * 1024


class BlobNotFound(NotFound):
    code = "blob-not-found"


class BlobMismatch(InvalidInput):
    """Bytes do not hash to the SHA-256 they were stored or asked for under."""

    code = "blob-hash-mismatch"


def check_digest(digest: str) -> str:
    """`digest` if it is 64 lowercase hex digits; InvalidInput otherwise."""
    if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
        raise InvalidInput(f"a blob name is a SHA-256 in 64 lowercase hex digits, not {digest!r}"[:200],
                           field="sha256")
    return digest


class BlobStore(ABC):
    """Content-addressed bytes. Every method is safe to call from several threads at once (blocking I/O: call
    from a thread pool, not the event loop)."""

    @abstractmethod
    def put(self, digest: str, data: bytes) -> bool:
        """Store `data` under `digest` after checking SHA-256(data) == digest (BlobMismatch if not).

        Atomic: a reader sees either no blob or all of it, never a part. Durable on return. Idempotent: storing
        a blob that exists already changes nothing. Returns True if the blob was new.
        """

    def writer(self, digest: str) -> BlobWriter:
        """A `BlobWriter` storing under `digest` what is written to it, with `put`'s checks and guarantees once
        committed. This default holds the bytes in memory until commit; stores that can do better override it."""
        check_digest(digest)
        return _BufferedWriter(self, digest)

    @abstractmethod
    def get(self, digest: str) -> bytes:
        """The bytes stored under `digest`, checked against it: BlobNotFound if absent; StorageError if the
        stored bytes no longer hash to `digest` (corruption is never served)."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under `digest` (without reading or checking it)."""

    @abstractmethod
    def delete(self, digest: str) -> bool:
        """Remove the blob; durable on return. Returns False if there was none. Idempotent."""


class BlobWriter(ABC):
    """One blob's bytes on their way in: `write()` them in order, then `commit()` (or `abort()`).

    Nothing is visible under the digest before `commit()` returns; after `abort()`, or after any exception from
    `write()` or `commit()`, nothing of these bytes is left in the store. Blocking I/O, like the store's methods.
    """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Add bytes; InvalidInput (and aborted) once the total passes MAX_BLOB_SIZE."""

    @abstractmethod
    def commit(self) -> bool:
        """Check SHA-256(all bytes) == digest (BlobMismatch, aborted, if not) and store them as `put` does: atomic,
        durable on return, idempotent. Returns True if the blob was new."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written. Idempotent; harmless after commit."""


class _BufferedWriter(BlobWriter):
    def __init__(self, store: BlobStore, digest: str):
        self._store, self._digest, self._data = store, digest, bytearray()

    def write(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > MAX_BLOB_SIZE:
            self.abort()
            raise _too_big(len(self._data))

    def commit(self) -> bool:
        try:
            return self._store.put(self._digest, bytes(self._data))
        finally:
            self.abort()

    def abort(self) -> None:
        self._data = bytearray()


def _too_big(size: int) -> InvalidInput:
    return InvalidInput(f"a blob may be at most {MAX_BLOB_SIZE} bytes, not {size}", field="body")


class FileBlobStore(BlobStore):
    """Blobs as files `<root>/<d[0:2]>/<d[2:4]>/<digest>`.

    A put writes a temporary file in the blob's directory, fsyncs it, renames it over the final name (atomic on
    POSIX) and fsyncs the directory, so after a crash a blob is either complete or absent; temporary files left
    by a crash are never read (their names are not digests). A `writer()` does the same with bytes that come in
    pieces: each piece is hashed and appended to the temporary file as it comes (memory: one piece), and commit
    checks the hash before the fsync and rename. When the blob exists already, the pieces are only hashed.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, digest: str, data: bytes) -> bool:
        path = self._path(digest)
        if len(data) > MAX_BLOB_SIZE:
            raise _too_big(len(data))
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise BlobMismatch(f"the bytes hash to {actual}, not {digest}", field="sha256")
        if path.exists():
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            fsync_directory(path.parent)
        except OSError as exc:
            raise StorageError(f"storing blob {digest} failed: {exc}") from exc
        return True

    def writer(self, digest: str) -> BlobWriter:
        return _FileBlobWriter(self._path(digest))

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None
        except OSError as exc:
            raise StorageError(f"reading blob {digest} failed: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise StorageError(f"blob {digest} is corrupt on disk: its bytes no longer match its hash")
        return data

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def delete(self, digest: str) -> bool:
        path = self._path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"deleting blob {digest} failed: {exc}") from exc
        fsync_directory(path.parent)
        return True


class _FileBlobWriter(BlobWriter):
    """Pieces appended to `.tmp-*` in the blob's directory while hashed; commit = check, fsync, rename, fsync dir."""

    def __init__(self, path: Path):
        self._path = path
        self._hash = hashlib.sha256()
        self._size = 0
        self._file = self._tmp = None
        self._existed = path.exists()  # then the bytes are only checked, not written again
        if not self._existed:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, self._tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                self._file = os.fdopen(fd, "wb")
            except OSError as exc:
                self.abort()
                raise StorageError(f"storing blob {path.name} failed: {exc}") from exc

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_BLOB_SIZE:
            self.abort()
            raise _too_big(self._size)
        self._hash.update(data)
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as exc:
                self.abort()
                raise StorageError(f"storing blob {self._path.name} failed: {exc}") from exc

    def commit(self) -> bool:
        digest = self._path.name
        actual = self._hash.hexdigest()
        if actual != digest:
            self.abort()
            raise BlobMismatch(f"the bytes hash to {actual}, not {digest}", field="sha256")
        if self._existed or self._path.exists():
            self.abort()
            return False
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self._path)
            self._tmp = None
            fsync_directory(self._path.parent)
        except OSError as exc:
            self.abort()
            raise StorageError(f"storing blob {digest} failed: {exc}") from exc
        return True

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None
