"""The access log (api/server/access_log.py) in process: the buffer and its background writer, recording through
the real app (create_app) with principals the test constructs, the admin query's filters and pages, pruning, and a
clean shutdown losing nothing.

What each would catch:
- test_buffer_*: a flush that loses or reorders records when the database refuses a batch; a buffer that grows
  without bound; a close() that returns before the last records were handed over.
- test_reads_are_recorded_with_status_and_address: a read recorded without who/role/what/target/when/remote, or with
  the status the handler meant rather than the one sent (a 404 problem answered); an anonymous read recorded.
- test_query_filters_and_pages: a filter ignored, a cursor that skips or repeats records, bad parameters as 500.
- test_prune_*: rows past the retention kept, rows inside it deleted.
- test_clean_shutdown_loses_nothing: records still buffered when the app stops are written before the log closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.server import access_log
from api.server.access_log import (ACCESS_LINE_PREFIX, ACCESS_LOG, AccessLog, AccessRecord,
                                   parse_access_line, pipe_sink, prune, record_read)
from api.server.app import create_app
from api.server.state import LOG
from log.access import Principal
from log.errors import NotFound
from log.service import Log
from log.storage.schema import access_log as table

AUDITOR = Principal("token:aud1", "auditor", frozenset({"acme"}))
ADMIN = Principal("admin-token", "admin", None)
ADMIN_HEADERS = {"Authorization": "Bearer as-admin"}
AUDITOR_HEADERS = {"Authorization": "Bearer as-auditor"}


def _record(i: int, **changes) -> AccessRecord:
    fields = dict(at=1_700_000_000_000 + i, credential="token:a", role="auditor", what="blob", target=f"t{i}",
                  remote="127.0.0.1", status=200)
    fields.update(changes)
    return AccessRecord(**fields)


# --- the buffer --------------------------------------------------------------------------------------------------


def test_buffer_flushes_by_interval_and_by_rows_in_order():
    async def main():
        batches: list[list[AccessRecord]] = []

        async def sink(batch):
            batches.append(list(batch))

        access = AccessLog(sink, flush_interval=0.05, flush_rows=10)
        access.start()
        for i in range(3):
            access.add(_record(i))
        await asyncio.sleep(0.2)
        assert [r.target for b in batches for r in b] == ["t0", "t1", "t2"]
        batches.clear()
        access.flush_interval = 60  # only the row count can wake it now
        await asyncio.sleep(0.1)  # the loop is waiting with the new interval
        access.add(_record(99))
        access.flush_interval = 60
        for i in range(10, 29):
            access.add(_record(i))
        await asyncio.sleep(0.1)
        written = [r.target for b in batches for r in b]
        assert written[:10] == ["t99"] + [f"t{i}" for i in range(10, 19)]
        assert all(len(b) <= 10 for b in batches)
        await access.close()
        assert [r.target for b in batches for r in b] == ["t99"] + [f"t{i}" for i in range(10, 29)]
        assert access.buffered == 0 and access.written == access.recorded == 23

    asyncio.run(main())


def test_buffer_keeps_records_while_the_sink_fails_and_bounds_them():
    async def main():
        written: list[AccessRecord] = []
        failing = True

        async def sink(batch):
            if failing:
                raise OSError("disk full")
            written.extend(batch)

        access = AccessLog(sink, flush_interval=0.02, flush_rows=4, max_buffered=20)
        access.start()
        for i in range(25):
            access.add(_record(i))
        await asyncio.sleep(0.1)
        assert written == [] and access.buffered == 20 and access.dropped == 5
        assert access.failures >= 1
        failing = False
        await asyncio.sleep(0.1)
        assert [r.target for r in written] == [f"t{i}" for i in range(5, 25)]  # in order, none twice
        await access.close()
        assert "auditlog_access_log_dropped_total 5" in access.metrics()

    asyncio.run(main())


def test_worker_lines_round_trip(capsys):
    records = [_record(1), _record(2, target="a\nb \u00e9", status=404)]

    async def main():
        await pipe_sink()(records)

    asyncio.run(main())
    line = capsys.readouterr().out
    assert line.startswith(ACCESS_LINE_PREFIX) and line.count("\n") == 1
    assert parse_access_line(line.rstrip("\n")) == records
    assert parse_access_line("an ordinary log line") is None
    assert parse_access_line(ACCESS_LINE_PREFIX + "[[1,2]]") == []  # unreadable: logged, not raised


# --- through the app ---------------------------------------------------------------------------------------------


class _TestAuthenticator:
    """An authenticator of api/server/auth.py's chain: `Bearer as-auditor|as-admin` is that principal's."""

    async def authenticate(self, bearer: str):
        return {"as-auditor": AUDITOR, "as-admin": ADMIN}.get(bearer)


@pytest.fixture(autouse=True)
def _test_route_is_public(monkeypatch):
    """The test's read route, public in the route policy: anyone may call it; a credential makes it a recorded read."""
    from api.server import auth

    monkeypatch.setitem(auth.ROUTE_POLICY, ("GET", "/test/read/{thing}"), auth.PUBLIC)


async def _read_thing(request: web.Request) -> web.Response:
    await record_read(request, "blob", request.match_info["thing"])
    if request.match_info["thing"] == "missing":
        raise NotFound("no such blob")
    return web.Response(text="contents")


def _app(config) -> web.Application:
    app = create_app(config, authenticators=[_TestAuthenticator()])
    app.router.add_get("/test/read/{thing}", _read_thing)
    return app


def _rows(log_config) -> list:
    engine = sa.create_engine(f"sqlite:///{log_config.data_dir / 'auditlog.db'}")
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(table).order_by(table.c.id)).all()
    finally:
        engine.dispose()


def test_reads_are_recorded_with_status_and_address(log_config):
    async def main():
        app = _app(log_config)
        async with TestClient(TestServer(app)) as client:
            before = int(time.time() * 1000)
            assert (await client.get("/test/read/abc", headers=AUDITOR_HEADERS)).status == 200
            assert (await client.get("/test/read/missing", headers=AUDITOR_HEADERS)).status == 404
            assert (await client.get("/test/read/anonymous")).status == 200  # no credential: not recorded
            assert (await client.get("/api/v1/access-log")).status == 401
            assert (await client.get("/api/v1/access-log", headers=AUDITOR_HEADERS)).status == 403
            resp = await client.get("/api/v1/access-log", headers=ADMIN_HEADERS)
            assert resp.status == 200
            records = (await resp.json())["records"]
            after = int(time.time() * 1000)
        assert [(r["credential"], r["role"], r["what"], r["target"], r["status"]) for r in records] == [
            ("token:aud1", "auditor", "blob", "abc", 200), ("token:aud1", "auditor", "blob", "missing", 404)]
        assert all(before <= r["at_ms"] <= after and r["remote"] == "127.0.0.1" for r in records)
        assert records[0]["at"].endswith("Z")

    asyncio.run(main())


def test_query_filters_and_pages(log_config):
    async def main():
        app = _app(log_config)
        async with TestClient(TestServer(app)) as client:
            access = app[ACCESS_LOG]
            for i in range(25):
                access.add(_record(i, credential="token:a" if i % 2 else "token:b",
                                   what="blob" if i % 3 else "events"))

            async def page(**params):
                resp = await client.get("/api/v1/access-log", params=params, headers=ADMIN_HEADERS)
                assert resp.status == 200, await resp.text()
                return await resp.json()

            everything, cursor = [], None
            while True:
                body = await page(limit="7", **({"cursor": cursor} if cursor else {}))
                everything += body["records"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert [r["target"] for r in everything] == [f"t{i}" for i in range(25)]
            odd = (await page(credential="token:a"))["records"]
            assert [r["target"] for r in odd] == [f"t{i}" for i in range(1, 25, 2)]
            events = (await page(what="events", credential="token:b"))["records"]
            assert [r["target"] for r in events] == [f"t{i}" for i in range(0, 25, 6)]
            assert [r["target"] for r in (await page(target="t7"))["records"]] == ["t7"]
            window = (await page(since="2023-11-14T22:13:20.005Z", until="2023-11-14T22:13:20.008Z"))["records"]
            assert [r["target"] for r in window] == ["t5", "t6", "t7"]
            for bad in ({"limit": "0"}, {"limit": "1001"}, {"since": "yesterday"}, {"cursor": "%%%"},
                        {"who": "x"}, {"what": "a\x00"}):
                resp = await client.get("/api/v1/access-log", params=bad, headers=ADMIN_HEADERS)
                assert resp.status == 400, (bad, await resp.text())

    asyncio.run(main())


def test_prune_deletes_only_what_is_past_the_retention(log_config):
    async def main():
        app = _app(log_config)
        async with TestClient(TestServer(app)):
            access = app[ACCESS_LOG]
            for i in range(30):
                access.add(_record(i))
            await access.flush()
            deleted = await prune(app[LOG], 1_700_000_000_000 + 12, chunk=5)
            assert deleted == 12

    asyncio.run(main())
    assert [row.target for row in _rows(log_config)] == [f"t{i}" for i in range(12, 30)]


def test_the_pruning_job_prunes_at_start_and_keeps_the_retention(log_config):
    now = int(time.time() * 1000)

    async def write_records():
        log = await Log.open(log_config)
        try:
            access = AccessLog(access_log.database_sink(log))
            access.extend([_record(0, at=now - 3 * 86_400_000, target="old"),
                           _record(1, at=now - 86_400_000 + 60_000, target="inside"),
                           _record(2, at=now, target="new")])
            assert await access.flush()
        finally:
            await log.close()

    async def serve_a_moment():
        app = create_app(log_config, access_log_retention_days=1)
        async with TestClient(TestServer(app)):
            for _ in range(100):
                if [row.target for row in _rows(log_config)] == ["inside", "new"]:
                    return
                await asyncio.sleep(0.05)

    asyncio.run(write_records())
    asyncio.run(serve_a_moment())
    assert [row.target for row in _rows(log_config)] == ["inside", "new"]


def test_clean_shutdown_loses_nothing(log_config):
    async def main():
        app = _app(log_config)
        async with TestClient(TestServer(app)) as client:
            app[ACCESS_LOG].flush_interval = 3600  # nothing is written by the timer while the app runs
            for i in range(40):
                resp = await client.get(f"/test/read/r{i}", headers=AUDITOR_HEADERS)
                assert resp.status == 200
            assert app[ACCESS_LOG].buffered == 40

    asyncio.run(main())
    assert [row.target for row in _rows(log_config)] == [f"r{i}" for i in range(40)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_large_batch_is_written_in_one_executemany_on_both_databases(log_config, database):
    """2,500 records, 1,000 per transaction, written with executemany (WriteTransaction.execute_many): every one
    stored once, values intact, on each driver's parameter style."""
    from tests.postgres import fresh_database

    async def main(url):
        config = dataclasses.replace(log_config, database_url=url)
        log = await Log.open(config)
        try:
            access = AccessLog(access_log.database_sink(log), flush_rows=1000)
            access.extend([_record(i, target=f"t{i} \u00e9'\"") for i in range(2500)])
            assert await access.flush()
            rows = await log.read(lambda t: t.execute(sa.select(table.c.target, table.c.at).order_by(table.c.id)))
        finally:
            await log.close()
        assert [(row[0], row[1]) for row in rows] == [(f"t{i} \u00e9'\"", 1_700_000_000_000 + i) for i in range(2500)]

    if database == "sqlite":
        asyncio.run(main(None))
    else:
        with fresh_database() as url:
            asyncio.run(main(url))


def test_the_client_address_a_worker_passes_on_is_trusted_only_on_the_unix_socket(log_config, tmp_path):
    """A read worker forwards a client's request over the writer's Unix socket with the client's address in
    FORWARDED_CLIENT; the same header sent by a client to the TCP port is ignored (it would let anyone write any
    address into the access log)."""
    import aiohttp

    async def main():
        app = _app(log_config)
        runner = web.AppRunner(app)
        await runner.setup()
        socket_path = str(tmp_path / "w.sock")
        try:
            tcp = web.TCPSite(runner, "127.0.0.1", 0)
            await tcp.start()
            await web.UnixSite(runner, socket_path).start()
            port = runner.addresses[0][1]
            headers = {**AUDITOR_HEADERS, access_log.FORWARDED_CLIENT: "203.0.113.9"}
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/test/read/over-tcp", headers=headers) as resp:
                    assert resp.status == 200
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as session:
                async with session.get("http://writer/test/read/from-worker", headers=headers) as resp:
                    assert resp.status == 200
            await app[ACCESS_LOG].flush()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert [(row.target, row.remote) for row in _rows(log_config)] == [("over-tcp", "127.0.0.1"),
                                                                      ("from-worker", "203.0.113.9")]
