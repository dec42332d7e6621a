"""The log server's timestamping: stamp each new checkpoint at an RFC 3161 TSA, verify the token, keep it.

The request and the verification are witness/rfc3161.py's; this module holds the store of the log database's
`timestamps` table (log/storage/schema.py, migration 0003) and the background job that runs in the server's event
loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp
import sqlalchemy as sa

from api.server.background import BackgroundTask
from log import defaults
from log.checkpoint import Checkpoint
from log.errors import InvalidInput, LogError, VerificationError
from log.storage.schema import timestamps
from witness.http_errors import describe_exception
from witness.rfc3161 import (TimestampInfo, TimestampRejected, build_request, load_certificates, request_timestamp,
                             verify_timestamp)

logger = logging.getLogger(__name__)


# -- storage ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StoredTimestamp:
    size: int
    note: bytes
    response: bytes
    gen_time_ms: int


class TimestampStore:
    """The `timestamps` table (migration 0003) in the log's own database.

    `read` and `write` are the log's (`Log.read`, `Log.write`): reads run on its reader threads; `add` writes
    through its single writer, because on SQLite the sequencer holds the write lock; the row is durable when it
    returns.
    """

    def __init__(self, read, write):
        self._read = read
        self._write = write

    @classmethod
    def for_log(cls, log) -> "TimestampStore":
        return cls(log.read, log.write)

    async def add(self, size: int, note: bytes, response: bytes, info: TimestampInfo, created_at_ms: int) -> None:
        row = timestamps.insert().values(
            size=size, note=note, response=response, gen_time=int(info.gen_time.timestamp() * 1000),
            serial=str(info.serial), tsa_name=info.tsa_name, created_at=created_at_ms,
        )
        await self._write(lambda tx: tx.execute(row))

    async def _one(self, where=None) -> StoredTimestamp | None:
        query = sa.select(timestamps.c.size, timestamps.c.note, timestamps.c.response, timestamps.c.gen_time)
        if where is not None:
            query = query.where(where)
        query = query.order_by(timestamps.c.id.desc()).limit(1)
        rows = await self._read(lambda tx: tx.execute(query))
        if not rows:
            return None
        row = rows[0]
        return StoredTimestamp(row.size, bytes(row.note), bytes(row.response), row.gen_time)

    async def latest(self) -> StoredTimestamp | None:
        return await self._one()

    async def for_size(self, size: int) -> StoredTimestamp | None:
        return await self._one(timestamps.c.size == size)



def checkpoint_size(note: bytes) -> int:
    """The tree size in a checkpoint note (C2SP tlog-checkpoint: the body ends at the first blank line)."""
    try:
        body = note[: note.index(b"\n\n") + 1].decode("utf-8")
        return Checkpoint.from_text(body).size
    except (ValueError, UnicodeDecodeError, LogError) as exc:
        raise InvalidInput(f"the bytes to stamp are not a checkpoint note: {exc}", field="note") from None


# -- the job ----------------------------------------------------------------------------------------------------------
class TimestampJob:
    """Stamps the log's checkpoints in the background: every `interval` seconds, if the checkpoint `source` returns
    (default: the log's latest) has no token yet, ask the TSA for one, verify it, and store it.

    A TSA that is down, slow or answers garbage never blocks the log (the job only reads the published checkpoint)
    and never gets a token stored: a round that does not end in a verified token is a failure, counted in
    `metrics()`, and retried after a backoff that doubles from `retry_initial` up to `retry_max` (with jitter).
    """

    def __init__(
        self,
        log,
        tsa_url: str,
        tsa_certificate_pem: bytes | str,
        interval: float = defaults.TIMESTAMP_INTERVAL,
        source: Callable[[], bytes | None | Awaitable[bytes | None]] | None = None,
        *,
        store: TimestampStore | None = None,
        timeout: float = 10.0,
        retry_initial: float = 1.0,
        retry_max: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if interval <= 0:
            raise InvalidInput(f"interval must be positive, not {interval}", field="interval")
        self._log = log
        self._url = tsa_url
        self._trusted = load_certificates(tsa_certificate_pem)
        if not self._trusted:
            raise InvalidInput("the TSA certificate PEM holds no certificate", field="tsa_certificate_pem")
        self._interval = interval
        self._source = source or (lambda: log.checkpoint.note)
        self._owns_store = store is None
        self._store = store
        self._timeout = timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max if retry_max is not None else max(interval, retry_initial)
        self._clock = clock
        self._task = BackgroundTask("auditlog-timestamps")
        self._stopping = asyncio.Event()
        self._stamped_note: bytes | None = None
        self._stamped_at: float | None = None  # when the newest stored token was verified
        self._stamped_size: int | None = None
        self._waiting_since: float | None = None  # when the current unstamped checkpoint was first seen
        self._failures = 0
        self._consecutive = 0
        self._stored = 0
        self._last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background task (inside a running event loop). Idempotent."""
        if not self._task.started:
            self._stopping.clear()
            self._task.start(self._run)

    async def stop(self) -> None:
        """Stop the task (an in-flight request is abandoned: nothing half-stored) and release the store."""
        self._stopping.set()
        await self._task.stop()
        if self._owns_store:
            self._store = None

    def metrics(self) -> dict:
        """Counters and gauges for /metrics. `seconds_since_last_timestamp` is the age of the newest verified
        token (None before the first); `seconds_unstamped` how long the current checkpoint has waited for one."""
        now = self._clock()
        return {
            "timestamps_stored_total": self._stored,
            "timestamp_failures_total": self._failures,
            "timestamp_consecutive_failures": self._consecutive,
            "seconds_since_last_timestamp": None if self._stamped_at is None else max(0.0, now - self._stamped_at),
            "seconds_unstamped": 0.0 if self._waiting_since is None else max(0.0, now - self._waiting_since),
            "timestamped_size": self._stamped_size,
            "timestamp_last_error": self._last_error,
        }

    async def latest_token(self) -> tuple[bytes, bytes] | None:
        """(checkpoint note, DER TimeStampResp) of the newest stored token, or None."""
        row = await self._get_store().latest()
        return None if row is None else (row.note, row.response)

    async def token_for(self, size: int) -> tuple[bytes, bytes] | None:
        """(checkpoint note, DER TimeStampResp) of the newest token for the checkpoint of tree size `size`."""
        row = await self._get_store().for_size(size)
        return None if row is None else (row.note, row.response)

    # -- the loop ---------------------------------------------------------------------------------------------------
    def _get_store(self) -> TimestampStore:
        if self._store is None:
            self._store = TimestampStore.for_log(self._log)
        return self._store

    async def _run(self) -> None:
        latest = await self._get_store().latest()
        if latest is not None:
            self._stamped_note, self._stamped_size = latest.note, latest.size
            self._stamped_at = latest.gen_time_ms / 1000
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set():
                delay = await self.run_once(session)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    async def run_once(self, session: aiohttp.ClientSession) -> float:
        """One round; returns the seconds to wait before the next. Never raises (but for cancellation)."""
        try:
            note = self._source()
            if inspect.isawaitable(note):
                note = await note
            if note is None or note == self._stamped_note:
                self._waiting_since = None
                return self._interval
            if self._waiting_since is None:
                self._waiting_since = self._clock()
            await self._stamp(session, bytes(note))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is counted and retried, never propagated
            self._failures += 1
            self._consecutive += 1
            self._last_error = self._describe(exc)
            if isinstance(exc, (LogError, aiohttp.ClientError, asyncio.TimeoutError, OSError)):
                logger.warning("timestamping at TSA %s: %s (%d in a row)", self._url, self._last_error,
                               self._consecutive)
            else:
                logger.exception("timestamping at TSA %s failed unexpectedly (a bug; %d in a row)", self._url,
                                 self._consecutive)
            backoff = min(self._retry_max, self._retry_initial * 2 ** (self._consecutive - 1))
            return backoff * random.uniform(0.5, 1.0)
        self._consecutive = 0
        self._last_error = None
        return self._interval

    def _describe(self, exc: BaseException) -> str:
        """A failed round in words: what the TSA did (or did not) answer, or why its token was refused."""
        if isinstance(exc, TimestampRejected):
            return f"the TSA refused to stamp the checkpoint: {exc}"
        if isinstance(exc, VerificationError):
            return f"the TSA's token does not verify: {exc}"
        if isinstance(exc, LogError):
            return str(exc)
        return describe_exception(exc, self._timeout)

    async def _stamp(self, session: aiohttp.ClientSession, note: bytes) -> None:
        # 1. Which checkpoint: a note that is not a checkpoint is refused before anything goes out.
        size = checkpoint_size(note)
        # 2. Ask. A network error or timeout ends the round here; nothing is stored.
        request = build_request(note)
        response = await request_timestamp(session, self._url, request)
        # 3. Verify fully, with our nonce; a response that fails any check is dropped here.
        info = verify_timestamp(response, note, self._trusted, nonce=request.nonce)
        # 4. Store. Only now is the checkpoint stamped; a crash before the commit leaves it unstamped and the
        #    next run asks again.
        now = self._clock()
        await self._get_store().add(size, note, response, info, int(now * 1000))
        self._stored += 1
        self._stamped_note, self._stamped_size, self._stamped_at = note, size, now
        self._waiting_since = None
