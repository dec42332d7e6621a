"""Read workers: extra server processes that answer the log's hot reads, so serving proofs can use more than one core.

`auditlog serve --read-workers N` starts N of them beside the writer. Writer and workers listen on the same port
(SO_REUSEPORT: the kernel spreads connections over them); the writer also listens on a Unix socket in its data
directory that only the workers use. A worker opens the log read-only (`Log.open_reader`: no lock, no sequencer;
the latest checkpoint re-read from the database every 50 ms, or at once when asked about a bigger tree) and answers:

    GET /api/v1/proof/inclusion, /api/v1/proof/consistency, /api/v1/entries/{index}, /tile/...

itself, with the same handlers as the writer: the rows of the writer's route table (api/server/routes.py `ROUTES`)
whose handler `READ_WORKER_HANDLERS` names, behind the same access control (api/server/auth.py: the same route
table, the admin token, API tokens looked up read-only in the writer's `access_tokens` index, cached 1 s). Single-entry POSTs it checks and sends on to the writer in batches
(`EntryBatcher`: one HTTP request of the writer's for many entries, not one each). Every other request (batch
writes, the checkpoint with its cosignatures, the audit personality, metrics, health, readiness) goes to the writer
through that socket, answered exactly as the writer answers it. The writer restarts a worker that exits, and stops
them all when it stops.

Why processes: one CPython process serves at most one core, and on a 2-core machine a proof request is mostly
per-request Python (HTTP, the proof's own bookkeeping), not I/O.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from api.server import access_log, auth, forwarding, routes
from api.server.app import freeze_startup_heap
from api.server.connections import ConnectionLimits, GuardedRunner
from api.server.metrics import HttpMetrics, metrics_middleware
from api.server.oidc import OidcConfig
from api.server.problems import expect_continue, problem_middleware, problem_response
from api.server.routes import MAX_JSON_BODY
from api.server.state import CONFIG, HTTP_METRICS, LOG, METRIC_SOURCES
from log.audit.admin import load_admin_token
from log.audit.tokens import read_token
from log.blobs import MAX_BLOB_SIZE
from log.service import Log, LogConfig

logger = logging.getLogger(__name__)

WRITER_SOCKET_NAME = "writer.sock"
READ_ROUTES = routes.READ_WORKER_ROUTES  # the main table's rows a worker answers itself (routes.py says which)
WRITER_SESSION = web.AppKey("writer_session", aiohttp.ClientSession)
ENTRY_BATCHER = web.AppKey("entry_batcher", forwarding.EntryBatcher)
ADMIN_TOKEN = web.AppKey("worker_admin_token", str)
RESTART_DELAY = 1.0
ACCESS_LINE_LIMIT = 1 << 24  # the longest line read from a worker: a batch of access records is one line


def writer_socket(config: LogConfig) -> Path:
    """`<data dir>/writer.sock`; in the temp dir, named after the data dir, when that path is too long for a Unix
    socket address (108 bytes on Linux)."""
    path = config.data_dir.resolve() / WRITER_SOCKET_NAME
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(config.data_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"auditlog-{digest}.sock"


def refuse_a_served_port(host: str, port: int) -> None:
    """Raise OSError(EADDRINUSE) when some process already listens on `port` at `host` (every address it names).

    The writer and its workers bind with SO_REUSEPORT, and so may any other process of the same user: a second
    `auditlog serve` with read workers, pointed by mistake at a port a server of another log already holds, would
    start and have the kernel spread connections over both logs. A bind without SO_REUSEPORT cannot share a port
    anyone listens on, so the writer binds such a socket first, closes it, and then binds its own (a server started
    in that same instant could still slip in between). Port 0 picks a free port: nothing to check."""
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own: TIME_WAIT is no owner
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's create_server binds
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise OSError(errno.EADDRINUSE, f"port {port} at {address[0]} is already served by another process",
                              ) from None


# --- the worker --------------------------------------------------------------------------------------------------


async def _forward(request: web.Request) -> web.StreamResponse:
    """Send the request to the writer over its Unix socket and answer with what it answered."""
    # Who the client is, for the writer's access log: a worker's request reaches it from this Unix socket. Set
    # whatever the client sent under that name (the writer trusts it only on the Unix socket).
    try:
        return await forwarding.forward(request, request.app[WRITER_SESSION], f"http://writer{request.path_qs}",
                                        {access_log.FORWARDED_CLIENT: request.remote or ""})
    except (aiohttp.ClientError, OSError) as exc:
        logger.warning("writer unreachable for %s %s: %s", request.method, request.path, exc)
        return _writer_unavailable()


async def _add_entries(request: web.Request) -> web.StreamResponse:
    if not routes.is_single_entry(request):
        return await _forward(request)
    return await request.app[ENTRY_BATCHER].add(await routes.read_single_entry(request))


def _writer_unavailable() -> web.Response:
    return problem_response(503, "unavailable", "Writer unavailable",
                            "this server's writer process is not answering; retry later", headers={"Retry-After": "1"})


async def _worker_lifetime(app: web.Application) -> AsyncIterator[None]:
    app[LOG] = await Log.open_reader(app[CONFIG])
    app[WRITER_SESSION] = session = aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(writer_socket(app[CONFIG]))), auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
    )

    async def send_batch(body: bytes) -> tuple[int, dict[str, str], bytes]:
        # The worker checked each entry's credential itself (its access control is the writer's); the batch goes
        # on with the operator's admin token, which both processes read from the same place.
        headers = {"Content-Type": routes.JSON}
        if app.get(ADMIN_TOKEN):
            headers["Authorization"] = f"Bearer {app[ADMIN_TOKEN]}"
        async with session.post("http://writer/api/v1/entries", data=body, headers=headers) as answer:
            payload = await answer.read()
            return answer.status, forwarding.passed_on(answer.headers), payload

    app[ENTRY_BATCHER] = forwarding.EntryBatcher(send_batch, _writer_unavailable)
    try:
        yield
    finally:
        await app[WRITER_SESSION].close()
        await app[LOG].close()


def create_worker_app(config: LogConfig, access: auth.AccessSettings | None = None,
                      authenticators=()) -> web.Application:
    """A read worker's app: READ_ROUTES served from a read-only Log, everything else forwarded to the writer.
    `access` and `authenticators` as the writer's (api/server/app.py create_app)."""
    http_metrics = HttpMetrics()
    # The writer enforces its own body limits; the worker only has to let through what the writer accepts.
    app = web.Application(middlewares=[metrics_middleware(http_metrics, access_log.finished), problem_middleware,
                                       auth.auth_middleware],
                          client_max_size=max(MAX_JSON_BODY, MAX_BLOB_SIZE) + 1)
    admin_token = load_admin_token(config.data_dir)
    if admin_token:
        app[ADMIN_TOKEN] = admin_token
    tokens = auth.CachedTokenLookup(lambda token_id: read_token(app[LOG], token_id))
    auth.install(app, access, [auth.AdminTokenAuthenticator(lambda: app.get(ADMIN_TOKEN)),
                               auth.ApiTokenAuthenticator(tokens), *authenticators])
    app[CONFIG] = config
    app[HTTP_METRICS] = http_metrics
    app[METRIC_SOURCES] = []
    app.cleanup_ctx.append(_worker_lifetime)
    # The reads this worker answers itself (entries, entry bundles) are recorded here and handed to the writer on
    # stdout (api/server/access_log.py says why); after the log opens, closed (last records out) before it closes.
    app.cleanup_ctx.append(access_log.lifetime(lambda app: access_log.pipe_sink()))
    app.router.add_routes(READ_ROUTES)
    app.router.add_post("/api/v1/entries", _add_entries, expect_handler=expect_continue)
    app.router.add_route("*", "/{tail:.*}", _forward, expect_handler=expect_continue)
    return app


async def serve_worker(config: LogConfig, host: str, port: int, limits: ConnectionLimits | None = None, *,
                       tls=None, access: auth.AccessSettings | None = None, authenticators=()) -> int:
    """Run one read worker on (host, port) with SO_REUSEPORT until SIGTERM or SIGINT, its connections held to
    `limits` (its writer's); `tls`: (cert, key, SSLContext) when the writer serves TLS (the port's every connection
    must be TLS, whichever process the kernel hands it to); its access control `access` (its writer's)."""
    runner = GuardedRunner(create_worker_app(config, access, authenticators), limits, access_log=None,
                           handle_signals=False)
    await runner.setup()
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def exit_with_parent():  # a writer killed outright cannot stop its workers: they notice and stop
        while os.getppid() == parent:
            await asyncio.sleep(0.5)
        logger.warning("the writer process is gone; this read worker stops")
        stop.set()

    watch = asyncio.create_task(exit_with_parent())
    try:
        await web.TCPSite(runner, host, port, reuse_port=True, ssl_context=tls[2] if tls else None).start()
        print(f"read worker {os.getpid()} listening on port {port}", flush=True)
        await stop.wait()
    finally:
        watch.cancel()
        await runner.cleanup()
    return 0


# --- the writer's side -------------------------------------------------------------------------------------------


class ReadWorkers:
    """The writer's read workers: `count` processes of `auditlog serve-reads`, restarted when they exit. Their output
    is relayed to the writer's; `start()` returns once every worker is listening."""

    def __init__(self, count: int, command: list[str], *, start_timeout: float = 60.0,
                 on_access: Callable[[list], None] | None = None):
        self.count = count
        self._on_access = on_access  # the records of a worker's access line (api/server/access_log.py)
        self._command = command
        self._start_timeout = start_timeout
        self._processes: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        ready = [asyncio.get_running_loop().create_future() for _ in range(self.count)]
        for slot in range(self.count):
            self._tasks.append(asyncio.create_task(self._keep(slot, ready[slot]), name=f"auditlog-read-worker-{slot}"))
        try:
            await asyncio.wait_for(asyncio.gather(*ready), self._start_timeout)
        except BaseException:
            await self.stop()
            raise

    async def _keep(self, slot: int, ready: asyncio.Future) -> None:
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(*self._command, stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.STDOUT, limit=ACCESS_LINE_LIMIT)
            self._processes[slot] = process
            async for line in process.stdout:
                text = line.decode(errors="replace").rstrip()
                records = access_log.parse_access_line(text)
                if records is not None:
                    if self._on_access is not None and records:
                        self._on_access(records)
                    continue
                print(f"read worker {slot}: {text}", flush=True)
                if not ready.done() and "listening on" in text:
                    ready.set_result(process.pid)
            status = await process.wait()
            if self._stopping:
                return
            if not ready.done():
                ready.set_exception(RuntimeError(f"read worker {slot} exited with status {status} before listening"))
                return
            logger.error("read worker %d (pid %d) exited with status %s; restarting in %g s", slot, process.pid,
                         status, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    async def stop(self) -> None:
        self._stopping = True
        for process in self._processes:
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            if process is not None:
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except asyncio.TimeoutError:
                    process.kill()
                    await process.wait()
        # Each task ends once it has read its worker's output to the end: the access records a worker wrote as it
        # stopped reach the writer's access log before the writer closes it.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def worker_command(config: LogConfig, host: str, port: int, limits: ConnectionLimits | None = None, *,
                   tls: tuple[str, str] | None = None, access: auth.AccessSettings | None = None,
                   oidc: OidcConfig | None = None) -> list[str]:
    command = [sys.executable, "-m", "api.cli", "serve-reads", "--host", host, "--port", str(port),
               "--data-dir", str(config.data_dir), *(limits or ConnectionLimits()).as_flags()]
    if access is not None and access.public:
        command.append("--public")
    if access is not None and access.metrics_public:
        command.append("--metrics-public")
    if oidc is not None:  # each worker checks OIDC tokens itself, with its own JWKS cache
        command += oidc.as_flags()
    if config.database_url:
        command += ["--database-url", config.database_url]
    if config.read_database_url:  # a worker reads from the replica too (log/replica.py)
        command += ["--read-database-url", config.read_database_url]
    if config.key_file:
        command += ["--key-file", str(config.key_file)]
    if tls:
        command += ["--tls-cert", str(Path(tls[0]).resolve()), "--tls-key", str(Path(tls[1]).resolve())]
    return command
