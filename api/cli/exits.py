"""Exit statuses of every `auditlog` command, and the one place that turns a failure into a status and a line.

    0  done, or verified
    1  verification failed: tampering, an inconsistency, a bad signature, a limit the user set was breached;
       evidence of misbehaviour, never an outage
    2  usage or local input error: a bad flag or variable, a local file that cannot be read or parsed, a thing asked
       for that does not exist, a request the log refused as invalid, a credential missing or refused (401, 403)
    3  the log or a dependency is unreachable or not ready: connection refused, a timeout, 503, nothing cosigned or
       timestamped yet
   70  a bug in auditlog (EX_SOFTWARE): the message says so; `--debug` shows the traceback

A cron job or a service unit can tell tampering (1) from a typo (2) from an outage (3). Library code raises the
classes of log/errors.py (or `CommandFailed` for a status of its own) and never exits; `main()` calls `describe()`
once, prints `auditlog <command>: <message>` on stderr and exits with the status.
"""

from __future__ import annotations

import asyncio
import errno
import sys

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
BUG = 70

HELP = ("exit status: 0 done or verified; 1 verification failed (tampering, inconsistency, a bad signature, a limit "
        "breached); 2 usage or local input error; 3 the log or a dependency unreachable or not ready; 70 a bug "
        "(--debug shows the traceback)")

# An HTTP status the log answered, as the exit status of the command that asked: the log refused what was asked
# (usage), or it cannot answer now (unreachable or not ready).
_RETRY_LATER = frozenset({408, 425, 429})


# Binding a listening socket failed for a local reason: the port is taken, the address is not this host's, or a
# privileged port.
_LOCAL_SOCKET_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


class CommandFailed(Exception):
    """A failure whose exit status the command decides; the message is the one line the user reads."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def status_for_http(status: int) -> int:
    """The exit status for a log's refusal with this HTTP status."""
    return UNREACHABLE if status >= 500 or status in _RETRY_LATER else USAGE


def describe(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, one-line message) for a failure a user can meet; None for one that is a bug."""
    from api.cli.options import BadEnvironment
    from log.errors import (Conflict, Forbidden, ForkRefused, InvalidInput, LogError, NotFound, SequencerLockHeld,
                            StorageUnavailable, Unauthenticated, Unavailable, VerificationError)

    if isinstance(exc, CommandFailed):
        return exc.status, str(exc)
    if isinstance(exc, BadEnvironment):
        return USAGE, str(exc)
    if isinstance(exc, VerificationError):
        return FAILED, f"verification failed: {exc}"
    if isinstance(exc, ForkRefused):
        return FAILED, str(exc)
    if isinstance(exc, (Unavailable, StorageUnavailable, SequencerLockHeld)):
        return UNREACHABLE, str(exc)
    if isinstance(exc, (InvalidInput, NotFound, Conflict)):
        return USAGE, str(exc)
    if isinstance(exc, (Unauthenticated, Forbidden)):  # the credential given (or none) does not open this: a usage error
        return USAGE, f"{exc} (a credential comes from --token, AUDITLOG_TOKEN or the data dir's admin.token)"
    if isinstance(exc, LogError):
        return FAILED, str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return UNREACHABLE, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return USAGE, f"cannot use {exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno in _LOCAL_SOCKET_ERRORS:
        return USAGE, f"cannot listen: {exc.strerror or exc}"
    database = _database_failure(exc)
    if database is not None:
        return database
    if "aiohttp" in sys.modules:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return UNREACHABLE, str(exc) or type(exc).__name__
    return None


def _database_failure(exc: BaseException) -> tuple[int, str] | None:
    """SQLAlchemy's errors, when it is loaded (server-side commands): a server that cannot be reached is 3; one that
    answered but holds no such database, or refused the credentials, is 2."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return USAGE, f"bad database URL: {exc}"
    if not isinstance(exc, DBAPIError):
        return None
    orig = getattr(exc, "orig", None)
    first_line = (str(orig or exc).strip().splitlines() or [type(exc).__name__])[0]
    return database_status(exc), first_line


def database_status(exc: BaseException) -> int:
    """Unreachable (3) for a connection that could not be made; usage (2) for a database that answered but holds no
    log (no such table, no such database, refused credentials)."""
    from sqlalchemy.exc import OperationalError

    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(exc, OperationalError) and sqlstate is None and "sqlite" not in type(orig).__module__:
        refused = ("does not exist", "authentication failed", "no password supplied", "not permitted")
        return USAGE if any(text in str(orig) for text in refused) else UNREACHABLE
    if isinstance(exc, OperationalError) and sqlstate is not None and sqlstate.startswith("08"):
        return UNREACHABLE
    return USAGE


def say(command: str, message: str) -> None:
    """One line on stderr, with the prefix every command's messages share."""
    print(f"auditlog {command}: {message}" if command else f"auditlog: {message}", file=sys.stderr, flush=True)


def report(command: str, exc: BaseException, debug: bool) -> int:
    """Print the failure as one line (the traceback too with --debug) and return the exit status."""
    described = describe(exc)
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if described is not None:
        status, message = described
        say(command, message)
        return status
    say(command, f"internal error: {type(exc).__name__}: {exc}")
    if not debug:
        say(command, "this is a bug in auditlog: please report it with the output of the same command run with "
                     "--debug")
    return BUG
