"""Several servers, one log: what a server that stands by answers itself, and what it sends on to the sequencer.

Every server on a PostgreSQL log answers every route. The one that holds the sequencer lock (log/service.py) answers
all of them itself. A server that stands by answers from the database what the stored tree alone decides (the read
workers' routes: proofs, entries, tiles, entry bundles; api/server/routes.py READ_WORKER_HANDLERS) and its own
health, readiness and metrics; everything else (writes, the checkpoint with its cosignatures, timestamps, the
audit personality, whose registries live in the sequencer's memory) it passes on to the sequencer at the URL the
sequencer wrote into the lease, and answers with what came back; single-entry POSTs it gathers into batch POSTs,
as a read worker does (api/server/forwarding.py EntryBatcher), having checked each one's credential itself (access
control runs before this middleware, with the settings every server shares). Why forward rather than queue writes in a table
for the sequencer to pick up (as Tessera's Spanner design does): an acknowledgement then needs nothing new, it is
the sequencer's own answer, given after its commit; and the audit personality's checks (producer registry, tenant
scope) run where its state is, once.

While this server takes over or steps down (`ServingRole.sequencing` flips once the audit registries are reloaded
and the jobs started or stopped), and while no sequencer is known, what would be forwarded is answered 503 with
Retry-After: a client retries, at this server or another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aiohttp import web

from api.server import explorer, forwarding, routes
from api.server.problems import problem_response
from api.server.state import ROLE, ServingRole
from log import defaults

logger = logging.getLogger(__name__)

# What a standby answers itself: the stored tree's reads, and the server's own state.
# The explorer's static files too: the same on every server.
LOCAL_HANDLERS = routes.READ_WORKER_HANDLERS | {routes.healthz, routes.readyz, routes.metrics_text, routes.openapi,
                                                explorer.index, explorer.explorer_file}
RETRY_AFTER_SECONDS = 1


class InFlight:
    """What this server has passed on to a sequencer and not yet had answered, by that sequencer's URL.

    When the lease names another sequencer (or this server), whatever is still out to the old one is cut off at
    once and answered 503 like a sequencer that did not answer ("may or may not have reached it"): the old one was
    paused or cut off long enough to lose the lease, and would otherwise hold each request, and every single-entry
    batch queued behind one, for FORWARD_READ_TIMEOUT (30 s) after another server took over."""

    def __init__(self) -> None:
        self._by_target: dict[str, set[asyncio.Task]] = {}

    async def send(self, target: str, request: Awaitable):
        """Await `request` (sent to the sequencer at `target`); ConnectionAbortedError if it was cut off."""
        task = asyncio.ensure_future(request)
        tasks = self._by_target.setdefault(target, set())
        tasks.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():  # cut off, not cancelled
                raise ConnectionAbortedError(f"the sequencer lease moved away from {target}") from None
            raise
        finally:
            tasks.discard(task)
            if not tasks and self._by_target.get(target) is tasks:
                del self._by_target[target]

    def cut_off(self, keep: str | None) -> None:
        """Cut off what is out to any sequencer but `keep` (None: to every one)."""
        for target, tasks in list(self._by_target.items()):
            if target != keep:
                for task in tasks:
                    task.cancel()


SEQUENCER_SESSION = web.AppKey("sequencer_session", aiohttp.ClientSession)
ENTRY_BATCHER = web.AppKey("standby_entry_batcher", forwarding.EntryBatcher)
IN_FLIGHT = web.AppKey("standby_in_flight", InFlight)


@web.middleware
async def standby_middleware(request: web.Request, handler):
    role = request.app.get(ROLE)
    if role is None or role.sequencing:
        return await handler(request)
    match = request.match_info
    if match.http_exception is not None or match.route.handler in LOCAL_HANDLERS:
        return await handler(request)
    if match.route.handler is routes.add_entries and routes.is_single_entry(request):
        return await request.app[ENTRY_BATCHER].add(await routes.read_single_entry(request))
    target = role.sequencer_url
    if target is None:
        return _no_sequencer("no server sequences the log right now (a takeover is under way)")
    try:
        return await request.app[IN_FLIGHT].send(
            target, forwarding.forward(request, request.app[SEQUENCER_SESSION], target + request.path_qs))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        logger.warning("the sequencer at %s did not answer %s %s: %s", target, request.method, request.path, exc)
        _lost(role, target)
        return _no_sequencer(f"the sequencer at {target} did not answer ({type(exc).__name__}); the request may or "
                             "may not have reached it")


def _lost(role: ServingRole, target: str) -> None:
    """The sequencer at `target` did not answer: read the lease again before the next forward."""
    if role.sequencer_url == target:
        role.sequencer_url = None
        role.changed.set()


def _no_sequencer(detail: str) -> web.Response:
    return problem_response(503, "unavailable", "No sequencer", f"{detail}; retry",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def lifetime(log_key, admin_token_of):
    """The cleanup context of a standby's forwarding: the session to the sequencer, the batcher of single-entry
    POSTs, the lease watcher. `admin_token_of(app)` returns a function giving the admin token once it is known."""

    async def serving(app: web.Application) -> AsyncIterator[None]:
        log = app[log_key]
        role = app[ROLE]
        app[SEQUENCER_SESSION] = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=defaults.FORWARD_CONNECT_TIMEOUT,
                                          sock_read=defaults.FORWARD_READ_TIMEOUT))
        admin_token = admin_token_of(app)
        in_flight = app[IN_FLIGHT] = InFlight()

        async def post_batch(target: str, body: bytes, headers: dict[str, str]):
            async with app[SEQUENCER_SESSION].post(f"{target}/api/v1/entries", data=body, headers=headers) as answer:
                return answer.status, forwarding.passed_on(answer.headers), await answer.read()

        async def send_batch(body: bytes) -> tuple[int, dict[str, str], bytes]:
            # This server checked each entry's credential itself (auth runs before this middleware, with the same
            # settings as the sequencer's); the batch goes on with the admin token, the same on every server.
            target = role.sequencer_url
            if target is None:
                raise ConnectionError("no server sequences the log right now")
            headers = {"Content-Type": routes.JSON, "Authorization": f"Bearer {admin_token()}"}
            try:
                return await in_flight.send(target, post_batch(target, body, headers))
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                _lost(role, target)
                raise

        app[ENTRY_BATCHER] = forwarding.EntryBatcher(
            send_batch, lambda: _no_sequencer("the sequencer did not take the entry; it was not stored by it, or it "
                                              "may have been"))
        watcher = asyncio.get_running_loop().create_task(_watch_lease(log, role, in_flight))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await app[SEQUENCER_SESSION].close()

    return serving


async def _watch_lease(log, role: ServingRole, in_flight: InFlight) -> None:
    """While this server stands by: keep `role.sequencer_url` to the lease's URL, and cut off what is still out to
    a sequencer the lease no longer names (all of it once this server sequences)."""
    while True:
        if log.role == "standby":
            try:
                lease = await log.sequencer_lease()
            except Exception as exc:  # noqa: BLE001 - the database unreachable: keep the last URL known
                logger.warning("cannot read the sequencer lease: %s", exc)
            else:
                url = None if lease is None or not lease.url or lease.url == role.own_url else lease.url
                if url != role.sequencer_url:
                    logger.info("the log's sequencer is now %s (epoch %s)", url or "unknown",
                                None if lease is None else lease.epoch)
                role.sequencer_url = url
                role.lease_epoch = None if lease is None else lease.epoch
                in_flight.cut_off(keep=url)
        else:
            in_flight.cut_off(keep=None)
        role.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(role.changed.wait(), defaults.LEASE_POLL_SECONDS)
