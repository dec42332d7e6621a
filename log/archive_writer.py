"""Writing an archive of a period of the log from its database (`auditlog archive`): the layout and the checks are
log/archive.py's; this module reads the database (SQLAlchemy Core, through `LogStore.read`) and writes the files.

Apart from log/archive.py so that the verifying side (log/archive.py, api/client/archive.py) imports no database
library: an auditor verifies an archive with the client alone.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from log.archive import (
    BLOBS_DIR, CHECKPOINT_FILE, DELETIONS_DIR, FILE_SYNCERS, FORMAT, MANIFEST_FILE, NO_RECORDS, PRUNED_ROWS_FILE, PRUNED_SUFFIX,
    TIMESTAMPS_DIR, ArchivedRecords, Progress, archive_kind, check_member_name, json_bytes, b64,
    rfc3339, root_from_tiles,
)
from log.bundles import encode_entry_bundle
from log.checkpoint import open_checkpoint
from log.disk import fsync_directory
from log.errors import EntryPruned, InvalidInput, LogError, NotFound, StorageError
from log.hashing import HASH_SIZE, hash_leaves
from log.note_keys import Verifier, parse_verifier_key
from log.prune import pruned_error, pruned_in_range
from log.storage import ReadTransaction
from log.storage.schema import checkpoint_cosignatures, checkpoints, entries, tiles, timestamps
from log.tiles import TILE_WIDTH, TileID, entry_bundles_for_size, tiles_for_size

CHUNK_BUNDLES = 16  # entry bundles read, checked and written at a time: 4,096 entries

@dataclass
class ArchiveSummary:
    """What `write_archive` wrote."""

    path: Path
    origin: str
    from_size: int
    to_size: int
    entries_from: int
    entries: int = 0
    pruned: int = 0
    hash_tiles: int = 0
    entry_bundles: int = 0
    timestamps: int = 0
    cosignatures: int = 0
    blobs: int = 0
    blobs_gone: int = 0
    files: int = 0
    bytes: int = 0
    manifest_sha256: str = ""
    seconds: float = 0.0


class _Sink:
    """Where the archive's files go: `add(name, data)`; `finish()` makes them durable under
    the temporary name, `commit()` renames them into place, `abort()` removes them."""

    def __init__(self, target: Path):
        self.target = target
        self.temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        self.hashes: dict[str, str] = {}
        self.bytes = 0

    def add(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        if self.target.exists():  # appeared meanwhile: never overwrite an archive
            raise InvalidInput(f"{self.target} exists: refusing to overwrite it", field="out")
        os.rename(self.temporary, self.target)
        fsync_directory(self.target.parent, best_effort=True)

    def abort(self) -> None:
        if self.temporary.is_dir():
            shutil.rmtree(self.temporary, ignore_errors=True)
        else:
            self.temporary.unlink(missing_ok=True)

    def _hashed(self, name: str, digest: str, size: int) -> None:
        check_member_name(name)
        if name in self.hashes:
            raise StorageError(f"the archive writer wrote {name} twice (a bug)")
        self.hashes[name] = digest
        self.bytes += size


class _DirectorySink(_Sink):
    def __init__(self, target: Path):
        super().__init__(target)
        self.temporary.mkdir(parents=True)
        self._written: list[Path] = []
        self._directories: set[Path] = {self.temporary}

    def _path(self, name: str) -> Path:
        path = self.temporary / name
        if path.parent not in self._directories:
            path.parent.mkdir(parents=True, exist_ok=True)
            parent = path.parent
            while parent != self.temporary and parent not in self._directories:
                self._directories.add(parent)
                parent = parent.parent
        return path

    def add(self, name: str, data: bytes) -> None:
        self._hashed(name, hashlib.sha256(data).hexdigest(), len(data))
        path = self._path(name)
        path.write_bytes(data)
        self._written.append(path)

    def finish(self) -> None:
        def sync(path: Path) -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        with concurrent.futures.ThreadPoolExecutor(FILE_SYNCERS, thread_name_prefix="auditlog-archive") as pool:
            list(pool.map(sync, self._written))
            list(pool.map(fsync_directory, self._directories))


class _TarSink(_Sink):
    def __init__(self, target: Path, gzip: bool, mtime: float):
        super().__init__(target)
        self._file = open(self.temporary, "xb")
        try:
            # compresslevel 6: gzip's default trade-off; entry contents are often already dense.
            # ustar: every name here fits its 100 bytes, and whole-second times need no PAX header (which cost
            # more than the member's bytes: 0.9 of 7.3 s for 2 x 10^5 entries).
            self._tar = tarfile.open(fileobj=self._file, mode="w:gz" if gzip else "w", format=tarfile.USTAR_FORMAT,
                                     **({"compresslevel": 6} if gzip else {}))
        except BaseException:
            self._file.close()
            raise
        self._mtime = int(mtime)

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o444, self._mtime
        return info

    def add(self, name: str, data: bytes) -> None:
        self._hashed(name, hashlib.sha256(data).hexdigest(), len(data))
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def finish(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            super().abort()


def default_archive_size(tx: ReadTransaction) -> int | None:
    """The default end of an archive: the largest checkpoint the log holds a timestamp or a witness cosignature
    for (a third party vouches for it), else the latest checkpoint; None for a log without a checkpoint."""
    vouched = [row[0] for statement in (select(timestamps.c.size).order_by(timestamps.c.size.desc()).limit(1),
                                        select(checkpoint_cosignatures.c.size)
                                        .order_by(checkpoint_cosignatures.c.size.desc()).limit(1))
               for row in tx.execute(statement)]
    for size in sorted(vouched, reverse=True):
        if tx.execute(select(checkpoints.c.size).where(checkpoints.c.size == size)):
            return size
    latest = tx.execute(select(checkpoints.c.size).order_by(checkpoints.c.size.desc()).limit(1))
    return latest[0][0] if latest else None


def write_archive(store, out: str | os.PathLike, *, log_key: str, from_size: int, to_size: int | None = None,
                  blobs=None, records: ArchivedRecords = NO_RECORDS,
                  pruned_body: Callable[[EntryPruned], dict] | None = None, progress: Progress | None = None,
                  clock: Callable[[], float] = time.time) -> ArchiveSummary:
    """Archive the entries [from_size, to_size) of the log in `store` (a LogStore, opened read-only is enough) to
    `out` (see the module docstring), in one committed state of the database. `log_key` is the log's verifier key (the
    database holds none): the checkpoint must verify with it, and the manifest names it. `to_size` must be the size
    of a checkpoint the log holds; None: `default_archive_size`. `blobs`: the log's BlobStore (None: no blobs are
    archived, every cited blob is listed as gone); `records`: what the personality says of the entries (which are
    pruned and by which deletion, which blobs they cite: log/audit/archive.py); `pruned_body(error)`: the problem
    body the log answers for a bundle holding pruned entries (api/server/problems.py problem_body), which the
    archive holds in the bundle's place; needed only when the range holds pruned entries (else StorageError).

    Raises InvalidInput for a range the log cannot archive (naming the checkpoints nearest to a `to_size` that has
    none) or an `out` that exists; StorageError when the database disagrees with itself (an entry that does not hash
    to its leaf hash, a missing tile or entry: run `auditlog db check`). Nothing is left at `out` on failure.
    """
    started = time.monotonic()
    target = Path(out)
    if target.exists() or target.is_symlink():
        raise InvalidInput(f"{target} exists: an archive is written to a new path only", field="out")
    if not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} is not a directory", field="out")
    if isinstance(from_size, bool) or not isinstance(from_size, int) or from_size < 0:
        raise InvalidInput(f"--from-size must be a non-negative integer, not {from_size!r}", field="from_size")
    verifier = parse_verifier_key(log_key)
    now = clock()
    kind = archive_kind(target)
    sink: _Sink = _DirectorySink(target) if kind == "dir" else _TarSink(target, kind == "tar.gz", now)
    try:
        summary = store.read(lambda tx: _Writer(tx, sink, verifier, from_size, to_size, blobs, records, pruned_body,
                                                progress, now).run())
        sink.finish()
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    summary.path = target
    summary.seconds = time.monotonic() - started
    return summary


class _Writer:
    def __init__(self, tx: ReadTransaction, sink: _Sink, verifier: Verifier, from_size: int, to_size: int | None,
                 blobs, records: ArchivedRecords, pruned_body, progress, now: float):
        self.tx, self.sink, self.blobs, self.progress, self.now = tx, sink, blobs, progress, now
        self.records = records
        self.pruned_body = pruned_body or _no_pruned_body
        self.verifier = verifier
        self.from_size, self.to_size = from_size, to_size

    def run(self) -> ArchiveSummary:
        tx = self.tx
        size = self.to_size if self.to_size is not None else default_archive_size(tx)
        if size is None:
            raise InvalidInput("the log has no checkpoint yet: nothing to archive", field="to_size")
        row = tx.execute(select(checkpoints.c.note, checkpoints.c.root_hash).where(checkpoints.c.size == size))
        if not row:
            raise InvalidInput(f"the log holds no checkpoint of size {size}: {self._nearest(size)}", field="to_size")
        note, root = bytes(row[0][0]), bytes(row[0][1])
        if not 0 <= self.from_size < size:
            raise InvalidInput(f"the range [{self.from_size}, {size}) holds no entry: --from-size must be below the "
                               f"archive's checkpoint size {size}", field="from_size")
        try:
            checkpoint, _ = open_checkpoint(note, self.verifier)
        except LogError as exc:
            raise InvalidInput(f"the checkpoint of size {size} does not verify with the log key given: {exc}",
                               field="log_key") from None
        entries_from = self.from_size - self.from_size % TILE_WIDTH
        summary = ArchiveSummary(self.sink.target, checkpoint.origin, self.from_size, size, entries_from)

        # 1. The checkpoint with its cosignatures, and the timestamp tokens of it.
        lines = tx.execute(select(checkpoint_cosignatures.c.signature_line)
                           .where(checkpoint_cosignatures.c.size == size)
                           .order_by(checkpoint_cosignatures.c.witness, checkpoint_cosignatures.c.key_id))
        summary.cosignatures = len(lines)
        self.sink.add(CHECKPOINT_FILE, note + "".join(line for (line,) in lines).encode())
        stamped = tx.execute(select(timestamps.c.note, timestamps.c.response)
                             .where(timestamps.c.size == size).order_by(timestamps.c.id))
        for number, (stamped_note, response) in enumerate(stamped, start=1):
            self.sink.add(f"{TIMESTAMPS_DIR}/{number}.note", bytes(stamped_note))
            self.sink.add(f"{TIMESTAMPS_DIR}/{number}.tsr", bytes(response))
        summary.timestamps = len(stamped)

        # 2. Every hash tile of the tree of size B (the stored tiles of a bigger tree hold them as prefixes).
        level0 = self._hash_tiles(size, root, summary)

        # 3. The entry bundles of [entries_from, B), each entry checked against its leaf hash.
        pruned, cited = self._bundles(entries_from, size, level0, summary)

        # 4. The deletion lists of the pruned entries' deletions, and the blobs the archived events cite.
        self._deletions(pruned)
        rows = self.records.pruned_rows(self.tx, sorted(pruned)) if pruned else []
        if rows:
            self.sink.add(PRUNED_ROWS_FILE, json_bytes({"rows": rows}))
        gone = self._blobs(cited, summary)

        # 5. The manifest, last: the hash of every file above.
        manifest = {
            "format": FORMAT, "origin": checkpoint.origin, "log_key": self.verifier.verifier_key,
            "from_size": self.from_size, "to_size": size, "entries_from": entries_from, "root_hash": b64(root),
            "created_at": rfc3339(int(self.now * 1000)),
            "counts": {"entries": size - entries_from, "pruned": len(pruned), "hash_tiles": summary.hash_tiles,
                       "entry_bundles": summary.entry_bundles, "cosignatures": summary.cosignatures,
                       "timestamps": summary.timestamps, "blobs": summary.blobs, "blobs_gone": len(gone)},
            "blobs_gone": sorted(gone),
            "files": dict(sorted(self.sink.hashes.items())),
        }
        data = json_bytes(manifest)
        self.sink.add(MANIFEST_FILE, data)
        summary.manifest_sha256 = hashlib.sha256(data).hexdigest()
        summary.entries, summary.pruned, summary.blobs_gone = size - entries_from, len(pruned), len(gone)
        summary.files, summary.bytes = len(self.sink.hashes), self.sink.bytes
        return summary

    def _nearest(self, size: int) -> str:
        below = self.tx.execute(select(checkpoints.c.size).where(checkpoints.c.size < size)
                                .order_by(checkpoints.c.size.desc()).limit(1))
        above = self.tx.execute(select(checkpoints.c.size).where(checkpoints.c.size > size)
                                .order_by(checkpoints.c.size).limit(1))
        near = [str(rows[0][0]) for rows in (below, above) if rows]
        return (f"the nearest are {' and '.join(near)}" if near else "it has none") + \
            " (an archive ends at a signed checkpoint)"

    def _hash_tiles(self, size: int, root: bytes, summary: ArchiveSummary) -> dict[int, bytes]:
        wanted = tiles_for_size(size)
        level0: dict[int, bytes] = {}
        upper: dict[tuple[int, int], bytes] = {}  # levels above 0: 1/256 of the bytes of level 0
        by_level: dict[int, list[TileID]] = {}
        for tile_id in wanted:
            by_level.setdefault(tile_id.level, []).append(tile_id)
        for level, ids in by_level.items():
            for start in range(0, len(ids), 1024):
                chunk = ids[start:start + 1024]
                rows = self.tx.execute(select(tiles.c.idx, tiles.c.data).where(
                    tiles.c.level == level, tiles.c.idx >= chunk[0].index, tiles.c.idx <= chunk[-1].index))
                stored = {idx: bytes(data) for idx, data in rows}
                for tile_id in chunk:
                    data = stored.get(tile_id.index)
                    if data is None or len(data) < tile_id.width * HASH_SIZE:
                        raise StorageError(f"the database lacks {tile_id.path()} of the tree of size {size}: run "
                                           "`auditlog db check`")
                    data = data[: tile_id.width * HASH_SIZE]
                    self.sink.add(tile_id.path(), data)
                    if level == 0:
                        level0[tile_id.index] = data
                    else:
                        upper[(level, tile_id.index)] = data
                    summary.hash_tiles += 1
        if root_from_tiles(size, lambda level, index: level0.get(index) if level == 0 else upper.get((level, index))
                           ) != root:
            raise StorageError(f"the stored tiles do not give the root of the checkpoint of size {size}: run "
                               "`auditlog db check`")
        return level0

    def _bundles(self, start: int, size: int, level0: dict[int, bytes], summary: ArchiveSummary):
        pruned: dict[int, tuple[bytes, int]] = {}
        cited: set[str] = set()
        bundles = [b for b in entry_bundles_for_size(size) if b.index >= start // TILE_WIDTH]
        done = 0
        for first in range(0, len(bundles), CHUNK_BUNDLES):
            chunk = bundles[first:first + CHUNK_BUNDLES]
            low, high = chunk[0].index * TILE_WIDTH, chunk[-1].index * TILE_WIDTH + chunk[-1].width
            rows = self.tx.execute(select(entries.c.idx, entries.c.data)
                                   .where(entries.c.idx >= low, entries.c.idx < high).order_by(entries.c.idx))
            if len(rows) != high - low or rows[0][0] != low or rows[-1][0] != high - 1:
                raise StorageError(f"the database lacks entries in [{low}, {high}): run `auditlog db check`")
            gone = pruned_in_range(self.tx, low, high)
            datas = [bytes(data) for _, data in rows]
            hashes = hash_leaves(datas)
            for bundle in chunk:
                offset = bundle.index * TILE_WIDTH - low
                tile = level0[bundle.index]
                members = datas[offset:offset + bundle.width]
                held = []
                if not gone and b"".join(hashes[offset:offset + bundle.width]) == tile:
                    for member in members:  # the common case: every entry present and hashing right
                        cited.update(self.records.cited_blobs(member))
                    positions = range(0)
                else:
                    positions = range(bundle.width)
                for position in positions:
                    index = low + offset + position
                    expected = tile[position * HASH_SIZE:(position + 1) * HASH_SIZE]
                    if index in gone:
                        if members[position]:
                            raise StorageError(f"entry {index} is recorded as pruned but still has contents")
                        pruned[index] = (expected, gone[index])
                        held.append(index)
                    elif hashes[offset + position] != expected:
                        raise StorageError(f"entry {index} does not hash to its leaf hash in the tiles: run "
                                           "`auditlog db check`")
                    else:
                        cited.update(self.records.cited_blobs(members[position]))
                if held:  # what the log answers 410 for, as a static copy of it has it (api/server/publishing.py)
                    error = pruned_error({index: gone[index] for index in held}, f"GET /{bundle.path()}",
                                         encode_entry_bundle(members))
                    self.sink.add(bundle.path() + PRUNED_SUFFIX, json_bytes(self.pruned_body(error)))
                else:
                    self.sink.add(bundle.path(), encode_entry_bundle(members))
                summary.entry_bundles += 1
                done += bundle.width
            if self.progress is not None:
                self.progress(done, size - start)
        return pruned, cited

    def _deletions(self, pruned: dict[int, tuple[bytes, int]]) -> None:
        """`api/v1/deletions/<index>` of each deletion that pruned an archived entry: what GET /api/v1/deletions/
        {index} answers (its items and their list_sha256), as a static copy of the log (`--publish-dir`) has it."""
        for deletion in sorted({d for _, d in pruned.values()}):
            document = self.records.deletion_document(self.tx, deletion)
            if document is None:
                raise StorageError(f"the deletion entry {deletion} that pruned archived entries lists nothing: run "
                                   "`auditlog db check`")
            self.sink.add(f"{DELETIONS_DIR}/{deletion}", json_bytes(document))

    def _blobs(self, cited: set[str], summary: ArchiveSummary) -> set[str]:
        gone: set[str] = set()
        for digest in sorted(cited):
            try:
                data = self.blobs.get(digest) if self.blobs is not None else None
            except NotFound:
                data = None
            if data is None:
                gone.add(digest)
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                raise StorageError(f"the blob store's {digest} does not hash to its name")
            self.sink.add(f"{BLOBS_DIR}/{digest}", data)
            summary.blobs += 1
        return gone


def _no_pruned_body(error: EntryPruned) -> dict:
    raise StorageError(f"the range holds pruned entries ({error}), and no problem body was given to write in their "
                       "bundles' place")
