"""Real server processes on random loopback ports, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.postgres import fresh_database
from tests.processes import ServerProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """None means the embedded default (SQLite in the data dir); otherwise a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def server_factory(tmp_path, database_url):
    servers: list[ServerProcess] = []

    def make(extra_args: list[str] | None = None) -> ServerProcess:
        server = ServerProcess(tmp_path / "data", database_url, extra_args or [])
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def processes():
    """Processes a test starts (servers, witnesses, TSAs: anything with kill()), killed after it."""
    started: list = []
    yield started
    for proc in started:
        proc.kill()
