"""Static publishing (`auditlog serve --publish-dir DIR`): the C2SP tlog-tiles read API as files in a directory, for
any static web server, CDN or object store to serve.

`TilePublisher` runs in the log server's event loop. Every `interval` seconds it looks at the log's latest
checkpoint; when the tree grew since the checkpoint DIR holds (or, with witnesses, the checkpoint's cosignatures
changed), it writes

    tile/<L>/<N>[.p/<W>]        every hash tile that changed between the two sizes (log/tiles.py tiles_grown)
    tile/entries/<N>[.p/<W>]    likewise the entry bundles, only when asked for (a public log: they hold contents)
    checkpoint                  last, once every tile it needs is in place

with exactly the bytes `GET /tile/...` and `GET /checkpoint` answer for that checkpoint: the Log's own tile reads,
and the note as /checkpoint serves it (the log's signature, then the cosignatures gathered so far).

Each file is written atomically: a temporary file beside it (`.<name>.tmp`), fsync, rename; the directories the
round wrote into are synced before the checkpoint is renamed into place. A reader (or a crash) therefore sees the
old checkpoint or the new one, each with all of its tiles. A round that fails half-way (disk full) leaves the old
checkpoint, and is tried again from its size, with backoff; it never stops or slows the log.

Full tiles are written once (serve them as immutable). Partial tiles are written at `.p/<W>` for every checkpoint
published, and kept until the full tile is: tlog-tiles lets a log delete a partial tile once the full one exists,
so the `.p/` directory of each tile that became full is removed right after the checkpoint that needs the full tile
(a client holding an older checkpoint reads the full tile's first W hashes instead, as the spec lets it and
LogClient.tile does). A crash between that checkpoint and the removal leaves those partial files behind: correct
bytes, only disk.

Pruned entries (log/prune.py): a bundle holding an entry a retention run pruned is not written (the log answers
410 for it, and a file cannot): in its place goes `tile/entries/<N>[.p/<W>].pruned.json`, the JSON of that 410
problem (the pruned entries with their deletion entries, and the bundle with those entries as zero bytes), with
each such deletion entry's list at `api/v1/deletions/<index>`, the path the API serves it at, so `auditlog verify`
checks a static copy as it checks the log (api/client/log_client.py reads the `.pruned.json` beside a bundle that is
not there). Every round also looks for entries pruned since the last (pruned_entries.pruned_at): the bundles they
are in, published before, are replaced so (looked for every PRUNED_LOOK_INTERVAL seconds at most).

The directory may lag the log by up to `interval` seconds plus a round's writes; a checkpoint the log published and
replaced within one interval is never written (each published checkpoint still comes with all its partial tiles).

On start, publishing resumes from DIR/checkpoint when it is this log's (its signature verifies with the log's key)
and the log's tree at its size has its root; otherwise (no file, another log's, a tree the log does not hold) the
whole tree is written again from size 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from api.server.background import BackgroundTask
from api.server.problems import problem_body
from log import defaults
from log.checkpoint import open_checkpoint
from log.disk import fsync_directory
from log.audit.retention import deletion_document
from log.errors import EntryPruned, InvalidInput, LogError
from log.sequencer import Published
from log.signed_history import root_at
from log.prune import pruned_since
from log.tiles import TILE_WIDTH, TileID, entry_bundles_grown, tiles_grown

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint"
TILES_PER_WRITE = 64  # tiles read, then written and synced, at a time: a catch-up holds at most this many in memory
FILE_WRITERS = 16  # threads writing and syncing one round's files at once
PRUNED_SUFFIX = ".pruned.json"  # beside a bundle the log answers 410 for: that answer's problem body
PRUNED_CLOCK_MARGIN_MS = 60_000
# How often a round looks for newly pruned entries: the look scans the pruned rows (pruned_at has no index), too
# much for every 0.1 s round; a static copy may so serve a pruned bundle this much longer than the log does.
PRUNED_LOOK_INTERVAL = 5.0


class TilePublisher:
    """Keeps `directory` a static copy of the log's tlog-tiles read API (module docstring).

    `await start()` starts the background task; `await stop()` ends it. `publish_once()` is one round (what the
    task does every `interval` seconds), for tests and manual triggers. `note_for(published)` gives the checkpoint
    file's bytes for a checkpoint (default: the log's signed note; with witnesses, WitnessJob.cosigned_note).
    `pruned_look_interval`: seconds between two looks for newly pruned entries (module docstring).
    """

    def __init__(
        self,
        log,
        directory: str | os.PathLike,
        *,
        entry_bundles: bool,
        interval: float = defaults.PUBLISH_INTERVAL,
        retry_max: float = defaults.PUBLISH_RETRY_MAX,
        note_for: Callable[[Published], bytes] | None = None,
        pruned_look_interval: float = PRUNED_LOOK_INTERVAL,
    ):
        if interval <= 0 or retry_max < interval:
            raise InvalidInput("the publishing interval must be positive and at most the longest retry wait",
                               field="interval")
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InvalidInput(f"the publish directory {directory} exists and is not a directory", field="publish_dir")
        self.log = log
        self.directory = directory
        self.entry_bundles = entry_bundles
        self.interval = interval
        self.retry_max = retry_max
        self._note_for = note_for or (lambda published: published.note)
        self._size: int | None = None  # the size of DIR/checkpoint (None: not read yet)
        self._note: bytes | None = None  # its bytes
        self._behind_since: float | None = None  # when the log was first seen ahead of DIR
        self._started_at = time.monotonic()
        self._last_duration: float | None = None
        self._files = 0
        self._failures = 0
        self._consecutive = 0
        self._last_error = ""
        self._round_lock = asyncio.Lock()
        self._task = BackgroundTask("auditlog-publishing")
        self._writers: concurrent.futures.ThreadPoolExecutor | None = None  # made by the first round that writes
        self._io: asyncio.Future | None = None  # the file work in progress on a thread
        self._pruned_seen = -1  # pruned_entries.pruned_at looked at up to (minus a margin): see _replace_pruned_bundles
        self._deletions_written: set[int] = set()
        self._pruned_looked_at = float("-inf")
        self.pruned_look_interval = pruned_look_interval

    # -- lifetime -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start publishing; where to resume from is read by the first round (a failure there is retried)."""
        self._started_at = time.monotonic()
        self._task.start(self._run)

    async def stop(self) -> None:
        """End the task. A later `start()` reads DIR/checkpoint again: where servers share the log (and DIR), the
        sequencer that took over meanwhile may have published more."""
        await self._task.stop()
        if self._io is not None:  # the files of a cancelled round are still being written: let them finish first
            await asyncio.gather(self._io, return_exceptions=True)
        async with self._round_lock:  # a round called directly
            if self._writers is not None:
                await asyncio.to_thread(self._writers.shutdown)
                self._writers = None
            self._size = self._note = self._behind_since = None

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_once()
                self._consecutive = 0
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except (OSError, LogError) as exc:  # disk full, no permission, the store unreadable: the next round
                delay = self._failed(str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad round must not end publishing
                logger.exception("publishing to %s failed (unexpected: a bug)", self.directory)
                delay = self._failed(f"{type(exc).__name__}: {exc}", logged=True)
            await asyncio.sleep(delay)

    def _failed(self, reason: str, *, logged: bool = False) -> float:
        self._failures += 1
        self._consecutive += 1
        self._last_error = reason
        delay = min(self.retry_max, self.interval * 2 ** self._consecutive)
        if not logged:
            logger.warning("publishing to %s failed (%d in a row), retrying in %.2f s: %s", self.directory,
                           self._consecutive, delay, reason)
        return delay

    # -- one round ------------------------------------------------------------------------------------------
    async def publish_once(self) -> bool:
        """Write the log's latest checkpoint and the tiles it adds, unless DIR holds it already; whether it wrote.

        Raises what failed (OSError for the directory, LogError for the log's store); DIR then still holds its
        previous checkpoint, complete. Rounds never overlap.
        """
        async with self._round_lock:
            if self._size is None:
                self._size, self._note = await self._resume()
            if self.entry_bundles:
                await self._replace_pruned_bundles()
            published = self.log.checkpoint
            note = self._note_for(published)
            if published.size == self._size and note == self._note:
                self._behind_since = None
                return False
            now = time.monotonic()
            if self._behind_since is None:
                self._behind_since = now
            old = self._size
            if published.size < old:  # only a log that lost entries gets here: show what it holds now
                logger.warning("publishing: the log's tree (size %d) is smaller than the one in %s (size %d): "
                               "writing it from size 0", published.size, self.directory, old)
                old = 0
            grown = tiles_grown(old, published.size)
            if self.entry_bundles:
                grown += entry_bundles_grown(old, published.size)
            for start in range(0, len(grown), TILES_PER_WRITE):
                chunk = grown[start:start + TILES_PER_WRITE]
                contents = await asyncio.gather(*(self.log.tile(tile_id) for tile_id in chunk),
                                                return_exceptions=True)
                files, gone = [], []
                for tile_id, data in zip(chunk, contents):
                    if isinstance(data, EntryPruned) and tile_id.level is None:
                        gone.append((tile_id, data))
                    elif isinstance(data, BaseException):
                        raise data
                    else:
                        files.append((tile_id.path(), data))
                files += await self._pruned_files(gone)
                await self._on_thread(self._write_files, files)
            await self._on_thread(self._write_checkpoint, note)
            self._size, self._note = published.size, note
            await self._on_thread(self._remove_partials, [t for t in grown if not t.is_partial])
            self._last_duration = time.monotonic() - now
            self._behind_since = None if self.log.checkpoint.size == published.size else now
            return True

    async def _pruned_files(self, gone: list[tuple[TileID, EntryPruned]]) -> list[tuple[str, bytes]]:
        """For bundles the log answers 410: each bundle's `.pruned.json` and the deletion lists it names."""
        files: list[tuple[str, bytes]] = []
        deletions: set[int] = set()
        for tile_id, pruned in gone:
            files.append((tile_id.path() + PRUNED_SUFFIX, json.dumps(problem_body(pruned)).encode()))
            deletions.update(pruned.pruned.values())
        for deletion in sorted(deletions - self._deletions_written):
            listed = await self.log.read(lambda tx, d=deletion: deletion_document(tx, d))
            if listed is not None:
                files.append((f"api/v1/deletions/{deletion}", json.dumps(listed).encode()))
        return files

    async def _replace_pruned_bundles(self) -> None:
        """Bundles already in DIR that hold entries pruned since the last look: their `.pruned.json` written, then
        the bundle files removed (a reader sees the bundle or its replacement, then only the replacement)."""
        if self._size is None or not self._size:
            return
        now = time.monotonic()
        if now - self._pruned_looked_at < self.pruned_look_interval:
            return
        self._pruned_looked_at = now
        since = self._pruned_seen
        rows = await self.log.read(lambda tx: pruned_since(tx, since))
        if not rows:
            return
        size = self._size
        bundles = sorted({idx // TILE_WIDTH for idx, _ in rows if idx < size})
        ids = [TileID(None, n, min(TILE_WIDTH, size - n * TILE_WIDTH)) for n in bundles]
        contents = await asyncio.gather(*(self.log.tile(tile_id) for tile_id in ids), return_exceptions=True)
        gone = [(tile_id, data) for tile_id, data in zip(ids, contents) if isinstance(data, EntryPruned)]
        for data in contents:
            if isinstance(data, BaseException) and not isinstance(data, EntryPruned):
                raise data
        files = await self._pruned_files(gone)
        await self._on_thread(self._write_files, files)
        await self._on_thread(self._remove_bundles, [tile_id for tile_id, _ in gone])
        self._deletions_written.update(int(path.rsplit("/", 1)[1]) for path, _ in files
                                       if path.startswith("api/v1/deletions/"))
        # pruned_at is each chunk's commit time, the clock of the server that pruned: a margin for another's clock.
        self._pruned_seen = max(at for _, at in rows) - PRUNED_CLOCK_MARGIN_MS

    def _remove_bundles(self, tile_ids: list[TileID]) -> None:
        for tile_id in tile_ids:
            for path in (self.directory / tile_id.path(), self.directory / TileID(None, tile_id.index).path()):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            partials = self.directory / (TileID(None, tile_id.index).path() + ".p")
            if partials.is_dir():
                for partial in partials.iterdir():
                    if not partial.name.endswith(PRUNED_SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            partial.unlink()

    async def _on_thread(self, work, *args):
        """`work(*args)` on a thread. A round cancelled meanwhile does not wait for it, but `stop()` does: no file
        of a stopped publisher is still being written when it starts again (its server taking over again)."""
        self._io = asyncio.ensure_future(asyncio.to_thread(work, *args))
        return await asyncio.shield(self._io)

    async def _resume(self) -> tuple[int, bytes | None]:
        """(size, bytes) of DIR/checkpoint when it is a checkpoint of this log's tree; else (0, None): publish all."""
        try:
            data = await asyncio.to_thread((self.directory / CHECKPOINT_FILE).read_bytes)
        except FileNotFoundError:
            logger.info("publishing: no checkpoint in %s yet: writing the log from size 0", self.directory)
            return 0, None
        try:
            checkpoint, _ = open_checkpoint(data, self.log.signer.verifier, self.log.origin)
        except LogError as exc:
            logger.warning("publishing: %s/%s is not a checkpoint of this log (%s): writing the log from size 0",
                           self.directory, CHECKPOINT_FILE, exc)
            return 0, None
        if checkpoint.size > self.log.size or checkpoint.root_hash != await asyncio.to_thread(
                root_at, self.log.store, checkpoint.size):
            logger.warning("publishing: the checkpoint in %s (size %d) is not one of this log's trees (size %d): "
                           "writing the log from size 0", self.directory, checkpoint.size, self.log.size)
            return 0, None
        logger.info("publishing: %s holds this log's checkpoint of size %d: resuming from there", self.directory,
                    checkpoint.size)
        return checkpoint.size, data

    # -- files (on a worker thread) ---------------------------------------------------------------------------
    def _write_files(self, files: list[tuple[str, bytes]]) -> None:
        """Write each (path under DIR, bytes) atomically, then sync every directory on the way to them (new
        directories' names included), so that the checkpoint written after is never durable before its tiles.

        The files are written on FILE_WRITERS threads at once: fsyncs in parallel share the file system's journal
        commits (ext4: 200 files of 8 KiB in 1.4 s one after the other, 0.12 s on 16 threads)."""
        targets = [(self.directory / relative, data) for relative, data in files]
        touched: set[Path] = set()
        for target, _ in targets:
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            while parent != self.directory.parent and parent not in touched:
                touched.add(parent)
                parent = parent.parent
        pool = self._file_writers()
        list(pool.map(lambda item: _write_atomically(*item), targets))
        list(pool.map(lambda directory: fsync_directory(directory, best_effort=True), touched))
        self._files += len(files)

    def _file_writers(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._writers is None:
            self._writers = concurrent.futures.ThreadPoolExecutor(FILE_WRITERS, thread_name_prefix="auditlog-publish")
        return self._writers

    def _write_checkpoint(self, note: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.directory / CHECKPOINT_FILE, note)
        fsync_directory(self.directory, best_effort=True)
        self._files += 1

    def _remove_partials(self, full: list[TileID]) -> None:
        """Remove the `.p/` directory of each tile in `full` (all full tiles the last checkpoint added)."""
        for tile_id in full:
            partials = self.directory / (tile_id.path() + ".p")
            if partials.is_dir():
                shutil.rmtree(partials, ignore_errors=True)

    # -- metrics --------------------------------------------------------------------------------------------
    def metrics(self) -> dict[str, float | str | None]:
        """For /metrics: whether this server publishes (a standby does not), the files written and failures so far;
        while it publishes, the size DIR holds, how far and for how long it is behind the log, the last round's
        duration."""
        out: dict[str, float | str | None] = {
            "publish_active": 1.0 if self._task.started else 0.0,
            "publish_files_total": float(self._files),
            "publish_failures_total": float(self._failures),
            "publish_consecutive_failures": float(self._consecutive),
            "publish_last_error": self._last_error,
        }
        if not self._task.started and self._size is None:
            return out
        latest = self.log.checkpoint.size
        published = self._size if self._size is not None else 0
        since = self._behind_since if self._behind_since is not None else self._started_at
        out.update({
            "publish_tree_size": float(self._size) if self._size is not None else -1.0,
            "publish_backlog_entries": float(max(0, latest - published)),
            "publish_backlog_seconds": max(0.0, time.monotonic() - since) if latest != published else 0.0,
            "publish_last_round_seconds": self._last_duration,
        })
        return out


def _write_atomically(target: Path, data: bytes) -> None:
    """`target` holds `data` or what it held before, never a part: a temporary file beside it, fsync, rename."""
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, target)
