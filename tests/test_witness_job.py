"""WitnessJob (api/server/witnessing.py) against an in-process Log and in-process witness apps on loopback ports."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web

from log.errors import InvalidInput
from log.note import COSIGNATURE_ED25519, COSIGNATURE_MLDSA44, open_note, parse_note
from log.note_keys import CosignatureSigner, CosignatureVerifier, generate_signer_key
from log.service import Log, LogConfig
from log.storage.engine import sqlite_url_for
from tests.schema_template import upgrade_schema
from witness.cosigner import AddCheckpointRequest, Cosigner
from witness.store import WitnessStore
from api.server.witnessing import KOfN, WitnessEndpoint, WitnessJob
from witness.server import create_witness_app

ORIGIN = "test.example/log"


class WitnessServer:
    """A witness app on 127.0.0.1:<free port>, trusting one log key; `stop()` takes it down."""

    def __init__(self, tmp: Path, name: str, log_verifier, key_types=(COSIGNATURE_ED25519,)):
        keys = [generate_signer_key(name, t) for t in key_types]
        self.name = name
        self.vkeys = tuple(v for _, v in keys)
        url = sqlite_url_for(tmp / f"{name.replace('/', '_')}.db")
        upgrade_schema(url)
        self.cosigner = Cosigner(WitnessStore(url), [CosignatureSigner(s) for s, _ in keys], {ORIGIN: [log_verifier]})
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "WitnessServer":
        self.runner = web.AppRunner(create_witness_app(self.cosigner, close_store=True), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def endpoint(self, url: str | None = None) -> WitnessEndpoint:
        return WitnessEndpoint(self.name, url or self.url, self.vkeys if len(self.vkeys) > 1 else self.vkeys[0])


async def open_log(data_dir: Path, key_file: Path | None = None) -> Log:
    data_dir.mkdir(parents=True, exist_ok=True)  # upgrade_schema does not create the SQLite file's directory
    return await Log.open(LogConfig(data_dir=data_dir, origin=ORIGIN, key_file=key_file, batch_max_age=0.001))


def verify_cosigned(note: bytes, log: Log, servers: list[WitnessServer]) -> list:
    from log.note_keys import parse_verifier_key

    verifiers = [parse_verifier_key(log.verifier_key)]
    for server in servers:
        verifiers += [CosignatureVerifier(v) for v in server.vkeys]
    _, verified = open_note(note, verifiers)
    return verified


def test_one_round_gathers_both_cosignatures_and_serves_them(tmp_path):
    async def scenario():
        log = await open_log(tmp_path / "log")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(log.close)
            w1 = await WitnessServer(tmp_path, "w1.test/witness", log.signer.verifier).start()
            w2 = await WitnessServer(tmp_path, "w2.test/witness", log.signer.verifier,
                                     (COSIGNATURE_ED25519, COSIGNATURE_MLDSA44)).start()
            stack.push_async_callback(w1.stop)
            stack.push_async_callback(w2.stop)
            job = WitnessJob(log, [w1.endpoint(), w2.endpoint()], interval=3600, policy=KOfN(2))
            stack.push_async_callback(job.stop)
            await job.start()

            await log.add_entries([b"entry %d" % i for i in range(5)])
            await job.run_once()
            size = log.checkpoint.size
            note = await job.cosigned_checkpoint()
            assert len(verify_cosigned(note, log, [w1, w2])) == 4  # log, w1 Ed25519, w2 Ed25519 + ML-DSA-44
            for server in (w1, w2):  # each witness alone verifies too
                verify_cosigned(note, log, [server])
            assert await job.witnessed_checkpoint() == note
            metrics = job.metrics()
            assert metrics["witness_backlog_entries"] == 0 and metrics["witness_witnessed_size"] == size
            assert metrics['witness_cosigned_size{witness="w1.test/witness"}'] == size

            # nothing grew: no request is sent
            before = metrics['witness_requests_total{witness="w1.test/witness"}']
            await job.run_once()
            assert job.metrics()['witness_requests_total{witness="w1.test/witness"}'] == before

            # growth: consistency proofs from the sizes each witness holds
            await log.add_entries([b"more %d" % i for i in range(300)])
            new_size = log.checkpoint.size
            assert (await job.cosigned_checkpoint()) == log.checkpoint.note  # none gathered for it yet
            assert parse_note(await job.witnessed_checkpoint()).text.split("\n")[1] == str(size)
            await job.run_once()
            assert len(verify_cosigned(await job.cosigned_checkpoint(), log, [w1, w2])) == 4
            assert job.metrics()["witness_witnessed_size"] == new_size
            assert w1.cosigner.store.latest(ORIGIN).size == new_size

        # a fresh job on the same log finds what was gathered (in the log database), without asking again
        log = await open_log(tmp_path / "log")
        job = WitnessJob(log, [w1.endpoint("http://127.0.0.1:9"), w2.endpoint("http://127.0.0.1:9")],
                         interval=3600, policy=KOfN(2))
        try:
            await job.start()
            assert len(verify_cosigned(await job.witnessed_checkpoint(), log, [w1, w2])) == 4
        finally:
            await job.stop()
            await log.close()

    asyncio.run(scenario())


def test_resync_on_409_failures_and_policy(tmp_path):
    async def scenario():
        log = await open_log(tmp_path / "log")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(log.close)
            w1 = await WitnessServer(tmp_path, "w1.test/witness", log.signer.verifier).start()
            stack.push_async_callback(w1.stop)
            down = WitnessEndpoint("down.test/witness", "http://127.0.0.1:9",
                                   generate_signer_key("down.test/witness", COSIGNATURE_ED25519)[1])
            await log.add_entries([b"a", b"b", b"c"])
            # someone else (say, this log before it lost its database of cosignatures) had w1 cosign size 3
            await w1.cosigner.add_checkpoint(AddCheckpointRequest(0, (), log.checkpoint.note))
            await log.add_entries([b"d", b"e"])

            job = WitnessJob(log, [w1.endpoint(), down], interval=3600, policy=KOfN(1), attempts=2, backoff=0.01)
            stack.push_async_callback(job.stop)
            await job.run_once()  # w1: old 0 -> 409 "3\n" -> old 3 with a proof -> 200; down: refused twice
            metrics = job.metrics()
            assert metrics['witness_conflicts_total{witness="w1.test/witness"}'] == 1
            assert metrics['witness_requests_total{witness="w1.test/witness"}'] == 2
            assert metrics['witness_cosigned_size{witness="w1.test/witness"}'] == 5
            assert metrics['witness_failures_total{witness="down.test/witness"}'] == 1
            assert metrics['witness_requests_total{witness="down.test/witness"}'] == 2
            assert metrics['witness_cosigned_size{witness="down.test/witness"}'] == -1
            assert metrics["witness_witnessed_size"] == 5  # 1 of 2 is enough for KOfN(1)

            strict = WitnessJob(log, [w1.endpoint(), down], interval=3600, policy=KOfN(2), attempts=1)
            stack.push_async_callback(strict.stop)
            await strict.run_once()
            assert await strict.witnessed_checkpoint() is None
            assert strict.metrics()["witness_backlog_entries"] == 5
            with pytest.raises(InvalidInput):
                WitnessJob(log, [w1.endpoint()], policy=KOfN(2))

    asyncio.run(scenario())


def test_a_forked_log_is_refused_and_never_cosigned(tmp_path):
    """A second log with the same key and origin but another history: the witness that saw the first refuses it."""

    async def scenario():
        log = await open_log(tmp_path / "log")
        fork_dir = tmp_path / "fork"
        fork_dir.mkdir()
        (fork_dir / "log.key").write_text(log.signer.signer_key + "\n")
        fork = await open_log(fork_dir)
        assert fork.verifier_key == log.verifier_key
        async with AsyncExitStack() as stack:
            stack.push_async_callback(log.close)
            stack.push_async_callback(fork.close)
            w1 = await WitnessServer(tmp_path, "w1.test/witness", log.signer.verifier).start()
            stack.push_async_callback(w1.stop)

            await log.add_entries([b"honest %d" % i for i in range(5)])
            job = WitnessJob(log, [w1.endpoint()], interval=3600)
            stack.push_async_callback(job.stop)
            await job.run_once()
            honest = log.checkpoint

            # same size, other root (422 since C2SP/C2SP#280); then larger and inconsistent (422): both refusals
            for count, expected in ((5, "HTTP 422: size 5 was cosigned with another root"), (4, "HTTP 422")):
                await fork.add_entries([b"forked %d" % i for i in range(count)])
                fork_job = WitnessJob(fork, [w1.endpoint()], interval=3600, attempts=1)
                stack.push_async_callback(fork_job.stop)
                await fork_job.run_once()
                assert await fork_job.witnessed_checkpoint() is None
                assert await fork_job.cosigned_checkpoint() == fork.checkpoint.note
                metrics = fork_job.metrics()
                assert metrics['witness_refusals_total{witness="w1.test/witness"}'] == 1
                assert str(expected) in fork_job._state["w1.test/witness"].last_error

            state = await asyncio.to_thread(w1.cosigner.store.latest, ORIGIN)
            assert (state.size, state.root_hash) == (honest.size, honest.root_hash)
            refused = await asyncio.to_thread(w1.cosigner.store.refusals, ORIGIN)
            assert sorted(size for size, *_ in refused) == [5, 9]
            assert w1.cosigner.stats.get("cosigned") == 1

    asyncio.run(scenario())


def test_endpoint_from_config():
    _, ed = generate_signer_key("w.example/w", COSIGNATURE_ED25519)
    _, ml = generate_signer_key("w.example/w", COSIGNATURE_MLDSA44)
    endpoint = WitnessEndpoint.from_config(f"https://w.example/ {ed} {ml}")
    assert (endpoint.name, endpoint.add_checkpoint_url) == ("w.example/w", "https://w.example/add-checkpoint")
    assert len(endpoint.verifiers) == 2
    with pytest.raises(InvalidInput):
        WitnessEndpoint.from_config(ed)


def _answering_app(status: int, body: bytes, content_type: str = "text/plain", delay: float = 0) -> web.Application:
    async def answer(_request):
        await asyncio.sleep(delay)
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/add-checkpoint", answer)
    return app


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_failure_is_logged_naming_the_witness_and_the_error_in_words(tmp_path, caplog):
    """A witness that refuses connections, one that answers a refusal, one that answers 503, one too slow, and one
    whose cosignature is bad: each log line names the witness (key name and URL) and says what went wrong, with no
    repr of an exception or of the bytes it answered."""
    import logging

    from log.note import NoteSignature

    async def scenario():
        log = await open_log(tmp_path / "log")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(log.close)
            await log.add_entries([b"a", b"b"])
            keys = {name: generate_signer_key(name, COSIGNATURE_ED25519)[1]
                    for name in ("down.test/w", "refuses.test/w", "busy.test/w", "slow.test/w", "forger.test/w")}
            forged = NoteSignature("forger.test/w", CosignatureVerifier(keys["forger.test/w"]).key_id,
                                   (1700000000).to_bytes(8, "big") + b"\x01" * 64).to_line().encode()
            apps = {
                "refuses.test/w": _answering_app(403, b"this witness does not know the log test.example/log\n"),
                "busy.test/w": _answering_app(503, b'{"detail": "the witness is over capacity"}',
                                              "application/problem+json"),
                "slow.test/w": _answering_app(200, b"", delay=1.5),
                "forger.test/w": _answering_app(200, forged, "text/plain"),
            }
            urls = {"down.test/w": f"http://127.0.0.1:{_free_port()}"}
            for name, app in apps.items():
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                stack.push_async_callback(runner.cleanup)
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                urls[name] = f"http://127.0.0.1:{runner.addresses[0][1]}"
            endpoints = [WitnessEndpoint(name, urls[name], keys[name]) for name in keys]
            job = WitnessJob(log, endpoints, interval=3600, policy=KOfN(1), attempts=2, backoff=0.01, timeout=0.5)
            stack.push_async_callback(job.stop)
            with caplog.at_level(logging.INFO, logger="api.server.witnessing"):
                await job.run_once()
            return urls

    urls = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "api.server.witnessing"]
    assert len(lines) == 5, lines
    expected = {
        "down.test/w": "gave up after 2 attempts: connection refused",
        "refuses.test/w": "refused it with HTTP 403: this witness does not know the log test.example/log",
        "busy.test/w": "gave up after 2 attempts: HTTP 503: the witness is over capacity",
        "slow.test/w": "gave up after 2 attempts: timed out after 0.5 s",
        "forger.test/w": "answered 200 with a bad cosignature: ",
    }
    for name, words in expected.items():
        [line] = [line for line in lines if f"witness {name} at {urls[name]}" in line]
        assert words in line and "checkpoint of size 2" in line, line
    for line in lines:
        assert "b'" not in line and 'b"' not in line and "Error(" not in line and "ConnectionKey" not in line, line
