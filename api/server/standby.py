"""Several servers, one log: what a server that stands by answers itself, and what it sends on to the sequencer.

Every server on a PostgreSQL log answers every route. The one that holds the sequencer lock (log/service.py) answers
all of them itself. A server that stands by answers from the database what the stored tree alone decides (the read
workers' routes: proofs, entries, tiles, entry bundles; api/server/routes.py READ_WORKER_HANDLERS) and its own
health, readiness and metrics; everything else (writes, the checkpoint with its cosignatures, timestamps, the
audit personality, whose registries live in the sequencer's memory) it passes on to the sequencer at the URL the
sequencer wrote into the lease, and answers with what came back. Why forward rather than queue writes in a table
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
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from api.server import forwarding, routes
from api.server.problems import problem_response
from api.server.state import ROLE, ServingRole
from log import defaults

logger = logging.getLogger(__name__)

# What a standby answers itself: the stored tree's reads, and the server's own state.
LOCAL_HANDLERS = routes.READ_WORKER_HANDLERS | {routes.healthz, routes.readyz, routes.metrics_text, routes.openapi}
RETRY_AFTER_SECONDS = 1


SEQUENCER_SESSION = web.AppKey("sequencer_session", aiohttp.ClientSession)


@web.middleware
async def standby_middleware(request: web.Request, handler):
    role = request.app.get(ROLE)
    if role is None or role.sequencing:
        return await handler(request)
    match = request.match_info
    if match.http_exception is not None or match.route.handler in LOCAL_HANDLERS:
        return await handler(request)
    target = role.sequencer_url
    if target is None:
        return _no_sequencer("no server sequences the log right now (a takeover is under way)")
    try:
        return await forwarding.forward(request, request.app[SEQUENCER_SESSION], target + request.path_qs)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        logger.warning("the sequencer at %s did not answer %s %s: %s", target, request.method, request.path, exc)
        if role.sequencer_url == target:
            role.sequencer_url = None  # read the lease again before the next forward
            role.changed.set()
        return _no_sequencer(f"the sequencer at {target} did not answer ({type(exc).__name__}); the request may or "
                             "may not have reached it")


def _no_sequencer(detail: str) -> web.Response:
    return problem_response(503, "unavailable", "No sequencer", f"{detail}; retry",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def lifetime(log_key):
    """The cleanup context that follows the log's role: after the log opens, before the jobs' and the audit
    service's contexts (`on_role_change` listeners run in the order added, so those are told after this one)."""

    async def serving(app: web.Application) -> AsyncIterator[None]:
        log = app[log_key]
        role = app[ROLE]
        app[SEQUENCER_SESSION] = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=defaults.FORWARD_CONNECT_TIMEOUT,
                                          sock_read=defaults.FORWARD_READ_TIMEOUT))
        watcher = asyncio.get_running_loop().create_task(_watch_lease(log, role))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await app[SEQUENCER_SESSION].close()

    return serving


async def _watch_lease(log, role: ServingRole) -> None:
    """While this server stands by: keep `role.sequencer_url` to the lease's URL."""
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
        role.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(role.changed.wait(), defaults.LEASE_POLL_SECONDS)
