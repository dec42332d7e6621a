"""New SQLite databases for tests, migrated by copying: `upgrade_schema(url)` as log/storage/engine.py's, except that
a SQLite file that does not exist yet becomes a copy of one the migrations built once in this process.

Running the 15 migrations costs 0.1-0.2 s (80 ms of CPU) a database, and most tests start from a new one. The copy
is byte for byte what the migrations make. An existing database, PostgreSQL (CREATE DATABASE ... TEMPLATE is no
faster there than migrating), a revision other than head and every `auditlog` process still migrate for real;
tests/test_migrations.py tests the migrations themselves.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from log.storage import engine

_template: Path | None = None


def upgrade_schema(url: str, revision: str = "head") -> None:
    global _template
    parsed = make_url(engine.normalize_database_url(url))
    path = parsed.database
    if revision != "head" or parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" \
            or Path(path).exists():
        engine.upgrade_schema(url, revision)
        return
    if _template is None:
        directory = tempfile.mkdtemp(prefix="auditlog-migrated-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        engine.upgrade_schema(engine.sqlite_url_for(Path(directory) / "auditlog.db"))
        _template = Path(directory) / "auditlog.db"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template, path)
