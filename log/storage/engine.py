"""Database URLs, engines and the schema's migrations (Alembic), for SQLite and PostgreSQL (psycopg 3).

Every engine of the log and of the witness is made here, so that each SQLite connection gets the same pragmas:
WAL, `synchronous=FULL` (a commit is on disk when it returns) and a generous busy timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool
from sqlalchemy.engine import Engine, make_url

from log import defaults

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"

_logger = logging.getLogger(__name__)


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and pin them to the psycopg 3 driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def backend_name(url: str) -> str:
    """The database a URL names: "sqlite", "postgresql", ..."""
    return make_url(url).get_backend_name()


def shown_url(url: str) -> str:
    """`url` as messages show it: normalised, without its password."""
    return make_url(normalize_database_url(url)).render_as_string(hide_password=True)


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
    with _migration_lock(url, parsed.get_backend_name()):
        command.upgrade(config, revision)
    if upgrading:
        _logger.info("database schema at revision %s after %.1f s", target, time.monotonic() - started)


# An arbitrary 64-bit advisory lock key for "an auditlog schema migration", apart from the sequencer's.
_PG_MIGRATION_LOCK_KEY = 0x617564_6D696772 & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def _migration_lock(url: str, backend: str):
    """On PostgreSQL, one migration at a time: several servers starting together on one database each upgrade the
    schema, and two concurrent upgrades would both try to create the same tables. SQLite locks the file itself."""
    if backend != "postgresql":
        yield
        return
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"connect_timeout": defaults.DATABASE_CONNECT_TIMEOUT})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest Alembic revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("")).get_current_head()


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
    engine = make_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def make_engine(url: str, read_only: bool = False) -> Engine:
    """A pooled engine for `url` (already normalised); on SQLite its directory is created and every connection
    gets the log's pragmas.

    `read_only`: every connection refuses writes (`auditlog db check` beside a running server). SQLite: the file is
    opened read-only (it must exist: nothing is created) and `query_only` is set; PostgreSQL: every transaction is
    READ ONLY."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if read_only:
            return _read_only_sqlite_engine(parsed.database)
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
    # A bounded connect: the writer's reconnect loop retries an unreachable database, and a host that drops packets
    # would otherwise hold each attempt for the kernel's TCP timeout (minutes).
    connect_timeout = {"connect_timeout": defaults.DATABASE_CONNECT_TIMEOUT}
    if read_only:
        return create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True,
                             connect_args={"options": "-c default_transaction_read_only=on", **connect_timeout})
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True, connect_args=connect_timeout)


def _read_only_sqlite_engine(database: str | None) -> Engine:
    import sqlite3
    from urllib.parse import quote

    if not database or database == ":memory:" or not Path(database).is_file():
        raise FileNotFoundError(f"no SQLite database at {database}")
    uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro"

    def connect():
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA query_only=ON")
        return conn

    return create_engine(f"sqlite:///{database}", creator=connect, pool_size=2, max_overflow=2)

