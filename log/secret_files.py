"""Secret files on disk: created once with mode 0600, never overwritten, durable when the call returns.

Every private key and credential the project keeps on disk (the log's signing key, the admin token, a witness's
cosigner keys, the TSA's keys, a producer's seed) is written by `write_secret_file`. Public material (verifier
keys, certificates) is not secret and is written by its callers as they see fit.
"""

from __future__ import annotations

import os
from pathlib import Path

from log.disk import fsync_directory

SECRET_FILE_MODE = 0o600


def write_secret_file(path: str | os.PathLike, data: bytes | str, *, make_parents: bool = False) -> None:
    """Create `path` holding `data` (a str is written as UTF-8), readable and writable by its owner only.

    1. With `make_parents`, the missing parent directories are created (default mode, so the umask applies) and
       each new one's name is fsynced into its parent; without it a missing parent raises FileNotFoundError.
    2. The file is opened with O_CREAT|O_EXCL and mode 0600: it never replaces an existing file, whatever the
       umask the mode is never wider than 0600 (the umask can only narrow it), and of two racing writers exactly
       one succeeds. An existing `path` raises FileExistsError and is left untouched.
    3. All of `data` is written and the file fsynced, then closed. If writing or syncing fails, the file this call
       created is removed before the error is re-raised, so no partial secret is left to be read as a whole one.
    4. The directory holding `path` is fsynced, so the new name survives a crash: when the call returns, both the
       bytes and the directory entry are on disk.
    """
    path = Path(path)
    if make_parents:
        _make_parents(path.parent)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    # Best effort: the file is written and synced by now, and failing over its name alone would leave a secret on
    # disk that its caller believes was never made.
    fsync_directory(path.parent, best_effort=True)


def _make_parents(directory: Path) -> None:
    """`directory.mkdir(parents=True, exist_ok=True)`, then fsync the parent of every directory it created."""
    missing = []
    for d in (directory, *directory.parents):
        if d.is_dir():
            break
        missing.append(d)
    directory.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        fsync_directory(d.parent, best_effort=True)
