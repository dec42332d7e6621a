"""Reads from a PostgreSQL hot standby (`--read-database-url`): the checkpoint the replica has replayed, how far it is
behind the primary, and waiting for it to catch up.

With a read replica, every read the log answers goes to the replica; writes, the sequencer's own reads and reads
that write decisions rest on go to the primary. The checkpoint served is the replica's own latest, never the
sequencer's newer one: a checkpoint commits in one transaction with its entries and tiles, so a replica that has
replayed a checkpoint holds everything the proofs, tiles and entries of its tree need (in that snapshot or any
later replay). `ReplicaHead` reads that checkpoint every REPLICA_POLL_INTERVAL seconds on a thread of its own, so
a replica that hangs holds that thread, never the event loop nor the writer.

A client that got a receipt at size N from the primary may ask about N before the replica has replayed it: such a
request waits up to REPLICA_WAIT seconds for the replay, then is refused with `ReplicaBehind` (503, Retry-After
the replica's lag in seconds). A size beyond the primary's tree as well is not waited for: the caller refuses it as
out of range. While the replica cannot be read, every read is refused with `ReplicaUnavailable` (503); writes
never touch it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from log import defaults
from log.errors import InvalidInput, Unavailable
from log.sequencer import Published
from log.storage import LogStore
from log.storage.engine import backend_name, shown_url
from log.storage.store import SqlLogStore, StandbyReplay

logger = logging.getLogger(__name__)


class ReplicaUnavailable(Unavailable):
    """The read replica cannot be read (unreachable, or it holds no checkpoint yet); retry later."""

    code = "replica-unavailable"


class ReplicaBehind(Unavailable):
    """The primary has committed the tree size asked about, but the read replica has not replayed it within
    REPLICA_WAIT seconds. `retry_after`: whole seconds, the replica's lag (at least 1)."""

    code = "replica-behind"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ReplicaStatus:
    """The read replica as /readyz and /metrics report it."""

    replayed_size: int | None  # the latest checkpoint read from the replica; None before one was read
    primary_size: int | None  # the primary's latest as this process knows it (its sequencer's); None: not known here
    lag_seconds: float | None  # age of the oldest checkpoint the replica lacks (0 when it lacks none); None: unknown
    replay_age_seconds: float | None  # now - pg_last_xact_replay_timestamp() on the standby; grows on an idle log too
    replay_paused: bool | None  # pg_is_wal_replay_paused(); None when the replica is not a standby in recovery
    error: str | None  # why the replica cannot be read; None while it can

    @property
    def lag_entries(self) -> int | None:
        if self.replayed_size is None or self.primary_size is None:
            return None
        return max(0, self.primary_size - self.replayed_size)


def check_read_database_url(primary_url: str, read_url: str) -> None:
    """Refuse (InvalidInput) a read replica that is not PostgreSQL, or one beside a primary that is not: SQLite has no
    streaming replicas, and a copy of its file would never hold what the sequencer commits."""
    if backend_name(primary_url) != "postgresql":
        raise InvalidInput("a read database needs a PostgreSQL primary (--database-url postgresql://...); "
                           f"the log is in {shown_url(primary_url)}", field="read_database_url")
    if backend_name(read_url) != "postgresql":
        raise InvalidInput("the read database must be a PostgreSQL hot standby of the primary "
                           f"(postgresql://...), not {shown_url(read_url)}", field="read_database_url")


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ReplicaHead:
    """The latest checkpoint a read replica has replayed, read in the background; how far the replica lags; and
    `reach(size)`, which waits (bounded) for the replica to replay a size the primary has committed.

    `sequenced_size()`: the primary's latest size when this process sequences the log (cheap, in memory), else None
    (the primary is then read when a wait needs it). Create inside a running event loop; `start()`, then `close()`.
    """

    def __init__(self, replica: SqlLogStore, primary: LogStore, sequenced_size: Callable[[], int | None], *,
                 poll_interval: float = defaults.REPLICA_POLL_INTERVAL, wait: float = defaults.REPLICA_WAIT):
        self._replica = replica
        self._primary = primary
        self._sequenced_size = sequenced_size
        self._poll_interval = poll_interval
        self._wait = wait
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="auditlog-replica")
        self._published: Published | None = None
        self._replay: StandbyReplay | None = None
        self._error: str | None = "not read yet"
        self._lag_seconds: float | None = None
        self._missing: tuple[int, int] | None = None  # (replayed size, created_at ms of the next primary checkpoint)
        self._reading: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Read the replica once (a failure is its state, reported, not raised: the log serves writes without it),
        then keep reading it in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._keep_reading(), name="auditlog-replica-head")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=False, cancel_futures=True)  # a read hanging on a lost replica ends with its store

    async def _keep_reading(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            await self.refresh()

    def latest(self) -> Published:
        """The newest checkpoint read from the replica; ReplicaUnavailable while the replica cannot be read."""
        error, published = self._error, self._published
        if error is not None or published is None:
            raise ReplicaUnavailable(f"the read replica cannot be read: {error}; retry later")
        return published

    async def refresh(self) -> None:
        """Read the replica now (joining a read already under way)."""
        if self._reading is None:
            self._reading = asyncio.get_running_loop().run_in_executor(self._thread, self._read)
            self._reading.add_done_callback(self._read_done)
        await asyncio.shield(self._reading)

    def _read_done(self, _future) -> None:
        self._reading = None

    def _read(self) -> None:
        """One read of the replica (its own thread): the latest checkpoint, the replay's state, and the lag."""
        try:
            stored, replay = self._replica.replica_head()
        except Exception as exc:  # noqa: BLE001 - whatever keeps the replica from answering is its state, reported
            if self._error is None:
                logger.warning("the read replica %s cannot be read; reads answer 503 until it can: %s",
                               shown_url(self._replica.url), _one_line(exc))
            self._error = _one_line(exc)
            return
        if stored is None:
            self._error = "it has not replayed the log's first checkpoint yet"
            return
        if self._error is not None and self._published is not None:
            logger.info("the read replica %s can be read again", shown_url(self._replica.url))
        published = self._published
        if published is None or stored.size > published.size:  # never back: a replica behind an earlier read
            published = self._published = Published(stored.size, stored.root_hash, stored.note)
        self._replay = replay
        self._error = None
        primary = self._sequenced_size()
        self._lag_seconds = None if primary is None else self._lag(published.size, primary)

    def _lag(self, replayed: int, primary: int) -> float | None:
        """Seconds since the primary committed the oldest checkpoint the replica lacks (blocking: reads the primary
        while the replica is behind, once per replayed size); None when the primary cannot say."""
        if replayed >= primary:
            return 0.0
        missing = self._missing
        if missing is None or missing[0] != replayed:
            try:
                stored = self._primary.first_checkpoint_after(replayed)
            except Exception:  # noqa: BLE001 - the primary unreachable: the lag is unknown, the replica still readable
                return None
            if stored is None:
                return None
            missing = self._missing = (replayed, stored.created_at)
        return max(0.0, time.time() - missing[1] / 1000)

    async def reach(self, wanted: int) -> int:
        """The replica's size once it is at least `wanted`; at once the replica's size when `wanted` is beyond the
        primary's tree too (the caller refuses it as out of range). ReplicaBehind after REPLICA_WAIT seconds;
        ReplicaUnavailable while the replica cannot be read."""
        await self.refresh()  # a client that just got a receipt: the replica is usually milliseconds behind
        size = self.latest().size
        if size >= wanted:
            return size
        primary = self._sequenced_size()
        if primary is None:
            stored = await asyncio.to_thread(self._primary.latest_checkpoint)
            primary = 0 if stored is None else stored.size
        if wanted > primary:
            return size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while size < wanted:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise await self._behind(wanted, size, primary)
            await asyncio.sleep(min(self._poll_interval, remaining))
            size = self.latest().size
        return size

    async def _behind(self, wanted: int, replayed: int, primary: int) -> ReplicaBehind:
        lag = self._lag_seconds if self._sequenced_size() is not None else None
        if lag is None:
            lag = await asyncio.to_thread(self._lag, replayed, primary)
        retry_after = max(1, math.ceil(lag or 0))
        lag_text = "an unknown time" if lag is None else f"{lag:.1f} s"
        return ReplicaBehind(f"the read replica has replayed the log up to size {replayed}, not yet {wanted} (the "
                             f"primary is at {primary}; the replica lags {lag_text}); retry later", retry_after)

    def status(self) -> ReplicaStatus:
        published, replay = self._published, self._replay
        return ReplicaStatus(
            replayed_size=None if published is None else published.size,
            primary_size=self._sequenced_size(),
            lag_seconds=self._lag_seconds,
            replay_age_seconds=None if replay is None else replay.replay_age,
            replay_paused=None if replay is None else replay.paused,
            error=self._error,
        )
