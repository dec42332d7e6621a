"""When the sequencer's writer cuts its next batch: the scheduling policy, apart from what a batch then does.

The writer takes a batch as soon as it is free, the event loop has finished the pass (one iteration) in which the
oldest waiting submission arrived, and either the batch holds `batch_size` entries or its oldest entry has waited
`linger` seconds (default 0). `max_age` is a ceiling on both waits. An idle loop ends its pass within microseconds,
so a lone entry is taken at once; a busy loop hands over everything its pass submitted as one batch rather than the
writer cutting one at its first entry. Why: every batch costs a fixed number of GIL hand-offs between the writer
and the loop (signing, each SQLite call), each 0.1 ms or more of both threads' time here. At 64 single-entry
clients batches grew from ~40 to ~60 entries and throughput by 5-18 % (alternating runs).

A batch is taken FIFO, up to `batch_size` entries; a single larger submission goes alone. At most `max_pending`
entries may wait; beyond that `put` raises `Unavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from log.errors import StorageError, Unavailable
from log.stats import LogStats


class Queued(Protocol):
    """What the queue needs of a submission: its entries (none for work) and when it was queued (time.monotonic)."""

    entries: Sequence[bytes]
    queued_at: float


class BatchQueue:
    """Submissions waiting for the writer, and the policy that cuts them into batches.

    `put` and the end-of-pass release run on the event loop (`start` names it), `take` on the writer thread;
    `close` and `stop` on either. The queue, the entry count and the counters are guarded by one condition.
    """

    def __init__(self, batch_size: int, max_age: float, linger: float, max_pending: int, stats: LogStats):
        self.batch_size = batch_size
        self.max_age = max(max_age, 0.0)
        self.linger = min(max(linger, 0.0), self.max_age)
        self.max_pending = max_pending
        self.closing = False  # set by close(): nothing more is accepted, what is queued is still taken
        self.stopped: BaseException | None = None  # set by stop(): nothing more is accepted or taken
        self._stats = stats
        self._ready = threading.Condition()
        self._queue: collections.deque[Queued] = collections.deque()
        self._pending = 0  # entries queued
        # Submissions counted as they are queued, as the loop's pass that queued them ends, and as the writer takes
        # them: the head of the queue may go once released > taken.
        self._queued = 0
        self._released = 0
        self._taken = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release_scheduled = False  # event-loop only

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Name the event loop that puts submissions: the end of each of its passes releases them."""
        self._loop = loop

    def put(self, submission: Queued, count: int) -> None:
        """On the event loop: queue a submission of `count` entries (0 for work). Raises `Unavailable` when closing
        or when `max_pending` entries wait already, `StorageError` once stopped."""
        with self._ready:
            if self.closing:  # checked here, under the lock: the writer may be past its last look at the queue
                raise Unavailable("the log is shutting down")
            if self.stopped is not None:
                raise StorageError(f"the sequencer stopped after a storage failure it could not recover from: "
                                   f"{self.stopped}")
            if count and self._pending + count > self.max_pending:
                self._stats.submissions_rejected_busy += 1
                raise Unavailable(f"the sequencer already has {self._pending} entries waiting; retry shortly")
            self._queue.append(submission)
            self._pending += count
            self._queued += 1
            if self._pending >= self.batch_size:
                self._ready.notify()
        if not self._release_scheduled:
            # Runs once the loop has finished its current pass: everything else that pass reads queues first.
            self._release_scheduled = True
            self._loop.call_soon(self._release)

    def _release(self) -> None:
        """On the event loop, after the pass in which submissions were queued: let the writer take them."""
        self._release_scheduled = False
        with self._ready:
            self._released = self._queued
            self._ready.notify()

    def take(self, idle: float | None = None) -> list | None:
        """On the writer thread: wait until a batch is due and take it; None once closing with nothing queued; an
        empty list once nothing has been queued for `idle` seconds (if given)."""
        with self._ready:
            while not self._queue:
                if self.closing:
                    return None
                if not self._ready.wait(idle) and idle is not None and not self._queue and not self.closing:
                    return []
            while self._pending < self.batch_size and not self.closing:
                waited = time.monotonic() - self._queue[0].queued_at
                if self._released > self._taken:
                    left = self.linger - waited
                else:  # the loop is still in the pass that queued the head of the queue
                    left = self.max_age - waited
                if left <= 0:
                    break
                self._ready.wait(left)
            return self._cut()

    def _cut(self) -> list:
        """The head of the queue, FIFO, up to `batch_size` entries (a larger single submission alone)."""
        batch = [self._queue.popleft()]
        count = len(batch[0].entries)
        while self._queue and count + len(self._queue[0].entries) <= self.batch_size:
            submission = self._queue.popleft()
            batch.append(submission)
            count += len(submission.entries)
        self._pending -= count
        self._taken += len(batch)
        return batch

    def close(self) -> None:
        """Accept nothing more; `take` still hands out what is queued, then returns None."""
        with self._ready:
            self.closing = True
            self._ready.notify()

    def drain(self) -> list:
        """Take everything queued, for the caller to fail (the writer cannot store it now); `put` goes on."""
        with self._ready:
            waiting = list(self._queue)
            self._queue.clear()
            self._pending = 0
            self._taken = self._queued
        return waiting

    def stop(self, cause: BaseException) -> list:
        """Accept nothing more, for good (`stopped`), and return what was still queued, for the caller to fail."""
        with self._ready:
            self.stopped = cause
            waiting = list(self._queue)
            self._queue.clear()
            self._pending = 0
            self._taken = self._queued
        return waiting
