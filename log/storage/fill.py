"""Filling a new database in one transaction, from rows a caller makes (a restored archive, log/audit/
archive_restore.py): the tables as declared, then every row, then one commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import MetaData, Table, insert

from log.storage.engine import make_engine

T = TypeVar("T")

Put = Callable[[Table, list[dict]], None]
"""put(table, rows): insert rows (dicts of column values) into the table."""


def fill_new_database(url: str, metadatas: Sequence[MetaData], fill: Callable[[Put], T]) -> T:
    """Create the tables of `metadatas` in the database at `url` (as declared: tests/test_migrations.py holds the
    declarations to the migration chain; 0.1 s against 4-5 s for the whole chain on a fresh SQLite file), then run
    `fill(put)` in ONE transaction and commit when it returns. What `fill` raises undoes every row and is raised here.
    Meant for a database no one else uses (a temporary SQLite file): nothing is locked beyond the transaction."""
    engine = make_engine(url)
    try:
        for metadata in metadatas:
            metadata.create_all(engine)
        with engine.begin() as conn:
            def put(table: Table, rows: list[dict]) -> None:
                if rows:
                    conn.execute(insert(table), rows)

            return fill(put)
    finally:
        engine.dispose()
