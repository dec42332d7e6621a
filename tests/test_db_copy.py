"""`auditlog db copy` (log/storage/copy.py): every table of the schema copied, SQLite to PostgreSQL and back, except
the per-server ones; sequences past the copied ids; one snapshot of a source being written; a non-empty destination,
a source at another schema revision and a tampered source refused, the destination left empty.

The copied log served by real servers, witnessed and timestamped, is tests/e2e/test_db_copy_process.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest
import sqlalchemy as sa

from api.cli.main import main
from log.audit import tables as audit_tables
from log.errors import InvalidInput
from log.service import Log, LogConfig
from log.storage import schema as log_schema
from log.storage.copy import NOT_COPIED, PER_SERVER_TABLES, DestinationNotEmpty, copy_database
from log.storage.engine import downgrade_schema, normalize_database_url, sqlite_url_for, upgrade_schema
from tests.conftest import TEST_ORIGIN
from tests.postgres import fresh_database
from witness import schema as witness_schema

ALL_METADATA = (log_schema.metadata, audit_tables.metadata, witness_schema.metadata)


@contextlib.contextmanager
def database(kind: str, tmp_path, name: str):
    if kind == "sqlite":
        yield sqlite_url_for(tmp_path / f"{name}.db")
    else:
        with fresh_database() as url:
            yield url


@contextlib.contextmanager
def connected(url: str):
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _value(column: sa.Column, serial: int):
    """A value of the column's type, distinct per `serial`."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    if python_type is int:
        return 1000 + serial
    if python_type is bytes:
        return bytes([serial]) * (getattr(column.type, "length", None) or 32)
    return f"v{serial}"


def fill_every_table(url: str, serial: int = 1) -> dict[str, set]:
    """One row in every table of the migrated database at `url` (alembic's excepted), values made from each column's
    type; returns the rows by table."""
    rows = {}
    with connected(url) as conn:
        reflected = sa.MetaData()
        reflected.reflect(conn)
        for table in reflected.sorted_tables:
            if table.name == "alembic_version":
                continue
            row = {column.name: _value(column, serial) for column in table.columns}
            conn.execute(table.insert().values(row))
            rows[table.name] = {tuple(row[column.name] for column in table.columns)}
    return rows


def table_rows(url: str) -> dict[str, set]:
    """Every row of every table, by table, as tuples of plain Python values."""
    found = {}
    with connected(url) as conn:
        reflected = sa.MetaData()
        reflected.reflect(conn)
        for table in reflected.sorted_tables:
            found[table.name] = {tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                                 for row in conn.execute(table.select())}
    return found


@pytest.mark.parametrize("source_kind,destination_kind", [("sqlite", "postgresql"), ("postgresql", "sqlite")])
def test_every_table_of_the_schema_is_copied_except_per_server_state(tmp_path, source_kind, destination_kind):
    with database(source_kind, tmp_path, "source") as source, \
            database(destination_kind, tmp_path, "destination") as destination:
        upgrade_schema(source)
        written = fill_every_table(source)
        assert "sequencer_lease" in written and "access_log" in written  # per-server state, and the log's

        report = copy_database(source, destination)

        copied = table_rows(destination)
        # Every table the code declares is created by the migrations and copied: a table added to the schema and
        # left out of the copy fails here.
        declared = {table for metadata in ALL_METADATA for table in metadata.tables}
        assert declared - PER_SERVER_TABLES <= set(report.rows), declared - PER_SERVER_TABLES - set(report.rows)
        assert not PER_SERVER_TABLES & set(report.rows)
        for table, rows in written.items():
            if table in PER_SERVER_TABLES:
                assert not copied.get(table), f"{table} is per-server state and must not be copied"
                continue
            assert copied[table] == rows, table
            assert report.rows[table] == 1, table
        assert set(report.rows) == set(written) - PER_SERVER_TABLES
        assert set(report.left_out) == {"alembic_version", "sequencer_lease"}

        # The destination takes new rows where ids come from the database (PostgreSQL sequences, SQLite rowids):
        # past the copied ones, never a collision.
        with connected(destination) as conn:
            for metadata in ALL_METADATA:
                for table in metadata.tables.values():
                    generated = table.autoincrement_column
                    if generated is None:
                        continue
                    row = {column.name: _value(column, 2) for column in table.columns if column is not generated}
                    new_id = conn.execute(table.insert().values(row)).inserted_primary_key[0]
                    assert new_id > 1001, (table.name, new_id)  # the copied row's id is 1001


def test_a_non_empty_destination_is_refused_naming_each_table_and_its_rows(tmp_path):
    source, destination = sqlite_url_for(tmp_path / "source.db"), sqlite_url_for(tmp_path / "destination.db")
    upgrade_schema(source)
    fill_every_table(source)
    upgrade_schema(destination)
    with connected(destination) as conn:
        conn.execute(log_schema.access_log.insert(), [dict(at=i, credential="c", role="r", what="w", target="t",
                                                           remote="x", status=200) for i in range(3)])
    with pytest.raises(DestinationNotEmpty) as refused:
        copy_database(source, destination)
    assert refused.value.rows == {"access_log": 3}
    assert "access_log 3 rows" in str(refused.value)
    assert table_rows(destination)["entries"] == set()  # nothing copied


def test_a_source_that_is_missing_the_same_or_at_another_revision_is_refused(tmp_path):
    source, destination = sqlite_url_for(tmp_path / "source.db"), sqlite_url_for(tmp_path / "destination.db")
    with pytest.raises(InvalidInput, match="no SQLite database"):
        copy_database(source, destination)
    assert not (tmp_path / "source.db").exists() and not (tmp_path / "destination.db").exists()
    upgrade_schema(source)
    with pytest.raises(InvalidInput, match="the same database"):
        copy_database(source, sqlite_url_for(tmp_path / "." / "source.db"))
    downgrade_schema(source, "0010")
    with pytest.raises(InvalidInput, match="auditlog db upgrade"):
        copy_database(source, destination)


@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])
def test_the_copy_is_one_snapshot_of_a_source_written_meanwhile(tmp_path, source_kind):
    """A write to the source while the entries are copied (the progress callback makes it) is not in the copy, not
    even in the tables copied after it."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database()) if source_kind == "postgresql" else None
        config = LogConfig(data_dir=tmp_path / "data", database_url=url, origin=TEST_ORIGIN)
        source = config.resolved_database_url()
        asyncio.run(_fill(config, 3000))
        writes = []

        def write_meanwhile(done: int, total: int) -> None:
            if not writes:
                with connected(source) as conn:
                    conn.execute(log_schema.access_log.insert().values(at=1, credential="c", role="r", what="w",
                                                                       target="t", remote="x", status=200))
                writes.append(done)

        destination = sqlite_url_for(tmp_path / "copy.db")
        report = copy_database(source, destination, progress=write_meanwhile)
        assert writes and writes[0] < 3000  # written while entries were still being copied
        assert report.entries == 3000 and report.rows["access_log"] == 0
        assert table_rows(destination)["access_log"] == set()
        assert len(table_rows(source)["access_log"]) == 1


async def _fill(config: LogConfig, count: int, batch: int = 500) -> None:
    log = await Log.open(config)
    try:
        for start in range(0, count, batch):
            await log.add_entries([b"entry %d" % i for i in range(start, min(count, start + batch))])
    finally:
        await log.close()


@pytest.mark.parametrize("destination_kind", ["sqlite", "postgresql"])
def test_a_tampered_source_fails_verification_and_the_destination_is_left_empty(tmp_path, capsys, destination_kind):
    config = LogConfig(data_dir=tmp_path / "data", origin=TEST_ORIGIN)
    asyncio.run(_fill(config, 600, batch=200))
    with sqlite3.connect(tmp_path / "data" / "auditlog.db") as db:
        db.execute("UPDATE entries SET data = ? WHERE idx = 300", (b"changed",))
    with database(destination_kind, tmp_path, "destination") as destination:
        code = main(["db", "copy", "--from", config.resolved_database_url(), "--to", destination,
                     "--data-dir", str(tmp_path / "data"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 1, err
        assert "FAILED: the copy does not verify" in err and "entry 300" in err and "left empty" in err, err
        assert all(not rows for table, rows in table_rows(destination).items() if table not in NOT_COPIED)
        # Once the source is right again, the same destination takes the copy.
        with sqlite3.connect(tmp_path / "data" / "auditlog.db") as db:
            db.execute("UPDATE entries SET data = ? WHERE idx = 300", (b"entry 300",))
        assert main(["db", "copy", "--from", config.resolved_database_url(), "--to", destination,
                     "--data-dir", str(tmp_path / "data"), "--quiet"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("OK: copied 600 entries") and f"signed by {TEST_ORIGIN}" in out, out
