"""What the log's key has signed, kept beside the key: so that a log never forks by accident.

A key that has signed a checkpoint of one tree must never sign a checkpoint of a different tree of the same origin.
The database alone cannot tell: an empty PostgreSQL database, or one restored from an older backup, looks like a
younger log, and the sequencer would sign size 0 again, or sign sizes it already signed over other entries. So the
key file has a companion, `log.state` (`history_path`): the largest checkpoint (size and root) this key signed and
the log committed. `check_database` compares the database's latest checkpoint with it, before anything is created
and again under the writer lock, and refuses (`ForkRefused`, naming what it found and how to proceed):

(a) the key has signed size n, and the database is empty or holds another tree (its root at size n, recomputed
    from its tiles when it is bigger, is another);
(b) the database holds a log whose checkpoint does not verify with this key (another key, another origin), or the
    data dir has no key at all while the database holds a log (a new key would start a second log over it);
(c) the database is behind: it holds size m < n (restored from an older backup), where the key would sign sizes
    m+1..n again over whatever entries come next.

When the record is written. The sequencer records each committed checkpoint after the commit and before it
publishes it (its step 4b), so every checkpoint anyone was shown is covered. A high-water mark written every N
seconds, or when the size doubles, would not do for (c): a database restored from a backup taken inside that window
(the last N seconds, the last half of the log) would go unnoticed, and a restore to "a few minutes ago" is the
common case. The per-commit write is cheap because it is not a file replacement: one 64-byte `pwrite` into one of
two fixed slots (alternating; each with a counter and a CRC, so a write torn by a crash leaves the other intact):
measured 4-7 us per commit on this 2-core VM, against 2-4 ms for a one-entry SQLite commit (submit to answer) and
~15 ms for a batch of 1,024. It is not fsynced per commit (an fdatasync of it measured ~120 us here, as much as the
commit's own WAL fsync): a thread fdatasyncs it at most once a second when it changed, and on close. What that leaves open: after a power loss the record may lag what was served by up to
about a second; only a restore of the database to a backup taken within that same second would then go unnoticed.

Data dirs made before this record existed have a key and no `log.state`: the record is then taken from the
database's own checkpoint when it verifies with the key, and, when the server is pointed at another database, from
the data dir's own SQLite log (`auditlog.db`) if there is one (the case that forked: a SQLite data dir started
against an empty PostgreSQL database).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from log.checkpoint import open_checkpoint
from log.compact import CompactRange, frontier_node_ids
from log.disk import fsync_directory
from log.errors import ForkRefused, LogError
from log.note import parse_note
from log.note_keys import Signer
from log.tile_nodes import node_hash_from_tile, tile_for_node

logger = logging.getLogger(__name__)

STATE_FILE_NAME = "log.state"
SYNC_INTERVAL = 1.0  # seconds: the longest a recorded checkpoint waits for its fdatasync

_MAGIC = b"ALS1"
# magic, key ID, counter, size, root, CRC32 of the preceding 56 bytes, padding: 64 bytes per slot.
_SLOT = struct.Struct(">4sIQQ32sI4x")
_HEAD, _TAIL = struct.Struct(">4sIQQ32s"), struct.Struct(">I4x")
assert _SLOT.size == _HEAD.size + _TAIL.size == 64

MOVE_HINT = ("to start a new log, use a new --data-dir (a new key) and a new --origin; to move this log to another "
             "database, copy the database there first (`auditlog db copy --from URL --to URL`, which checks the copy) "
             "and start with the same data dir")


@dataclass(frozen=True)
class SignedRecord:
    """The largest committed checkpoint this key signed."""

    size: int
    root_hash: bytes


def history_path(key_file: Path) -> Path:
    """`log.state` beside the key file."""
    return Path(key_file).with_name(STATE_FILE_NAME)


def read_record(path: Path, signer: Signer) -> SignedRecord | None:
    """The record in `path` for `signer`'s key, or None when there is none. A record of another key, or one with no
    intact slot, is refused (ForkRefused): the file says this key has a history, and the history is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    best = None
    for offset in (0, _SLOT.size):
        slot = _parse_slot(data[offset:offset + _SLOT.size])
        if slot is not None and (best is None or slot[1] > best[1]):
            best = slot
    if best is None:
        raise ForkRefused(f"{path} holds no readable record of what the key signed; if the database is the one "
                          f"this key signed, remove {path.name} to take the record from the database")
    key_id, _, size, root = best
    if key_id != signer.key_id:
        raise ForkRefused(f"{path} records checkpoints of key {key_id:08x}, but the key beside it is "
                          f"{signer.name}+{signer.key_id:08x}")
    return SignedRecord(size, root)


def _parse_slot(raw: bytes) -> tuple[int, int, int, bytes] | None:
    """(key ID, counter, size, root) of an intact slot; None for an empty or torn one."""
    if len(raw) != _SLOT.size:
        return None
    magic, key_id, counter, size, root, crc = _SLOT.unpack(raw)
    if magic != _MAGIC or zlib.crc32(raw[:56]) != crc:
        return None
    return key_id, counter, size, root


class SignedHistory:
    """The open record file: `record()` after every commit (on the writer thread), `close()` at shutdown."""

    def __init__(self, path: Path, signer: Signer, last: SignedRecord | None):
        self.path = Path(path)
        self._key_id = signer.key_id
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._counter = self._last_counter()
        self.last = last
        self._dirty = False
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="auditlog-history-sync", daemon=True)
        self._syncer.start()
        if last is not None and self._counter == 0:
            self.record(last.size, last.root_hash)  # a record taken from the database (an older data dir)
            self._sync()

    def _last_counter(self) -> int:
        data = os.pread(self._fd, 2 * _SLOT.size, 0)
        counters = [slot[1] for slot in (_parse_slot(data[:64]), _parse_slot(data[64:128])) if slot is not None]
        return max(counters, default=0)

    def record(self, size: int, root_hash: bytes) -> None:
        """Remember that the key signed, and the log committed, this checkpoint. A pwrite, no fsync (see above)."""
        self._counter += 1
        head = _HEAD.pack(_MAGIC, self._key_id, self._counter, size, root_hash)
        os.pwrite(self._fd, head + _TAIL.pack(zlib.crc32(head)), (self._counter % 2) * _SLOT.size)
        self.last = SignedRecord(size, root_hash)
        self._dirty = True

    def _sync(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self._dirty = False
                os.fdatasync(self._fd)

    def _sync_loop(self) -> None:
        while not self._closing.wait(SYNC_INTERVAL):
            if self._dirty:
                try:
                    self._sync()
                except OSError as exc:  # a full or failing disk: the commits report it themselves
                    logger.error("cannot sync %s: %s", self.path, exc)

    def close(self) -> None:
        self._closing.set()
        self._syncer.join()
        try:
            self._sync()
        finally:
            with self._lock:
                os.close(self._fd)
                self._fd = -1
        fsync_directory(self.path.parent)


def root_at(store, size: int) -> bytes | None:
    """The root of the stored tree's first `size` leaves, from its tiles (a node once complete never changes, so the
    tiles of a bigger tree hold it); None when a tile it needs is missing or too short."""
    hashes = []
    nodes = frontier_node_ids(size)
    places = [tile_for_node(*node) for node in nodes]
    tiles = store.read_tiles({(tid.level, tid.index) for tid, _, _ in places})
    for tid, start, count in places:
        tile = tiles.get((tid.level, tid.index))
        if tile is None or len(tile.data) < (start + count) * 32:
            return None
        hashes.append(node_hash_from_tile(tile.data, start, count))
    return CompactRange(size, hashes).root()


def check_database(signer: Signer | None, record: SignedRecord | None, stored, where: str, *,
                   key_file: Path, root_at_size=None) -> None:
    """Refuse (ForkRefused) to sign on top of `stored`, the database's latest StoredCheckpoint (or None: empty), when
    that could fork the log. `signer` is the data dir's key (None: no key yet), `record` what it signed (None:
    nothing known); `root_at_size(size)` the root of the database's tree at a size (or None: unknown), for a
    database that is ahead of the record. `where` names the database in the message."""
    if signer is None:
        if stored is not None:
            raise ForkRefused(f"the database at {where} already holds the log {_describe(stored)}, and {key_file} "
                              f"does not exist: a new key would start a second log over it; start with the data "
                              f"dir (the key) of that log, or, {MOVE_HINT}")
        return
    signed = (f"this key ({signer.name}+{signer.key_id:08x}, {key_file}) signed {signer.name} at size "
              f"{record.size} (root {record.root_hash.hex()})" if record is not None else None)
    if stored is None:
        if record is not None:
            raise ForkRefused(f"{signed}, but the database at {where} is empty; {MOVE_HINT}")
        return
    try:
        open_checkpoint(stored.note, signer.verifier, signer.name)
    except LogError:
        raise ForkRefused(f"the database at {where} holds the log {_describe(stored)}, which this data dir's key "
                          f"({signer.name}+{signer.key_id:08x}, {key_file}) did not sign; start with the data dir "
                          f"of that log, or, {MOVE_HINT}") from None
    if record is None:
        return
    if stored.size < record.size:
        raise ForkRefused(f"{signed}, but the database at {where} holds only size {stored.size}: restored from an "
                          f"older backup? Signing on would fork the log; restore the newest copy of the database, "
                          f"or, {MOVE_HINT}")
    root = stored.root_hash if stored.size == record.size else (root_at_size(record.size) if root_at_size else None)
    if root is not None and root != record.root_hash:
        raise ForkRefused(f"{signed}, but the database at {where} holds another tree at that size (root "
                          f"{root.hex()}); {MOVE_HINT}")


def _describe(stored) -> str:
    """`<origin> of size N signed by <key name>+<key id>`, from the note as it is stored."""
    try:
        note = parse_note(stored.note)
        origin = note.text.split("\n", 1)[0]
        sig = note.signatures[0]
        return f"{origin} of size {stored.size} signed by {sig.name}+{sig.key_id:08x}"
    except LogError:
        return f"of size {stored.size} (its checkpoint note does not parse)"
