"""Alembic environment: runs the migrations in alembic/versions against the log's database.

The URL comes from the caller (`auditlog db upgrade` passes it in the config attributes) or from
AUDITLOG_DATABASE_URL when alembic is run by hand.
"""

import os

from alembic import context
from sqlalchemy import create_engine, event

from log.storage.schema import metadata

config = context.config
url = config.attributes.get("database_url") or os.environ.get("AUDITLOG_DATABASE_URL")
if not url:
    raise SystemExit("set AUDITLOG_DATABASE_URL (or use `auditlog db upgrade --database-url ...`)")


def _sqlite_ddl_in_transactions(engine) -> None:
    """Python's sqlite3 opens a transaction only before INSERT, UPDATE or DELETE, so a migration's first CREATE or
    ALTER committed on its own: a crash between it and the rest left a half-migrated database that the migration
    could not run on again. Here SQLAlchemy's BEGIN starts the transaction, and every statement is inside it."""

    @event.listens_for(engine, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")


connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_ddl_in_transactions(engine)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
