"""Which storage failures mean "the store cannot take writes right now" rather than "something is wrong with us".

`storage_fault(exc)` names the condition behind a driver exception, or returns None for anything else:

    "disk full"                    SQLite SQLITE_FULL ("database or disk is full"), PostgreSQL 53100 disk_full,
                                   an OSError ENOSPC or EDQUOT
    "disk I/O error"               SQLite SQLITE_IOERR and its extended codes, an OSError EIO
    "database unreachable: <why>"  a PostgreSQL connection that failed, closed or was terminated (SQLSTATE class 08,
                                   57P01-57P03, or a psycopg OperationalError without a SQLSTATE: "the connection is
                                   closed"), a SQLAlchemy error that invalidated its connection, SQLite CANTOPEN

The whole chain of causes is looked at (`raise ... from`, then the context), so a StorageError wrapping the driver's
exception is classified by what it wraps. These conditions go away by themselves (space is freed, the database comes
back): a write refused for one of them is answered 503 with Retry-After, never 500, and nothing it carried was
acknowledged. Anything not named here (a constraint violated, a bug) stays an error of its own.
"""

from __future__ import annotations

import errno
import sqlite3

DISK_FULL = "disk full"
DISK_IO_ERROR = "disk I/O error"
DATABASE_UNREACHABLE = "database unreachable"

# SQLite primary result codes (sqlite.org/rescode.html); an extended code keeps its primary code in the low byte.
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

_PG_DISK_FULL = "53100"
# admin_shutdown (pg_terminate_backend too), crash_shutdown, cannot_connect_now
_PG_SHUTDOWN = {"57P01", "57P02", "57P03"}


def storage_fault(exc: BaseException) -> str | None:
    """The condition that keeps the store from taking writes behind `exc` (see the module docstring), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _classify(current)
        if reason is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _classify(exc: BaseException) -> str | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        message = str(exc)
        if primary == _SQLITE_FULL or "database or disk is full" in message:
            return DISK_FULL
        if primary == _SQLITE_IOERR or "disk I/O error" in message:
            return DISK_IO_ERROR
        if primary == _SQLITE_CANTOPEN:
            return f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DISK_FULL
        if exc.errno == errno.EIO:
            return DISK_IO_ERROR
        return None
    if type(exc).__module__.startswith("psycopg"):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate == _PG_DISK_FULL:
            return DISK_FULL
        if sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _PG_SHUTDOWN):
            return f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"
        if sqlstate is None and type(exc).__name__ in ("OperationalError", "InterfaceError"):
            return f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"  # no server answer at all: the connection is gone
        return None
    if getattr(exc, "connection_invalidated", False):  # sqlalchemy.exc.DBAPIError after a disconnect
        return f"{DATABASE_UNREACHABLE}: {_first_line(exc)}"
    return None
