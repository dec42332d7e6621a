"""A fresh PostgreSQL database per test, on the server these machines run at 127.0.0.1:5432.

Never skips: if the server is unreachable, the tests that need it fail with the connection error, as CI requires.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("AUDITLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_database():
    """Create an empty database, yield its SQLAlchemy URL, drop it afterwards."""
    name = f"auditlog_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
