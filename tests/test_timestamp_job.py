"""TimestampJob against our TSA on loopback: a good round stores a token that verifies; a TSA that answers garbage,
signs with an untrusted certificate, or is down stores nothing, shows in metrics(), and never holds up the log.

Most tests drive the job against the log's real store with its sequencer lock held (`SqlLogStore` + its writer,
exactly what `Log.open` holds) so each round is deterministic; the last ones use a whole in-process `Log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from log.checkpoint import Checkpoint, sign_checkpoint
from log.note_keys import generate_signer_key, parse_signer_key
from log.storage import BatchWrite, WorkFailed
from log.storage.engine import sqlite_url_for
from tests.schema_template import upgrade_schema
from log.storage.store import SqlLogStore
from api.server.timestamping import TimestampJob
from witness.rfc3161 import verify_timestamp
from witness.tsa import TimestampAuthority, TsaIdentity, make_tsa_chain
from witness.tsa_server import make_tsa_app

ORIGIN = "test.example/log"


def _note(size: int) -> bytes:
    signer = parse_signer_key(generate_signer_key(ORIGIN)[0])
    return sign_checkpoint(Checkpoint(ORIGIN, size, bytes([size % 256]) * 32), signer)


@dataclass
class FakeLog:
    """What the job touches of a Log: `read` of the real SQL store, `write` through the real writer holding the
    sequencer lock, and `checkpoint.note`."""

    store: SqlLogStore
    note: bytes

    @property
    def checkpoint(self):
        return self

    async def read(self, work):
        return await asyncio.to_thread(self.store.read, work)

    async def write(self, work):
        results = await asyncio.to_thread(self.store.writer.commit_batch, BatchWrite(0, work=[work]))
        if isinstance(results[0], WorkFailed):
            raise results[0].error
        return results[0]


@contextlib.contextmanager
def locked_store(tmp_path: Path):
    url = sqlite_url_for(tmp_path / "auditlog.db")
    upgrade_schema(url)
    store = SqlLogStore(url)
    store.writer = store.acquire_writer()  # holds the SQLite write lock, as the sequencer does
    try:
        yield store
    finally:
        store.writer.close()
        store.close()


@contextlib.asynccontextmanager
async def serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def _garbage_app() -> web.Application:
    async def garbage(_request):
        return web.Response(body=b"\x30\x03garbage", content_type="application/timestamp-reply")
    app = web.Application()
    app.router.add_post("/", garbage)
    return app


def _free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> TsaIdentity:
    return TsaIdentity.load_or_create(tmp_path_factory.mktemp("tsa"))


def _run(coro):
    return asyncio.run(coro)


def test_a_good_round_stores_a_token_that_verifies(tmp_path, identity):
    async def scenario():
        with locked_store(tmp_path) as store:
            log = FakeLog(store, _note(5))
            async with serve(make_tsa_app(TimestampAuthority(identity))) as url:
                job = TimestampJob(log, url, identity.ca_pem, interval=3600)
                async with aiohttp.ClientSession() as session:
                    assert await job.run_once(session) == 3600
                    note, response = await job.latest_token()
                    assert note == log.note
                    verify_timestamp(response, note, identity.ca_pem)
                    assert await job.token_for(5) == (note, response)
                    assert await job.token_for(4) is None
                    metrics = job.metrics()
                    assert metrics["timestamps_stored_total"] == 1 and metrics["timestamp_failures_total"] == 0
                    assert metrics["timestamped_size"] == 5 and metrics["seconds_unstamped"] == 0
                    assert metrics["seconds_since_last_timestamp"] < 5
                    # The same checkpoint is not stamped twice; a new one is.
                    await job.run_once(session)
                    assert job.metrics()["timestamps_stored_total"] == 1
                    log.note = _note(6)
                    await job.run_once(session)
                    assert (await job.latest_token())[0] == log.note
                    assert (await job.token_for(5))[0] == note
            await job.stop()

    _run(scenario())


BAD_TSAS = {
    "garbage": lambda identity: _garbage_app(),
    "untrusted_signer": lambda identity: make_tsa_app(TimestampAuthority(_other_identity())),
    "down": None,
}


def _other_identity() -> TsaIdentity:
    key, ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca, cert = make_tsa_chain(ca_key, key, not_before=datetime.datetime.now(datetime.timezone.utc)
                              - datetime.timedelta(days=1), ca_days=10, tsa_days=10)
    return TsaIdentity(key, cert, ca)


@pytest.mark.parametrize("kind", sorted(BAD_TSAS))
def test_a_bad_tsa_stores_nothing_and_shows_in_metrics(tmp_path, identity, kind):
    async def scenario():
        with locked_store(tmp_path) as store:
            log = FakeLog(store, _note(3))
            context = serve(BAD_TSAS[kind](identity)) if BAD_TSAS[kind] else contextlib.nullcontext(
                _free_port_url())
            async with context as url:
                job = TimestampJob(log, url, identity.ca_pem, interval=60, retry_initial=0.5, retry_max=4,
                                   timeout=2)
                async with aiohttp.ClientSession() as session:
                    delays = [await job.run_once(session) for _ in range(4)]
            assert await job.latest_token() is None
            metrics = job.metrics()
            assert metrics["timestamp_failures_total"] == 4 and metrics["timestamp_consecutive_failures"] == 4
            assert metrics["timestamps_stored_total"] == 0 and metrics["seconds_since_last_timestamp"] is None
            assert metrics["timestamp_last_error"]
            # Backoff doubles (with jitter in [0.5, 1]) and is capped at retry_max.
            assert 0.25 <= delays[0] <= 0.5 and 2 <= delays[3] <= 4
            await job.stop()
        return metrics

    metrics = _run(scenario())
    expected = {"garbage": "check 2", "untrusted_signer": "check 15", "down": "connection refused"}[kind]
    assert expected in metrics["timestamp_last_error"]


def test_a_source_that_is_not_a_checkpoint_is_a_failure(tmp_path, identity):
    async def scenario():
        with locked_store(tmp_path) as store:
            job = TimestampJob(FakeLog(store, b""), "http://127.0.0.1:9/", identity.ca_pem,
                               source=lambda: b"not a note")
            async with aiohttp.ClientSession() as session:
                await job.run_once(session)
            assert "not a checkpoint note" in job.metrics()["timestamp_last_error"]
            await job.stop()

    _run(scenario())


def test_the_store_survives_a_restart(tmp_path, identity):
    async def scenario():
        with locked_store(tmp_path) as store:
            log = FakeLog(store, _note(9))
            async with serve(make_tsa_app(TimestampAuthority(identity))) as url:
                job = TimestampJob(log, url, identity.ca_pem, interval=0.05)
                job.start()
                for _ in range(100):
                    if job.metrics()["timestamps_stored_total"]:
                        break
                    await asyncio.sleep(0.02)
                await job.stop()
            again = TimestampJob(log, "http://127.0.0.1:9/", identity.ca_pem, interval=3600)
            assert (await again.token_for(9))[0] == log.note
            await again.stop()

    _run(scenario())


# -- with a whole in-process Log --------------------------------------------------------------------------------------
def test_job_with_a_real_log_good_then_down_while_ingestion_goes_on(tmp_path, identity):
    from log.service import Log, LogConfig

    async def scenario():
        log = await Log.open(LogConfig(data_dir=tmp_path, origin=ORIGIN))
        try:
            await log.add_entries([b"first"])
            async with serve(make_tsa_app(TimestampAuthority(identity))) as url:
                job = TimestampJob(log, url, identity.ca_pem, interval=0.05)
                job.start()
                for _ in range(200):
                    latest = await job.latest_token()
                    if latest and latest[0] == log.checkpoint.note:
                        break
                    await asyncio.sleep(0.02)
                note, response = latest
                assert note == log.checkpoint.note
                verify_timestamp(response, note, identity.ca_pem)
                assert (await job.token_for(log.size))[0] == note
            # The TSA is gone now: entries still go in at once, and the gap shows in metrics.
            stamped = log.checkpoint.note
            for i in range(5):
                await asyncio.wait_for(log.add_entries([b"entry %d" % i]), 2)
            for _ in range(100):
                if job.metrics()["timestamp_failures_total"]:
                    break
                await asyncio.sleep(0.02)
            metrics = job.metrics()
            assert metrics["timestamp_failures_total"] >= 1 and metrics["seconds_unstamped"] >= 0
            assert (await job.latest_token())[0] == stamped
            await job.stop()
        finally:
            await log.close()

    _run(scenario())


def test_job_with_a_real_log_and_a_garbage_tsa_stores_nothing(tmp_path, identity):
    from log.service import Log, LogConfig

    async def scenario():
        log = await Log.open(LogConfig(data_dir=tmp_path, origin=ORIGIN))
        try:
            async with serve(_garbage_app()) as url:
                job = TimestampJob(log, url, identity.ca_pem, interval=0.05, retry_initial=0.01)
                job.start()
                result = await asyncio.wait_for(log.add_entries([b"a", b"b"]), 2)
                assert result.checkpoint.size == 2
                for _ in range(100):
                    if job.metrics()["timestamp_failures_total"] >= 2:
                        break
                    await asyncio.sleep(0.02)
                await job.stop()
            assert job.metrics()["timestamp_failures_total"] >= 2
            assert await job.latest_token() is None
        finally:
            await log.close()

    _run(scenario())


def test_failures_are_logged_naming_the_tsa_and_the_error_in_words(tmp_path, identity, caplog):
    """A TSA that refuses connections, one that answers HTTP 500, one that answers garbage: each log line names the
    TSA's URL and says what went wrong in words, never the repr of an exception or of bytes."""
    import logging

    def failing_app() -> web.Application:
        async def fail(_request):
            return web.Response(status=500, text="the HSM is offline\n")
        app = web.Application()
        app.router.add_post("/", fail)
        return app

    async def scenario():
        lines = {}
        with locked_store(tmp_path) as store:
            log = FakeLog(store, _note(3))
            for kind, context in (("down", contextlib.nullcontext(_free_port_url())),
                                  ("failing", serve(failing_app())), ("garbage", serve(_garbage_app()))):
                async with context as url:
                    job = TimestampJob(log, url, identity.ca_pem, interval=60, timeout=2)
                    caplog.clear()
                    with caplog.at_level(logging.WARNING, logger="api.server.timestamping"):
                        async with aiohttp.ClientSession() as session:
                            await job.run_once(session)
                    [record] = [r for r in caplog.records if r.name == "api.server.timestamping"]
                    lines[kind] = (url, record.getMessage())
                    await job.stop()
        return lines

    lines = _run(scenario())
    expected = {"down": "connection refused", "failing": "HTTP 500: the HSM is offline",
                "garbage": "the TSA's token does not verify: check 2"}
    for kind, words in expected.items():
        url, line = lines[kind]
        assert f"TSA {url}" in line and words in line, line
        assert "b'" not in line and "Error(" not in line and "ConnectionKey" not in line, line
