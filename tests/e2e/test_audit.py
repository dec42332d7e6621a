"""The audit personality end to end against a real HTTP server on a loopback port (the app of api.server.app with the
audit routes added, in a thread of this process): exactly-once ingest under concurrent retries, every refusal
storing nothing, timelines and evidence bundles that verify offline and fail when one byte changes, blobs, and
the producer SDK failing closed."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import signal
import threading
import time
import uuid

import aiohttp
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from api.server.app import create_app
from api.server.audit_routes import AUDIT
from api.cli.main import main as cli_main
from api.client.recorder import Recorder, RecorderError, generate_key
from log.audit.canonical import canonicalize
from log.audit.errors import EvidenceError
from log.audit.evidence import verify_bundle
from log.audit.registry import key_id_for
from log.audit.schema import format_timestamp_ms
from log.note_keys import generate_signer_key
from log.service import LogConfig
from tests.credentials import ADMIN_TOKEN

TOKEN = ADMIN_TOKEN
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    def __init__(self, data_dir, verify_processes: int = 0):
        self.data_dir = data_dir
        self.verify_processes = verify_processes
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.app = create_app(LogConfig(data_dir=self.data_dir, origin="audit.e2e/log"), admin_token=TOKEN,
                              verify_processes=self.verify_processes)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        if self.verify_processes:  # started now, not with the first event, so that every event goes to them
            self.loop.run_until_complete(self.app[AUDIT].verifier_pool.start())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def start(self):
        self.thread.start()
        assert self.ready.wait(60)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    @property
    def audit(self):
        return self.app[AUDIT]


class Producer:
    def __init__(self, name, tenant, seed=None):
        self.name, self.tenant = name, tenant
        self.key = SigningKey(seed or SigningKey.generate().encode())
        self.public = bytes(self.key.verify_key)
        self.key_id = key_id_for(self.public)

    def event(self, run_id="run-1", parent=None, event_type="intent", **fields):
        event = {"schema": "auditlog.event/v1", "event_id": str(uuid.uuid4()), "trace_id": f"tr-{run_id}",
                 "run_id": run_id, "timestamp": format_timestamp_ms(int(time.time() * 1000)),
                 "tenant": self.tenant, "actor": {"type": "agent", "id": self.name}, "event_type": event_type,
                 "context": {"case_id": f"case-{run_id}"}, **fields}
        if parent:
            event["parent_event_id"] = parent
        return event

    def envelope(self, event, key=None, key_id=None):
        key = key or self.key
        return {"producer": self.name, "key_id": key_id or self.key_id, "event": event,
                "signature": base64.b64encode(key.sign(canonicalize(event)).signature).decode()}


async def _call(session, method, url, **kwargs):
    async with session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        return resp.status, (json.loads(body) if body and resp.content_type.endswith("json") else body)


async def _register(session, url, producer: Producer):
    status, _ = await _call(session, "POST", f"{url}/api/v1/producers", headers=ADMIN,
                            json={"producer": producer.name, "tenants": [producer.tenant]})
    assert status == 201
    status, _ = await _call(session, "POST", f"{url}/api/v1/producers/{producer.name}/keys", headers=ADMIN,
                            json={"public_key": base64.b64encode(producer.public).decode()})
    assert status == 201


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture(params=[0, 1], ids=["signatures-on-threads", "signatures-in-a-process"])
def any_server(request, tmp_path):
    """A server checking multi-envelope signatures on threads, then one checking them in a verifier process."""
    server = Server(tmp_path / "data", verify_processes=request.param).start()
    yield server
    server.stop()


def run(coro):
    return asyncio.run(coro)


async def _size(session, url):
    return (await _call(session, "GET", f"{url}/api/v1/log"))[1]["tree_size"]


def test_valid_events_land_once_under_five_concurrent_retries_each(server):
    agent = Producer("agent-1", "acme")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            await _register(session, server.url, agent)
            before = await _size(session, server.url)
            envelopes = [agent.envelope(agent.event(run_id=f"run-{i % 3}")) for i in range(40)]
            sends = []
            for envelope in envelopes:
                for attempt in range(5):
                    if attempt % 2:
                        sends.append(_call(session, "POST", f"{server.url}/api/v1/events", json=envelope))
                    else:
                        sends.append(_call(session, "POST", f"{server.url}/api/v1/events",
                                           json={"events": [envelope]}))
            answers = await asyncio.gather(*sends)
            indices: dict[str, set[int]] = {}
            for status, body in answers:
                assert status == 200, body
                receipt = body if "index" in body else body["results"][0]
                indices.setdefault(receipt["event_id"], set()).add(receipt["index"])
            assert all(len(found) == 1 for found in indices.values()) and len(indices) == 40
            assert await _size(session, server.url) == before + 40
            assert server.audit.stats.events_accepted == 40
            assert server.audit.stats.events_duplicate == 160

    run(scenario())


def test_every_refusal_stores_nothing(any_server):
    server = any_server
    agent, other = Producer("agent-1", "acme"), Producer("agent-2", "globex")
    stranger = Producer("stranger", "acme")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            url = server.url
            await _register(session, url, agent)
            await _register(session, url, other)
            logged = agent.event()
            status, receipt = await _call(session, "POST", f"{url}/api/v1/events", json=agent.envelope(logged))
            assert status == 200
            retired, revoked = Producer("agent-1", "acme"), Producer("agent-1", "acme")
            for extra in (retired, revoked):
                status, _ = await _call(session, "POST", f"{url}/api/v1/producers/agent-1/keys", headers=ADMIN,
                                        json={"public_key": base64.b64encode(extra.public).decode()})
                assert status == 201
            past = format_timestamp_ms(int(time.time() * 1000) - 3_600_000)
            status, _ = await _call(session, "POST", f"{url}/api/v1/producers/agent-1/keys/{retired.key_id}/retire",
                                    headers=ADMIN, json={"not_after": past})
            assert status == 200
            status, _ = await _call(session, "POST", f"{url}/api/v1/producers/agent-1/keys/{revoked.key_id}/revoke",
                                    headers=ADMIN, json={"reason": "test"})
            assert status == 200
            bad_signature = agent.envelope(agent.event())
            bad_signature["event"]["event_type"] = "outcome"
            invalid = agent.event()
            del invalid["tenant"]
            changed = copy.deepcopy(logged)
            changed["event_type"] = "denial"
            future = agent.event()
            future["timestamp"] = format_timestamp_ms(int(time.time() * 1000) + 3_600_000)
            cases = [
                ("unknown producer", stranger.envelope(stranger.event()), 401, "unknown-producer"),
                ("unknown key", agent.envelope(agent.event(), key=stranger.key, key_id=stranger.key_id), 401,
                 "unknown-key"),
                ("signature by another key", agent.envelope(agent.event(), key=other.key), 401, "bad-signature"),
                ("altered after signing", bad_signature, 401, "bad-signature"),
                ("retired key", retired.envelope(retired.event()), 401, "key-expired"),
                ("revoked key", revoked.envelope(revoked.event()), 401, "key-revoked"),
                ("foreign tenant", agent.envelope({**agent.event(), "tenant": "globex"}), 403, "tenant-forbidden"),
                ("schema", agent.envelope(invalid), 422, "invalid-event"),
                ("from the future", agent.envelope(future), 422, "invalid-event"),
                ("event_id reused for other content", agent.envelope(changed), 409, "event-conflict"),
                ("not JSON", None, 422, "invalid-event"),
            ]
            before = await _size(session, url)
            for name, envelope, status, code in cases:
                kwargs = {"data": b"{nope", "headers": {"Content-Type": "application/json"}} if envelope is None \
                    else {"json": envelope}
                got, body = await _call(session, "POST", f"{url}/api/v1/events", **kwargs)
                assert (got, body["type"]) == (status, f"urn:auditlog:problem:{code}"), (name, body)
                assert body["title"] and body["detail"] and body["status"] == status
                if code == "event-conflict":  # names the event already logged under that id
                    assert body["index"] == receipt["index"] and f"at index {receipt['index']}" in body["detail"]
                else:
                    assert "index" not in body
                if code == "invalid-event" and envelope is not None and name == "schema":
                    assert body["field"] == "$.event.tenant" and body["errors"]
            # The same refusals inside one batch: each refused alone, still nothing stored.
            batch = [e for _, e, _, _ in cases if e is not None]
            got, body = await _call(session, "POST", f"{url}/api/v1/events", json={"events": batch})
            assert got == 200 and body["accepted"] == 0
            assert [r["status"] for r in body["results"]] == [s for _, e, s, _ in cases if e is not None]
            assert [r.get("index") for r in body["results"]] == [
                receipt["index"] if c == "event-conflict" else None for _, e, _, c in cases if e is not None]
            where = "process" if server.verify_processes else "thread"
            assert server.audit.stats.signatures.get(where, 0) > 0
            # Admin routes without the token.
            got, body = await _call(session, "POST", f"{url}/api/v1/producers", json={"producer": "x",
                                                                                      "tenants": ["acme"]})
            assert got == 401 and body["type"] == "urn:auditlog:problem:unauthenticated"
            got, _ = await _call(session, "POST", f"{url}/api/v1/producers", json={"producer": "x", "tenants": ["a"]},
                                 headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
            assert got == 401
            assert await _size(session, url) == before
            assert server.audit.stats.events_conflict == 2
            # A retry of an event logged before its key was revoked still gets its original receipt.
            status, body = await _call(session, "POST", f"{url}/api/v1/events", json=agent.envelope(logged))
            assert status == 200 and body["duplicate"]

    run(scenario())


def test_a_verifier_process_that_dies_fails_closed_to_threads(tmp_path):
    """Batches checked in a verifier process refuse exactly the forged envelopes; with the process killed, the next
    batches are checked on threads instead (never taken as verified), and a new process takes over."""
    server = Server(tmp_path / "data", verify_processes=1).start()
    agent, other = Producer("agent-1", "acme"), Producer("agent-2", "acme")

    def batch():
        envelopes = [agent.envelope(agent.event()) for _ in range(10)]
        envelopes[3] = agent.envelope(agent.event(), key=other.key)  # signed by another key
        envelopes[7]["event"]["event_type"] = "outcome"  # changed after signing
        return envelopes

    async def submit(session):
        status, body = await _call(session, "POST", f"{server.url}/api/v1/events", json={"events": batch()})
        assert status == 200, body
        assert [r["status"] for r in body["results"]] == [200] * 3 + [401] + [200] * 3 + [401] + [200] * 2
        assert {body["results"][i]["type"] for i in (3, 7)} == {"urn:auditlog:problem:bad-signature"}
        assert body["accepted"] == 8

    async def scenario():
        async with aiohttp.ClientSession() as session:
            await _register(session, server.url, agent)
            await _register(session, server.url, other)
            stats, pool = server.audit.stats, server.audit.verifier_pool
            await submit(session)
            assert stats.signatures == {"process": 10}
            (pid,) = pool.pids()
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not pool.pids():
                    break
                await asyncio.sleep(0.05)
            await submit(session)
            assert stats.signatures == {"process": 10, "thread": 10}
            submitted = 2
            for _ in range(200):  # started again in the background after RESTART_DELAY; threads meanwhile
                if pool.running:
                    break
                await submit(session)
                submitted += 1
                await asyncio.sleep(0.05)
            assert pool.running == 1 and pool.pids() != [pid]
            before = stats.signatures["process"]
            await submit(session)
            submitted += 1
            assert stats.signatures["process"] == before + 10
            assert sum(stats.signatures.values()) == 10 * submitted
            assert stats.events_accepted == 8 * submitted

    try:
        run(scenario())
    finally:
        server.stop()


def test_timeline_and_evidence_verify_offline_and_fail_on_one_changed_byte(server, tmp_path):
    agent, reviewer = Producer("agent-1", "acme"), Producer("reviewer", "acme")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            url = server.url
            await _register(session, url, agent)
            await _register(session, url, reviewer)
            intent = agent.event(run_id="run-x", event_type="intent")
            call = agent.event(run_id="run-x", parent=intent["event_id"], event_type="model_call")
            review = reviewer.event(run_id="run-x", parent=call["event_id"], event_type="human_review")
            done = agent.event(run_id="run-x", parent=review["event_id"], event_type="outcome",
                               outcome={"status": "success"})
            # Submitted children first: the timeline is still causal.
            for producer, event in ((agent, done), (reviewer, review), (agent, call), (agent, intent)):
                status, _ = await _call(session, "POST", f"{url}/api/v1/events", json=producer.envelope(event))
                assert status == 200
            await _call(session, "POST", f"{url}/api/v1/events", json=agent.envelope(agent.event(run_id="run-y")))
            status, timeline = await _call(session, "GET", f"{url}/api/v1/runs/run-x/timeline", headers=ADMIN)
            assert status == 200
            assert [e["event"]["event_type"] for e in timeline["events"]] == [
                "intent", "model_call", "human_review", "outcome"]
            status, page = await _call(session, "GET", f"{url}/api/v1/events?case_id=case-run-x&limit=3",
                                       headers=ADMIN)
            assert status == 200 and len(page["events"]) == 3 and page["next_cursor"]
            status, rest = await _call(session, "GET",
                                       f"{url}/api/v1/events?case_id=case-run-x&limit=3&cursor={page['next_cursor']}",
                                       headers=ADMIN)
            assert len(rest["events"]) == 1 and rest["next_cursor"] is None
            status, typed = await _call(session, "GET", f"{url}/api/v1/events?event_type=human_review&tenant=acme",
                                        headers=ADMIN)
            assert [e["producer"] for e in typed["events"]] == ["reviewer"]
            status, bundle = await _call(session, "GET", f"{url}/api/v1/runs/run-x/evidence", headers=ADMIN)
            assert status == 200
            return bundle, timeline["log_key"]

    bundle, log_key = run(scenario())
    report = verify_bundle(bundle, log_key)
    assert report.events == 4 and report.producers == ["agent-1", "reviewer"]

    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(bundle))
    args = ["verify-evidence", str(path), "--log-key", log_key]
    assert cli_main(args) == 0

    for position in range(4):
        entry = bytearray(base64.b64decode(bundle["events"][position]["entry"]))
        for offset in (0, len(entry) // 2, len(entry) - 1):
            tampered = copy.deepcopy(bundle)
            changed = bytearray(entry)
            changed[offset] ^= 0x01
            tampered["events"][position]["entry"] = base64.b64encode(bytes(changed)).decode()
            with pytest.raises(EvidenceError, match=rf"events\[{position}\]"):
                verify_bundle(tampered, log_key)
            path.write_text(json.dumps(tampered))
            assert cli_main(args) == 1
    reordered = copy.deepcopy(bundle)
    reordered["events"][0], reordered["events"][1] = reordered["events"][1], reordered["events"][0]
    with pytest.raises(EvidenceError, match="causal order"):
        verify_bundle(reordered, log_key)
    impostor = generate_signer_key("audit.e2e/log")[1]
    with pytest.raises(EvidenceError, match=r"^check 3 \(checkpoint\)"):
        verify_bundle({**bundle, "log_key": None}, impostor)
    with pytest.raises(EvidenceError, match=r"^check 2 \(log key\)"):
        verify_bundle(bundle, impostor)
    dropped = copy.deepcopy(bundle)
    dropped["registry"] = [r for r in dropped["registry"] if
                           json.loads(base64.b64decode(r["entry"]))["producer"] != "reviewer"]
    with pytest.raises(EvidenceError):
        verify_bundle(dropped, log_key)


def test_blobs_over_http(server):
    data = b"the full prompt " * 100
    digest = hashlib.sha256(data).hexdigest()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            url = server.url
            assert (await _call(session, "PUT", f"{url}/api/v1/blobs/{digest}", data=data))[0] == 401
            assert (await _call(session, "PUT", f"{url}/api/v1/blobs/{digest}", data=data, headers=ADMIN))[0] == 201
            assert (await _call(session, "PUT", f"{url}/api/v1/blobs/{digest}", data=data, headers=ADMIN))[0] == 200
            status, body = await _call(session, "PUT", f"{url}/api/v1/blobs/{'0' * 64}", data=data, headers=ADMIN)
            assert status == 422 and body["type"] == "urn:auditlog:problem:blob-hash-mismatch"
            async with session.get(f"{url}/api/v1/blobs/{digest}", headers=ADMIN) as resp:
                assert resp.status == 200 and await resp.read() == data
            assert (await _call(session, "DELETE", f"{url}/api/v1/blobs/{digest}"))[0] == 401
            before = await _size(session, url)
            status, body = await _call(session, "DELETE", f"{url}/api/v1/blobs/{digest}?reason=retention",
                                       headers=ADMIN)
            assert status == 200 and body["erasure_index"] == before
            assert (await _call(session, "GET", f"{url}/api/v1/blobs/{digest}", headers=ADMIN))[0] == 404
            status, schema = await _call(session, "GET", f"{url}/api/v1/schemas/auditlog.event/v1")
            assert status == 200 and schema["properties"]["schema"]["const"] == "auditlog.event/v1"

    run(scenario())


def test_recorder_acknowledges_with_proofs_and_fails_closed(server):
    seed, public, key_id = generate_key()
    unregistered_seed = generate_key()[0]

    async def setup():
        async with aiohttp.ClientSession() as session:
            await _register(session, server.url, type("P", (), {"name": "sdk-agent", "tenant": "acme",
                                                                 "public": public})())
            return (await _call(session, "GET", f"{server.url}/api/v1/log"))[1]["verifier_key"]

    log_key = run(setup())

    def recorder(seed=seed, key=log_key):
        return Recorder(server.url, producer="sdk-agent", signing_key=seed, log_key=key, tenant="acme",
                        actor={"type": "agent", "id": "sdk-agent"}, retries=1, backoff=0.01, token=TOKEN)

    ran = []
    with recorder().action("run-sdk", context={"case_id": "c-1"}) as action:
        ran.append("sync")
        action.record("tool_call", output=recorder().put_blob(b"result"))
    assert ran == ["sync"] and action.intent.index < action.outcome.index

    with pytest.raises(ZeroDivisionError):
        with recorder().action("run-sdk") as failing:
            1 / 0
    assert failing.outcome.event["outcome"]["status"] == "failure"
    assert failing.outcome.event["error"]["code"] == "ZeroDivisionError"

    with pytest.raises(RecorderError):
        with recorder(seed=unregistered_seed).action("run-sdk"):
            ran.append("must not run: unknown key")
    other_log_key = generate_signer_key("audit.e2e/log")[1]
    with pytest.raises(RecorderError):
        with recorder(key=other_log_key).action("run-sdk"):
            ran.append("must not run: unverifiable checkpoint")
    dead = Recorder("http://127.0.0.1:9", producer="sdk-agent", signing_key=seed, log_key=log_key, tenant="acme",
                    actor={"type": "agent", "id": "sdk-agent"}, retries=1, backoff=0.01)
    with pytest.raises(RecorderError):
        with dead.action("run-sdk"):
            ran.append("must not run: log down")

    async def async_use():
        r = recorder()
        try:
            async with r.action("run-sdk-async") as action:
                ran.append("async")
                await action.arecord("model_call")
            return action
        finally:
            await r.aclose()

    action = run(async_use())
    assert ran == ["sync", "async"] and action.outcome.duplicate is False
    timeline = run(_timeline(server.url, "run-sdk-async"))
    assert [e["event"]["event_type"] for e in timeline["events"]] == ["intent", "model_call", "outcome"]


async def _timeline(url, run_id):
    async with aiohttp.ClientSession() as session:
        return (await _call(session, "GET", f"{url}/api/v1/runs/{run_id}/timeline", headers=ADMIN))[1]


def test_registry_survives_a_restart(tmp_path):
    agent = Producer("agent-1", "acme")
    first = Server(tmp_path / "data").start()
    try:
        async def register():
            async with aiohttp.ClientSession() as session:
                await _register(session, first.url, agent)
        run(register())
    finally:
        first.stop()
    second = Server(tmp_path / "data").start()
    try:
        async def submit():
            async with aiohttp.ClientSession() as session:
                return await _call(session, "POST", f"{second.url}/api/v1/events", json=agent.envelope(agent.event()))
        status, body = run(submit())
        assert status == 200, body
    finally:
        second.stop()
