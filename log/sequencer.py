"""The single writer: collects submissions into batches, integrates them into the tree and commits each batch once.

A flush, in order (a crash at any step leaves the store at the previous batch's commit, or at this one's). Each step
is labelled where it happens in the code ("# Step 4 (commit): ..."), with what a crash there leaves behind.

1. Take queued submissions, FIFO, up to `batch_size` entries (a single larger submission goes alone); when a batch
   is due is log.batching's policy.
2. Resolve idempotency keys (against the store, then within the batch), hash the new leaves and extend the
   in-memory frontier; the edge tiles collect every completed height-8k node. Nothing is stored yet: a crash here
   loses only unacknowledged entries.
3. Sign a checkpoint for the new size and root.
4. Store entries, changed tiles and the checkpoint in one transaction (`LogWriter.commit_batch`), durable on
   return. A crash before the commit point leaves the previous state; after it, this batch in full.
   4b. Remember the committed checkpoint beside the key (`history`, log/signed_history.py), so that a later start
   refuses a database that is empty, behind or another tree. A crash between 4 and 4b leaves the record one batch
   behind the database, which a start accepts (the database is ahead of it).
5. Only now publish the checkpoint in memory and answer every waiting submission with its indices.

If step 4 raises, the batch's submitters get an error (their entries may or may not have been stored: they retry),
and the in-memory tree is reloaded from the store before anything else is written, because memory may have run
ahead of what committed. The reloaded checkpoint must be the one last committed or, if the failed commit did land,
exactly that batch's: anything else is another writer's or a tamperer's, and the sequencer stops for good.

If the writer lost its database connection or its lock (`LogWriter.holding`, `SequencerLockHeld`), the sequencer
is `unavailable` until it has a writer again: submissions get `StorageUnavailable` (503, retry), the writer thread
retries acquiring a writer (which re-connects and re-takes the lock), backing off from 0.1 s to 1 s, then reloads and
checks the tree as above and resumes. While another server holds the lock it keeps retrying and commits nothing:
every commit is fenced by the writer (log.storage.writers).

Startup reconciliation (`load_tree_state`) refuses to serve a store whose latest checkpoint, tiles and entries
disagree.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from log import defaults
from log.batching import BatchQueue
from log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from log.compact import CompactRange, frontier_node_ids
from log.edge import ChangedTile, EdgeTiles, extend_tree
from log.errors import (
    Conflict, InvalidInput, LogError, SequencerLockHeld, StorageError, StorageUnavailable, Unavailable,
)
from log.fsck import check_newest_entries
from log.hashing import hash_leaves
from log.note_keys import Signer, parse_verifier_key
from log.signed_history import SignedHistory
from log.stats import LogStats
from log.storage import (
    BatchWrite, KeyedEntry, KeyRecord, LogStore, LogWriter, RowInsert, RowUpdate, StoredCheckpoint, TileWrite, WorkFailed,
    WriteTransaction,
)
from log.storage.faults import DATABASE_UNREACHABLE, storage_fault
from log.tile_nodes import interior_nodes, node_hash_from_tile, tile_for_node
from log.tiles import MAX_ENTRY_SIZE, TILE_HEIGHT, TILE_WIDTH

logger = logging.getLogger(__name__)

# While the store cannot take writes (`Sequencer.unavailable`), submissions are refused at once, but for one let
# through this often to find out whether it can again: the first to commit clears the condition.
UNAVAILABLE_RETRY_SECONDS = 1.0
LOCK_LOST = "writer lock lost"
LOCK_HELD_ELSEWHERE = "writer lock held by another server"
NOT_SEQUENCER = "no longer the sequencer"
# Waits between attempts to get a writer back after a lost connection or lock: doubling from the first to the last.
RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 1.0
# An idle writer asks the database this often whether it still has its connection and its lock, so that a loss is
# noticed (and `unavailable` says so, and the writer gets them back) before the next write, not at it.
IDLE_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Published:
    """A checkpoint the log has committed: the newest one is what `/checkpoint` serves."""

    size: int
    root_hash: bytes
    note: bytes


class IdempotencyKey(NamedTuple):
    """Makes a submission safe to retry: a key already in the log returns the entry it first came with.

    `content_hash` identifies the content the key stands for; the same key with another content hash is a
    conflict, never a new entry.
    """

    key: bytes
    content_hash: bytes


class EntryOutcome(NamedTuple):
    index: int
    leaf_hash: bytes
    duplicate: bool = False  # True: the key was already in the log; index and leaf hash are the original's


class NewEntries(Sequence):
    """The outcomes of entries stored at consecutive new indices, made on demand: building 1,024 EntryOutcomes on
    the writer thread took 1.6 ms of a 17 ms batch. Slicing gives another NewEntries."""

    __slots__ = ("first_index", "leaf_hashes")

    def __init__(self, first_index: int, leaf_hashes: Sequence[bytes]):
        self.first_index = first_index
        self.leaf_hashes = leaf_hashes

    def __len__(self) -> int:
        return len(self.leaf_hashes)

    def __getitem__(self, position):
        if isinstance(position, slice):
            start, _, step = position.indices(len(self.leaf_hashes))
            if step != 1:
                raise ValueError("NewEntries slices are contiguous")
            return NewEntries(self.first_index + start, self.leaf_hashes[position])
        count = len(self.leaf_hashes)
        if not -count <= position < count:
            raise IndexError("NewEntries index out of range")
        if position < 0:
            position += count
        return EntryOutcome(self.first_index + position, self.leaf_hashes[position])

    def __iter__(self):
        return map(EntryOutcome, itertools.count(self.first_index), self.leaf_hashes)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None


@dataclass(frozen=True)
class BatchReceipt:
    """What a submission gets back once its entries are durably stored, one outcome per entry in order.

    Entries without keys always get new, consecutive indices. An outcome is a `Conflict` instead where a key was
    reused with different content.
    """

    outcomes: Sequence[EntryOutcome | Conflict]  # a NewEntries where no entry had a key
    checkpoint: Published

    @property
    def first_index(self) -> int | None:
        """The index of the first outcome that is not a `Conflict`; None when every outcome is one.

        Without keys: the first entry's index, the others following it consecutively. With keys the indices need
        not be consecutive nor ascending (a duplicate answers with its original index): read `outcomes`.
        """
        outcomes = self.outcomes
        if isinstance(outcomes, NewEntries):
            return outcomes.first_index
        for outcome in outcomes:
            if not isinstance(outcome, Conflict):
                return outcome.index
        return None

    @property
    def leaf_hashes(self) -> list[bytes]:
        """Each outcome's leaf hash, in order: for receipts without a `Conflict` (which has none)."""
        if isinstance(self.outcomes, NewEntries):
            return list(self.outcomes.leaf_hashes)
        return [outcome.leaf_hash for outcome in self.outcomes]


@dataclass
class TreeState:
    frontier: CompactRange
    edge: EdgeTiles
    published: Published | None


def load_tree_state(store: LogStore, signer: Signer) -> TreeState:
    """Rebuild the writer's in-memory state from the store, checking that the stored pieces agree.

    Checks: the latest checkpoint's signature (with our own key) and its body against the row's size and root;
    the number of stored entries against the checkpoint size; the root recomputed from the stored tiles against the
    checkpoint root; the entries of the newest level-0 tiles re-hashed against their leaf hashes and those tiles
    (log.fsck.check_newest_entries); every right-edge partial tile's width against the size. Raises StorageError
    naming the first disagreement: the log refuses to serve rather than extend a history it cannot vouch for.
    """
    stored = store.latest_checkpoint()
    entry_count = store.entry_count()
    if stored is None:
        if entry_count:
            raise StorageError(f"the store holds {entry_count} entries but no checkpoint")
        return TreeState(CompactRange(), EdgeTiles(0, {}), None)

    verifier = parse_verifier_key(signer.verifier_key)
    try:
        checkpoint, _ = open_checkpoint(stored.note, verifier, signer.name)
    except LogError as exc:
        raise StorageError(f"the latest stored checkpoint (size {stored.size}) does not verify: {exc}") from exc
    if checkpoint.size != stored.size or checkpoint.root_hash != stored.root_hash:
        raise StorageError(f"the stored checkpoint row for size {stored.size} does not match its signed note")
    size = stored.size
    if entry_count != size:
        raise StorageError(f"the latest checkpoint has size {size} but the store holds {entry_count} entries")

    frontier_ids = frontier_node_ids(size)
    tile_of = {node: tile_for_node(*node) for node in frontier_ids}
    edge_keys = {level: (size >> (TILE_HEIGHT * level)) for level in range(_levels(size))}
    partial_keys = {
        level: (count // TILE_WIDTH, count % TILE_WIDTH) for level, count in edge_keys.items() if count % TILE_WIDTH
    }
    wanted = {(tid.level, tid.index) for tid, _, _ in tile_of.values()}
    wanted |= {(level, index) for level, (index, _) in partial_keys.items()}
    stored_tiles = {key: tile.data for key, tile in store.read_tiles(wanted).items()}

    hashes = []
    for node in frontier_ids:
        tid, start, count = tile_of[node]
        data = stored_tiles.get((tid.level, tid.index))
        if data is None or len(data) < (start + count) * 32:
            raise StorageError(f"tile {tid.path()} is missing or too short for a tree of size {size}")
        hashes.append(node_hash_from_tile(data, start, count))
    frontier = CompactRange(size, hashes)
    if frontier.root() != stored.root_hash:
        raise StorageError(f"the root recomputed from stored tiles does not match the checkpoint of size {size}")
    check_newest_entries(store, size)  # the entries of the newest tiles against their leaf hashes and tiles

    partial = {}
    for level, (index, width) in partial_keys.items():
        data = stored_tiles.get((level, index))
        if data is None or len(data) != width * 32:
            raise StorageError(f"the right-edge tile at level {level}, index {index} should hold {width} hashes")
        partial[level] = data
    return TreeState(frontier, EdgeTiles(size, partial), Published(size, stored.root_hash, stored.note))


def _tile_write(tile: ChangedTile) -> TileWrite:
    """A changed tile as the store takes it: a full tile with its interior nodes, as extend_tree kept them or hashed
    now; an edge tile without."""
    tid, data, interior = tile
    if tid.width != TILE_WIDTH:
        return TileWrite(tid.level, tid.index, data)
    return TileWrite(tid.level, tid.index, data, interior if interior is not None else interior_nodes(data))


def _conflict(key: IdempotencyKey, index: int) -> Conflict:
    return Conflict(f"this idempotency key already stands for different content, at index {index}", index)


def _levels(size: int) -> int:
    """Tile levels that hold at least one hash for a tree of `size` leaves."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


# The idempotency plan of a batch with keys, rows or work: what each entry will be, decided in step 2 before anything
# is hashed or stored, and turned into its outcome once the batch has committed.
class New:
    """A new entry. New entries are stored at consecutive indices in the order they are planned, so a new entry
    needs no position of its own and one instance, NEW, stands for all of them: nothing is made per new entry (a
    NamedTuple per entry cost 0.5 us of the writer's time each)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEW"


NEW = New()


class Known(NamedTuple):
    """The entry's key is already in the log, with the same content: the entry it first came with answers."""

    entry: KeyedEntry


class Again(NamedTuple):
    """The entry's key came earlier in this batch, with the same content: that new entry answers (the `position`th
    of the batch's new entries)."""

    position: int


Plan = New | Known | Again | Conflict


@dataclass
class _Submission:
    entries: Sequence[bytes]
    keys: Sequence[IdempotencyKey | None] | None
    rows: Sequence[Sequence[RowInsert | RowUpdate]] | None  # per entry; without the index, which is filled in
    work: Callable[[WriteTransaction], object] | None  # for a work-only submission (no entries)
    future: asyncio.Future
    queued_at: float


class _Committed(NamedTuple):
    """What a committed batch hands to its submitters (step 5)."""

    outcomes: Sequence[EntryOutcome | Conflict]  # one per entry of the batch's submissions, in order
    work_results: list[object]  # one per work submission, in order
    published: Published


class Sequencer:
    """Batches submissions and integrates them through one `LogWriter`. Use from one event loop.

    When a batch is cut (its size, the age of its oldest entry, the linger, the end of the event loop's pass) is
    log.batching.BatchQueue's policy, set by `batch_size`, `batch_max_age` and `batch_linger`. `max_pending` entries
    may wait at most; beyond that `submit` raises `Unavailable`.

    The writer is a thread of its own that cuts the next batch itself the moment it is free, and hands each
    committed batch's results to the event loop in one call. Driving it from the event loop instead left it idle
    whenever the loop was busy with other requests (writer 53 % busy, 3,900 signed events/s).
    """

    def __init__(
        self,
        store: LogStore,
        writer: LogWriter,
        signer: Signer,
        *,
        batch_size: int = defaults.BATCH_SIZE,
        batch_max_age: float = defaults.BATCH_MAX_AGE,
        batch_linger: float = defaults.BATCH_LINGER,
        max_pending: int = defaults.MAX_PENDING,
        stats: LogStats | None = None,
        clock: Callable[[], float] = time.time,
        history: SignedHistory | None = None,
        on_deposed: Callable[[str], None] | None = None,
    ):
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, not {batch_size}", field="batch_size")
        self._store = store
        self._writer = writer
        self._signer = signer
        self._origin = signer.name
        self.stats = stats or LogStats()
        self._clock = clock
        self._history = history
        self._batches = BatchQueue(batch_size, batch_max_age, batch_linger, max_pending, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state: TreeState | None = None
        self._edge_tiles: dict[tuple[int, int], bytes] = {}
        # Why the store cannot take writes right now (None: it can). Set on the writer thread when a commit fails
        # for a condition log.storage.faults names, cleared when one commits again; read on the event loop.
        self._unavailable: str | None = None
        self._retry_at = 0.0  # monotonic: when the next submission is let through while unavailable
        self._attempt: Published | None = None  # the checkpoint of the batch being committed (step 4)
        self._wake = threading.Event()  # set by close(): cuts short a wait between attempts to get a writer back
        # Where several servers share the log (PostgreSQL): called on the event loop, with the reason, when this
        # sequencer loses its writer. It then takes nothing more (`deposed`): the server steps down to standby and
        # the next sequencer, maybe this server again, starts from what the database holds.
        self._on_deposed = on_deposed
        self._deposed: str | None = None

    @property
    def unavailable(self) -> str | None:
        """Why writes cannot be taken right now ("disk full", "database unreachable: ...", "writer lock held by
        another server", "shutting down"), or None.

        Not `broken`: this clears by itself, the next commit that succeeds ends it, or, after a lost connection or
        lock, getting a writer back."""
        if self._deposed is not None:
            return f"{NOT_SEQUENCER}: {self._deposed}"
        if self._batches.closing:
            return "shutting down"
        return self._unavailable

    def _refuse_while_unavailable(self) -> None:
        """On the event loop, while `_unavailable` is set: refuse at once with 503, but let one submission through
        every UNAVAILABLE_RETRY_SECONDS (it commits and clears the condition, or fails like the last batch); none
        while the writer thread is getting a writer back (`_reconnect`)."""
        reason = self._unavailable
        if reason is None:
            return
        now = time.monotonic()
        if now < self._retry_at:
            raise StorageUnavailable(f"the log cannot store entries right now: {reason}; retry later", reason)
        self._retry_at = now + UNAVAILABLE_RETRY_SECONDS

    @property
    def broken(self) -> Exception | None:
        """The storage failure the sequencer could not recover from, if any: it accepts no entries after one."""
        return self._batches.stopped

    @property
    def edge_tiles(self) -> dict[tuple[int, int], bytes]:
        """The right-edge (partial) tiles of a committed tree at least as big as `published`: {(level, index):
        bytes}, never mutated once handed out. Every perfect node inside them is final, so readers may build
        proofs for any size up to `published.size` from them without reading the store; a tile that has since
        filled up is absent (it is stored, full)."""
        return self._edge_tiles

    @property
    def published(self) -> Published:
        assert self._state is not None and self._state.published is not None, "sequencer not started"
        return self._state.published

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._state = await loop.run_in_executor(None, load_tree_state, self._store, self._signer)
        self._edge_tiles = self._state.edge.snapshot()
        if self._state.published is None:
            # A new log publishes its empty checkpoint so that /checkpoint always has something to serve.
            await loop.run_in_executor(None, self._integrate, [])
        self._loop = loop
        self._batches.start(loop)
        self._thread = threading.Thread(target=self._write_loop, name="auditlog-writer", daemon=True)
        self._thread.start()

    async def submit(
        self,
        entries: Sequence[bytes],
        keys: Sequence[IdempotencyKey | None] | None = None,
        rows: Sequence[Sequence[RowInsert | RowUpdate]] | None = None,
    ) -> BatchReceipt:
        """Queue entries; return once they are durably committed (or found already committed, by key).

        `keys` and `rows`, when given, line up with `entries`: an idempotency key per entry (or None), and rows
        of the personality's own tables to store with each new entry in the same transaction (their index column
        is filled in with the entry's index; nothing is stored for a duplicate): RowInserts, and RowUpdates of rows
        an earlier entry made.
        """
        batches = self._batches
        if self._deposed is not None:
            raise self._not_sequencer()
        if batches.closing:
            raise Unavailable("the log is shutting down")
        if batches.stopped is not None:
            raise self._stopped()
        if self._unavailable is not None:
            self._refuse_while_unavailable()
        for position, entry in enumerate(entries):
            if len(entry) > MAX_ENTRY_SIZE:
                raise InvalidInput(
                    f"entry {position} is {len(entry)} bytes; the limit is {MAX_ENTRY_SIZE}", field="entries"
                )
        if not entries:
            raise InvalidInput("no entries to add", field="entries")
        for name, aligned in (("keys", keys), ("rows", rows)):
            if aligned is not None and len(aligned) != len(entries):
                raise InvalidInput(f"{name} has {len(aligned)} items for {len(entries)} entries", field=name)
        future = asyncio.get_running_loop().create_future()
        batches.put(_Submission(entries, keys, rows, None, future, time.monotonic()), len(entries))
        return await future

    async def submit_work(self, work: Callable[[WriteTransaction], object]) -> object:
        """Run `work` on the writer thread inside the next batch's transaction; return its result once committed.

        Every write to the log's database goes through the writer (on SQLite it holds the write lock), so this is
        how cosignatures, timestamps and registries are stored. `work` runs in its own savepoint: if it raises,
        only it is undone and its exception is raised here.
        """
        if self._deposed is not None:
            raise self._not_sequencer()
        if self._batches.closing:
            raise Unavailable("the log is shutting down")
        if self._batches.stopped is not None:
            raise self._stopped()
        if self._unavailable is not None:
            self._refuse_while_unavailable()
        future = asyncio.get_running_loop().create_future()
        self._batches.put(_Submission((), None, None, work, future, time.monotonic()), 0)
        result = await future
        if isinstance(result, WorkFailed):
            raise result.error
        return result

    async def close(self) -> None:
        """Finish what is queued, stop, release the writer lock."""
        self._batches.close()
        self._wake.set()
        if self._thread is not None:
            # The last batch's results were handed to the loop before the thread ended, so they run before this.
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._writer.close()

    def _write_loop(self) -> None:
        """The writer thread: cut a batch, integrate it, hand the results to the event loop; until closed."""
        try:
            self._write_batches()
        except BaseException as exc:  # a bug in the loop itself: nobody must wait for a writer that is gone
            logger.critical("the sequencer's writer thread stopped: %r", exc, exc_info=True)
            self._stop_for_good(exc)

    def _write_batches(self) -> None:
        while True:
            # Step 1 (take): the next batch, once the policy says it is due. Nothing of it is stored or answered:
            # a crash from here until step 4's commit loses only entries nobody was told were stored.
            batch = self._batches.take(IDLE_CHECK_SECONDS)
            if batch is None:
                return  # closed, with everything queued committed or failed
            if not batch:  # idle for a while: is the writer still connected and holding the lock?
                if not self._check_idle_writer():
                    return  # deposed
                continue
            started = time.perf_counter()
            previous, self._attempt = self._state.published, None
            try:
                committed = self._integrate_batch(batch)  # steps 2 to 5 (publish)
            except Exception as exc:  # noqa: BLE001 - every failure fails the batch closed, then we recover
                # A step up to 4 failed. The batch fails closed: its submitters get the error and retry (their
                # entries may or may not have been stored). Memory may have run ahead of the store, so it is
                # reloaded from the store, and checked against what was committed, before anything else is written.
                self.stats.batch_failures += 1
                logger.error("batch of %d submissions failed: %s", len(batch), exc)
                expected = (previous, self._attempt)
                if isinstance(exc, SequencerLockHeld) or not getattr(self._writer, "holding", True):
                    # The connection or the lock is gone: nothing more can be committed until both are back.
                    reason = (LOCK_LOST if isinstance(exc, SequencerLockHeld)
                              else storage_fault(exc) or f"{DATABASE_UNREACHABLE}: {_first_line(exc)}")
                    self._retry_at = math.inf  # nothing is let through until _reconnect has a writer again
                    self._unavailable = reason
                    self._hand_over(_fail, batch, StorageUnavailable(
                        f"the batch may or may not have been stored: {reason}; retry later", reason))
                    if self._on_deposed is not None:
                        self._depose(reason)
                        return
                    self._reconnect(expected)
                    continue
                error = self._batch_error(exc)
                self._hand_over(_fail, batch, error)
                self._recover(expected)
                continue
            self.stats.integration_seconds.observe(time.perf_counter() - started)
            if self._unavailable is not None:
                self._unavailable = None  # a commit went through: the store takes writes again
                logger.warning("the log stores entries again")
            # Step 5 (answer): every waiting submission gets its indices, on the event loop. Everything is stored:
            # a crash before they are answered loses nothing, their submitters retry (a keyed retry gets the
            # original index back).
            self._hand_over(_resolve, batch, committed)

    def _batch_error(self, exc: Exception) -> LogError:
        """What the submitters of a failed batch get. A condition that keeps the store from taking writes (a full
        disk, an I/O error, the database gone: log.storage.faults) also marks the log `unavailable` until a commit
        succeeds again, and is answered as such (503); any other failure as it was raised."""
        reason = storage_fault(exc)
        if reason is not None:
            self._retry_at = time.monotonic() + UNAVAILABLE_RETRY_SECONDS
            self._unavailable = reason
            return StorageUnavailable(f"the batch was not acknowledged: {reason}; retry later", reason)
        return exc if isinstance(exc, LogError) else StorageError(f"storing the batch failed: {exc}")

    def _hand_over(self, deliver: Callable, batch: list[_Submission], outcome) -> None:
        try:
            self._loop.call_soon_threadsafe(deliver, batch, outcome)
        except RuntimeError:  # the event loop is closed: nobody is waiting for these any more
            pass

    def _integrate_batch(self, batch: list[_Submission]) -> _Committed:
        """Steps 2 to 5 (publish) for one batch: plain entries straight through; entries with keys or rows, and
        work, through the idempotency plan."""
        work = [submission.work for submission in batch if submission.work is not None]
        if not work and all(submission.keys is None and submission.rows is None for submission in batch):
            entries = [entry for submission in batch for entry in submission.entries]
            first_index, leaf_hashes, published, _ = self._integrate(entries)
            return _Committed(NewEntries(first_index, leaf_hashes), [], published)

        # Step 2 (resolve keys): plan each entry against the keys already stored, then against those earlier in this
        # batch. Only reads: a crash here leaves the store as it was.
        items = [
            (entry, sub.keys[i] if sub.keys else None, sub.rows[i] if sub.rows else ())
            for sub in batch for i, entry in enumerate(sub.entries)
        ]
        known = self._store.find_keys([key.key for _, key, _ in items if key is not None])
        first_index = self._state.frontier.size
        new_entries: list[bytes] = []
        key_records: list[KeyRecord] = []
        rows: list[RowInsert | RowUpdate] = []
        plan: list[Plan] = []
        in_batch: dict[bytes, tuple[int, bytes]] = {}  # key -> (position in new_entries, content hash)
        for entry, key, extra_rows in items:
            if key is not None:
                prior = known.get(key.key)
                if prior is not None:
                    plan.append(Known(prior) if prior.content_hash == key.content_hash
                                else _conflict(key, prior.index))
                    continue
                if key.key in in_batch:
                    position, content_hash = in_batch[key.key]
                    plan.append(Again(position) if content_hash == key.content_hash
                                else _conflict(key, first_index + position))
                    continue
            position = len(new_entries)
            index = first_index + position
            new_entries.append(entry)
            if key is not None:
                in_batch[key.key] = (position, key.content_hash)
                key_records.append(KeyRecord(key.key, index, key.content_hash))
            for row in extra_rows:
                if isinstance(row, RowUpdate):
                    rows.append(row._replace(values=(index, *row.values)))
                else:
                    rows.append(RowInsert(row.table, (row.index_column, *row.columns), (index, *row.values)))
            plan.append(NEW)

        if new_entries or work:
            _, leaf_hashes, published, work_results = self._integrate(new_entries, key_records, rows, work)
        else:
            leaf_hashes, published, work_results = [], self._state.published, []
        return _Committed(_outcomes(plan, first_index, leaf_hashes), work_results, published)

    def _integrate(
        self,
        entries: list[bytes],
        keys: Sequence[KeyRecord] = (),
        rows: Sequence[RowInsert | RowUpdate] = (),
        work: Sequence[Callable[[WriteTransaction], object]] = (),
    ) -> tuple[int, list[bytes], Published, list[object]]:
        """Steps 2 (hash) to 5 (publish) for a batch's new entries, on the writer thread."""
        state = self._state
        first_index = state.frontier.size
        now_ms = int(self._clock() * 1000)
        if not entries and state.published is not None:
            # Work only: nothing to hash or sign. Step 4 commits the work alone; a crash leaves all of it or none.
            results = self._writer.commit_batch(BatchWrite(first_index, received_at=now_ms, work=work))
            return first_index, [], state.published, results

        # Step 2 (hash, extend): in memory only, a crash loses only these unacknowledged entries. From here on a
        # failure leaves memory ahead of the store: the writer loop reloads it (_recover).
        leaf_hashes = hash_leaves(entries)
        extend_tree(state.frontier, state.edge, leaf_hashes)
        size = state.frontier.size
        root = state.frontier.root()
        tiles = [_tile_write(tile) for tile in state.edge.take_dirty()]

        # Step 3 (sign): a checkpoint for the new size and root, in memory only: a crash discards it unserved.
        note = sign_checkpoint(Checkpoint(self._origin, size, root), self._signer)

        published = self._attempt = Published(size, root, note)  # kept: _recover checks the store against it
        # Step 4 (commit): everything in one transaction, durable on return. A crash before the commit point leaves
        # the previous batch's state; after it, this batch in full (entries, tiles and checkpoint agree, as startup
        # reconciliation checks), though nobody has been answered yet.
        results = self._writer.commit_batch(BatchWrite(
            first_index=first_index, entries=entries, leaf_hashes=leaf_hashes, received_at=now_ms, tiles=tiles,
            checkpoint=StoredCheckpoint(size, root, note, now_ms), keys=keys, rows=rows, work=work,
        ))

        # Step 4b (remember): what the key signed and the log committed, beside the key (one pwrite, no fsync; see
        # log/signed_history.py). Before publishing: nothing is served that the record does not cover.
        if self._history is not None:
            self._history.record(size, root)

        # Step 5 (publish): committed, so readers may see it now. The edge snapshot goes out before the checkpoint,
        # so a reader that sees a checkpoint always finds edge tiles at least that big.
        self._edge_tiles = state.edge.snapshot()
        state.published = published
        if entries:
            self.stats.entries_integrated += len(entries)
            self.stats.batches_committed += 1
            self.stats.batch_size.observe(len(entries))
        return first_index, leaf_hashes, published, results

    def _recover(self, expected: tuple[Published, Published | None]) -> None:
        """On the writer thread, after a failed batch: reload the tree from the store and check it against
        `expected` (the checkpoint last committed, and the failed batch's if it got that far), or stop for good."""
        try:
            self._install(load_tree_state(self._store, self._signer), expected)
        except Exception as exc:  # noqa: BLE001
            self._cannot_go_on(exc)

    def _install(self, state: TreeState, expected: tuple[Published, Published | None]) -> None:
        _check_reloaded(state.published, *expected)
        if self._history is not None and state.published.size != expected[0].size:
            # The failed batch did commit: it is published from now on, so the record covers it (step 4b).
            self._history.record(state.published.size, state.published.root_hash)
        self._state = state
        self._edge_tiles = state.edge.snapshot()

    def _cannot_go_on(self, exc: Exception) -> None:
        logger.critical("cannot reload the log after a failed batch; refusing further writes: %s", exc)
        self._stop_for_good(exc)

    def _reconnect(self, expected: tuple[Published, Published | None]) -> None:
        """On the writer thread, after the writer lost its connection or its lock: fail what waits with
        `Unavailable` and get a new writer (a new connection that takes the lock again), retrying with a growing
        delay for as long as it takes; then reload the tree and check it as `_recover` does, and take batches
        again. Returns early if the sequencer is closed meanwhile."""
        self._close_writer()
        delay = RECONNECT_FIRST_DELAY
        started = time.monotonic()
        while True:
            # Submissions that got in before `unavailable` was set, or queued while we wait, are not kept waiting.
            self._fail_waiting()
            if self._batches.closing:
                return
            try:
                writer = self._store.acquire_writer()
            except SequencerLockHeld:
                self._unavailable = LOCK_HELD_ELSEWHERE
            except Exception as exc:  # noqa: BLE001 - unreachable, restarting, refusing: all retried
                self._unavailable = f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"
            else:
                self._writer = writer
                if self._batches.closing:
                    return  # close() releases this writer
                try:
                    state = load_tree_state(self._store, self._signer)
                except Exception as exc:  # noqa: BLE001
                    reason = storage_fault(exc)
                    if reason is None:  # the store disagrees with itself
                        self._cannot_go_on(exc)
                        return
                    self._unavailable = reason  # the database went away again
                    self._close_writer()
                else:
                    try:
                        self._install(state, expected)
                    except StorageError as exc:  # a fork or tampering
                        self._cannot_go_on(exc)
                        return
                    self._unavailable, self._retry_at = None, 0.0
                    logger.warning("the log writes again after %.2f s without a writer, at size %d",
                                   time.monotonic() - started, state.published.size)
                    return
            logger.warning("the log cannot write (%s); next attempt in %.1f s", self._unavailable, delay)
            self._wake.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _check_idle_writer(self) -> bool:
        """False once deposed (see `_depose`)."""
        check = getattr(self._writer, "check", None)
        if check is None:
            return True
        try:
            reason = None if check() else LOCK_LOST
        except Exception as exc:  # noqa: BLE001 - a writer that cannot tell is not trusted with the next batch
            reason = storage_fault(exc) or f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"
        if reason is not None:
            logger.error("the idle writer lost its database connection or the sequencer lock: %s", reason)
            self._retry_at = math.inf
            self._unavailable = reason
            if self._on_deposed is not None:
                self._depose(reason)
                return False
            self._reconnect((self._state.published, None))
        return True

    def _depose(self, reason: str) -> None:
        """On the writer thread, where several servers share the log: this sequencer lost its writer, so it takes
        nothing more; what waits is refused as unavailable (the server that takes over has none of it, the clients
        retry), the writer is let go and `on_deposed` is told. The writer thread then ends."""
        logger.warning("this server stops sequencing the log: %s", reason)
        self._deposed = reason
        self._batches.close()
        self._hand_over(_fail, self._batches.drain(), self._not_sequencer())
        self._close_writer()
        try:
            self._loop.call_soon_threadsafe(self._on_deposed, reason)
        except RuntimeError:  # the event loop is closed: nobody to tell
            pass

    def _not_sequencer(self) -> StorageUnavailable:
        return StorageUnavailable(f"this server is {NOT_SEQUENCER} ({self._deposed}); retry, another server takes "
                                  "over", f"{NOT_SEQUENCER}: {self._deposed}")

    def _close_writer(self) -> None:
        try:
            self._writer.close()
        except Exception as exc:  # noqa: BLE001 - its connection is gone already
            logger.info("closing the lost writer: %s", exc)

    def _fail_waiting(self) -> None:
        waiting = self._batches.drain()
        if waiting:
            reason = self._unavailable
            self._hand_over(_fail, waiting, StorageUnavailable(
                f"the log cannot store entries right now: {reason}; retry later", reason))

    def _stopped(self) -> StorageUnavailable:
        """What a submission gets once the log has stopped for good: unavailable (503, never a 500), like any other
        time writes cannot be taken, with the reason; nothing is taken again until an operator has looked (`auditlog
        db check`) and restarted the server."""
        cause = self._batches.stopped
        return StorageUnavailable(f"the log stopped accepting entries after a failure it could not recover from: "
                                  f"{cause}; an operator must look (auditlog db check) and restart it",
                                  f"stopped: {cause}")

    def _stop_for_good(self, cause: BaseException) -> None:
        """Refuse every later submission (`broken`) and fail the ones still queued as later ones are: nothing of
        them was written, so they are refused as unavailable (`_stopped`), not failed (a submission that arrives
        while the failed batch's reload is still running is queued, and must not get a 500 where one a moment
        later gets a 503)."""
        self._hand_over(_fail, self._batches.stop(cause), self._stopped())


def _check_reloaded(stored: Published | None, previous: Published, attempt: Published | None) -> None:
    """The tree reloaded after a failed batch must be the one last committed (`previous`) or, if the failed commit
    landed after all, exactly that batch's (`attempt`). Anything else was written by someone else: another writer
    (a fork) or a tamperer."""
    if stored is not None:
        for known in (previous, attempt):
            if known is not None and (stored.size, stored.root_hash) == (known.size, known.root_hash):
                return
    found = "no checkpoint" if stored is None else f"a checkpoint of size {stored.size}"
    wanted = f"size {previous.size}" + ("" if attempt is None else f" or {attempt.size}")
    raise StorageError(f"the store now holds {found}, not the tree this writer committed ({wanted}): another "
                       "writer or something else changed the log's database; refusing to write on")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _outcomes(plan: list[Plan], first_index: int, leaf_hashes: Sequence[bytes]) -> list[EntryOutcome | Conflict]:
    """Step 5's outcomes of a planned batch, committed with its new entries from `first_index` on."""
    new = iter(NewEntries(first_index, leaf_hashes))  # the new entries' outcomes, in plan order
    outcomes: list[EntryOutcome | Conflict] = []
    for step in plan:
        if step is NEW:
            outcomes.append(next(new))
        elif type(step) is Again:
            outcomes.append(EntryOutcome(first_index + step.position, leaf_hashes[step.position], True))
        elif type(step) is Known:
            outcomes.append(EntryOutcome(step.entry.index, step.entry.leaf_hash, True))
        else:
            outcomes.append(step)  # a Conflict
    return outcomes


def _resolve(batch: list[_Submission], committed: _Committed) -> None:
    """On the event loop: each submission of a committed batch gets its receipt or work result."""
    outcomes, published = committed.outcomes, committed.published
    offset = 0
    work_results = iter(committed.work_results)
    for submission in batch:
        if submission.work is not None:
            work_result = next(work_results)
            if not submission.future.done():
                submission.future.set_result(work_result)
            continue
        n = len(submission.entries)
        if not submission.future.done():
            submission.future.set_result(BatchReceipt(outcomes[offset:offset + n], published))
        offset += n


def _fail(batch: list[_Submission], error: Exception) -> None:
    for submission in batch:
        if not submission.future.done():
            submission.future.set_exception(error)
