"""Query-planner hints that SQLAlchemy Core does not express, for the one backend that needs them.

SQLite keeps no statistics (nothing here runs ANALYZE): its planner rates every equality on an indexed column as
selective as any other. Where a query knows better which index must drive it, it marks the other columns'
filters with `not_index_key`, which SQLite's documentation gives as the way to keep a term from being used by an
index (a unary `+` on the column); the filter is then checked on the rows the driving index yields. PostgreSQL's
planner has statistics (autovacuum's ANALYZE) and chooses itself: there the column is left as it is.
"""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class NotIndexKey(ColumnElement):
    """A column that SQLite must not look up through an index (`+column`); the column itself elsewhere."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column):
        self.column = column
        self.type = column.type


def not_index_key(column) -> NotIndexKey:
    return NotIndexKey(column)


@compiles(NotIndexKey)
def _plain(element: NotIndexKey, compiler, **kw) -> str:
    return compiler.process(element.column, **kw)


@compiles(NotIndexKey, "sqlite")
def _unary_plus(element: NotIndexKey, compiler, **kw) -> str:
    return "+" + compiler.process(element.column, **kw)
