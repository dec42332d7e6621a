"""The store over SQLAlchemy Core: SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3).

Reads go through SQLAlchemy Core statements on pooled connections. The single writer keeps one driver-level
connection of its own for its whole life, because the sequencer lock lives on that connection:

* PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`), released by the server when the
  connection ends, so a killed sequencer never leaves a stale lock. Entries go in with COPY.
* SQLite: the database's own write lock. The writer always holds an open `BEGIN IMMEDIATE` transaction and
  re-opens it right after each commit, so another process that asks for the write lock is refused. Primary keys
  on entry index and checkpoint size fence off the remaining window: a second writer can never store an index
  or size twice.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import and_, create_engine, event, func, or_, select, text
from sqlalchemy.engine import Engine, make_url

from log.errors import SequencerLockHeld, StorageError
from log.storage import (
    KeyedEntry, LogStore, LogWriter, RowInsert, StoredCheckpoint, StoredEntry, WorkFailed, WriteTransaction,
)
from log.storage.schema import checkpoints, entries, leaf_index
from log.tiles import TileData

# An arbitrary 64-bit constant naming "the auditlog sequencer" among PostgreSQL advisory locks.
PG_SEQUENCER_LOCK_KEY = 0x617564_69746C6F67 & 0x7FFFFFFFFFFFFFFF

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"

# Entries per leaf-index chunk (see schema.leaf_index), and chunks probed per lookup query.
LEAF_INDEX_CHUNK = 1 << 16
# The SQLite WAL is checkpointed in the background and truncated between batches once it grows past this.
WAL_TRUNCATE_BYTES = 64 << 20
_logger = logging.getLogger(__name__)
_CHUNKS_PER_QUERY = 200
_KEYS_PER_QUERY = 500  # well under SQLite's 32,766 bound variables and PostgreSQL's 65,535 parameters


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and pin them to the psycopg 3 driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_url_for(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def upgrade_schema(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema to an Alembic revision (default: the newest).

    Upgrading a database that already has a schema is logged, start and end: some migrations rebuild a table
    (0007 copies the entries, ~4.5 s per million on SQLite), and a server that opens such a log says why it waits.
    """
    from alembic import command
    from alembic.script import ScriptDirectory

    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    config = _alembic_config(url)
    current = schema_revision(url)
    target = ScriptDirectory.from_config(config).get_current_head() if revision == "head" else revision
    upgrading = current is not None and current != target
    if upgrading:
        _logger.info("upgrading the database schema from revision %s to %s", current, target)
    started = time.monotonic()
    command.upgrade(config, revision)
    if upgrading:
        _logger.info("database schema at revision %s after %.1f s", target, time.monotonic() - started)


def downgrade_schema(url: str, revision: str) -> None:
    """Take the schema back to an Alembic revision (each migration's downgrade keeps the data it can)."""
    from alembic import command

    command.downgrade(_alembic_config(normalize_database_url(url)), revision)


def _alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["database_url"] = url
    return config


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database is at, or None if it has never been migrated."""
    engine = _make_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=8
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, which is what an acknowledgement promises.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            # The leaf-hash index takes inserts at random places: keep its hot pages in memory (64 MiB at most,
            # per connection, only as far as the database needs it).
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


class SqlLogStore(LogStore):
    def __init__(self, url: str):
        self.url = normalize_database_url(url)
        self.engine = _make_engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StorageError(f"unsupported database {self.dialect!r}: use sqlite:// or postgresql://")
        self._placeholder = "?" if self.dialect == "sqlite" else "%s"
        # read_tiles is an in-process primary-key lookup on SQLite (tens of microseconds, the GIL released while
        # SQLite reads), cheaper than a thread hand-off: Log may call it on its event loop. PostgreSQL: a round trip.
        self.cheap_tile_reads = self.dialect == "sqlite"
        self._tile_sql: dict[int, str] = {}
        self._keys_sql: dict[int, str] = {}
        self._tile_readers = threading.local()
        self._tile_readers_lock = threading.Lock()
        self._tile_reader_connections: list = []

    # -- writer ---------------------------------------------------------------------------------------------
    def acquire_writer(self) -> LogWriter:
        if self.dialect == "sqlite":
            return _SqliteWriter(self.engine)
        return _PostgresWriter(self.engine)

    # -- reads ----------------------------------------------------------------------------------------------
    def latest_checkpoint(self) -> StoredCheckpoint | None:
        query = select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).where(checkpoints.c.size == size)).first()
        return _checkpoint(row)

    def read_tiles(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
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
        return {(level, idx): _tile_data(data, interior) for level, idx, data, interior in rows}

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


def _tile_data(data, interior) -> bytes:
    if interior is None:
        return bytes(data)
    tile = TileData(data)
    tile.interior = bytes(interior)
    return tile


def _checkpoint(row) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(row.size, bytes(row.root_hash), bytes(row.note), row.created_at)


_INSERT_TILE = "INSERT INTO tiles (level, idx, data, interior)"
_ON_TILE_CONFLICT = " ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data, interior = excluded.interior"
_UPSERT_TILE = _INSERT_TILE + " VALUES ({p}, {p}, {p}, {p})" + _ON_TILE_CONFLICT
_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES ({p}, {p}, {p}, {p})"
_INSERT_KEY = "INSERT INTO entry_keys (key, idx, content_hash)"
_INSERT_ENTRY = "INSERT INTO entries (idx, data, leaf_hash, received_at)"
_ROWS_PER_INSERT = 256  # SQLite: 11 columns x 256 rows stays far below its 32,766 bound variables
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _grouped_inserts(rows: Sequence[RowInsert]) -> list[tuple[str, int, list[tuple]]]:
    """Personality rows as ("INSERT INTO t (columns)", column count, parameter rows), one per table and column
    list."""
    groups: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
    for row in rows:
        groups.setdefault((row.table, row.columns), []).append(row.values)
    statements = []
    for (table, columns), values in groups.items():
        for name in (table, *columns):
            if not _IDENTIFIER.fullmatch(name):
                raise StorageError(f"refusing to use {name!r} as a table or column name")
        statements.append((f"INSERT INTO {table} ({', '.join(columns)})", len(columns), values))
    return statements


class _DriverTransaction(WriteTransaction):
    """Runs SQLAlchemy Core statements on the writer's own driver connection, inside the batch transaction."""

    def __init__(self, cursor, dialect, positional: bool):
        self._cursor = cursor
        self._dialect = dialect
        self._positional = positional

    def execute(self, statement) -> list[tuple]:
        compiled = statement.compile(dialect=self._dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.params
        if self._positional:
            params = tuple(params[name] for name in compiled.positiontup)
        self._cursor.execute(str(compiled), params)
        if self._cursor.description is None:
            return []
        return [tuple(row) for row in self._cursor.fetchall()]


class _DriverWriter(LogWriter):
    """The batch transaction, written once for both drivers; subclasses supply the driver-specific steps."""

    placeholder = "?"

    def __init__(self, engine: Engine):
        self._dialect = engine.dialect
        self._lock = threading.Lock()
        self._closed = False

    def commit_batch(self, first_index, entries, leaf_hashes, received_at, tiles, checkpoint, keys=(), rows=(),
                     work=()):
        with self._lock:
            self._check_holding()
            p = self.placeholder
            try:
                cur = self._cursor()
                if entries:
                    self._insert_entries(cur, first_index, entries, leaf_hashes, received_at)
                    end = first_index + len(entries)
                    for chunk in range(first_index // LEAF_INDEX_CHUNK, end // LEAF_INDEX_CHUNK):
                        # This batch completes `chunk`: index its leaf hashes, sorted, in the same transaction.
                        start = chunk * LEAF_INDEX_CHUNK
                        cur.execute(self.index_chunk_sql, (chunk, start, start + LEAF_INDEX_CHUNK))
                if tiles:
                    self._upsert_tiles(cur, [(t.level, t.index, t.data, t.interior) for t in tiles])
                if checkpoint is not None:
                    cur.execute(
                        _INSERT_CHECKPOINT.format(p=p),
                        (checkpoint.size, checkpoint.root_hash, checkpoint.note, checkpoint.created_at),
                    )
                if keys:
                    self._insert_many(cur, _INSERT_KEY, 3, [(k.key, k.index, k.content_hash) for k in keys])
                for head, width, values in _grouped_inserts(rows):
                    self._insert_many(cur, head, width, values)
                results = [self._run_work(cur, position, fn) for position, fn in enumerate(work)]
                self._commit()
            except Exception as exc:
                self._after_failure()
                raise StorageError(f"{self._dialect.name} batch commit failed: {exc}") from exc
            self._after_commit()
            return results

    def _insert_many(self, cur, head: str, width: int, rows: list[tuple]) -> None:
        """`head` is "INSERT INTO table (columns)"; each row holds `width` values, the first never NULL."""
        cur.executemany(f"{head} VALUES ({', '.join([self.placeholder] * width)})", rows)

    def _upsert_tiles(self, cur, rows: list[tuple]) -> None:
        """(level, index, data, interior) rows; a tile already stored is replaced."""
        cur.executemany(_UPSERT_TILE.format(p=self.placeholder), rows)

    def _run_work(self, cur, position: int, fn):
        """One unit of personality work in its own savepoint: its failure undoes only itself."""
        cur.execute(f"SAVEPOINT work_{position}")
        try:
            result = fn(_DriverTransaction(cur, self._dialect, self.placeholder == "?"))
        except Exception as exc:  # noqa: BLE001 - handed back to the submitter of this work only
            cur.execute(f"ROLLBACK TO SAVEPOINT work_{position}")
            cur.execute(f"RELEASE SAVEPOINT work_{position}")
            return WorkFailed(exc)
        cur.execute(f"RELEASE SAVEPOINT work_{position}")
        return result


class _SqliteWriter(_DriverWriter):
    _driver_error = sqlite3.Error
    index_chunk_sql = (
        "INSERT INTO leaf_index (chunk, leaf_prefix, idx) SELECT ?, substr(leaf_hash, 1, 8), idx FROM entries "
        "WHERE idx >= ? AND idx < ? ORDER BY 2, 3"
    )

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self._pooled = engine.raw_connection()
        self._conn: sqlite3.Connection = self._pooled.driver_connection
        self._conn.isolation_level = None  # we issue BEGIN/COMMIT ourselves
        self._values_statements: dict[tuple[str, int, str], str] = {}
        # Bytes of entries and tiles written since the WAL's size was last looked at: a stat call per batch was one
        # more moment without the GIL (see _insert_many), so the size is checked only once a sixteenth of the limit
        # may have been added (the WAL grows by about this much, in pages, a little more for small batches).
        self._unchecked_bytes = 0
        self._conn.execute("PRAGMA busy_timeout=1000")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._pooled.close()
            raise SequencerLockHeld(
                "another auditlog sequencer holds this SQLite database's write lock; "
                "stop it or point this server at another database"
            ) from exc
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._holding = True
        # Copying the WAL back into the database is left to a background thread on its own connection, so that a
        # batch's COMMIT only appends to the WAL and fsyncs it.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        # A multi-row INSERT into a table with constraints keeps a statement journal (the pages it changes, so that
        # it can undo itself alone); past 64 KiB SQLite spills it to a new file in /var/tmp, which each audit batch
        # created, wrote ~100 pages to and deleted. In memory it is a few hundred KiB at most, per batch.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        database = self._conn.execute("PRAGMA database_list").fetchone()[2]
        self._wal_path = database + "-wal"
        self._checkpointer = _WalCheckpointer(database)

    def _check_holding(self) -> None:
        if not self._holding:
            raise SequencerLockHeld("this writer lost the SQLite write lock; restart to reload the log")

    def _cursor(self):
        return self._conn.cursor()

    def _insert_entries(self, cur, first_index, entries, leaf_hashes, received_at) -> None:
        self._unchecked_bytes += sum(map(len, entries)) + 48 * len(entries)
        self._insert_many(cur, _INSERT_ENTRY, 4, list(zip(
            range(first_index, first_index + len(entries)), entries, leaf_hashes, [received_at] * len(entries))))

    def _insert_many(self, cur, head: str, width: int, rows: list[tuple], conflict: str = "") -> None:
        # Each statement is a moment without the GIL (SQLite runs it released), and taking the GIL back from a busy
        # event loop cost the writer 0.1 to several ms each time: a batch's rows go in one statement, not one per
        # row (executemany) nor one per base-4 digit of the row count (this code's first way, ~4.5 statements for
        # 40 rows). Statements come in a few shapes, powers of two up to _ROWS_PER_INSERT rows, so that each stays
        # prepared in the connection's statement cache (preparing a 150-row INSERT of 11 columns costs ~1.6 ms, three
        # times running it); a shape larger than the rows is padded with all-NULL rows that its WHERE drops, which is
        # why a row's first value must never be NULL (they are indices, keys and tile levels).
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            shape = 1 << (len(chunk) - 1).bit_length()
            values = [value for row in chunk for value in row]
            values += [None] * (width * (shape - len(chunk)))
            cur.execute(self._values_sql(head, width, shape, conflict), values)

    def _upsert_tiles(self, cur, rows: list[tuple]) -> None:
        self._unchecked_bytes += sum(len(data) + len(interior or b"") for _, _, data, interior in rows)
        self._insert_many(cur, _INSERT_TILE, 4, rows, _ON_TILE_CONFLICT)

    def _values_sql(self, head: str, width: int, count: int, conflict: str) -> str:
        sql = self._values_statements.get((head, count, conflict))
        if sql is None:
            row = "(" + ", ".join(["?"] * width) + ")"
            # The WHERE also tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
            sql = f"{head} SELECT * FROM (VALUES {', '.join([row] * count)}) WHERE column1 IS NOT NULL{conflict}"
            self._values_statements[(head, count, conflict)] = sql
        return sql

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _after_commit(self) -> None:
        # Committed and durable. SQLite only rewinds the WAL when a write transaction starts on a fully
        # checkpointed WAL, which never happens while we hold a transaction open at all times: now and then,
        # between two batches, checkpoint it to the end and truncate it, so it stays bounded.
        try:
            if self._unchecked_bytes * 16 >= WAL_TRUNCATE_BYTES:
                self._unchecked_bytes = 0
                if os.path.getsize(self._wal_path) > WAL_TRUNCATE_BYTES:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except (OSError, sqlite3.Error) as exc:
            _logger.warning("could not truncate the WAL: %s", exc)
        # Take the write lock again at once so no other writer slips in.
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._holding = False

    def _after_failure(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._holding = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._checkpointer.stop()
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._conn.isolation_level = ""
            self._pooled.close()


class _WalCheckpointer:
    """Checkpoints the SQLite WAL every `interval` seconds from a thread of its own (PASSIVE: it never waits for
    the writer or readers and never blocks them). A final TRUNCATE checkpoint runs when it stops."""

    def __init__(self, path: str, interval: float = 0.5):
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditlog-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            _logger.warning("WAL checkpointing stopped: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# PostgreSQL's binary COPY format: a signature, flags and header-extension length (both 0); per row its field count,
# then per field a signed 32-bit length and the value (int8 big-endian, bytea raw); -1 as the field count ends it.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_ENTRY_HEAD = struct.Struct(">hiqi")  # field count, idx's length and value, data's length
_COPY_HASH_FIELD = struct.pack(">i", 32)
_COPY_INT8_FIELD = struct.Struct(">iq")
_COPY_CHUNK_BYTES = 1 << 20


class _PostgresWriter(_DriverWriter):
    placeholder = "%s"
    index_chunk_sql = (
        "INSERT INTO leaf_index (chunk, leaf_prefix, idx) SELECT %s, substring(leaf_hash from 1 for 8), idx "
        "FROM entries WHERE idx >= %s AND idx < %s ORDER BY 2, 3"
    )

    def __init__(self, engine: Engine):
        import psycopg

        super().__init__(engine)
        self._driver_error = psycopg.Error
        self._pooled = engine.raw_connection()
        self._conn = self._pooled.driver_connection  # psycopg.Connection
        self._conn.rollback()
        got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_SEQUENCER_LOCK_KEY,)).fetchone()[0]
        self._conn.commit()
        if not got:
            self._pooled.close()
            raise SequencerLockHeld(
                "another auditlog sequencer holds this PostgreSQL database's advisory lock; "
                "stop it or point this server at another database"
            )

    def _check_holding(self) -> None:
        if self._closed:
            raise SequencerLockHeld("this writer is closed")

    def _cursor(self):
        return self._conn.cursor()

    def _insert_entries(self, cur, first_index, entries, leaf_hashes, received_at) -> None:
        # The batch as one PostgreSQL binary COPY stream, put together here: 0.4-0.7 us less of the writer's
        # Python per entry than psycopg's write_row, row by row (2^19-entry durable ingest).
        row_head = _COPY_ENTRY_HEAD.pack
        hash_field = _COPY_HASH_FIELD
        tail = _COPY_INT8_FIELD.pack(8, received_at)
        with cur.copy("COPY entries (idx, data, leaf_hash, received_at) FROM STDIN (FORMAT BINARY)") as copy:
            parts, size = [_COPY_SIGNATURE], 0
            for index, (data, leaf_hash) in enumerate(zip(entries, leaf_hashes), first_index):
                parts += (row_head(4, 8, index, len(data)), data, hash_field, leaf_hash, tail)
                size += len(data)
                if size >= _COPY_CHUNK_BYTES:  # a large batch goes out in pieces, not as one copy of itself
                    copy.write(b"".join(parts))
                    parts, size = [], 0
            parts.append(_COPY_TRAILER)
            copy.write(b"".join(parts))

    def _commit(self) -> None:
        self._conn.commit()

    def _after_commit(self) -> None:
        pass

    def _after_failure(self) -> None:
        try:
            self._conn.rollback()
        except self._driver_error:
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.rollback()
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (PG_SEQUENCER_LOCK_KEY,))
                self._conn.commit()
            except Exception:
                pass
            self._pooled.close()
