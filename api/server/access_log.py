"""The access log: who read which contents, when, from where, and what they were answered (issue 18).

`record_read(request, what, target)` is called by the handlers of every read of contents (event lists, run
timelines, evidence bundles, blobs, entries and entry bundles, compliance reports) once the request is authorized
(api/server/auth.py has put its principal in `request[PRINCIPAL]`). `what` names the kind of read ("events",
"timeline", "evidence", "blob", "entry", "entry-bundle", "report") and `target` the thing read (a query string, a run id, a sha256, an index, a tile
path). A read without a credential (an anonymous read of a `--public` log, or a public route) is not recorded: there
is nobody to name, and the public surface is public. A read with a credential is recorded whatever it is answered
once authorized (200, or a 404 for a blob or run that is not there: a probe for what exists is a read too); a
request the route policy refuses (401, 403) never reaches the handler and is the auth layer's to report. The HTTP
status is the final one, problem answers included: the metrics middleware, which sees every request's final status,
completes the records (`finished`); a request that ended without an answer (the client went away) is recorded with
500.

Kept apart from the Merkle log (the `access_log` table of the log's database, log/storage/schema.py): reads
outnumber writes by orders of magnitude and the log does not prove them; an admin queries them with
`GET /api/v1/access-log` (`auditlog access-log`), and rows older than the retention (default 400 days,
`--access-log-retention`) are pruned by a background job, a bounded chunk per write transaction.

Durability, and why not durable-before-answer: recording is an append to an in-memory list (no I/O, no await on the
read path). A background task writes the list in one transaction through the log's single writer (`Log.write`)
every ACCESS_LOG_FLUSH_INTERVAL (1 s), or at once when ACCESS_LOG_FLUSH_ROWS (1000) are waiting, and on shutdown
(a clean stop loses nothing: the app's cleanup flushes before the log closes). What a crash (kill -9, power loss)
can lose is what was recorded since the last flush: at most about the last second of reads (two for a read
worker's, see below). That is acceptable for a read log because it is an accountability record, not a guarantee the
log gives its clients: the reads it would lose are ones whose records were being written when the server died, the
contents read stay in the Merkle log unchanged, and an attacker cannot choose to fall in that window without also
being able to crash the server (which the operator sees). Writing each record durably before answering would put a
commit (an fsync on SQLite, a round trip and WAL flush on PostgreSQL) on every read of contents, through the one
writer the ingest path also needs: measured at roughly a write transaction per read, it would cap content reads at
the writer's commit rate and slow every append. If the database cannot take writes (disk full), records stay
buffered and are retried every second, up to ACCESS_LOG_MAX_BUFFERED (100,000); beyond that the oldest are dropped,
counted in `auditlog_access_log_dropped_total` and logged.

Read workers (api/server/readers.py) answer entry contents themselves, in their own process. They do not write the
table: on SQLite the writer holds the database's write lock for its life, and everywhere the log has exactly one
writer (README "Architecture"). A worker buffers its records the same way and, every second and on shutdown, hands
them to the writer on its standard output (the pipe the writer already reads to relay the worker's log lines), as
one line `ACCESS_LINE_PREFIX` + a JSON array; the writer adds them to its own buffer. Reads a worker forwards to the
writer (events, blobs...) are recorded by the writer, with the client's address the worker passes on in
FORWARDED_CLIENT (trusted only on the writer's Unix socket, which only the workers reach).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import sqlalchemy as sa
from aiohttp import web

from api.server.auth import PRINCIPAL
from api.server.background import BackgroundTask
from log import defaults
from log.errors import InvalidInput
from log.storage.schema import access_log as table

logger = logging.getLogger(__name__)


MAX_TARGET = 1024  # characters of a target kept (a long query string is cut, marked with "...")
ACCESS_LINE_PREFIX = "\x1eauditlog-access "  # a read worker's line of records on its stdout (RS: not a log line)
FORWARDED_CLIENT = "X-Auditlog-Client"  # a read worker's client's address, on a request it forwards to the writer
PRUNE_CHUNK = 5000  # rows deleted per write transaction when pruning

ACCESS_LOG = web.AppKey("access_log", "AccessLog")
_PENDING = web.RequestKey("access_log_pending", list)


class AccessRecord(NamedTuple):
    at: int  # Unix milliseconds
    credential: str
    role: str
    what: str
    target: str
    remote: str
    status: int

    def row(self) -> dict:
        return self._asdict()


# --- recording -----------------------------------------------------------------------------------------------------


async def record_read(request: web.Request, what: str, target: str) -> None:
    """Record one authorized read of contents by the request's principal (nothing without a credential). The record
    is completed with the response's status when the response is prepared, then buffered (no I/O here)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        return
    if len(target) > MAX_TARGET:
        target = target[:MAX_TARGET - 3] + "..."
    pending = request.get(_PENDING)
    if pending is None:
        pending = request[_PENDING] = []
    pending.append((int(time.time() * 1000), principal.credential, principal.role, what, target,
                    client_address(request)))


def finished(request: web.Request, status: int) -> None:
    """The metrics middleware's `finished` hook (api/server/metrics.py), told every request's final status: the
    reads this request recorded are completed with it and buffered. A dict lookup for a request that recorded
    none: cheaper than a response-prepare signal, which cost ~2 us per response of every route."""
    pending = request.get(_PENDING)
    if not pending:
        return
    access = request.app.get(ACCESS_LOG)
    for at, credential, role, what, target, remote in pending:
        record = AccessRecord(at, credential, role, what, target, remote, status)
        if access is not None:
            access.add(record)
        else:  # an app without an access log is a bug; say so rather than lose the record silently
            logger.error("no access log in this app: read not recorded: %s", record)
    pending.clear()


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or for a request a read worker forwarded over the writer's Unix socket,
    the one the worker passes on (FORWARDED_CLIENT; a client's own such header reaching a TCP port is ignored)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            return request.headers.get(FORWARDED_CLIENT, "")[:64] or "read-worker"
    return request.remote or ""


# --- the buffer and its writer ---------------------------------------------------------------------------------------


class AccessLog:
    """Records buffered in memory and handed to `sink` in batches by a background task: every `flush_interval`
    seconds, at once when `flush_rows` are waiting, and on `close()`. A sink that fails keeps its batch buffered
    (in order) for the next round; more than `max_buffered` waiting drops the oldest, counted and logged."""

    def __init__(self, sink: Callable[[list[AccessRecord]], Awaitable[None]], *,
                 flush_interval: float = defaults.ACCESS_LOG_FLUSH_INTERVAL,
                 flush_rows: int = defaults.ACCESS_LOG_FLUSH_ROWS,
                 max_buffered: int = defaults.ACCESS_LOG_MAX_BUFFERED):
        self._sink = sink
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.max_buffered = max_buffered
        self._buffer: list[AccessRecord] = []
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self.recorded = self.written = self.dropped = self.failures = 0
        self._last_failure_logged = 0.0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, record: AccessRecord) -> None:
        self.recorded += 1
        self._buffer.append(record)
        if len(self._buffer) > self.max_buffered:
            self._drop(len(self._buffer) - self.max_buffered)
        if len(self._buffer) >= self.flush_rows and self._wake is not None:
            self._wake.set()

    def extend(self, records: list[AccessRecord]) -> None:
        for record in records:
            self.add(record)

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self.dropped += count
        logger.error("access log: %d records dropped (more than %d waiting: the database has not taken them)",
                     count, self.max_buffered)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="auditlog-access-log")

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Hand everything buffered to the sink, a batch of at most `flush_rows` at a time; False when the sink
        failed (what it did not take stays buffered)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while self._buffer:
                batch = self._buffer[:self.flush_rows]
                del self._buffer[:len(batch)]
                try:
                    await self._sink(batch)
                except Exception as exc:  # noqa: BLE001 - kept for the next round; said at most every 10 s
                    self._buffer[:0] = batch
                    if len(self._buffer) > self.max_buffered:
                        self._drop(len(self._buffer) - self.max_buffered)
                    self.failures += 1
                    now = time.monotonic()
                    if now - self._last_failure_logged >= 10:
                        self._last_failure_logged = now
                        logger.warning("access log: %d records not written yet, retrying: %s", len(self._buffer),
                                       exc)
                    return False
                self.written += len(batch)
        return True

    async def close(self) -> None:
        """Stop the task, then write what is still buffered (once more if the last round failed)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task  # ends by itself after its round: never cancelled in the middle of a write
            self._task = None
        if not await self.flush():
            logger.error("access log: %d records could not be written at shutdown and are lost", len(self._buffer))

    def metrics(self) -> str:
        return (
            "# HELP auditlog_access_log_records_total Reads of contents recorded in the access log.\n"
            "# TYPE auditlog_access_log_records_total counter\n"
            f"auditlog_access_log_records_total {self.recorded}\n"
            "# HELP auditlog_access_log_written_total Access log records written to the database.\n"
            "# TYPE auditlog_access_log_written_total counter\n"
            f"auditlog_access_log_written_total {self.written}\n"
            "# HELP auditlog_access_log_dropped_total Access log records dropped: the database did not take them.\n"
            "# TYPE auditlog_access_log_dropped_total counter\n"
            f"auditlog_access_log_dropped_total {self.dropped}\n"
            "# HELP auditlog_access_log_buffered Access log records waiting to be written.\n"
            "# TYPE auditlog_access_log_buffered gauge\n"
            f"auditlog_access_log_buffered {self.buffered}\n"
        )


def database_sink(log) -> Callable[[list[AccessRecord]], Awaitable[None]]:
    """Write a batch in one transaction: of the log's writer on the sequencer, of its own on a server that stands
    by (`Log.write_outside_tree`)."""
    async def sink(batch: list[AccessRecord]) -> None:
        rows = [record.row() for record in batch]
        await log.write_outside_tree(lambda transaction: transaction.execute_many(table.insert(), rows))
    return sink


def pipe_sink(stream=None) -> Callable[[list[AccessRecord]], Awaitable[None]]:
    """A read worker's: one line on stdout, which the writer reads (api/server/readers.py ReadWorkers)."""
    async def sink(batch: list[AccessRecord]) -> None:
        out = stream or sys.stdout
        out.write(ACCESS_LINE_PREFIX + json.dumps([list(record) for record in batch], separators=(",", ":")) + "\n")
        out.flush()
    return sink


def parse_access_line(text: str) -> list[AccessRecord] | None:
    """The records of a read worker's access line; None when `text` is not one. A line that does not parse is
    logged and yields no records."""
    if not text.startswith(ACCESS_LINE_PREFIX):
        return None
    try:
        rows = json.loads(text[len(ACCESS_LINE_PREFIX):])
        records = [AccessRecord(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), int(r[6]))
                   for r in rows]
    except (ValueError, TypeError, IndexError) as exc:
        logger.error("a read worker's access records could not be read and are lost: %s", exc)
        return []
    return records


def lifetime(make_sink: Callable[[web.Application], Callable], *, retention_days: float | None = None,
             prune_interval: float = defaults.ACCESS_LOG_PRUNE_INTERVAL):
    """A cleanup context: the app's AccessLog (its sink made once the app's log is open) started, and closed (its
    last records written) before the log closes; with `retention_days`, the pruning job too (the writer's)."""
    async def run(app: web.Application):
        access = AccessLog(make_sink(app))
        app[ACCESS_LOG] = access
        access.start()
        pruning = BackgroundTask("auditlog-access-log-prune")
        if retention_days is not None:
            from api.server.state import LOG

            pruning.start(lambda: _prune_forever(app[LOG], retention_days, prune_interval))
        try:
            yield
        finally:
            await pruning.stop()
            await access.close()

    return run


# --- retention -------------------------------------------------------------------------------------------------------


async def prune(log, before_ms: int, chunk: int = PRUNE_CHUNK) -> int:
    """Delete the records older than `before_ms`, `chunk` rows per write transaction (the writer is never held
    long); the number deleted."""
    def work(transaction) -> int:
        ids = [row[0] for row in transaction.execute(
            sa.select(table.c.id).where(table.c.at < before_ms).order_by(table.c.id).limit(chunk))]
        if ids:
            transaction.execute(table.delete().where(table.c.id.in_(ids)))
        return len(ids)

    total = 0
    while True:
        deleted = await log.write(work)
        total += deleted
        if deleted < chunk:
            return total


async def _prune_forever(log, retention_days: float, interval: float) -> None:
    while True:
        try:
            deleted = await prune(log, int((time.time() - retention_days * 86400) * 1000))
            if deleted:
                logger.info("access log: pruned %d records older than %g days", deleted, retention_days)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            logger.warning("access log: pruning failed, retrying in %g s: %s", interval, exc)
        await asyncio.sleep(interval)


# --- the admin's query ---------------------------------------------------------------------------------------------

QUERY_FILTERS = ("credential", "what", "target")


def parse_query(params) -> dict:
    """GET /api/v1/access-log's parameters: the filters, since/until (RFC 3339 UTC with milliseconds), cursor,
    limit; unknown or repeated names and NUL refused (InvalidInput naming the parameter)."""
    from api.server.audit_routes import parse_cursor
    from api.server.routes import parse_uint
    from log.audit.schema import parse_timestamp_ms

    known = {*QUERY_FILTERS, "since", "until", "cursor", "limit"}
    for name in params:
        if name not in known:
            raise InvalidInput(f"unknown query parameter {name[:40]!r}; expected {', '.join(sorted(known))}",
                               field=name[:40])
        if len(params.getall(name)) > 1:
            raise InvalidInput(f"query parameter {name!r} is repeated", field=name)
        if "\x00" in params[name]:
            raise InvalidInput(f"query parameter {name!r} holds NUL", field=name)
    query = {name: params[name] for name in QUERY_FILTERS if name in params}
    for bound in ("since", "until"):
        if bound in params:
            ms = parse_timestamp_ms(params[bound])
            if ms is None:
                raise InvalidInput(f"{bound} must be an RFC 3339 UTC timestamp with milliseconds, not "
                                   f"{params[bound][:40]!r}", field=bound)
            query[bound] = ms
    limit = parse_uint(params.get("limit", "100"), "limit")
    if not 1 <= limit <= defaults.ACCESS_LOG_MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {defaults.ACCESS_LOG_MAX_PAGE}, not {limit}", field="limit")
    query["limit"] = limit
    query["after"] = parse_cursor(params["cursor"]) if "cursor" in params else 0
    return query


def select_page(query: dict):
    statement = sa.select(table).where(table.c.id > query["after"])
    for name in QUERY_FILTERS:
        if name in query:
            statement = statement.where(table.c[name] == query[name])
    if "since" in query:
        statement = statement.where(table.c.at >= query["since"])
    if "until" in query:
        statement = statement.where(table.c.at < query["until"])
    return statement.order_by(table.c.id).limit(query["limit"] + 1)


def record_json(row) -> dict:
    from api.server.routes import rfc3339_ms

    return {"id": row.id, "at": rfc3339_ms(row.at), "at_ms": row.at, "credential": row.credential, "role": row.role,
            "what": row.what, "target": row.target, "remote": row.remote, "status": row.status}


async def list_access_log(request: web.Request) -> web.Response:
    """GET /api/v1/access-log (admin): the records that match, oldest first, paged by `cursor`. What this process
    has buffered is written first, so a read the writer answered before this query is in its answer (a read
    worker's arrive within about a second: they reach this buffer once the worker flushes its own)."""
    from api.server.audit_routes import format_cursor
    from api.server.state import LOG

    query = parse_query(request.query)  # admin only: the route policy (api/server/auth.py) let the caller in
    access = request.app.get(ACCESS_LOG)
    if access is not None:
        await access.flush()
    statement = select_page(query)
    rows = await request.app[LOG].read(lambda transaction: transaction.execute(statement))
    more = len(rows) > query["limit"]
    rows = rows[:query["limit"]]
    cursor = format_cursor(rows[-1].id) if more else None
    return web.json_response({"records": [record_json(row) for row in rows], "next_cursor": cursor},
                             headers={"Cache-Control": "no-store"})
