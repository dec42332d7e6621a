"""Migrations that change stored data, run both ways on SQLite and on PostgreSQL against a log with real tiles."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa

from log.proofs import verify_inclusion
from log.service import Log, LogConfig
from log.storage.engine import downgrade_schema, normalize_database_url, schema_revision, upgrade_schema
from log.tile_nodes import interior_nodes, tile_node_layers
from log.tiles import TILE_HEIGHT
from tests.postgres import fresh_database

ORIGIN = "example.com/migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auditlog.db'}"
    else:
        with fresh_database() as url:
            yield url


def _tiles(url: str, column: str) -> dict:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT level, idx, data, {column} FROM tiles")).all()
    finally:
        engine.dispose()
    return {(level, idx): (bytes(data), None if extra is None else bytes(extra)) for level, idx, data, extra in rows}


def _fill(config: LogConfig, entries: list[bytes], per_batch: int | None = None) -> None:
    """Log `entries` through a Log opened on `config`, `per_batch` at a time (default: all in one batch)."""
    step = per_batch or len(entries)

    async def fill():
        log = await Log.open(config)
        try:
            for start in range(0, len(entries), step):
                await log.add_entries(entries[start:start + step])
        finally:
            await log.close()

    asyncio.run(fill())


def _execute(url: str, sql: str) -> None:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def test_0005_recomputes_tile_interior_nodes_both_ways(database_url, tmp_path):
    config = LogConfig(data_dir=tmp_path / "log", database_url=database_url, origin=ORIGIN)
    entries = [f"entry {i}".encode() for i in range(600)]
    _fill(config, entries)
    downgrade_schema(database_url, "0004")
    tiles = _tiles(database_url, "middle")
    full = {key: value for key, value in tiles.items() if len(value[0]) == 256 * 32}
    assert set(full) == {(0, 0), (0, 1)}
    for data, middle in full.values():
        assert middle == tile_node_layers(data)[4]
    assert all(extra is None for key, (_, extra) in tiles.items() if key not in full)

    upgrade_schema(database_url)
    tiles = _tiles(database_url, "interior")
    for key, (data, interior) in tiles.items():
        assert interior == (interior_nodes(data) if key in full else None), key
        if key in full:
            assert len(interior) == (2 ** TILE_HEIGHT - 2) * 32

    async def prove():
        log = await Log.open(config)
        try:
            root = log.checkpoint.root_hash
            for index in (0, 255, 256, 300, 511, 599):
                proof = await log.inclusion_proof(index, 600)
                verify_inclusion((await log.entry(index)).leaf_hash, index, 600, proof, root)
        finally:
            await log.close()

    asyncio.run(prove())


def _declared_metadata():
    """Every table the code declares: the log's (core tables, cosignatures, timestamps), the audit personality's and
    the witness server's. One migration chain creates them all in every database."""
    from log.audit import tables as audit_tables
    from log.storage import schema as log_schema
    from witness import schema as witness_schema

    return [log_schema.metadata, audit_tables.metadata, witness_schema.metadata]


def _schema(url: str) -> dict:
    """{table: (column names, {index name: column names})} as the database has them."""
    engine = sa.create_engine(normalize_database_url(url))
    try:
        inspector = sa.inspect(engine)
        return {table: ({c["name"] for c in inspector.get_columns(table)},
                        {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes(table)})
                for table in inspector.get_table_names()}
    finally:
        engine.dispose()


def test_the_migrated_schema_has_every_column_and_index_the_code_declares(database_url):
    upgrade_schema(database_url)
    stored = _schema(database_url)
    declared_tables = set()
    for metadata in _declared_metadata():
        for table in metadata.tables.values():
            columns, indexes = stored[table.name]
            assert columns == {c.name for c in table.columns}, table.name
            declared = {index.name: tuple(c.name for c in index.columns) for index in table.indexes}
            assert indexes == declared, table.name
            declared_tables.add(table.name)
    assert set(stored) - {"alembic_version"} == declared_tables, "the migrations create tables no code declares"


def test_0006_pages_audit_events_by_producer_through_its_own_index_both_ways(database_url):
    upgrade_schema(database_url)
    assert _schema(database_url)["audit_events"][1]["ix_audit_events_producer"] == ("producer", "idx")
    downgrade_schema(database_url, "0005")
    indexes = _schema(database_url)["audit_events"][1]
    assert indexes["ix_audit_events_producer_event"] == ("producer", "event_id")
    assert "ix_audit_events_producer" not in indexes
    upgrade_schema(database_url)
    indexes = _schema(database_url)["audit_events"][1]
    assert "ix_audit_events_producer_event" not in indexes and "ix_audit_events_producer" in indexes


def test_a_page_of_one_producers_events_is_read_in_index_order_not_sorted(tmp_path):
    """SQLite's plan for the events query filtered by producer: a range of ix_audit_events_producer, no sort."""
    from log.audit.service import EventQuery, events_statement

    url = f"sqlite:///{tmp_path / 'auditlog.db'}"
    upgrade_schema(url)
    engine = sa.create_engine(normalize_database_url(url))
    try:
        statement = events_statement(EventQuery(producer="agent-7", after=1000, limit=100), 10**9)
        sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    finally:
        engine.dispose()
    assert "ix_audit_events_producer (producer=? AND idx>? AND idx<?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# The explorer's searches (as an auditor of one tenant makes them) and the index each must be driven by: in index
# order, read from the index alone where its filters allow (no table lookup per event to check them), never sorted.
SEARCH_PLANS = [
    (dict(tenant="acme"), "COVERING INDEX ix_audit_events_tenant_idx (tenant=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", since=1, until=2), "COVERING INDEX ix_audit_events_tenant_idx (tenant=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", event_type="approval", since=1),
     "COVERING INDEX ix_audit_events_tenant_idx (tenant=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", run_id="run-1"), "INDEX ix_audit_events_run (run_id=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", trace_id="tr-1", event_type="tool_call"),
     "INDEX ix_audit_events_trace (trace_id=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", actor_id="policy-engine", event_type="denial", since=1, until=2),
     "COVERING INDEX ix_audit_events_actor (actor_id=? AND idx>? AND idx<?)"),
    (dict(tenant="acme", context=(("case_id", "case-9"),), event_type="approval"),
     "COVERING INDEX ix_audit_event_context_lookup (name=? AND value=? AND idx>? AND idx<?)"),
    (dict(event_type="denial"), "COVERING INDEX ix_audit_events_type (event_type=? AND idx>? AND idx<?)"),
]


@pytest.mark.parametrize("filters,driven_by", SEARCH_PLANS, ids=[" ".join(sorted(f)) for f, _ in SEARCH_PLANS])
def test_each_explorer_search_is_driven_by_its_most_selective_index(tmp_path, filters, driven_by):
    """SQLite keeps no statistics: without events_statement naming its driver, it drove a run's search from the
    tenant's index (every event of the tenant) as readily as from the run's."""
    from log.audit.service import EventQuery, events_statement

    url = f"sqlite:///{tmp_path / 'auditlog.db'}"
    upgrade_schema(url)
    engine = sa.create_engine(normalize_database_url(url))
    try:
        query = EventQuery(**filters, tenants=frozenset(["acme"]) if "tenant" in filters else None, after=10, limit=50)
        sql = str(events_statement(query, 10**9).compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    finally:
        engine.dispose()
    assert plan.startswith("SEARCH ") and f"USING {driven_by}" in plan.split(" | ")[0], plan
    assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan


def _sqlite_shape(url: str) -> dict[str, tuple[str, bool]]:
    """{table: (its key's declared type, whether SQLite keeps an index beside the table for that key)}."""
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            shape = {}
            for table, key in (("entries", "idx"), ("checkpoints", "size"), ("audit_events", "idx")):
                declared = {row[1]: row[2] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}[key]
                auto = conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND name LIKE "
                    "'sqlite_autoindex_%'", (table,)).scalar()
                shape[table] = (declared, auto > 0)
            return shape
    finally:
        engine.dispose()


def test_0007_makes_the_index_the_rowid_on_sqlite_and_keeps_every_row_both_ways(tmp_path):
    url = f"sqlite:///{tmp_path / 'auditlog.db'}"
    config = LogConfig(data_dir=tmp_path / "log", database_url=url, origin=ORIGIN)
    entries = [f"entry {i}".encode() for i in range(700)]
    _fill(config, entries, per_batch=100)
    _execute(url, "INSERT INTO audit_events VALUES (3, 't', 'p', 'e', 'r', 'tr', NULL, 'agent', 'a', 'tool_call', 5)")

    def contents() -> tuple:
        engine = sa.create_engine(normalize_database_url(url))
        try:
            with engine.connect() as conn:
                return tuple(
                    conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").all()
                    for table in ("entries", "checkpoints", "audit_events"))
        finally:
            engine.dispose()

    upgraded = contents()
    assert _sqlite_shape(url) == {table: ("INTEGER", False) for table in ("entries", "checkpoints", "audit_events")}
    assert len(upgraded[0]) == 700 and len(upgraded[1]) == 8 and len(upgraded[2]) == 1

    downgrade_schema(url, "0006")
    assert _sqlite_shape(url) == {table: ("BIGINT", True) for table in ("entries", "checkpoints", "audit_events")}
    assert contents() == upgraded
    assert set(_schema(url)["audit_events"][1]) == {
        "ix_audit_events_run", "ix_audit_events_trace", "ix_audit_events_tenant_ts", "ix_audit_events_actor",
        "ix_audit_events_type", "ix_audit_events_producer"}

    upgrade_schema(url)
    assert _sqlite_shape(url) == {table: ("INTEGER", False) for table in ("entries", "checkpoints", "audit_events")}
    assert contents() == upgraded

    async def prove():
        log = await Log.open(config)
        try:
            root = log.checkpoint.root_hash
            for index in (0, 99, 100, 255, 256, 699):
                entry = await log.entry(index)
                assert entry.data == entries[index]
                verify_inclusion(entry.leaf_hash, index, 700, await log.inclusion_proof(index, 700), root)
            await log.add_entries([b"after the migration"])
            assert (await log.entry(700)).data == b"after the migration"
        finally:
            await log.close()

    asyncio.run(prove())


def test_a_migration_that_fails_half_way_on_sqlite_leaves_the_database_as_it_was_and_can_run_again(tmp_path):
    """Every statement of a migration is inside its transaction, CREATE and ALTER too (Python's sqlite3 would commit
    those on their own): 0007 failing at its second table undoes the first table's rebuild and leaves nothing
    behind, so once the cause is gone it runs again."""
    url = f"sqlite:///{tmp_path / 'auditlog.db'}"
    config = LogConfig(data_dir=tmp_path / "log", database_url=url, origin=ORIGIN)
    entries = [f"entry {i}".encode() for i in range(300)]
    _fill(config, entries)
    downgrade_schema(url, "0006")
    _execute(url, "CREATE TABLE checkpoints_rebuilt (in_the_way INTEGER)")

    with pytest.raises(sa.exc.OperationalError, match="checkpoints_rebuilt"):
        upgrade_schema(url)
    assert schema_revision(url) == "0006"
    assert _sqlite_shape(url) == {table: ("BIGINT", True) for table in ("entries", "checkpoints", "audit_events")}
    assert "entries_rebuilt" not in _schema(url)

    _execute(url, "DROP TABLE checkpoints_rebuilt")
    upgrade_schema(url, "0007")
    assert schema_revision(url) == "0007"
    assert _sqlite_shape(url) == {table: ("INTEGER", False) for table in ("entries", "checkpoints", "audit_events")}

    async def read_back():
        log = await Log.open(config)
        try:
            assert log.checkpoint.size == 300
            assert [(await log.entry(i)).data for i in (0, 150, 299)] == [entries[0], entries[150], entries[299]]
        finally:
            await log.close()

    asyncio.run(read_back())


def test_upgrading_an_existing_schema_is_logged_with_its_revisions_and_a_new_one_is_not(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'auditlog.db'}"
    with caplog.at_level(logging.INFO, logger="log.storage.engine"):
        upgrade_schema(url)
        assert not [r for r in caplog.records if r.name == "log.storage.engine"]
        downgrade_schema(url, "0005")
        caplog.clear()
        upgrade_schema(url)
    head = schema_revision(url)
    messages = [r.getMessage() for r in caplog.records if r.name == "log.storage.engine"]
    assert messages[0] == f"upgrading the database schema from revision 0005 to {head}"
    assert messages[1].startswith(f"database schema at revision {head} after ")
