"""The store over SQLAlchemy Core: SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3).

Reads go through SQLAlchemy Core statements on pooled connections, and the hottest ones (tiles, idempotency keys)
through fixed SQL strings on driver connections. The single writer (log.storage.writers) keeps one driver-level
connection of its own for its whole life, because the sequencer lock lives on that connection:

* PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`), released by the server when the
  connection ends, so a killed sequencer never leaves a stale lock. Entries go in with COPY.
* SQLite: the database's own write lock. The writer always holds an open `BEGIN IMMEDIATE` transaction and
  re-opens it right after each commit, so another process that asks for the write lock is refused. Primary keys
  on entry index and checkpoint size fence off the remaining window: a second writer can never store an index
  or size twice.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Sequence

from sqlalchemy import and_, func, inspect, or_, select, text
from sqlalchemy.engine import make_url

from log.errors import StorageError
from log.storage import (
    KeyedEntry,
    LogStore,
    LogWriter,
    ReadTransaction,
    SequencerClaim,
    SequencerLease,
    StoredCheckpoint,
    StoredEntry,
    StoredTile,
    WriteTransaction,
)
from log.storage.engine import make_engine, normalize_database_url
from log.storage.schema import LEAF_INDEX_CHUNK, checkpoints, entries, leaf_index, sequencer_lease
from log.storage.writers import PG_END_STALLED_SEQUENCER, PostgresWriter, SqliteWriter

# Chunks probed per leaf-hash lookup query, and idempotency keys asked per query.
_CHUNKS_PER_QUERY = 200
_KEYS_PER_QUERY = 500  # well under SQLite's 32,766 bound variables and PostgreSQL's 65,535 parameters


class SqlLogStore(LogStore):
    def __init__(self, url: str, read_only: bool = False):
        """`read_only`: a store for checking only (see make_engine); acquire_writer() then fails."""
        self.url = normalize_database_url(url)
        self.engine = make_engine(self.url, read_only=read_only)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StorageError(f"unsupported database {self.dialect!r}: use sqlite:// or postgresql://")
        self._placeholder = "?" if self.dialect == "sqlite" else "%s"
        # read_tiles is an in-process primary-key lookup on SQLite (tens of microseconds, the GIL released while
        # SQLite reads), cheaper than a thread hand-off: Log may call it on its event loop. PostgreSQL: a round trip.
        self.cheap_tile_reads = self.dialect == "sqlite"
        self._tile_sql: dict[int, str] = {}
        self._pruned_sql = ("SELECT idx, deletion_idx FROM pruned_entries WHERE idx >= {p} AND idx < {p} "
                            "ORDER BY idx").format(p=self._placeholder)
        self._keys_sql: dict[int, str] = {}
        self._tile_readers = threading.local()
        self._tile_readers_lock = threading.Lock()
        self._tile_reader_connections: list = []

    # -- writer ---------------------------------------------------------------------------------------------
    def acquire_writer(self, claim: SequencerClaim | None = None) -> LogWriter:
        if self.dialect == "sqlite":
            return SqliteWriter(self.engine)
        return PostgresWriter(self.engine, claim)

    def sequencer_lease(self) -> SequencerLease | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(sequencer_lease).where(sequencer_lease.c.id == 1)).first()
        return None if row is None else SequencerLease(row.epoch, row.url, row.holder, row.since)

    def end_stalled_sequencer(self, lease_seconds: float) -> int | None:
        """PostgreSQL: end the session of a sequencer stalled in the middle of a statement for more than
        `lease_seconds` (see writers.PG_END_STALLED_SEQUENCER); its process id, or None when there was none."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(PG_END_STALLED_SEQUENCER, (lease_seconds,)).first()
            conn.commit()
        return None if row is None else row[0]

    def write_outside_tree(self, work):
        if self.dialect == "sqlite":
            return super().write_outside_tree(work)
        with self.engine.begin() as conn:
            return work(_DirectWrite(conn))

    # -- reads ----------------------------------------------------------------------------------------------
    def read(self, work):
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # The driver opens no transaction for a SELECT, so each statement would see the newest commit. In
                # one (deferred: the first read fixes the WAL snapshot) they all see the same; the connection's
                # return to the pool rolls it back.
                conn.exec_driver_sql("BEGIN")
            else:
                conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for the transaction
            return work(_SnapshotRead(conn, self.dialect == "sqlite"))

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        # A read worker re-reads it every 50 ms on its event loop (log/service.py StoredHead): one fixed statement
        # on a driver connection, as read_tiles, 7 us against 175 through SQLAlchemy's select() and a pool checkout.
        rows = self._driver_rows(_LATEST_CHECKPOINT_SQL, ())
        if not rows:
            return None
        size, root_hash, note, created_at = rows[0]
        return StoredCheckpoint(size, bytes(root_hash), bytes(note), created_at)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).where(checkpoints.c.size == size)).first()
        return _checkpoint(row)

    def first_checkpoint_after(self, size: int) -> StoredCheckpoint | None:
        """The smallest checkpoint larger than `size`, if any (its created_at dates the oldest commit a replica
        replayed up to `size` lacks)."""
        query = select(checkpoints).where(checkpoints.c.size > size).order_by(checkpoints.c.size).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _checkpoint(row)

    def replica_head(self) -> tuple[StoredCheckpoint | None, StandbyReplay | None]:
        """The latest checkpoint and, on a PostgreSQL hot standby, where its replay stands (None on a server that
        is not in recovery, and on SQLite). One connection, two statements."""
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
            replay = None
            if self.dialect == "postgresql":
                in_recovery, age, paused = conn.execute(text(
                    "SELECT pg_is_in_recovery(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), "
                    "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END"
                )).one()
                if in_recovery:
                    replay = StandbyReplay(None if age is None else float(age), bool(paused))
        return _checkpoint(row), replay

    def read_tiles(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], StoredTile]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        # The hot read of proof and tile serving, so it skips SQLAlchemy's statement building, caching and result
        # wrapping (270 us of Python per call against 30 us for the lookup itself at 10^7 entries) and runs one
        # fixed SQL string on a driver connection. An OR of (level = ? AND idx = ?) terms: each term is a
        # primary-key lookup. A row-value IN list would be answered by SQLite with a scan of the whole table.
        params = [value for key in keys for value in key]
        sql = self._read_tiles_sql(len(keys))
        rows = self._driver_rows(sql, params)
        return {
            (level, idx): StoredTile(bytes(data), None if interior is None else bytes(interior))
            for level, idx, data, interior in rows
        }

    def _thread_reader(self):
        """This thread's own SQLite connection for tile reads and key lookups, kept for the store's life."""
        reader = getattr(self._tile_readers, "connection", None)
        if reader is None:
            fairy = self.engine.raw_connection()
            reader = fairy.driver_connection
            fairy.detach()  # out of the pool for good: closed by close(), not returned
            # Random tile rows through a 64 MiB page cache (the writer's setting) cost ~2x those through 2 MiB:
            # the cache keeps taking fresh memory, and first touches of memory are slow on these VMs.
            reader.execute("PRAGMA cache_size=-2048").fetchall()
            with self._tile_readers_lock:
                self._tile_reader_connections.append(reader)
            self._tile_readers.connection = reader
        return reader

    def _read_tiles_sql(self, count: int) -> str:
        sql = self._tile_sql.get(count)
        if sql is None:
            term = f"(level = {self._placeholder} AND idx = {self._placeholder})"
            sql = "SELECT level, idx, data, interior FROM tiles WHERE " + " OR ".join([term] * count)
            if count <= 64:  # the shapes proofs and startup use; cached per key count
                self._tile_sql[count] = sql
        return sql

    def read_entries(self, start: int, end: int) -> list[bytes]:
        if end <= start:
            return []
        query = (
            select(entries.c.idx, entries.c.data)
            .where(entries.c.idx >= start, entries.c.idx < end)
            .order_by(entries.c.idx)
        )
        out: list[bytes] = []
        with self.engine.connect() as conn:
            for idx, data in conn.execute(query):
                if idx != start + len(out):
                    break
                out.append(bytes(data))
        return out

    def pruned_in_range(self, start: int, end: int) -> dict[int, int]:
        """The pruned entries in [start, end) (log/prune.py): index -> the deletion entry's index. Asked for every
        entry bundle served, a cached one included: one fixed statement on a driver connection, as read_tiles."""
        return {idx: deletion for idx, deletion in self._driver_rows(self._pruned_sql, (start, end))}

    def read_entry(self, index: int) -> StoredEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(entries).where(entries.c.idx == index)).first()
        if row is None:
            return None
        return StoredEntry(row.idx, bytes(row.data), bytes(row.leaf_hash), row.received_at)

    def find_leaf_hash(self, leaf_hash: bytes) -> int | None:
        with self.engine.connect() as conn:
            largest = conn.execute(select(func.max(entries.c.idx))).scalar()
            if largest is None:
                return None
            indexed_chunks = (largest + 1) // LEAF_INDEX_CHUNK
            prefix = leaf_hash[:8]
            # Completed chunks, lowest first: each (chunk, prefix) term is a primary-key range lookup.
            for first in range(0, indexed_chunks, _CHUNKS_PER_QUERY):
                chunks = range(first, min(first + _CHUNKS_PER_QUERY, indexed_chunks))
                query = (
                    select(func.min(leaf_index.c.idx))
                    .select_from(leaf_index.join(entries, entries.c.idx == leaf_index.c.idx))
                    .where(or_(*(and_(leaf_index.c.chunk == c, leaf_index.c.leaf_prefix == prefix) for c in chunks)))
                    .where(entries.c.leaf_hash == leaf_hash)
                )
                found = conn.execute(query).scalar()
                if found is not None:
                    return found
            # The unfinished chunk: a scan of at most LEAF_INDEX_CHUNK entries along the primary key.
            tail = select(func.min(entries.c.idx)).where(
                entries.c.idx >= indexed_chunks * LEAF_INDEX_CHUNK, entries.c.leaf_hash == leaf_hash
            )
            return conn.execute(tail).scalar()

    def find_keys(self, keys: Sequence[bytes]) -> dict[bytes, KeyedEntry]:
        # Asked by the sequencer for every batch of keyed entries: a fixed SQL string on a driver connection, as
        # read_tiles (SQLAlchemy's IN-list compilation and bind processing cost more than the lookups).
        found: dict[bytes, KeyedEntry] = {}
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = list(keys[start:start + _KEYS_PER_QUERY])
            sql = self._find_keys_sql(len(chunk))
            for key, idx, content_hash, leaf_hash in self._driver_rows(sql, chunk):
                found[bytes(key)] = KeyedEntry(idx, bytes(content_hash), bytes(leaf_hash))
        return found

    def _find_keys_sql(self, count: int) -> str:
        sql = self._keys_sql.get(count)
        if sql is None:
            marks = ", ".join([self._placeholder] * count)
            sql = ("SELECT entry_keys.key, entry_keys.idx, entry_keys.content_hash, entries.leaf_hash "
                   "FROM entry_keys JOIN entries ON entries.idx = entry_keys.idx "
                   f"WHERE entry_keys.key IN ({marks})")
            if len(self._keys_sql) < 256:
                self._keys_sql[count] = sql
        return sql

    def _driver_rows(self, sql: str, params: Sequence) -> list[tuple]:
        """Rows of one read-only statement on a driver connection: this thread's own on SQLite, pooled on
        PostgreSQL."""
        if self.dialect == "sqlite":
            # This thread's own connection, kept: a pool checkout and check-in cost twice the lookup. No read
            # transaction outlives the statement (the driver opens none for a SELECT; fetchall ends it).
            return self._thread_reader().execute(sql, params).fetchall()
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                cur.execute(sql, params)
                return cur.fetchall()
            finally:
                cur.close()
        finally:
            conn.close()  # back to the pool, which ends the read transaction

    def entry_count(self) -> int:
        with self.engine.connect() as conn:
            largest = conn.execute(select(func.max(entries.c.idx))).scalar()
        return 0 if largest is None else largest + 1

    def storage_bytes(self) -> int | None:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                page_size = conn.exec_driver_sql("PRAGMA page_size").scalar()
                return pages * page_size
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar()

    def close(self) -> None:
        with self._tile_readers_lock:
            readers, self._tile_reader_connections = self._tile_reader_connections, []
        for reader in readers:
            reader.close()
        self.engine.dispose()


class _DirectWrite(WriteTransaction):
    """Core statements in a transaction of their own on a pooled connection (see SqlLogStore.write_outside_tree)."""

    __slots__ = ("_conn",)

    def __init__(self, conn):
        self._conn = conn

    def execute(self, statement) -> list[tuple]:
        result = self._conn.execute(statement)
        return result.all() if result.returns_rows else []

    def execute_many(self, statement, rows) -> None:
        if rows:
            self._conn.execute(statement, list(rows))


@dataclass(frozen=True)
class StandbyReplay:
    """Where a PostgreSQL hot standby's replay stands: the age of the last transaction it replayed (now minus
    pg_last_xact_replay_timestamp(); None before it replayed any) and whether its replay is paused. The age grows
    while the primary commits nothing too: it says how old the replica's data is, not how far behind it is."""

    replay_age: float | None
    paused: bool


class _SnapshotRead(ReadTransaction):
    """Core statements on a pooled connection inside one read transaction (see SqlLogStore.read)."""

    __slots__ = ("_conn", "_sqlite")

    def __init__(self, conn, sqlite: bool):
        self._conn = conn
        self._sqlite = sqlite

    def execute(self, statement) -> list[tuple]:
        return self._conn.execute(statement).all()

    def entries_at(self, indices: Iterable[int]) -> dict[int, bytes]:
        # Fixed SQL on the driver connection under this transaction, as find_keys: SQLAlchemy's IN-list compilation
        # and bind processing cost 2-4x the primary-key lookups themselves (2,000 entries: SQLite 7.9 ms through
        # SQLAlchemy, 2.0 ms here; PostgreSQL 56 ms through SQLAlchemy's IN list, 16 ms as one = ANY(array)).
        wanted = sorted(set(indices))
        found: dict[int, bytes] = {}
        if not wanted:
            return found
        cursor = self._conn.connection.driver_connection.cursor()
        try:
            if self._sqlite:
                for start in range(0, len(wanted), _KEYS_PER_QUERY):
                    chunk = wanted[start:start + _KEYS_PER_QUERY]
                    cursor.execute(_sqlite_entries_at_sql(len(chunk)), chunk)
                    for idx, data in cursor.fetchall():
                        found[idx] = bytes(data)
            else:
                cursor.execute("SELECT idx, data FROM entries WHERE idx = ANY(%s::bigint[])", (wanted,))
                for idx, data in cursor.fetchall():
                    found[idx] = bytes(data)
        finally:
            cursor.close()
        return found


@functools.lru_cache(maxsize=64)
def _sqlite_entries_at_sql(count: int) -> str:
    return f"SELECT idx, data FROM entries WHERE idx IN ({', '.join(['?'] * count)})"


_LATEST_CHECKPOINT_SQL = "SELECT size, root_hash, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1"


def _checkpoint(row) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(row.size, bytes(row.root_hash), bytes(row.note), row.created_at)



def peek_latest_checkpoint(url: str) -> StoredCheckpoint | None:
    """The latest checkpoint of the database at `url`, read without creating or changing anything: None when the
    SQLite file does not exist, or the database has no checkpoints table (never migrated) or no checkpoint."""
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or parsed.database == ":memory:"
                                                  or not Path(parsed.database).exists()):
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(checkpoints.name):
                return None
            row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
        return _checkpoint(row)
    finally:
        engine.dispose()
