"""A content-addressed blob store for audit payloads (full prompts, outputs, retrieved documents).

Blobs live apart from the log: an event refers to a blob by its SHA-256, so a blob can be deleted (erasure,
retention) without changing any entry, tile or proof. The name of a blob IS its SHA-256 (64 lowercase hex
digits); bytes are checked against it on the way in and on the way out.

`BlobStore` is the contract; `FileBlobStore` keeps blobs on the local disk, and a bucket-backed store can
implement the same four methods later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

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


class FileBlobStore(BlobStore):
    """Blobs as files `<root>/<d[0:2]>/<d[2:4]>/<digest>`.

    A put writes a temporary file in the blob's directory, fsyncs it, renames it over the final name (atomic on
    POSIX) and fsyncs the directory, so after a crash a blob is either complete or absent; temporary files left
    by a crash are never read (their names are not digests).
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
            raise InvalidInput(f"a blob may be at most {MAX_BLOB_SIZE} bytes, not {len(data)}", field="body")
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
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"storing blob {digest} failed: {exc}") from exc
        return True

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
        _fsync_dir(path.parent)
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
