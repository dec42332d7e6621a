"""Storage contracts for the log. `store.py` (reads) and `writers.py` (the single writer) implement them over
SQLAlchemy Core (SQLite, PostgreSQL); `engine.py` makes engines and runs migrations.

The store only stores: it does no hashing, proving or signing. Two roles use it:

* readers (any thread, any number at once) see only committed state, and every read reflects a single committed
  state per call (`LogStore.read` lends a personality's work one such state for several statements);
* exactly one writer per database, obtained with `LogStore.acquire_writer()`, which holds a lock inside the
  database itself for as long as it lives. A second `acquire_writer()` on the same database, from this process or
  another, raises `SequencerLockHeld` instead of waiting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: bytes  # the signed note exactly as served
    created_at: int  # Unix milliseconds


@dataclass(frozen=True)
class StoredEntry:
    index: int
    data: bytes
    leaf_hash: bytes
    received_at: int  # Unix milliseconds


@dataclass(frozen=True)
class TileWrite:
    """The complete current bytes of one hash tile (level, index), to be stored in place of what was there, and for
    a full tile its interior nodes (log.tile_nodes.interior_nodes), from which proof serving slices instead of
    hashing."""

    level: int
    index: int
    data: bytes
    interior: bytes | None = None


class StoredTile(NamedTuple):
    """A hash tile as `LogStore.read_tiles` returns it: its current bytes (1 to 256 hashes) and, for a full tile
    stored with them, its interior nodes (log.tile_nodes.interior_nodes, 254 hashes), else None.

    A NamedTuple: one is made per tile read, on the proof-serving path."""

    data: bytes
    interior: bytes | None = None


# KeyRecord, KeyedEntry and RowInsert (like the sequencer's IdempotencyKey and EntryOutcome) are NamedTuples: a few
# are made per ingested entry, and a frozen dataclass takes twice as long to construct.
class KeyRecord(NamedTuple):
    """An idempotency key stored with the entry it first came with."""

    key: bytes
    index: int
    content_hash: bytes


class KeyedEntry(NamedTuple):
    """What a stored idempotency key points at."""

    index: int
    content_hash: bytes
    leaf_hash: bytes


class RowInsert(NamedTuple):
    """A row for a table that a log personality owns (e.g. a query index), committed with the batch.

    `table` and `columns` are identifiers from code, never from requests; `values` line up with `columns`. The
    entry's index goes into `index_column` (not among `columns`), filled in by the sequencer.
    """

    table: str
    columns: tuple[str, ...]
    values: tuple
    index_column: str = "idx"


class RowUpdate(NamedTuple):
    """A change to one existing row of a personality's table, committed with the batch as a RowInsert is, so that a
    row that a later entry closes (a legal hold its release) never disagrees with the log.

    In the one row where `key_columns` equal `key_values` and `index_column` is still NULL, `index_column` is set
    to the entry's index (filled in by the sequencer) and `columns` to `values`. If no such row exists the whole
    batch fails (nothing of it is stored): callers check the row first, under their own lock, so this is a guard,
    not a way to ask. Identifiers come from code, never from requests.
    """

    table: str
    key_columns: tuple[str, ...]
    key_values: tuple
    index_column: str
    columns: tuple[str, ...]
    values: tuple


class WriteTransaction(ABC):
    """The writer's open transaction, lent to personality work (see `LogWriter.commit_batch`)."""

    @abstractmethod
    def execute(self, statement) -> list[tuple]:
        """Run one SQLAlchemy Core statement (insert, update, delete, select) and return its rows, if any."""

    def execute_many(self, statement, rows: Sequence[dict]) -> None:
        """Run one insert (or update) for each of `rows`, values by column name, every row with the same columns:
        compiled once and sent as one executemany where the implementation can (a statement compiled per row, or a
        multi-row VALUES, cost ~90 us a row on SQLite)."""
        for row in rows:
            self.execute(statement.values(row))


class ReadTransaction(ABC):
    """One committed state of the log's database, lent to read work (see `LogStore.read`). Read-only."""

    @abstractmethod
    def execute(self, statement) -> list[tuple]:
        """Run one SQLAlchemy Core select and return its rows (tuples that also name their columns)."""

    @abstractmethod
    def entries_at(self, indices: Iterable[int]) -> dict[int, bytes]:
        """Entry data of the stored entries among `indices` (any order, repeats allowed), by index; indices not
        stored are absent. For personalities whose own tables point at entries by index: the log's tables are the
        store's, never joined by them."""


@dataclass(frozen=True)
class WorkFailed:
    """The result of a unit of work that raised: its savepoint was rolled back, the rest of the batch committed."""

    error: Exception


class BatchWrite(NamedTuple):
    """Everything one batch transaction stores (see `LogWriter.commit_batch`). A NamedTuple: one is made per batch,
    a small batch on the single-entry ingest path included, and a frozen dataclass of nine fields takes 1.4 us to
    make against 0.5 us.

    Entries [first_index, first_index + len(entries)) with their leaf hashes, all received at `received_at` (Unix
    milliseconds); the tiles they changed; the checkpoint signed for the new size (None only for a batch that adds
    no entries); the idempotency keys and the personality rows of the new entries; and the personality work to run
    inside the transaction.
    """

    first_index: int
    entries: Sequence[bytes] = ()
    leaf_hashes: Sequence[bytes] = ()
    received_at: int = 0
    tiles: Sequence[TileWrite] = ()
    checkpoint: StoredCheckpoint | None = None
    keys: Sequence[KeyRecord] = ()
    rows: Sequence[RowInsert | RowUpdate] = ()
    work: Sequence[Callable[[WriteTransaction], object]] = ()


@dataclass(frozen=True)
class SequencerClaim:
    """What a server says of itself when it takes the sequencer lock of a log several servers share (PostgreSQL):
    `url`, where the others send it what they do not answer themselves (None: it takes no forwarded requests);
    `holder`, a name for operators (host and process); `lease_seconds`, how long its database session may go without
    a word before PostgreSQL ends it and so frees the lock for another server (a paused or cut-off process)."""

    url: str | None
    holder: str
    lease_seconds: float


@dataclass(frozen=True)
class SequencerLease:
    """The sequencer lease as stored: the fencing `epoch` (one more at each takeover) and the claim of the server
    that took it (`since`: Unix milliseconds)."""

    epoch: int
    url: str | None
    holder: str
    since: int


class LogWriter(ABC):
    """The single writer. Holds the database's sequencer lock from creation until `close()`."""

    epoch: int | None = None  # the fencing epoch this writer commits under, where the lock is shared (PostgreSQL)

    @abstractmethod
    def commit_batch(self, batch: BatchWrite) -> list[object]:
        """Store the batch's entries, tiles, checkpoint, idempotency keys and personality rows in ONE transaction,
        and run each of its `work` callables inside it (in its own savepoint, so one that raises is undone alone
        and returns `WorkFailed`). Returns the work results in order.

        Work exists because the writer holds the database's write lock: on SQLite no other connection can write,
        so every write to the log's database (cosignatures, timestamps, registries) goes through here.

        Fenced: it commits only if the writer still holds the sequencer lock, checked inside the transaction.
        Atomic: either all of it is stored or none of it. Durable on return: once this returns, a crash of the
        process or the machine loses none of it. Raises `StorageError` when the transaction did not commit (the
        caller cannot always know whether a failure happened before or after the commit point and must reload
        state from the store before writing again), and `SequencerLockHeld` if the lock was lost.
        """

    @property
    def holding(self) -> bool:
        """False once the writer knows it lost its connection or the sequencer lock (it then commits nothing more:
        a new writer must be acquired). True does not promise the lock is still held: every commit checks that
        itself, inside its transaction, and raises `SequencerLockHeld` instead of committing."""
        return True

    def check(self) -> bool:
        """Between batches: ask the database whether this writer still holds the sequencer lock (a round trip where
        the lock is a server's): False once it knows it lost it, as `holding`; a lost connection raises the
        driver's error."""
        return self.holding

    @abstractmethod
    def close(self) -> None:
        """Release the sequencer lock. Idempotent."""


class LogStore(ABC):
    """Committed log state. Every method is safe to call from several threads at once."""

    dialect: str  # "sqlite" or "postgresql"
    # True when read_tiles is an in-process lookup cheaper than a thread hand-off (SQLite), so callers may run it
    # on their event loop; False when it is a network round trip (PostgreSQL).
    cheap_tile_reads: bool = False

    @abstractmethod
    def acquire_writer(self, claim: SequencerClaim | None = None) -> LogWriter:
        """Take the database's sequencer lock; raise `SequencerLockHeld` if another writer holds it. Where several
        servers share the database (PostgreSQL), `claim` is written to the sequencer lease with a new epoch."""

    def end_stalled_sequencer(self, lease_seconds: float) -> int | None:
        """End the database session of a sequencer stalled mid-statement for longer than `lease_seconds` (a paused
        process inside a COPY), so the lock frees; the ended session's process id, or None. Where the lock is a
        server's (PostgreSQL); elsewhere None."""
        return None

    def sequencer_lease(self) -> SequencerLease | None:
        """The lease as last written by a sequencer (None: never taken, or a database without one)."""
        return None

    def write_outside_tree(self, work: Callable[[WriteTransaction], T]) -> T:
        """Run `work(transaction)` in a transaction of its own, outside the sequencer's batches, and commit: for
        rows that are not part of the tree (the access log) written by a server that is not the sequencer. Only
        where the database takes concurrent writers (PostgreSQL); SQLite's one writer is the sequencer."""
        raise NotImplementedError(f"{self.dialect} takes writes only through the sequencer")

    @abstractmethod
    def read(self, work: Callable[[ReadTransaction], T]) -> T:
        """Run `work(transaction)` against ONE committed state and return its result: every statement it runs sees
        the same commits, and none made meanwhile. Blocking (call it from a reader thread, as `Log.read` does); any
        number of reads run at once and never wait for the writer. What work raises is raised here. Work must only
        read: the transaction ends without a commit.
        """

    @abstractmethod
    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest size, or None for a log that never published one."""

    @abstractmethod
    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint published for exactly this size, if any."""

    @abstractmethod
    def read_tiles(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], StoredTile]:
        """The hash tiles (level, index) that exist, each with its current bytes and, for a full tile stored with
        them, its interior nodes; missing ones are absent from the result."""

    @abstractmethod
    def read_entries(self, start: int, end: int) -> list[bytes]:
        """Entry data for indices [start, end) in order, stopping at the first index that is not stored."""

    def pruned_in_range(self, start: int, end: int) -> dict[int, int]:
        """The entries in [start, end) a retention run pruned (log/prune.py): index -> its deletion entry's index.
        Read in a state at least as new as any read made before the call."""
        from log.prune import pruned_in_range

        return self.read(lambda tx: pruned_in_range(tx, start, end))

    @abstractmethod
    def read_entry(self, index: int) -> StoredEntry | None:
        """One entry with its metadata."""

    @abstractmethod
    def find_leaf_hash(self, leaf_hash: bytes) -> int | None:
        """The smallest index whose leaf hash is `leaf_hash`."""

    @abstractmethod
    def find_keys(self, keys: Sequence[bytes]) -> dict[bytes, KeyedEntry]:
        """The stored idempotency keys among `keys`, with the entry each points at."""

    @abstractmethod
    def entry_count(self) -> int:
        """1 + the largest stored index (0 when empty). Used by startup reconciliation."""

    @abstractmethod
    def storage_bytes(self) -> int | None:
        """Bytes the database occupies on disk, where the backend can tell."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
