"""Waiting until an entry, or every event of a run, is cosigned and timestamped (`auditlog proof --evidence I --wait`,
`auditlog timeline --run R --evidence FILE --wait`).

A fresh entry is in the log at once, but its witnesses cosign and its TSA stamps a later checkpoint (every
`--witness-interval` and `--timestamp-interval` seconds, and only once the witnesses have cosigned, when there are
witnesses). What the log has is what its `/readyz` report says: a `witness` part when witnesses are configured, a
`timestamp` part when a TSA is. `wait_until_covered` polls, with a delay that doubles from `first` to `most`
seconds, until

    the newest checkpoint cosigned by k witnesses (/checkpoint.witnessed)  covers the index, when there are witnesses
    the newest timestamped checkpoint (/api/v1/timestamps/latest)          covers the index, when there is a TSA

(both verified with the log's key on the way, as LogClient does everything), and raises `Unavailable` ("not
cosigned after 30 s; the witness lag is ...") when `timeout` seconds pass first: not ready is not misbehaviour.
A log with neither has nothing to wait for. An index the log does not have is NotFound, at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from api.client.log_client import LogClient
from log import defaults
from log.errors import NotFound, Unavailable, VerificationError


@dataclass(frozen=True)
class Coverage:
    """What covers the entries waited for: the sizes of the newest witnessed and timestamped checkpoints (None when
    the log has no witnesses, no TSA), after `waited` seconds."""

    index: int  # the highest index waited for
    witnessed_size: int | None
    timestamped_size: int | None
    waited: float


async def _size(fetch) -> int:
    """The size of the checkpoint `fetch` returns; 0 while the log has none (404)."""
    try:
        found = await fetch()
    except NotFound:
        return 0
    return found[0].size


def _lag(ready: dict, missing: list[str]) -> str:
    """The lag figures of a /readyz report, for the parts still missing."""
    parts = []
    witness, stamp = ready.get("witness") or {}, ready.get("timestamp") or {}
    if "cosigned" in missing:
        parts.append(f"the witness lag is {witness.get('lag_entries')} entries, {witness.get('lag_seconds')} s "
                     f"(witnessed size {witness.get('witnessed_size')} of {witness.get('latest_size')}, "
                     f"k={witness.get('k')})")
    if "timestamped" in missing:
        parts.append(f"the timestamp lag is {stamp.get('lag_entries')} entries (timestamped size "
                     f"{stamp.get('timestamped_size')}, the newest token {stamp.get('age_seconds')} s old)")
    return "; ".join(parts)


async def wait_until_covered(
    client: LogClient,
    last_index: int | Callable[[], Awaitable[int]],
    *,
    what: str,
    timeout: float = defaults.EVIDENCE_WAIT_TIMEOUT,
    first: float = defaults.WAIT_POLL_FIRST,
    most: float = defaults.WAIT_POLL_MAX,
    clock: Callable[[], float] = time.monotonic,
) -> Coverage:
    """Wait until entry `last_index` (and so every entry before it) is covered by a cosigned checkpoint (when the
    log has witnesses) and a timestamped one (when it has a TSA). `last_index` may be a coroutine function, asked
    each round (a run that grows). `what` names the entries in messages ("entry 12", "run r-1")."""
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    start = clock()
    delay = first
    while True:
        ready = await client.readiness()
        index = last_index if isinstance(last_index, int) else await last_index()
        latest = await client.checkpoint()
        if index >= latest.size:
            raise NotFound(f"{what}: entry {index} is not in the log; its latest checkpoint has size {latest.size}")
        witnessed = await _size(client.witnessed_checkpoint) if "witness" in ready else None
        stamped = await _size(client.latest_timestamp) if "timestamp" in ready else None
        missing = [name for name, size in (("cosigned", witnessed), ("timestamped", stamped))
                   if size is not None and size <= index]
        waited = clock() - start
        if not missing:
            return Coverage(index, witnessed, stamped, waited)
        if waited >= timeout:
            raise Unavailable(f"{what} (entry {index}) not {' or '.join(missing)} after {timeout:g} s; "
                              f"{_lag(ready, missing)}")
        await asyncio.sleep(min(delay, timeout - waited))
        delay = min(delay * 2, most)


async def wait_for_entry(client: LogClient, index: int, *, timeout: float = defaults.EVIDENCE_WAIT_TIMEOUT,
                         **polling) -> Coverage:
    """Wait until entry `index` is cosigned and timestamped (as the log is configured to be)."""
    return await wait_until_covered(client, index, what=f"entry {index}", timeout=timeout, **polling)


async def wait_for_run(client: LogClient, run_id: str, tenant: str | None = None, *,
                       timeout: float = defaults.EVIDENCE_WAIT_TIMEOUT, **polling) -> Coverage:
    """Wait until every event of run `run_id` (as the log lists it each round) is cosigned and timestamped."""
    async def last_index() -> int:
        timeline = await client.run_timeline(run_id, tenant, proofs=False)
        indices = [event.get("index") for event in timeline.get("events") or []]
        if not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise VerificationError(f"the log's timeline of run {run_id!r} lists no event indices")
        return max(indices)

    return await wait_until_covered(client, last_index, what=f"run {run_id}", timeout=timeout, **polling)
