"""The Log object that `api` and `witness` call: submission through the sequencer, reads and proofs from storage.

Reads never touch the writer: they run against committed state (on a thread pool, or inline where the store says a
read is cheaper than a thread hop). Proofs are built from stored tiles only (never from entries) by log/prover.py,
which caches what never changes: views of full tiles, the right edge, folded proof elements. Full tiles and full
entry bundles are cached for tile GETs.

With `LogConfig.read_database_url` (a PostgreSQL hot standby of the primary), the reads go to that replica and the
checkpoint served is the replica's (log/replica.py says why that keeps every answer consistent); writes, and reads
that write decisions rest on (`read(..., primary=True)`, proofs for write receipts), stay on the primary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from log import defaults, proofs
from log.checkpoint import open_checkpoint
from log.errors import (
    ForkRefused, InvalidInput, LogError, NotFound, SequencerLockHeld, StorageUnavailable, Unavailable,
)
from log.keys import KEY_FILE_NAME, load_signer, read_signer_key, write_signer_key
from log.note_keys import Signer, Verifier
from log.sequencer import BatchReceipt, IdempotencyKey, Published, Sequencer
from log.signed_history import SignedHistory, SignedRecord, check_database, history_path, read_record, root_at
from log.stats import LogStats
from log.storage import LogStore, RowInsert, RowUpdate, SequencerClaim, StoredEntry
from log.storage.faults import storage_fault
from log.storage.engine import normalize_database_url, shown_url as _shown_url, sqlite_url_for, upgrade_schema
from log.storage.store import SqlLogStore, peek_latest_checkpoint
from log.prover import LRU, Prover
from log.replica import ReplicaHead, ReplicaStatus, check_read_database_url
from log.bundles import encode_entry_bundle
from log.prune import pruned_at, pruned_error
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID

HASH_SIZE = 32
logger = logging.getLogger(__name__)


@dataclass
class LogConfig:
    """Everything needed to open a log. Defaults give the embedded SQLite log in `data_dir`."""

    data_dir: Path = Path(defaults.DATA_DIR)
    database_url: str | None = None  # default: sqlite in data_dir
    read_database_url: str | None = None  # a PostgreSQL hot standby of database_url that answers the reads
    origin: str | None = None  # default: the key's name; required to create a key
    key_file: Path | None = None  # default: data_dir / log.key
    batch_size: int = defaults.BATCH_SIZE
    batch_max_age: float = defaults.BATCH_MAX_AGE
    batch_linger: float = defaults.BATCH_LINGER
    max_pending: int = defaults.MAX_PENDING
    migrate: bool = True
    fold_cache_size: int = defaults.FOLD_CACHE_SIZE  # proof elements over the imperfect right edge, 32 bytes each
    tile_cache_size: int = defaults.TILE_CACHE_SIZE
    # Where several servers share a PostgreSQL log: the URL the others reach this one at while it sequences (None:
    # it takes no forwarded requests), and the lease (seconds without a word before its session, and so its lock,
    # is ended by the database).
    advertise_url: str | None = None
    lease_seconds: float = defaults.SEQUENCER_LEASE_SECONDS

    def resolved_database_url(self) -> str:
        return self.database_url or sqlite_url_for(self.data_dir / "auditlog.db")

    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / KEY_FILE_NAME


def _record_of_data_dir(config: LogConfig, signer: Signer) -> SignedRecord | None:
    """For a data dir from before log.state (log/signed_history.py): what its key signed, as its own SQLite log
    says, when the server is pointed at another database. None when there is no such log or another key signed it."""
    own = sqlite_url_for(config.data_dir / "auditlog.db")
    if config.database_url is None or normalize_database_url(config.database_url) == own:
        return None
    stored = peek_latest_checkpoint(own)
    if stored is None:
        return None
    try:
        open_checkpoint(stored.note, signer.verifier, signer.name)
    except LogError:
        return None
    return SignedRecord(stored.size, stored.root_hash)


@dataclass(frozen=True)
class PublicKeyOnly:
    """The key of a Log that signs nothing (`Log.open_archive`): the name, verifier key and verifier of a Signer."""

    verifier: Verifier

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def verifier_key(self) -> str:
        return self.verifier.verifier_key

    @property
    def key_id(self) -> int:
        return self.verifier.key_id


class StoredHead:
    """The latest checkpoint as the database holds it, for a Log without a sequencer (a read replica in another
    process). Re-read when older than `max_age` seconds, or on demand: a size a client learned from the writer is
    always committed before the writer answered, so a reader asked about a bigger size re-reads and finds it."""

    def __init__(self, store: LogStore, max_age: float = 0.05):
        self._store = store
        self._max_age = max_age
        self._lock = threading.Lock()
        self._published: Published | None = None
        self._read_at = float("-inf")

    def latest(self) -> Published:
        if time.monotonic() - self._read_at > self._max_age:
            return self.refresh()
        return self._published  # type: ignore[return-value]

    def refresh(self) -> Published:
        with self._lock:
            read_at = time.monotonic()
            stored = self._store.latest_checkpoint()
            if stored is None:
                raise Unavailable("the log has not published a checkpoint yet")
            if self._published is None or stored.size >= self._published.size:
                self._published = Published(stored.size, stored.root_hash, stored.note)
            self._read_at = read_at
            return self._published


class Log:
    """One transparency log. Create with `Log.open(config)` inside a running event loop; `close()` when done."""

    def __init__(self, store: LogStore, signer: Signer, config: LogConfig, *, key_created: bool = False):
        self.store = store
        self.read_store = store  # where the reads go: the primary, or its hot standby (_open_replica)
        self._replica: ReplicaHead | None = None
        self.signer = signer
        self.config = config
        self.key_created = key_created
        self.stats = LogStats()
        self._sequencer: Sequencer | None = None
        self._head: StoredHead | None = None  # a reader's checkpoint source (no sequencer)
        self._history: SignedHistory | None = None  # what the key signed (a writer's)
        self._reader = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="auditlog-read")
        self._full_tiles = LRU(config.tile_cache_size)  # for tile GETs; proofs keep their own views
        # A view of a full tile holds its 8 KiB and its 8 KiB of stored interior nodes. As many views as blocks of a
        # 2^20 tree (4,096 by default, ~64 MiB when all are full), and their path tops for one tree size (~1 KiB
        # each): with half as many views and 1,024 tops, a random inclusion proof at 2^20 re-read an evicted tile
        # every other time and re-proved its path above the block 3 times in 4: 90-95 us a proof in process, 22-37 now.
        self._prover = Prover(tile_views=max(64, config.tile_cache_size), folds=config.fold_cache_size)
        # (tree size, 256-leaf block) -> the proof elements above the block
        self._shared_path_tops = LRU(max(1024, config.tile_cache_size))
        self._inline_tile_reads = store.cheap_tile_reads
        self._full_bundles = LRU(max(64, config.tile_cache_size // 16))
        # Several servers on one PostgreSQL log (see `open`): this server's claim to sequence it, the task waiting to
        # take over while it stands by, what keeps it from ever taking over (a fork found), and who to tell.
        self._claim: SequencerClaim | None = None
        self._standing_by: asyncio.Task | None = None
        self._refused: Exception | None = None
        self._role_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._closing = False
        self._read_only: str | None = None  # why a Log over an archive takes no writes (open_archive)

    @classmethod
    async def open(cls, config: LogConfig) -> "Log":
        """Check that signing on cannot fork the log, then migrate (if asked), take the sequencer lock, check again,
        create the key if there is none, reconcile and start.

        The first check reads only (the key, its record, the database's latest checkpoint, if the database exists):
        a start it refuses (ForkRefused) creates nothing, not the data dir, the database, the schema nor a key. The
        second runs under the writer lock, where nobody else can write, before the first signature."""
        url = config.resolved_database_url()
        if config.read_database_url is not None:  # refused before anything is created
            check_read_database_url(url, config.read_database_url)
        key_file = config.resolved_key_file()
        loop = asyncio.get_running_loop()
        signer = load_signer(key_file, config.origin)
        if signer is None and config.origin is None:
            raise InvalidInput("no log key yet and no origin given to create one", field="origin")
        record = read_record(history_path(key_file), signer) if signer is not None else None
        if signer is not None and record is None:
            record = await loop.run_in_executor(None, _record_of_data_dir, config, signer)
        stored = await loop.run_in_executor(None, peek_latest_checkpoint, url)
        where = _shown_url(url)
        check_database(signer, record, stored, where, key_file=key_file)

        if config.migrate:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            await loop.run_in_executor(None, upgrade_schema, url)
        store = SqlLogStore(url)
        claim = SequencerClaim(config.advertise_url, f"{socket.gethostname()} pid {os.getpid()}",
                               config.lease_seconds)
        try:
            writer = await loop.run_in_executor(None, store.acquire_writer, claim)
        except SequencerLockHeld:
            if store.dialect != "postgresql" or signer is None:
                store.close()
                if signer is None:
                    raise InvalidInput(f"another server sequences the log at {where}, and {key_file} does not exist: "
                                       "a server that stands by needs the log's key (copy log.key from the "
                                       "sequencer's data dir)", field="key_file") from None
                raise
            log = cls(store, signer, config)
            log._claim = claim
            log._head = StoredHead(store)
            try:
                await log._open_replica()
            except BaseException:
                store.close()
                raise
            log._stand_by()
            return log
        except BaseException:
            store.close()
            raise
        log = None
        try:
            log = cls(store, signer, config)
            log._claim = claim
            await log._take_over(writer, record, new_key_origin=config.origin if signer is None else None)
            await log._open_replica()
        except BaseException:
            if log is not None and log._history is not None:
                log._history.close()
            writer.close()
            store.close()
            raise
        return log

    async def _take_over(self, writer, record: SignedRecord | None, new_key_origin: str | None = None) -> None:
        """Start sequencing with `writer` (the sequencer lock is held): check that signing on cannot fork the log,
        create the key if asked (`new_key_origin`: the first start of a new log), start the sequencer."""
        loop = asyncio.get_running_loop()
        store, config = self.store, self.config
        key_file = config.resolved_key_file()
        # Under the lock: what is stored now is what the sequencer will extend.
        stored = await loop.run_in_executor(None, store.latest_checkpoint)
        check_database(None if new_key_origin else self.signer, record, stored, _shown_url(store.url),
                       key_file=key_file, root_at_size=lambda size: root_at(store, size))
        if new_key_origin is not None:
            self.signer = write_signer_key(key_file, new_key_origin)
            self.key_created = True
        if record is None and stored is not None:
            record = SignedRecord(stored.size, stored.root_hash)  # an older data dir: its first record
        if self._history is None:
            self._history = SignedHistory(history_path(key_file), self.signer, record)
        sequencer = Sequencer(
            store, writer, self.signer,
            batch_size=config.batch_size, batch_max_age=config.batch_max_age,
            batch_linger=config.batch_linger, max_pending=config.max_pending, stats=self.stats,
            history=self._history, on_deposed=self._deposed if store.dialect == "postgresql" else None,
        )
        await sequencer.start()
        self._sequencer = sequencer
        self._head = None

    # -- several servers, one log (PostgreSQL) -------------------------------------------------------------------
    #
    # One server sequences (it holds the sequencer lock, log/storage/writers.py); the others stand by: they read the
    # log from the database as a reader does and try for the lock every STANDBY_POLL seconds. The lock frees when the
    # sequencer's database session ends (its process died, or it said nothing for a lease); the first to take it
    # reloads the tree from the database, checks it as a start does, and sequences. A sequencer that loses its
    # writer steps down to standby at once (Sequencer on_deposed): whatever it had in memory is dropped, nothing it
    # had not committed was acknowledged, and its next turn starts again from the database.

    @property
    def role(self) -> str:
        """"sequencer" (this server writes the log), "standby" (another does; this one takes over when it can) or
        "reader" (a read-only Log: `open_reader`)."""
        if self._sequencer is not None:
            return "sequencer"
        return "standby" if self._claim is not None else "reader"

    def on_role_change(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Await `listener(role)` each time this server takes over ("sequencer") or steps down ("standby")."""
        self._role_listeners.append(listener)

    async def sequencer_lease(self):
        """The sequencer lease as stored (log.storage.SequencerLease: epoch, url, holder, since), or None."""
        return await self._read(self.store.sequencer_lease)

    def _stand_by(self) -> None:
        self._standing_by = asyncio.get_running_loop().create_task(self._wait_for_turn())

    async def _wait_for_turn(self) -> None:
        loop = asyncio.get_running_loop()
        key_file = self.config.resolved_key_file()
        while not self._closing:
            try:
                writer = await loop.run_in_executor(None, self.store.acquire_writer, self._claim)
            except SequencerLockHeld:
                await self._end_stalled_sequencer()
                await asyncio.sleep(defaults.STANDBY_POLL_SECONDS)
                continue
            except Exception as exc:  # noqa: BLE001 - the database unreachable: keep trying, as the sequencer does
                logger.warning("standing by: cannot reach the database: %s", exc)
                await asyncio.sleep(defaults.STANDBY_POLL_SECONDS * 4)
                continue
            if self._closing:
                writer.close()
                return
            record = self._history.last if self._history is not None else read_record(history_path(key_file),
                                                                                      self.signer)
            try:
                await self._take_over(writer, record)
            except asyncio.CancelledError:
                writer.close()
                raise
            except Exception as exc:  # noqa: BLE001
                writer.close()
                if isinstance(exc, ForkRefused) or not (isinstance(exc, SequencerLockHeld) or storage_fault(exc)):
                    # The database is not the log this key signed: taking over would fork it. Never retried.
                    logger.critical("this server will not sequence the log: %s", exc)
                    self._refused = exc
                    return
                logger.warning("taking over failed, standing by: %s", exc)
                await asyncio.sleep(defaults.STANDBY_POLL_SECONDS)
                continue
            logger.warning("this server now sequences the log, at size %d", self._sequencer.published.size)
            await self._tell("sequencer")
            return

    async def _end_stalled_sequencer(self) -> None:
        """While the lock is held elsewhere: end the sequencer's session if it has been stalled mid-statement for
        longer than STALLED_STATEMENT_SECONDS (its process paused inside a COPY: PostgreSQL's idle timeouts do not
        apply there)."""
        try:
            ended = await self._read(self.store.end_stalled_sequencer, defaults.STALLED_STATEMENT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the next poll tries again
            logger.warning("standing by: cannot look for a stalled sequencer: %s", exc)
            return
        if ended is not None:
            logger.warning("ended the session of the sequencer (backend %d): stalled mid-statement for longer than "
                           "%g s", ended, defaults.STALLED_STATEMENT_SECONDS)

    def _deposed(self, reason: str) -> None:
        """On the event loop: the sequencer lost its writer (Sequencer on_deposed): step down to standby."""
        if not self._closing:
            self._standing_by = asyncio.get_running_loop().create_task(self._step_down())

    async def _step_down(self) -> None:
        sequencer = self._sequencer
        self._head = StoredHead(self.store)  # first: `checkpoint` reads the head once the sequencer is gone
        self._sequencer = None
        if sequencer is not None:
            await asyncio.shield(sequencer.close())  # a close() of the Log meanwhile must not leave it half closed
        await self._tell("standby")
        await self._wait_for_turn()

    async def _tell(self, role: str) -> None:
        for listener in self._role_listeners:
            try:
                await listener(role)
            except Exception as exc:  # noqa: BLE001 - one listener's failure must not stop the others or the log
                logger.error("a role-change listener failed (%s): %r", role, exc)

    @classmethod
    async def open_reader(cls, config: LogConfig) -> "Log":
        """A read-only Log over a database another process writes: proofs, tiles and entries of the latest stored
        checkpoint, nothing written. Needs the key file (for the origin) and the schema in place; takes no lock."""
        key_file = config.resolved_key_file()
        if not key_file.exists():
            raise InvalidInput(f"no log key at {key_file}: start the writer first", field="key_file")
        signer = read_signer_key(key_file)
        store = SqlLogStore(config.resolved_database_url())
        log = cls(store, signer, config)
        log._head = StoredHead(store)
        try:
            await asyncio.get_running_loop().run_in_executor(None, log._head.refresh)
            await log._open_replica()
        except BaseException:
            store.close()
            raise
        return log

    @classmethod
    async def open_archive(cls, config: LogConfig, verifier_key: str, why: str) -> "Log":
        """A read-only Log over a database nothing writes, holding a restored archive of a log period (log/audit/
        archive_restore.py): proofs, tiles and entries of its one checkpoint. It has the log's verifier key only
        (an archive has no signing key and signs nothing); `why` is what `write_unavailable` says."""
        from log.note_keys import parse_verifier_key

        store = SqlLogStore(config.resolved_database_url())
        log = cls(store, PublicKeyOnly(parse_verifier_key(verifier_key)), config)  # type: ignore[arg-type]
        log._head = StoredHead(store, max_age=float("inf"))  # one checkpoint, forever
        log._read_only = why
        try:
            await asyncio.get_running_loop().run_in_executor(None, log._head.refresh)
        except BaseException:
            store.close()
            raise
        return log

    async def _open_replica(self) -> None:
        """With `config.read_database_url`: from now on the reads go to that hot standby (log/replica.py). An
        unreachable replica does not fail the start: reads answer 503 until it can be read."""
        read_url = self.config.read_database_url
        if read_url is None:
            return
        check_read_database_url(self.store.url, read_url)
        self.read_store = SqlLogStore(read_url)
        self._inline_tile_reads = self.read_store.cheap_tile_reads
        self._replica = ReplicaHead(self.read_store, self.store, self._sequenced_size)
        await self._replica.start()

    def _sequenced_size(self) -> int | None:
        return self._sequencer.published.size if self._sequencer is not None else None

    def replica_status(self) -> ReplicaStatus | None:
        """The read replica's replayed size against the primary's, its lag and reachability; None without one."""
        return None if self._replica is None else self._replica.status()

    async def close(self) -> None:
        """Stop sequencing or standing by, release the lock, close the store. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._standing_by is not None:
            self._standing_by.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._standing_by
        if self._sequencer is not None:
            await self._sequencer.close()
        if self._history is not None:
            self._history.close()
        if self._replica is not None:
            await self._replica.close()
        self._reader.shutdown(wait=True)
        if self.read_store is not self.store:
            self.read_store.close()
        self.store.close()

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier_key

    @property
    def checkpoint(self) -> Published:
        """The checkpoint this log serves: with a read replica, the latest the replica has replayed (raises
        ReplicaUnavailable while it cannot be read); else `committed_checkpoint`."""
        if self._replica is not None:
            return self._replica.latest()
        return self.committed_checkpoint

    @property
    def committed_checkpoint(self) -> Published:
        """The newest checkpoint this process knows the primary committed: the sequencer's (what write receipts
        carry), or, without a sequencer, the primary's latest as stored. Never waits for a read replica."""
        if self._sequencer is None:
            return self._head.latest()
        return self._sequencer.published

    @property
    def failure(self) -> str | None:
        """Why the log no longer accepts entries, or None while it does (or, for a reader, while it can read)."""
        if self._refused is not None:
            return f"will not sequence: {self._refused}"
        broken = self._sequencer.broken if self._sequencer is not None else None
        return None if broken is None else str(broken)

    @property
    def write_unavailable(self) -> str | None:
        """Why this log cannot take writes right now, or None while it can: "stopped: <failure>" once the writer
        has stopped for good, else the sequencer's passing condition ("disk full", "database unreachable: ...",
        "shutting down", ...). A read-only replica never takes writes itself: "read-only replica"."""
        if self._sequencer is None:
            if self._read_only is not None:
                return self._read_only
            return "standby: another server sequences the log" if self._claim is not None else "read-only replica"
        broken = self._sequencer.broken
        if broken is not None:
            return f"stopped: {broken}"
        return self._sequencer.unavailable

    @property
    def size(self) -> int:
        return self.checkpoint.size

    # -- writes -----------------------------------------------------------------------------------------------
    async def add_entries(
        self,
        entries: list[bytes],
        keys: list[IdempotencyKey | None] | None = None,
        rows: list[list[RowInsert | RowUpdate]] | None = None,
    ) -> BatchReceipt:
        """Append entries; returns once they are durably stored. Without keys, indices are consecutive.

        With idempotency keys, an entry whose key is already in the log is not stored again: its outcome is the
        original index (`duplicate=True`), or a `Conflict` if the key came with different content. `rows` are a
        personality's own table rows, committed with each new entry (see `Sequencer.submit`).
        """
        return await self._writer().submit(entries, keys, rows)

    async def write(self, work):
        """Run `work(transaction)` on the log's single writer, inside the next batch's transaction.

        The way for personalities and jobs to store their own rows in the log's database (on SQLite the writer
        holds the write lock). `transaction.execute(core_statement)` returns rows. Returns work's result once
        committed; if work raises, only its own changes are undone and the exception is raised here.
        """
        return await self._writer().submit_work(work)

    def _writer(self) -> Sequencer:
        sequencer = self._sequencer
        if sequencer is None:
            if self._claim is not None:
                raise StorageUnavailable("this server stands by: another server sequences the log; retry",
                                         "standby")
            raise Unavailable(self._read_only or "this Log is a read-only replica: writes go to the process that "
                              "sequences the log")
        return sequencer

    async def write_outside_tree(self, work):
        """Store rows that are not part of the tree (the access log): through the sequencer's writer on the
        sequencer (on SQLite no other connection may write), in a transaction of their own on a standby."""
        if self._sequencer is not None or self._claim is None:
            return await self.write(work)
        return await self._read(self.store.write_outside_tree, work)

    # -- reads ------------------------------------------------------------------------------------------------
    async def read(self, work, *, primary: bool = False):
        """Run `work(transaction)` on a reader thread against one committed state of the log's database: its read
        replica when it has one, unless `primary` (for state that write decisions or credentials rest on, which must
        not lag: the registry rebuilt at start, API tokens).

        The way for personalities and jobs to read their own rows (the counterpart of `write`): every
        `transaction.execute(core_select)` in one work sees the same commits, and `transaction.entries_at(indices)`
        reads the log's entries in that state. Never waits for the writer; a reader replica may read too. Returns
        work's result; what work raises is raised here. Work runs on a thread: it may block, it must not await.
        """
        return await self._read((self.store if primary else self.read_store).read, work)

    async def _read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def entry(self, index: int) -> StoredEntry:
        if index < 0:
            raise InvalidInput(f"index must not be negative, not {index}", field="index")
        size = await self._size_covering(index + 1)
        if index >= size:
            raise NotFound(f"entry {index} does not exist: the tree has {size} entries")
        entry = await self._read(self.read_store.read_entry, index)
        if entry is None:
            raise NotFound(f"entry {index} is not stored")
        if not entry.data:  # a pruned entry is empty (log/prune.py): 410 naming its deletion
            pruned = await self._read(self.read_store.read, lambda tx: pruned_at(tx, [index]))
            if pruned:
                raise pruned_error(pruned, f"entry {index}")
        return entry

    async def tile(self, tile_id: TileID) -> bytes:
        """Bytes of a hash tile of the current tree; a partial width is served as a prefix of a wider tile."""
        if tile_id.level is None:
            return await self.entry_bundle(tile_id)
        if self._replica is not None:
            # A tile the primary has but the replica not yet (a client that read a newer checkpoint elsewhere):
            # wait for the replay of the tree size whose right edge the tile's last hash is.
            covered = (tile_id.index * TILE_WIDTH + tile_id.width) << (TILE_HEIGHT * tile_id.level)
            if covered > self.size:
                await self._size_covering(covered)
        if self._inline_tile_reads:  # as for proofs (see _prove): the read costs less than a thread hop
            return self._read_tile(tile_id)
        return await self._read(self._read_tile, tile_id)

    def _read_tile(self, tile_id: TileID) -> bytes:
        key = (tile_id.level, tile_id.index)
        data = self._full_tiles.get(key)
        if data is None:
            stored = self.read_store.read_tiles([key]).get(key)
            if stored is None:
                raise NotFound(f"{tile_id.path()} does not exist yet")
            data = stored.data
            if len(data) == TILE_WIDTH * HASH_SIZE:
                self._full_tiles.put(key, data)
        if len(data) < tile_id.width * HASH_SIZE:
            raise NotFound(f"{tile_id.path()} does not exist yet (the tile holds {len(data) // HASH_SIZE} hashes)")
        return data[: tile_id.width * HASH_SIZE]

    async def entry_bundle(self, tile_id: TileID) -> bytes:
        end = tile_id.index * TILE_WIDTH + tile_id.width
        if end > await self._size_covering(end):
            raise NotFound(f"entry bundle {tile_id.path()} does not exist yet")
        return await self._read(self._read_bundle, tile_id)

    def _read_bundle(self, tile_id: TileID) -> bytes:
        start = tile_id.index * TILE_WIDTH
        end = start + tile_id.width
        if tile_id.width == TILE_WIDTH:
            cached = self._full_bundles.get(tile_id.index)
            if cached is not None:
                # A cached bundle may predate a prune (by this process or, for a read worker, by the writer): the
                # pruned rows decide, read after the cache as after the entries below.
                pruned = self.read_store.pruned_in_range(start, end)
                if not pruned:
                    return cached
                self._full_bundles.pop(tile_id.index)
        entries = self.read_store.read_entries(start, end)
        if len(entries) != tile_id.width:
            raise NotFound(f"entry bundle {tile_id.path()} is not fully stored")
        bundle = encode_entry_bundle(entries)
        if not all(entries):
            # Read after the entries: an entry emptied by a prune committed before that read has its row by now.
            pruned = self.read_store.pruned_in_range(start, end)
            emptied = {start + position for position, data in enumerate(entries) if not data}
            pruned = {i: pruned[i] for i in sorted(emptied) if i in pruned}
            if pruned:
                raise pruned_error(pruned, f"entry bundle {tile_id.path()}", bundle)
        if tile_id.width == TILE_WIDTH:
            self._full_bundles.put(tile_id.index, bundle)
        return bundle

    async def inclusion_proof(self, index: int, tree_size: int, *, from_primary: bool = False) -> list[bytes]:
        """The elements above index's 256-leaf block are the same for all its leaves at one tree size: kept for the
        next proof of a neighbour (the receipts of one batch are such proofs, all at its checkpoint's size).

        `from_primary`: within the primary's tree, read from the primary, never waiting for a read replica (the
        proofs in write receipts, at the sequencer's checkpoint)."""
        if from_primary:
            self._check_within(tree_size, "tree_size", self.committed_checkpoint.size)
        else:
            await self._check_size(tree_size, "tree_size")
        self._check_index(index, tree_size, "index")
        store = self.store if from_primary else self.read_store
        key = (tree_size, index >> TILE_HEIGHT)
        shared = self._shared_path_tops.get(key)
        if shared is None:
            plan, inside = proofs.inclusion_plan_in_block(index, tree_size, TILE_WIDTH)
            proof = await self._prove(plan, store)
            self._shared_path_tops.put(key, proof[inside:])
            return proof
        within = proofs.block_inclusion_plan(index, tree_size, TILE_WIDTH)
        return (await self._prove(within, store) if within else []) + shared

    async def find_leaf(self, leaf_hash: bytes, tree_size: int | None = None) -> int:
        """The smallest index with this leaf hash (within `tree_size`, if given)."""
        if len(leaf_hash) != HASH_SIZE:
            raise InvalidInput(f"leaf_hash must be {HASH_SIZE} bytes, not {len(leaf_hash)}", field="leaf_hash")
        if self._replica is not None and tree_size is not None and tree_size > self.size:
            await self._size_covering(tree_size)  # the entry may be one the replica has yet to replay
        index = await self._read(self.read_store.find_leaf_hash, leaf_hash)
        if index is None or (tree_size is not None and index >= tree_size):
            raise NotFound("no entry with that leaf hash" + (f" in a tree of size {tree_size}" if tree_size else ""))
        return index

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        await self._check_size(second, "second")
        if first < 1:
            raise InvalidInput(f"first must be at least 1, not {first}", field="first")
        if first > second:
            raise InvalidInput(f"first ({first}) must not exceed second ({second})", field="first")
        return await self._prove(proofs.consistency_plan(first, second), self.read_store)

    async def _prove(self, plan, store: LogStore) -> list[bytes]:
        """Fold `plan` on the event loop, from cached tile views and the sequencer's edge tiles when it can.

        A tile not cached is read right here when the store says its tile reads are cheap in-process lookups
        (SQLite: one primary-key lookup, ~30 us), because handing the read to a reader thread costs more than the
        read: at 10^7 entries, 64 clients, 1,350 proofs/s and p99 107 ms through a reader thread (with or without
        the hashing there), 1,950 proofs/s and p99 36 ms without it. Otherwise (PostgreSQL: a network round trip)
        only the read goes to a reader thread and the hashing stays here.
        """
        edge = self._edge_tiles()
        if self._inline_tile_reads:
            return self._prover.prove(plan, edge, store.read_tiles)
        missing = self._prover.missing(plan, edge)
        if not missing:
            return self._prover.prove(plan, edge, store.read_tiles)  # reads nothing unless evicted meanwhile
        fetched = await self._read(store.read_tiles, missing)

        def read(keys):  # what the reader thread read; anything evicted since is read again, rarely
            again = {key for key in keys if key not in fetched}
            return {**fetched, **store.read_tiles(again)} if again else fetched

        return self._prover.prove(plan, edge, read)

    def node_hashes(self, nodes) -> dict[tuple[int, int], bytes]:
        """Hashes of perfect subtrees (height, index) of the committed tree, from tiles (cached: immutable).

        Blocking (reads the store for tiles not cached): call it from a reader thread.
        """
        return self._prover.node_hashes(nodes, self._edge_tiles(), self.read_store.read_tiles)

    def _edge_tiles(self) -> dict[tuple[int, int], bytes]:
        return self._sequencer.edge_tiles if self._sequencer is not None else {}

    async def storage_bytes(self) -> int | None:
        return await self._read(self.store.storage_bytes)

    async def _size_covering(self, wanted: int) -> int:
        """The current size; a reader asked for more than it last saw re-reads the head first (the writer commits
        before it answers, so a size a client has seen is always in the database), and with a read replica waits
        (bounded) for the replica to replay it (log/replica.py)."""
        current = self.size
        if wanted > current:
            if self._replica is not None:
                return await self._replica.reach(wanted)
            if self._head is not None:
                current = self._head.refresh().size
        return current

    async def _check_size(self, size: int, field: str) -> None:
        self._check_within(size, field, await self._size_covering(size))

    @staticmethod
    def _check_within(size: int, field: str, current: int) -> None:
        if size < 1 or size > current:
            raise InvalidInput(f"{field} must be between 1 and the current tree size {current}, not {size}",
                               field=field)

    @staticmethod
    def _check_index(index: int, size: int, field: str) -> None:
        if index < 0 or index >= size:
            raise InvalidInput(f"{field} must be between 0 and {size - 1}, not {index}", field=field)
