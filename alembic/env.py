"""Alembic environment: runs the migrations in alembic/versions against the log's database.

The URL comes from the caller (`auditlog db upgrade` passes it in the config attributes) or from
AUDITLOG_DATABASE_URL when alembic is run by hand.
"""

import os

from alembic import context
from sqlalchemy import create_engine

from log.storage.schema import metadata

config = context.config
url = config.attributes.get("database_url") or os.environ.get("AUDITLOG_DATABASE_URL")
if not url:
    raise SystemExit("set AUDITLOG_DATABASE_URL (or use `auditlog db upgrade --database-url ...`)")

connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
