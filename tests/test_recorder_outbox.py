"""The producer SDK's durable outbox (api/client/outbox.py, Recorder(..., outbox=DIR)) against a real HTTP server
(tests/e2e/test_audit.py's in-thread app) and against logs that are down or only answer 503.

What it holds the SDK to: the envelope is in the spool, as the exact bytes POSTed, before the POST; it leaves the
spool only once its receipt verifies, or moved to `refused` (with the problem) when the log refused it for good;
a refusal that configuration can cure leaves it spooled; `flush()` re-sends oldest first and names what it could
not deliver; a new submission lets an older spooled one land first; the sync API is thread-safe and the async API
does the same. The SIGKILL-between-send-and-receipt test with real processes is tests/e2e/test_recorder_restart.py.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid

import aiohttp
import pytest

from api.client.outbox import FILE_NAME, Outbox
from api.client.recorder import (
    EventRefused,
    LogUnreachable,
    ReceiptInvalid,
    Recorder,
    RecorderError,
    _spooled_envelope,
    generate_key,
)
from log.errors import InvalidInput, Unavailable, VerificationError
from log.note_keys import generate_signer_key
from tests.e2e.test_audit import Producer, Server, _call, _register, run
from tests.credentials import ADMIN, ADMIN_TOKEN
from tests.processes import REPO

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture
def agent(server):
    """A registered producer's seed, and the log's verifier key."""
    seed, _, _ = generate_key()
    producer = Producer("sdk-agent", "acme", seed)

    async def setup():
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            await _register(session, server.url, producer)
            return (await _call(session, "GET", f"{server.url}/api/v1/log"))[1]["verifier_key"]

    return seed, run(setup())


def recorder(url: str, seed: bytes, log_key: str, outbox=None, producer: str = "sdk-agent") -> Recorder:
    return Recorder(url, producer=producer, signing_key=seed, log_key=log_key, tenant="acme", token=ADMIN_TOKEN,
                    actor={"type": "agent", "id": producer}, retries=1, backoff=0.01, timeout=5, outbox=outbox)


def events_of_run(url: str, run_id: str) -> list[dict]:
    async def get():
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            status, body = await _call(session, "GET", f"{url}/api/v1/events", params={"run_id": run_id})
            assert status == 200, body
            return body["events"]

    return run(get())


class _SpoolAtPost(http.server.BaseHTTPRequestHandler):
    """A log that answers every POST 503, noting the body and what the spool held when the request arrived."""

    seen: list[tuple[bytes, list[bytes]]] = []
    spool = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True) as db:
            spooled = [bytes(p) for p, in db.execute("SELECT payload FROM pending ORDER BY seq")]
        self.seen.append((body, spooled))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_envelope_is_spooled_as_the_posted_bytes_before_the_post_and_flushed_once_the_log_is_up(
        tmp_path, server, agent):
    seed, log_key = agent
    spool = tmp_path / "spool"
    _SpoolAtPost.spool, _SpoolAtPost.seen = spool / FILE_NAME, []
    busy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SpoolAtPost)
    threading.Thread(target=busy.serve_forever, daemon=True).start()
    try:
        r = recorder(f"http://127.0.0.1:{busy.server_address[1]}", seed, log_key, outbox=spool)
        envelope = r.sign(r.event("tool_call", run_id="run-spool", extensions={"ratio": 1.5, "note": "é ✓"}))
        with pytest.raises(LogUnreachable, match="failed after 2 attempts") as caught:
            r.submit(envelope)
        assert isinstance(caught.value, Unavailable)
    finally:
        busy.shutdown()
    assert len(_SpoolAtPost.seen) == 2, "sent twice (one retry)"
    for body, spooled_then in _SpoolAtPost.seen:
        assert spooled_then == [body], "the spool held the exact bytes before they were POSTed"
    (waiting,) = r.outbox.pending()
    assert waiting.payload == _SpoolAtPost.seen[0][0] and waiting.event_id == envelope.event["event_id"]
    assert waiting.attempts == 1 and "503" in waiting.last_error
    assert _spooled_envelope(waiting.payload).entry_bytes() == envelope.entry_bytes()
    r.close()

    # A new Recorder (a restarted producer) on the same spool, with the log up: flush delivers it, byte for byte.
    again = recorder(server.url, seed, log_key, outbox=spool)
    (ack,) = again.flush()
    assert ack.event == envelope.event and not ack.duplicate
    assert again.outbox.pending() == [] and again.outbox.refused() == []
    assert [e["event"] for e in events_of_run(server.url, "run-spool")] == [envelope.event]
    assert again.flush() == []


def test_the_spool_is_synchronous_full_and_nothing_is_written_without_an_outbox(tmp_path, server, agent):
    seed, log_key = agent
    outbox = Outbox(tmp_path / "new" / "spool")
    assert outbox._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: the WAL is fsynced every commit
    assert outbox._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    outbox.close()

    plain = recorder(server.url, seed, log_key)
    assert plain.outbox is None and plain.flush() == []
    assert plain.record("tool_call", run_id="run-plain").index >= 0
    with pytest.raises(LogUnreachable):
        recorder(DEAD, seed, log_key).record("tool_call", run_id="run-plain")
    with pytest.raises(InvalidInput, match="must be http://host"):  # not a connection error, retried 7 times
        recorder("127.0.0.1:8080", seed, log_key)


def test_a_receipt_that_does_not_verify_keeps_the_envelope_and_a_flush_gets_the_original_index(
        tmp_path, server, agent):
    seed, log_key = agent
    spool = tmp_path / "spool"
    wrong_key = recorder(server.url, seed, generate_signer_key("audit.e2e/log")[1], outbox=spool)
    with pytest.raises(ReceiptInvalid, match="does not verify") as caught:
        wrong_key.record("tool_call", run_id="run-unproven")
    assert isinstance(caught.value, VerificationError)
    (kept,) = wrong_key.outbox.pending()
    assert kept.attempts == 1 and "does not verify" in kept.last_error

    (logged,) = events_of_run(server.url, "run-unproven")  # the log did take it
    r = recorder(server.url, seed, log_key, outbox=spool)
    (ack,) = r.flush()
    assert ack.duplicate and ack.index == logged["index"]
    assert r.outbox.pending() == []


def test_a_final_refusal_moves_to_refused_with_the_problem_and_is_not_retried(tmp_path, server, agent):
    seed, log_key = agent
    r = recorder(server.url, seed, log_key, outbox=tmp_path / "spool")
    first = r.record("tool_call", run_id="run-conflict")
    other = dict(first.event, event_type="denial")  # the same event_id, other content
    with pytest.raises(EventRefused, match="moved to the outbox's refused envelopes") as caught:
        r.submit(r.sign(other))
    refusal = caught.value
    assert isinstance(refusal, InvalidInput) and refusal.final and refusal.status == 409
    assert refusal.index == first.index == refusal.problem["index"]
    assert refusal.problem["type"] == "urn:auditlog:problem:event-conflict"
    assert r.outbox.pending() == []
    (refused,) = r.outbox.refused()
    assert refused.event_id == first.event["event_id"] and refused.status == 409
    assert refused.problem["index"] == first.index and "refused envelopes" in refused.message
    assert r.flush() == [] and server.audit.stats.events_conflict == 1, "never sent again"
    r.outbox.forget(refused.seq)
    assert r.outbox.refused() == []

    # A refusal that registering cures (an unknown producer) is not final: the envelope stays spooled.
    stranger = recorder(server.url, generate_key()[0], log_key, outbox=tmp_path / "spool", producer="stranger")
    with pytest.raises(EventRefused, match="no producer .stranger. is registered") as caught:
        stranger.record("tool_call", run_id="run-stranger")
    assert caught.value.status == 401 and not caught.value.final
    assert len(stranger.outbox.pending("stranger")) == 1 and stranger.outbox.refused() == []
    assert r.flush() == [], "flush sends this producer's envelopes only"


def test_flush_sends_oldest_first_and_names_what_it_could_not_deliver(tmp_path, server, agent):
    seed, log_key = agent
    spool = tmp_path / "spool"
    down = recorder(DEAD, seed, log_key, outbox=spool)
    made = []
    for n in range(3):
        with pytest.raises(LogUnreachable):
            down.record("tool_call", run_id="run-order", event_id=f"ev-{n}-{uuid.uuid4()}")
        made.append(down.outbox.pending()[-1].event_id)
    with pytest.raises(LogUnreachable, match=r"3 of 3 spooled events not delivered") as caught:
        down.flush()
    assert f"event {made[0]}: POST {DEAD}/api/v1/events failed after 2 attempts" in str(caught.value)
    assert f"event {made[2]}: not tried, the log being unreachable" in str(caught.value)
    assert len(caught.value.failures) == 3 and caught.value.acknowledgements == []
    assert len(down.outbox.pending()) == 3

    # One of them is refused for good (its event_id logged meanwhile with other content): the others land, in
    # order, and flush raises naming the refused one, with the acknowledgements of those that landed.
    squatter = down.event("denial", run_id="run-order", event_id=made[1])
    recorder(server.url, seed, log_key).submit(down.sign(squatter))
    up = recorder(server.url, seed, log_key, outbox=spool)
    with pytest.raises(EventRefused, match=rf"1 of 3 spooled events not delivered: event {made[1]}") as caught:
        up.flush()
    acks = caught.value.acknowledgements
    assert [a.event["event_id"] for a in acks] == [made[0], made[2]] and acks[0].index < acks[1].index
    assert [r.event_id for r in up.outbox.refused()] == [made[1]] and up.outbox.pending() == []


def test_a_new_submission_lets_older_spooled_events_land_first(tmp_path, server, agent):
    seed, log_key = agent
    spool = tmp_path / "spool"
    down = recorder(DEAD, seed, log_key, outbox=spool)
    with pytest.raises(RecorderError):
        with down.action("run-backlog"):
            raise AssertionError("must not run: the intent was not acknowledged")
    (intent,) = down.outbox.pending()

    up = recorder(server.url, seed, log_key, outbox=spool)
    later = up.record("tool_call", run_id="run-backlog")
    logged = events_of_run(server.url, "run-backlog")
    assert [e["event"]["event_id"] for e in logged] == [intent.event_id, later.event["event_id"]]
    assert logged[0]["index"] < later.index and up.outbox.pending() == []

    # With the log down, a new event behind a backlog is spooled and not sent; the error says so.
    with pytest.raises(LogUnreachable):
        down.record("tool_call", run_id="run-backlog-2")
    with pytest.raises(LogUnreachable, match="stays spooled, not sent"):
        down.record("tool_call", run_id="run-backlog-2")
    assert len(up.outbox.pending()) == 2
    assert len(up.flush()) == 2


def test_threads_share_one_recorder_and_its_spool(tmp_path, server, agent):
    seed, log_key = agent
    r = recorder(server.url, seed, log_key, outbox=tmp_path / "spool")
    acks, errors = [], []

    def work(n):
        try:
            for i in range(8):
                acks.append(r.record("tool_call", run_id="run-threads", event_id=f"t{n}-{i}-{uuid.uuid4()}"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(acks) == 64
    assert len({a.index for a in acks}) == 64 and not any(a.duplicate for a in acks)
    assert r.outbox.pending() == [] and len(events_of_run(server.url, "run-threads")) == 64


def test_the_async_api_spools_and_flushes_the_same_way(tmp_path, server, agent):
    seed, log_key = agent
    spool = tmp_path / "spool"

    async def scenario():
        down = recorder(DEAD, seed, log_key, outbox=spool)
        try:
            with pytest.raises(LogUnreachable):
                await down.arecord("model_call", run_id="run-async")
            (waiting,) = down.outbox.pending()
        finally:
            await down.aclose()
        up = recorder(server.url, seed, log_key, outbox=spool)
        try:
            (ack,) = await up.aflush()
            async with up.action("run-async") as action:
                await action.arecord("tool_call")
            assert up.outbox.pending() == []
            return waiting, ack, action
        finally:
            await up.aclose()

    waiting, ack, action = asyncio.run(scenario())
    assert ack.event["event_id"] == waiting.event_id and not ack.duplicate
    logged = events_of_run(server.url, "run-async")
    assert [e["event"]["event_type"] for e in logged] == ["model_call", "intent", "tool_call", "outcome"]
    assert action.outcome.index == logged[-1]["index"]


def test_the_example_agent_exits_3_when_the_log_is_down_and_its_spool_lands_on_the_next_run(
        tmp_path, server, agent):
    seed, log_key = agent
    seed_file = tmp_path / "agent.seed"
    seed_file.write_text(base64.b64encode(seed).decode() + "\n")

    def agent_run(*args: str, server_env: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "AUDITLOG_SERVER"}
        if server_env:
            env["AUDITLOG_SERVER"] = server_env
        return subprocess.run([sys.executable, "examples/agent.py", "--seed", str(seed_file), "--producer",
                               "sdk-agent", "--token", ADMIN_TOKEN, *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)

    down = agent_run("--log-key", log_key, "--outbox", str(tmp_path / "spool"), server_env=DEAD)
    assert down.returncode == 3 and down.stdout == "", down
    assert down.stderr.count("\n") == 1 and DEAD in down.stderr and "connection refused" in down.stderr.lower(), \
        down.stderr
    (intent,) = Outbox(tmp_path / "spool").pending()

    # AUDITLOG_SERVER may name several servers of one log: the first is down, the spool lands through the second.
    up = agent_run("--log-key", log_key, "--outbox", str(tmp_path / "spool"), server_env=f"{DEAD},{server.url}")
    assert up.returncode == 0, up.stderr
    assert Outbox(tmp_path / "spool").pending() == []
    (spooled,) = events_of_run(server.url, json.loads(intent.payload)["event"]["run_id"])
    assert spooled["event"]["event_id"] == intent.event_id

    unproven = agent_run("--server", server.url, "--log-key", generate_signer_key("audit.e2e/log")[1])
    assert unproven.returncode == 1 and "does not verify" in unproven.stderr, unproven
    refused = agent_run("--server", server.url, "--log-key", log_key, "--producer", "nobody")
    assert refused.returncode == 2 and "(401)" in refused.stderr and "Traceback" not in refused.stderr, refused


def test_with_several_servers_events_reach_the_second_while_the_first_is_down(tmp_path, server, agent):
    from tests.test_servers import Dropper, dead_url

    seed, log_key = agent
    spool, other = tmp_path / "spool", dead_url()
    down = recorder([DEAD, other], seed, log_key, outbox=spool)
    with pytest.raises(LogUnreachable) as caught:
        down.record("intent", run_id="run-multi")
    assert f"{DEAD}: connection refused (2 attempts)" in str(caught.value)
    assert f"{other}: connection refused (2 attempts)" in str(caught.value)
    (spooled,) = down.outbox.pending()
    down.close()

    # The first server still down: the spooled event and a new one land through the second, and it is kept.
    r = recorder(f"{DEAD},{server.url}", seed, log_key, outbox=spool)
    (flushed,) = r.flush()
    assert flushed.event["event_id"] == spooled.event_id and not flushed.duplicate
    made = r.record("tool_call", run_id="run-multi")
    assert r.url == server.url and r.outbox.pending() == []

    async def async_record():
        later = recorder([DEAD, server.url], seed, log_key, outbox=spool)
        try:
            return await later.arecord("outcome", run_id="run-multi", outcome={"status": "success"})
        finally:
            await later.aclose()

    outcome = asyncio.run(async_record())
    logged = events_of_run(server.url, "run-multi")
    assert [e["event"]["event_id"] for e in logged] == [spooled.event_id, made.event["event_id"],
                                                        outcome.event["event_id"]]

    # An event whose answer was lost after the first server had logged it is sent to the next (an event POST is
    # idempotent): the log answers the resend as a duplicate, at the original index, and holds it once.
    lost = Dropper(upstream=server.url)
    try:
        again = recorder([lost.url, server.url], seed, log_key, outbox=spool)
        ack = again.record("tool_call", run_id="run-lost-answer")
    finally:
        lost.shutdown()
        lost.server_close()
    assert [(method, path) for method, path, _ in lost.seen] == [("POST", "/api/v1/events?proofs=true")]
    assert ack.duplicate and again.outbox.pending() == []
    (once,) = events_of_run(server.url, "run-lost-answer")
    assert once["index"] == ack.index
    r.close()
    again.close()

