"""Making names durable: the fsync of a directory, after a file in it was created, renamed or removed.

A file's own fsync makes its bytes durable, not its name: until the directory holding it is synced too, a crash can
lose the entry that points at the file. Every writer in the project that promises durability (blobs, the signed
history beside the log's key, secret files) calls this one function after its rename or create.
"""

from __future__ import annotations

import os


def fsync_directory(directory: str | os.PathLike, *, best_effort: bool = False) -> None:
    """fsync `directory`. Raises OSError when it cannot be opened or synced, unless `best_effort`: then a directory
    that cannot be opened for reading (Windows; no read permission) is passed over, for callers whose file is
    already written and synced and who would rather keep it than fail over its name alone."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
