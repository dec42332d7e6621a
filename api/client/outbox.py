"""The producer's durable outbox: a SQLite spool of signed envelopes, written before they are sent.

    outbox = Outbox("/var/spool/agent")          # or Recorder(..., outbox="/var/spool/agent")
    outbox.pending()                             # what waits to be delivered, oldest first
    outbox.refused()                             # what the log refused for good, with its problem

An envelope goes in (`put`) as the exact bytes that will be POSTed, and leaves only one of two ways: `remove`, once
its receipt verified, or `refuse`, which moves it to the `refused` table with the log's problem when the log refused
it for good (sending the same bytes again can never succeed). Nothing is dropped silently.

Durability: every change is one transaction committed with `synchronous=FULL` (the WAL is fsynced at each commit),
and the directory is fsynced after the database is created, so an envelope `put` returned for survives SIGKILL and
power loss. The spool is thread-safe (one connection behind a lock) and may be shared by processes (SQLite's locks,
with a busy timeout); a send from two processes at once is harmless, the log's (producer, event_id) idempotency
makes it land once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from log.disk import fsync_directory

FILE_NAME = "outbox.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- spool order: oldest first
    producer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,                  -- the exact bytes POSTed to /api/v1/events
    spooled_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,    -- sends that ended without a verified receipt or a final refusal
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,                -- the envelope's seq in pending
    producer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    spooled_at REAL NOT NULL,
    refused_at REAL NOT NULL,
    status INTEGER NOT NULL,                -- the HTTP status of the refusal (0: refused here, unreadable)
    problem TEXT,                           -- the log's problem+json body, as JSON
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Spooled:
    """An envelope waiting in the outbox: `payload` is the exact request body."""

    seq: int
    producer: str
    event_id: str
    payload: bytes
    spooled_at: float
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Refused:
    """An envelope the log refused for good: `problem` is its problem body (None if it sent none)."""

    seq: int
    producer: str
    event_id: str
    payload: bytes
    spooled_at: float
    refused_at: float
    status: int
    problem: dict | None
    message: str


class Outbox:
    """The spool in `directory` (created if missing; the database is `<directory>/outbox.sqlite`)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        created = not self.path.exists()
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True)
            fsync_directory(self.directory.parent, best_effort=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise
        if created:
            fsync_directory(self.directory)

    def put(self, producer: str, event_id: str, payload: bytes) -> int:
        """Spool an envelope's request body, durably; returns its sequence number."""
        with self._lock:
            return self._db.execute(
                "INSERT INTO pending (producer, event_id, payload, spooled_at) VALUES (?, ?, ?, ?)",
                (producer, event_id, payload, time.time())).lastrowid

    def pending(self, producer: str | None = None) -> list[Spooled]:
        """Spooled envelopes (of `producer`, or all), oldest first."""
        sql = "SELECT seq, producer, event_id, payload, spooled_at, attempts, last_error FROM pending"
        args: tuple = ()
        if producer is not None:
            sql, args = sql + " WHERE producer = ?", (producer,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Spooled(seq, p, e, bytes(payload), at, attempts, error)
                for seq, p, e, payload, at, attempts, error in rows]

    def seqs(self, producer: str, before: int | None = None) -> list[int]:
        """The sequence numbers of `producer`'s spooled envelopes (older than `before`, or all), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq FROM pending WHERE producer = ? AND seq < ? ORDER BY seq",
                                    (producer, before if before is not None else 2**63 - 1)).fetchall()
        return [seq for seq, in rows]

    def get(self, seq: int) -> Spooled | None:
        with self._lock:
            row = self._db.execute("SELECT seq, producer, event_id, payload, spooled_at, attempts, last_error "
                                   "FROM pending WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else Spooled(row[0], row[1], row[2], bytes(row[3]), *row[4:])

    def remove(self, seq: int) -> None:
        """Forget a delivered envelope (its receipt verified)."""
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def failed(self, seq: int, error: str) -> None:
        """Note a send that ended without an answer to act on; the envelope stays spooled."""
        with self._lock:
            self._db.execute("UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                             (error[:2000], seq))

    def refuse(self, seq: int, status: int, problem: dict | None, message: str) -> None:
        """Move an envelope the log refused for good to `refused`, with the refusal, in one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR REPLACE INTO refused (seq, producer, event_id, payload, spooled_at, "
                           "refused_at, status, problem, message) SELECT seq, producer, event_id, payload, "
                           "spooled_at, ?, ?, ?, ? FROM pending WHERE seq = ?",
                           (time.time(), status, None if problem is None else json.dumps(problem),
                            message[:2000], seq))
                db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def refused(self, producer: str | None = None) -> list[Refused]:
        """Envelopes the log refused for good (of `producer`, or all), oldest first. They stay until `forget`."""
        sql = ("SELECT seq, producer, event_id, payload, spooled_at, refused_at, status, problem, message "
               "FROM refused")
        args: tuple = ()
        if producer is not None:
            sql, args = sql + " WHERE producer = ?", (producer,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [Refused(seq, p, e, bytes(payload), spooled, refused, status,
                        None if problem is None else json.loads(problem), message)
                for seq, p, e, payload, spooled, refused, status, problem, message in rows]

    def forget(self, seq: int) -> None:
        """Delete a refused envelope once someone has dealt with it."""
        with self._lock:
            self._db.execute("DELETE FROM refused WHERE seq = ?", (seq,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
