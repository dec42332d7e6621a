"""The log's single writer over a driver connection of its own: the batch transaction (written once), and its
SQLite and PostgreSQL forms.

The writer holds the sequencer lock for its whole life (see log.storage.store): on SQLite an open `BEGIN IMMEDIATE`
transaction, re-opened right after each commit; on PostgreSQL a session-level advisory lock, which every batch
transaction checks it still holds before it commits (the fence: a session that lost the lock, and with it the right
to write, never commits). On SQLite a background thread checkpoints the WAL so that a batch's COMMIT only appends to
the WAL and fsyncs it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from log.errors import SequencerLockHeld, StorageError
from log.storage import (
    BatchWrite, LogWriter, RowInsert, RowUpdate, SequencerClaim, StoredCheckpoint, WorkFailed, WriteTransaction,
)
from log.storage.pg_copy import COPY_ENTRIES, copy_entries
from log.storage.schema import LEAF_INDEX_CHUNK

# An arbitrary 64-bit constant naming "the auditlog sequencer" among PostgreSQL advisory locks.
PG_SEQUENCER_LOCK_KEY = 0x617564_69746C6F67 & 0x7FFFFFFFFFFFFFFF
# The fence every PostgreSQL batch passes inside its transaction, before COMMIT: does this session still hold the
# sequencer lock? pg_locks shows a bigint advisory key as classid (high 32 bits), objid (low 32 bits) and
# objsubid 1.
_PG_HOLDS_LOCK = (
    "locktype = 'advisory' AND pid = pg_backend_pid() AND granted "
    f"AND classid = {PG_SEQUENCER_LOCK_KEY >> 32} AND objid = {PG_SEQUENCER_LOCK_KEY & 0xFFFFFFFF} AND objsubid = 1"
)
# A sequencer whose process stopped in the middle of a statement that waits for it (a COPY waiting for its data,
# a result waiting to be read): its session is neither idle nor idle in a transaction, so PostgreSQL's idle timeouts
# never end it, and a paused process would keep the lock for as long as it is paused. Another server ends such a
# session once it has waited on its client for longer than a bound (log/defaults.py STALLED_STATEMENT_SECONDS; a
# live writer's statements wait on it for milliseconds, seconds for a 64 MiB batch on a slow link); the fence makes
# sure nothing of it commits.
PG_END_STALLED_SEQUENCER = (
    "SELECT a.pid, pg_terminate_backend(a.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = "
    f"current_database()) AND l.classid = {PG_SEQUENCER_LOCK_KEY >> 32} AND l.objid = "
    f"{PG_SEQUENCER_LOCK_KEY & 0xFFFFFFFF} AND l.objsubid = 1 AND a.pid <> pg_backend_pid() AND a.state = 'active' "
    "AND a.wait_event IN ('ClientRead', 'ClientWrite') AND a.state_change < now() - make_interval(secs => %s)"
)
# ... and does the sequencer lease still hold this writer's epoch (the fencing token: one more at each takeover)?
_PG_FENCE = (f"EXISTS (SELECT 1 FROM pg_locks WHERE {_PG_HOLDS_LOCK}) "
             "AND (SELECT epoch FROM sequencer_lease WHERE id = 1) = %s")
_PG_INSERT_CHECKPOINT_FENCED = (
    "INSERT INTO checkpoints (size, root_hash, note, created_at) SELECT %s, %s, %s, %s WHERE " + _PG_FENCE
)
_PG_TAKE_LEASE = (
    "INSERT INTO sequencer_lease (id, epoch, url, holder, since) VALUES (1, 1, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET epoch = sequencer_lease.epoch + 1, url = excluded.url, "
    "holder = excluded.holder, since = excluded.since RETURNING epoch"
)
# Without a claim (a library caller, a one-off tool) the session is still leased, for this long.
DEFAULT_LEASE_SECONDS = 3.0

# The SQLite WAL is checkpointed in the background and truncated between batches once it grows past this.
WAL_TRUNCATE_BYTES = 64 << 20
_logger = logging.getLogger(__name__)

_INSERT_TILE = "INSERT INTO tiles (level, idx, data, interior)"
_ON_TILE_CONFLICT = " ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data, interior = excluded.interior"
_UPSERT_TILE = _INSERT_TILE + " VALUES ({p}, {p}, {p}, {p})" + _ON_TILE_CONFLICT
_INSERT_CHECKPOINT = "INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES ({p}, {p}, {p}, {p})"
_INSERT_KEY = "INSERT INTO entry_keys (key, idx, content_hash)"
_INSERT_ENTRY = "INSERT INTO entries (idx, data, leaf_hash, received_at)"
_ROWS_PER_INSERT = 256  # SQLite: 11 columns x 256 rows stays far below its 32,766 bound variables
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _check_identifiers(*names: str) -> None:
    for name in names:
        if not _IDENTIFIER.fullmatch(name):
            raise StorageError(f"refusing to use {name!r} as a table or column name")


def _grouped_inserts(rows: Sequence[RowInsert | RowUpdate]) -> list[tuple[str, int, list[tuple]]]:
    """Personality RowInserts as ("INSERT INTO t (columns)", column count, parameter rows), one per table and column
    list (RowUpdates are left to _row_update)."""
    groups: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
    for row in rows:
        if not isinstance(row, RowUpdate):
            groups.setdefault((row.table, row.columns), []).append(row.values)
    statements = []
    for (table, columns), values in groups.items():
        _check_identifiers(table, *columns)
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

    def execute_many(self, statement, rows: Sequence[dict]) -> None:
        if not rows:
            return
        compiled = statement.compile(dialect=self._dialect, column_keys=list(rows[0]))
        if self._positional:
            names = compiled.positiontup
            self._cursor.executemany(str(compiled), [tuple(row[name] for name in names) for row in rows])
        else:
            self._cursor.executemany(str(compiled), rows)


class DriverWriter(LogWriter):
    """The batch transaction, written once for both drivers; subclasses supply the driver-specific steps."""

    placeholder = "?"

    def __init__(self, engine: Engine):
        self._dialect = engine.dialect
        self._lock = threading.Lock()
        self._closed = False

    def commit_batch(self, batch: BatchWrite) -> list[object]:
        with self._lock:
            self._check_holding()
            try:
                cur = self._cursor()
                if batch.entries:
                    first_index, entries = batch.first_index, batch.entries
                    self._insert_entries(cur, first_index, entries, batch.leaf_hashes, batch.received_at)
                    end = first_index + len(entries)
                    for chunk in range(first_index // LEAF_INDEX_CHUNK, end // LEAF_INDEX_CHUNK):
                        # This batch completes `chunk`: index its leaf hashes, sorted, in the same transaction.
                        start = chunk * LEAF_INDEX_CHUNK
                        cur.execute(self.index_chunk_sql, (chunk, start, start + LEAF_INDEX_CHUNK))
                if batch.tiles:
                    self._upsert_tiles(cur, [(t.level, t.index, t.data, t.interior) for t in batch.tiles])
                checkpoint = batch.checkpoint
                fenced = checkpoint is not None and self._insert_checkpoint(cur, checkpoint)
                if batch.keys:
                    self._insert_many(cur, _INSERT_KEY, 3, [(k.key, k.index, k.content_hash) for k in batch.keys])
                for head, width, values in _grouped_inserts(batch.rows):
                    self._insert_many(cur, head, width, values)
                for row in batch.rows:
                    if isinstance(row, RowUpdate):
                        self._row_update(cur, row)
                results = [self._run_work(cur, position, fn) for position, fn in enumerate(batch.work)]
                if not fenced:
                    self._fence(cur)
                self._commit()
            except SequencerLockHeld:
                self._after_failure()
                raise
            except Exception as exc:
                self._after_failure()
                raise StorageError(f"{self._dialect.name} batch commit failed: {exc}") from exc
            self._after_commit()
            return results

    def _insert_checkpoint(self, cur, checkpoint: StoredCheckpoint) -> bool:
        """Store the batch's checkpoint; True if that also passed the fence (see _fence)."""
        cur.execute(_INSERT_CHECKPOINT.format(p=self.placeholder),
                    (checkpoint.size, checkpoint.root_hash, checkpoint.note, checkpoint.created_at))
        return False

    def _fence(self, cur) -> None:
        """Inside the batch transaction, before COMMIT: raise SequencerLockHeld unless this writer still holds the
        sequencer lock. SQLite needs no statement: its lock is the open write transaction itself."""

    @property
    def holding(self) -> bool:
        """False once this writer knows it lost its connection or the sequencer lock: it will commit nothing more."""
        return not self._closed

    def _insert_many(self, cur, head: str, width: int, rows: list[tuple]) -> None:
        """`head` is "INSERT INTO table (columns)"; each row holds `width` values, the first never NULL."""
        cur.executemany(f"{head} VALUES ({', '.join([self.placeholder] * width)})", rows)

    def _upsert_tiles(self, cur, rows: list[tuple]) -> None:
        """(level, index, data, interior) rows; a tile already stored is replaced."""
        cur.executemany(_UPSERT_TILE.format(p=self.placeholder), rows)

    def _row_update(self, cur, row: RowUpdate) -> None:
        """One RowUpdate (its `values` start with the entry's index, for `index_column`): exactly one row must
        change, else the batch fails (RowUpdate says why)."""
        _check_identifiers(row.table, row.index_column, *row.columns, *row.key_columns)
        p = self.placeholder
        assignments = ", ".join(f"{name} = {p}" for name in (row.index_column, *row.columns))
        keys = " AND ".join(f"{name} = {p}" for name in row.key_columns)
        cur.execute(f"UPDATE {row.table} SET {assignments} WHERE {keys} AND {row.index_column} IS NULL",
                    (*row.values, *row.key_values))
        if cur.rowcount != 1:
            raise StorageError(f"{row.table}: {cur.rowcount} rows where {dict(zip(row.key_columns, row.key_values))} "
                               f"and {row.index_column} IS NULL; the update needs exactly one")

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


class SqliteWriter(DriverWriter):
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

    @property
    def holding(self) -> bool:
        return not self._closed and self._holding

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


class PostgresWriter(DriverWriter):
    placeholder = "%s"
    index_chunk_sql = (
        "INSERT INTO leaf_index (chunk, leaf_prefix, idx) SELECT %s, substring(leaf_hash from 1 for 8), idx "
        "FROM entries WHERE idx >= %s AND idx < %s ORDER BY 2, 3"
    )

    def __init__(self, engine: Engine, claim: SequencerClaim | None = None):
        import psycopg

        super().__init__(engine)
        claim = claim or SequencerClaim(None, f"{socket.gethostname()} pid {os.getpid()}", DEFAULT_LEASE_SECONDS)
        self._driver_error = psycopg.Error
        self._pooled = engine.raw_connection()
        self._conn = self._pooled.driver_connection  # psycopg.Connection
        self._lost: str | None = None
        try:
            self._conn.rollback()
            got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_SEQUENCER_LOCK_KEY,)).fetchone()[0]
            self._conn.commit()
            if not got:
                raise SequencerLockHeld(
                    "another auditlog sequencer holds this PostgreSQL database's advisory lock; "
                    "stop it or point this server at another database"
                )
            # The lease: a session that says nothing for this long, in a transaction or not, is ended by PostgreSQL,
            # and its lock with it, so that a paused (SIGSTOP), hung or cut-off sequencer frees the log for another
            # server. A live one never goes quiet that long: the heartbeat below speaks between batches.
            lease_ms = max(1000, int(claim.lease_seconds * 1000))
            if self._conn.info.server_version >= 140000:  # idle_session_timeout came with PostgreSQL 14
                self._conn.execute(f"SET idle_session_timeout = {lease_ms}")
            self._conn.execute(f"SET idle_in_transaction_session_timeout = {lease_ms}")
            self.epoch = self._conn.execute(_PG_TAKE_LEASE, (claim.url, claim.holder, int(time.time() * 1000))
                                            ).fetchone()[0]
            self._conn.commit()
        except BaseException:
            self._pooled.invalidate()  # its session (and any lock it took) ends; its settings go with it
            raise
        self._heartbeat_stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, args=(claim.lease_seconds / 4,),
                                           name="auditlog-sequencer-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self, interval: float) -> None:
        """Keep the lease: between batches, a round trip every `interval` that also checks the lock (a batch in
        progress speaks for itself, so a busy writer is skipped, never waited for)."""
        while not self._heartbeat_stop.wait(interval):
            if not self._lock.acquire(blocking=False):
                continue
            try:
                if self._closed or not self.holding:
                    return
                held = self._conn.execute(f"SELECT {_PG_FENCE}", (self.epoch,)).fetchone()[0]
                self._conn.rollback()
                if not held:
                    self._lost = "the session no longer holds it"
                    return
            except Exception as exc:  # noqa: BLE001 - a lost connection: `holding` is False from now on
                _logger.warning("the sequencer's database session is gone: %s", exc)
                return
            finally:
                self._lock.release()

    def _check_holding(self) -> None:
        if self._closed:
            raise SequencerLockHeld("this writer is closed")
        if self._lost is not None:
            raise SequencerLockHeld(f"this writer lost the PostgreSQL advisory lock: {self._lost}")

    def _insert_checkpoint(self, cur, checkpoint: StoredCheckpoint) -> bool:
        # The fence rides on the checkpoint's INSERT, which stores its row only while this session holds the lock:
        # no round trip of its own for a batch of entries (a separate SELECT cost ~0.1 ms per batch, ~15 % of a
        # single-entry batch's commit). What the transaction runs after it (keys, rows, work) cannot take the lock
        # from this session: only the session's end can, and then nothing commits.
        cur.execute(_PG_INSERT_CHECKPOINT_FENCED,
                    (checkpoint.size, checkpoint.root_hash, checkpoint.note, checkpoint.created_at, self.epoch))
        if cur.rowcount != 1:
            self._lost = "the session no longer holds it"
            raise SequencerLockHeld("this writer no longer holds the PostgreSQL advisory lock; not committing")
        return True

    def _fence(self, cur) -> None:
        # A session-level advisory lock goes with its session (a terminated backend, a dropped connection) and a
        # session may let go of it (pg_advisory_unlock): whoever then takes it is the writer. So every batch asks,
        # in its own transaction, whether this session still holds it, and does not commit otherwise.
        cur.execute(f"SELECT {_PG_FENCE}", (self.epoch,))
        if not cur.fetchone()[0]:
            self._lost = "the session no longer holds it"
            raise SequencerLockHeld("this writer no longer holds the PostgreSQL advisory lock; not committing")

    @property
    def holding(self) -> bool:
        return not self._closed and self._lost is None and not self._conn.broken and not self._conn.closed

    def check(self) -> bool:
        with self._lock:
            if not self.holding:
                return False
            # A lost connection raises the driver's error (and `holding` is False from then on).
            held = self._conn.execute(f"SELECT {_PG_FENCE}", (self.epoch,)).fetchone()[0]
            self._conn.rollback()
            if not held:
                self._lost = "the session no longer holds it"
            return self.holding

    def _cursor(self):
        return self._conn.cursor()

    def _insert_entries(self, cur, first_index, entries, leaf_hashes, received_at) -> None:
        with cur.copy(COPY_ENTRIES) as copy:
            for piece in copy_entries(first_index, entries, leaf_hashes, received_at):
                copy.write(piece)

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
            self._heartbeat_stop.set()
            try:
                self._conn.rollback()
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (PG_SEQUENCER_LOCK_KEY,))
                self._conn.commit()
            except Exception:
                pass
            # Not back to the pool: the session carries the lease's timeouts, which no reader should inherit.
            self._pooled.invalidate()
