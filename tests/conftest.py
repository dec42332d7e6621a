"""Shared fixtures: a fast-batching log config in tmp_path, and real HTTP servers for in-process tests.

`serve_app(app)` (async context manager) runs an aiohttp app on a loopback port inside the caller's event loop and
yields its base URL. The `live_server` fixture runs one in a background thread with its own loop, for code that
makes its own loop (the CLI's asyncio.run, SyncLogClient).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from hypothesis import settings

from log.service import LogConfig

# CI (CI=true, as .ci/run runs) draws the same hypothesis examples every run, so that a landing is judged on the
# code, not on the draw; a developer's run draws new ones each time, which is how the fuzz tests find new inputs
# (every one found goes into the tests as an explicit @example or a corpus case).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TEST_ORIGIN = "test.example/log"


def pytest_sessionstart(session) -> None:
    """Byte-compile the project once when this Python writes no bytecode (PYTHONDONTWRITEBYTECODE, as on these
    machines): otherwise every `auditlog` process the tests start compiles the modules it imports from source again,
    0.2 s of CPU per server start and less per command, over hundreds of processes. compileall writes regardless of
    the setting; files already compiled and unchanged cost a stat each."""
    import compileall
    import sys
    from pathlib import Path

    if sys.dont_write_bytecode:
        root = Path(__file__).resolve().parents[1]
        for top in ("api", "log", "witness", "alembic", "tests", "benchmarks"):
            compileall.compile_dir(root / top, quiet=1)


def fill_log(config: LogConfig, count: int) -> None:
    """Append `count` plain entries (`entry 0`, `entry 1`, ...) to the log `config` describes, through Log."""
    from log.service import Log

    async def fill():
        log = await Log.open(config)
        try:
            await log.add_entries([f"entry {i}".encode() for i in range(count)])
        finally:
            await log.close()

    asyncio.run(fill())


async def exchange_raw(port: int, request: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as bytes on a new loopback connection (it should say `Connection: close`) and read the answer to
    the end: (status, headers with lowercased names, body). For requests no HTTP client library would send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.fixture(autouse=True, scope="session")
def _sqlite_logs_start_from_a_migrated_copy():
    """A new SQLite log opened in-process (Log.open with migrate) starts as a copy of a database the migrations
    built once (tests/schema_template.py), instead of running the 15 migrations again: 0.1-0.2 s a log, in hundreds
    of tests."""
    import log.service
    from tests.schema_template import upgrade_schema

    patch = pytest.MonkeyPatch()
    patch.setattr(log.service, "upgrade_schema", upgrade_schema)
    yield
    patch.undo()


@pytest.fixture
def log_config(tmp_path) -> LogConfig:
    return LogConfig(data_dir=tmp_path / "data", origin=TEST_ORIGIN, batch_max_age=0.002)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def serve_in_thread(app: web.Application) -> tuple[str, Callable[[], None]]:
    """Run `app` in a background thread with its own loop: (its URL, a function that stops it)."""
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def main() -> None:
            try:
                async with serve_app(app) as url:
                    box["url"] = url
                    ready.set()
                    await stop.wait()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                box["error"] = exc
                ready.set()

        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]

    def stop() -> None:
        box["stop"]()
        thread.join(30)

    return box["url"], stop


@pytest.fixture
def live_server() -> Callable[[web.Application], str]:
    """start(app) runs `app` in a background thread and returns its URL; every app started is stopped after."""
    stops: list[Callable[[], None]] = []

    def start(app: web.Application) -> str:
        url, stop = serve_in_thread(app)
        stops.append(stop)
        return url

    yield start
    for stop in reversed(stops):
        stop()


@pytest.fixture
def operator_token(monkeypatch) -> str:
    """The operator's admin token (tests/credentials.py) as AUDITLOG_ADMIN_TOKEN: servers started in or by the test
    take it as their admin credential, and `auditlog` commands run by it send it, as on the operator's machine."""
    from tests.credentials import ADMIN_TOKEN

    monkeypatch.setenv("AUDITLOG_ADMIN_TOKEN", ADMIN_TOKEN)
    return ADMIN_TOKEN
