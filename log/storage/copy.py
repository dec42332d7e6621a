"""Copying a log's database to another, SQLite to PostgreSQL or back (`auditlog db copy`).

What is copied: every table of the source's migrated schema, found in the database itself rather than from a list
here, so that a table a later migration adds is copied without anyone remembering to. Two kinds are left out
(`NOT_COPIED`): Alembic's version table (the destination has its own, from its migration) and the state of the
servers running on a database rather than of the log (`PER_SERVER_TABLES`, e.g. a sequencer lease: a copy that
carried it would hand the destination's first server a lease some other server holds). The access log is the log's:
it is copied.

How, step by step:

1. The source is opened read-only (SQLite: the file in read-only mode; PostgreSQL: read-only transactions) and ONE
   snapshot is taken for the whole copy (SQLite: a read transaction, fixed at its first read; PostgreSQL:
   REPEATABLE READ), so the copy is one committed state even beside a server that keeps writing. Such a server's
   later commits are not in the copy: stop it first (a server later started on the copy with the same data dir would
   then refuse it as behind what its key signed, log/signed_history.py).
2. The source must be at this code's schema revision (it is after any server of this version has opened it).
3. The destination is migrated to the newest revision (its own transaction), then the copy runs in ONE destination
   transaction: the destination must hold no row in any copied table (else `DestinationNotEmpty`, naming each
   table and its rows); each table's rows go over in primary-key order (entries in index order; a table without a
   primary key in the order it was written), `CHUNK_ROWS` at a time from a streaming cursor (memory stays bounded
   at any size), as PostgreSQL COPY or SQLite executemany.
4. PostgreSQL's sequences (the `id` of `timestamps` and `access_log`) are set past the largest copied id, else the
   next insert would take an id that exists. SQLite needs nothing: a rowid table's next rowid is its largest plus
   one, and no table is declared AUTOINCREMENT.
5. The destination's row counts are compared with the rows read, and `check` (the caller's verification of the
   copy, e.g. log/fsck.py) runs on the destination inside the same transaction; only if it returns is the
   transaction committed. A copy that fails anywhere leaves the destination migrated and empty.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url

from log.errors import InvalidInput, StorageError
from log.storage import ReadTransaction
from log.storage.engine import head_revision, make_engine, normalize_database_url, shown_url, upgrade_schema
from log.storage.store import _SnapshotRead

T = TypeVar("T")

# The state of the servers on one database, not of the log it holds: never copied, never counted as content.
PER_SERVER_TABLES = frozenset({"sequencer_lease"})
VERSION_TABLE = "alembic_version"
NOT_COPIED = PER_SERVER_TABLES | {VERSION_TABLE}

CHUNK_ROWS = 1024  # rows held at a time, per table: a batch's worth of entries
DESTINATION_CACHE_KIB = 2048  # a SQLite destination's page cache during the copy
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

Progress = Callable[[int, int], None]
"""progress(entries copied, entries in all), called after each chunk of entries."""


class DestinationNotEmpty(InvalidInput):
    """The destination holds rows in tables the copy would fill: a copy never merges into an existing log."""

    def __init__(self, destination: str, rows: dict[str, int]):
        held = ", ".join(f"{table} {count:,} rows" for table, count in rows.items())
        super().__init__(f"the destination {destination} is not empty ({held}): copy only onto an empty database")
        self.rows = rows


@dataclass
class CopyReport(Generic[T]):
    rows: dict[str, int] = field(default_factory=dict)  # rows copied, by table, in the order copied
    left_out: tuple[str, ...] = ()  # the source's tables not copied (NOT_COPIED)
    seconds: float = 0.0
    checked: T | None = None  # what `check` returned

    @property
    def entries(self) -> int:
        return self.rows.get("entries", 0)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def copy_database(source_url: str, destination_url: str, check: Callable[[ReadTransaction], T] | None = None,
                  progress: Progress | None = None) -> CopyReport[T]:
    """Copy the log in the database at `source_url` into the one at `destination_url` (see the module docstring)
    and return what was copied. `check(tx)` reads the copy before it commits; whatever it raises undoes the copy and
    is raised here.

    Raises InvalidInput (a missing SQLite source, the same database twice, a source without the current schema,
    `DestinationNotEmpty`), StorageError for a schema the two databases do not share, and the driver's errors for a
    database that cannot be reached."""
    started = time.monotonic()
    source_url, destination_url = normalize_database_url(source_url), normalize_database_url(destination_url)
    if _same_database(source_url, destination_url):
        raise InvalidInput(f"the source and the destination are the same database ({shown_url(source_url)})")
    try:
        source_engine = make_engine(source_url, read_only=True)
    except FileNotFoundError as exc:
        raise InvalidInput(f"cannot copy from {shown_url(source_url)}: {exc}") from None
    try:
        with source_engine.connect() as source:
            _begin_snapshot(source)
            tables = _source_tables(source, source_url)
            upgrade_schema(destination_url)
            destination_engine = make_engine(destination_url)
            try:
                with destination_engine.connect() as destination:
                    report = _copy(source, destination, destination_url, tables, check, progress)
            finally:
                destination_engine.dispose()
    finally:
        source_engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def _same_database(first: str, second: str) -> bool:
    a, b = make_url(first), make_url(second)
    if a.get_backend_name() == b.get_backend_name() == "sqlite":
        return bool(a.database) and Path(a.database or "").resolve() == Path(b.database or "").resolve()
    return a.set(password=None) == b.set(password=None)


def _begin_snapshot(source: Connection) -> None:
    if source.dialect.name == "sqlite":
        # A deferred read transaction: its first read fixes the WAL snapshot every later statement sees.
        source.exec_driver_sql("BEGIN")
    else:
        source.execution_options(isolation_level="REPEATABLE READ")


def _source_tables(source: Connection, source_url: str) -> list[str]:
    """The source's tables, checked to be at this code's schema revision."""
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(source).get_current_revision()
    head = head_revision()
    shown = shown_url(source_url)
    if revision is None:
        raise InvalidInput(f"{shown} holds no auditlog schema: nothing to copy")
    if revision != head:
        raise InvalidInput(f"{shown} is at schema revision {revision}, this auditlog's is {head}: run `auditlog db "
                           f"upgrade --database-url {shown}` first (a server of this version does it when it starts)")
    tables = sorted(inspect(source).get_table_names())
    for table in tables:
        if not _IDENTIFIER.fullmatch(table):
            raise StorageError(f"unexpected table {table!r} in {shown}: not one of auditlog's")
    return tables


def _copy(source: Connection, destination: Connection, destination_url: str, tables: list[str],
          check, progress: Progress | None) -> CopyReport:
    sqlite = destination.dialect.name == "sqlite"
    if sqlite:
        # Rows go in key order, so only each B-tree's right edge is hot: SQLite's default page cache (2 MiB) instead
        # of the 64 MiB the log's connections take, which the copy filled to no use (VmHWM 193 MB against 128 MB at
        # 3 x 10^5 entries, and slower).
        destination.exec_driver_sql(f"PRAGMA cache_size=-{DESTINATION_CACHE_KIB}")
        # The write lock for the whole copy: the emptiness check and the rows are one transaction.
        destination.exec_driver_sql("BEGIN IMMEDIATE")
    copied = [table for table in tables if table not in NOT_COPIED]
    inspector = inspect(destination)
    destination_tables = set(inspector.get_table_names())
    missing = [table for table in copied if table not in destination_tables]
    if missing:
        raise StorageError(f"the destination's schema has no table {', '.join(missing)} (tables of the source)")
    held = [table for table in sorted(destination_tables - NOT_COPIED) if _row_count(destination, table, any_row=True)]
    if held:
        raise DestinationNotEmpty(shown_url(destination_url), {table: _row_count(destination, table) for table in held})

    report = CopyReport(left_out=tuple(table for table in tables if table in NOT_COPIED))
    total_entries = _entry_count(source) if "entries" in copied else 0
    for table in sorted(copied, key=lambda name: name != "entries"):  # entries first: the bulk, and the progress
        columns = [column["name"] for column in inspector.get_columns(table)]
        rows = _source_rows(source, table, columns)
        if table == "entries" and progress is not None:
            rows = _counted(rows, progress, total_entries)
        report.rows[table] = _insert(destination, table, columns, rows)
    if not sqlite:
        _advance_sequences(destination, copied)
    for table, count in report.rows.items():
        stored = _row_count(destination, table)
        if stored != count:
            raise StorageError(f"the destination's {table} holds {stored:,} rows after {count:,} were copied")
    if check is not None:
        report.checked = check(_SnapshotRead(destination, sqlite))
    destination.commit()
    return report


def _quote(connection: Connection, name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise StorageError(f"refusing to use {name!r} as a table or column name")
    return connection.dialect.identifier_preparer.quote(name)


def _row_count(connection: Connection, table: str, any_row: bool = False) -> int:
    """The table's rows; with `any_row`, 1 if it has any (without counting a large table), else 0."""
    name = _quote(connection, table)
    if any_row:
        return 1 if connection.exec_driver_sql(f"SELECT 1 FROM {name} LIMIT 1").first() else 0
    return connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()


def _entry_count(source: Connection) -> int:
    largest = source.exec_driver_sql("SELECT max(idx) FROM entries").scalar()
    return 0 if largest is None else largest + 1


def _source_rows(source: Connection, table: str, columns: list[str]) -> Iterable[list[tuple]]:
    """The table's rows as lists of at most CHUNK_ROWS, from a streaming cursor (PostgreSQL: a server-side one)."""
    key = inspect(source).get_pk_constraint(table).get("constrained_columns") or []
    if key:
        order = " ORDER BY " + ", ".join(_quote(source, name) for name in key)
    else:  # the order the rows were written: SQLite's rowid; PostgreSQL's physical order, unsorted
        order = " ORDER BY rowid" if source.dialect.name == "sqlite" else ""
    sql = f"SELECT {', '.join(_quote(source, name) for name in columns)} FROM {_quote(source, table)}{order}"
    result = source.exec_driver_sql(sql, execution_options={"yield_per": CHUNK_ROWS})
    for partition in result.partitions(CHUNK_ROWS):
        yield [tuple(row) for row in partition]


def _counted(chunks: Iterable[list[tuple]], progress: Progress, total: int) -> Iterable[list[tuple]]:
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        progress(done, total)


def _insert(destination: Connection, table: str, columns: list[str], chunks: Iterable[list[tuple]]) -> int:
    """Insert every row of `chunks` into `table`; returns how many."""
    names = ", ".join(_quote(destination, name) for name in columns)
    target = _quote(destination, table)
    cursor = destination.connection.driver_connection.cursor()
    count = 0
    try:
        if destination.dialect.name == "sqlite":
            sql = f"INSERT INTO {target} ({names}) VALUES ({', '.join(['?'] * len(columns))})"
            for chunk in chunks:
                cursor.executemany(sql, chunk)
                count += len(chunk)
        else:
            # psycopg's write_row for every table: pg_copy.py's hand-built binary stream measured 89,000 against
            # 81,000 entries/s here (10^5 entries, the server's side the bound), too little for a second encoder.
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for chunk in chunks:
                    for row in chunk:
                        copy.write_row(row)
                    count += len(chunk)
    finally:
        cursor.close()
    return count


def _advance_sequences(destination: Connection, tables: list[str]) -> None:
    """Set every sequence that feeds a column of `tables` (serial or identity) to just past the column's largest
    value, so the next insert without an explicit value takes a new one."""
    for table in tables:
        for column in inspect(destination).get_columns(table):
            sequence = destination.exec_driver_sql(
                "SELECT pg_get_serial_sequence(%s, %s)", (_quote(destination, table), column["name"])).scalar()
            if sequence is None:
                continue
            name = _quote(destination, column["name"])
            destination.exec_driver_sql(
                f"SELECT setval(%s, coalesce((SELECT max({name}) FROM {_quote(destination, table)}), 0) + 1, false)",
                (sequence,))
