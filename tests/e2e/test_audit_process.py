"""The audit personality end to end against real `auditlog serve` processes, on SQLite and on PostgreSQL.

Everything goes through the process boundary a deployment has: the admin token the server writes to
`<data dir>/admin.token` on first start, the `auditlog producer|timeline|verify-evidence` commands run as
subprocesses, raw HTTP for producers, and the SDK (`api.client.recorder.Recorder`). What it holds the server to:

1. registry changes (producer registered, key added) are themselves log entries, readable back as
   registry-change records;
2. 30 signed events, each sent 5 times concurrently byte for byte, land exactly once: one index per event, one
   non-duplicate answer per event, the tree grows by exactly 30;
3. every refusal (unknown producer, revoked key, expired key, bad signature, foreign tenant, event_id reused for
   other content, invalid event) answers a problem+json body naming the cause and stores nothing;
4. `auditlog timeline` prints a run in causal order (neither log order nor timestamp order), `--evidence` exports a
   bundle that `auditlog verify-evidence` accepts with the server stopped, and rejects, naming the event, once one
   byte of one event entry changes;
5. the SDK's fail-closed `with recorder.action(...)` records intent and outcome while the server is up and does
   not run the block once the server process is gone; restarted, the log is as it was and its registry, replayed
   from the log, still admits the SDK's key.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey

from api.client.recorder import Recorder, RecorderError
from log.audit.canonical import canonicalize
from log.audit.errors import EvidenceError
from log.audit.evidence import verify_bundle
from log.audit.records import parse_entry
from log.audit.registry import key_id_for
from log.audit.schema import format_timestamp_ms
from log.checkpoint import open_checkpoint
from log.note_keys import parse_verifier_key
from tests.processes import REPO, child_processes

PROBLEM = "application/problem+json"


# --- helpers ------------------------------------------------------------------------------------------------

def auditlog(*args: str) -> subprocess.CompletedProcess:
    """Run the `auditlog` command (as `python -m api.cli`) to completion."""
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Producer:
    """A producer's identity as the test holds it: name, tenant and an Ed25519 key."""

    def __init__(self, name: str, tenant: str = "acme", key: SigningKey | None = None):
        self.name, self.tenant = name, tenant
        self.key = key or SigningKey.generate()
        self.public = bytes(self.key.verify_key)
        self.public_b64 = base64.b64encode(self.public).decode()
        self.key_id = key_id_for(self.public)

    def event(self, run_id: str, event_type: str = "intent", parent: str | None = None, ts: int | None = None,
              **fields) -> dict:
        event = {"schema": "auditlog.event/v1", "event_id": str(uuid.uuid4()), "trace_id": f"tr-{run_id}",
                 "run_id": run_id, "timestamp": format_timestamp_ms(_now_ms() if ts is None else ts),
                 "tenant": self.tenant, "actor": {"type": "agent", "id": self.name}, "event_type": event_type,
                 "context": {"case_id": f"case-{run_id}"}, **fields}
        if parent is not None:
            event["parent_event_id"] = parent
        return event

    def envelope(self, event: dict, key: SigningKey | None = None, key_id: str | None = None) -> dict:
        signature = (key or self.key).sign(canonicalize(event)).signature
        return {"producer": self.name, "key_id": key_id or self.key_id, "event": event,
                "signature": base64.b64encode(signature).decode()}


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kwargs):
    async with session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        parsed = json.loads(body) if body and resp.content_type.endswith("json") else body
        return resp.status, resp.content_type, parsed


async def _size(session, url) -> int:
    status, _, info = await _call(session, "GET", f"{url}/api/v1/log")
    assert status == 200
    return info["tree_size"]


async def _entry(session, url, index: int, admin: dict) -> bytes:
    status, _, body = await _call(session, "GET", f"{url}/api/v1/entries/{index}", headers=admin)
    assert status == 200, body
    return base64.b64decode(body["data"])


async def _metric(session, url, name: str, admin: dict) -> int:
    async with session.get(f"{url}/metrics", headers=admin) as resp:
        assert resp.status == 200
        text = await resp.text()
    match = re.search(rf"^{re.escape(name)} (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _cli_index(result: subprocess.CompletedProcess) -> int:
    """The index `auditlog producer ...` reports for the registry change it made."""
    assert result.returncode == 0, result.stderr
    return int(re.search(r"logged at index (\d+)", result.stdout).group(1))


def _admin_token(data_dir: Path) -> str:
    return (data_dir / "admin.token").read_text().strip()


def _admin_headers(data_dir: Path) -> dict:
    return {"Authorization": f"Bearer {_admin_token(data_dir)}"}


async def _register(session, url, admin: dict, producer: Producer) -> None:
    """Register a producer and its key through the admin API."""
    status, _, body = await _call(session, "POST", f"{url}/api/v1/producers", headers=admin,
                                  json={"producer": producer.name, "tenants": [producer.tenant]})
    assert status == 201, body
    status, _, body = await _call(session, "POST", f"{url}/api/v1/producers/{producer.name}/keys", headers=admin,
                                  json={"public_key": producer.public_b64})
    assert status == 201, body


def _verifier_processes(pid: int) -> list[int]:
    return child_processes(pid, "log.audit.verifier")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_verifier_processes_start_with_the_first_event_check_events_and_die_with_the_server(server_factory):
    server = server_factory(["--verify-processes", "2"]).start()
    url, agent, stranger = server.url, Producer("agent-1"), Producer("agent-2")
    assert _verifier_processes(server.proc.pid) == [], "no signed event yet: no verifier process"

    async def scenario():
        async with aiohttp.ClientSession() as session:
            await _register(session, url, _admin_headers(server.data_dir), agent)
            checked_before = 0
            for attempt in range(100):  # the first batches are checked by the server while the children start
                forged = agent.envelope(agent.event("run-v"), key=stranger.key)
                batch = [agent.envelope(agent.event("run-v")), forged, agent.envelope(agent.event("run-v"))]
                status, _, body = await _call(session, "POST", f"{url}/api/v1/events", json={"events": batch})
                assert status == 200, body
                assert [r["status"] for r in body["results"]] == [200, 401, 200]
                assert body["results"][1]["type"] == "urn:auditlog:problem:bad-signature"
                checked = await _metric(session, url, 'auditlog_audit_signatures_checked_total{where="process"}',
                                              _admin_headers(server.data_dir))
                if checked > checked_before and attempt > 0:
                    return checked
                checked_before = checked
                await asyncio.sleep(0.1)
            raise AssertionError("no signature was ever checked in a verifier process")

    assert asyncio.run(scenario()) >= 3
    verifiers = _verifier_processes(server.proc.pid)
    assert len(verifiers) == 2
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in verifiers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in verifiers), "a verifier process outlived its server"


# --- 1, 2, 3: the registry, exactly-once ingest, refusals ----------------------------------------------------

def test_registry_is_logged_events_land_once_and_refusals_store_nothing(server_factory):
    server = server_factory().start()
    url, data_dir = server.url, server.data_dir
    agent = Producer("agent-1")
    assert (data_dir / "admin.token").exists(), "the server writes its admin token on first start"

    async def sizes():
        async with aiohttp.ClientSession() as session:
            return await _size(session, url)

    # 1. Registration through the CLI (admin token read from the data dir); each change is a log entry.
    start = asyncio.run(sizes())
    register = auditlog("producer", "register", "--producer", agent.name, "--tenant", agent.tenant,
                        "--reason", "e2e", "--server", url, "--data-dir", str(data_dir))
    registered_at = _cli_index(register)
    add_key = auditlog("producer", "add-key", "--producer", agent.name, "--public-key", agent.public_b64,
                       "--server", url, "--data-dir", str(data_dir))
    key_added_at = _cli_index(add_key)

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            admin = _admin_headers(data_dir)
            assert await _size(session, url) == start + 2
            assert (registered_at, key_added_at) == (start, start + 1)
            kind, change = parse_entry(await _entry(session, url, registered_at, admin))
            assert kind == "registry-change"
            assert (change["change"], change["producer"], change["tenants"], change["reason"]) == (
                "producer-registered", agent.name, (agent.tenant,), "e2e")
            kind, change = parse_entry(await _entry(session, url, key_added_at, admin))
            assert kind == "registry-change"
            assert (change["change"], change["producer"], change["key_id"], change["public_key"]) == (
                "key-added", agent.name, agent.key_id, agent.public)
            status, _, listed = await _call(session, "GET", f"{url}/api/v1/producers", headers=admin)
            assert status == 200 and [(p["producer"], [k["key_id"] for k in p["keys"]]) for p in
                                      listed["producers"]] == [(agent.name, [agent.key_id])]

            # 2. Exactly once: 30 events, each signed envelope sent 5 times at once, unchanged: three times alone,
            # twice inside a one-envelope batch.
            before = await _size(session, url)
            accepted_before = await _metric(session, url, "auditlog_audit_events_accepted_total", admin)
            envelopes = [agent.envelope(agent.event(f"run-{i % 3}")) for i in range(30)]
            json_body = {"Content-Type": "application/json"}
            sends = [_call(session, "POST", f"{url}/api/v1/events", headers=json_body,
                           data=json.dumps({"events": [envelope]} if attempt % 2 else envelope).encode())
                     for envelope in envelopes for attempt in range(5)]
            answers = await asyncio.gather(*sends)
            indices: dict[str, set[int]] = {}
            fresh: dict[str, int] = {}
            for status, _, answer in answers:
                assert status == 200, answer
                receipt = answer["results"][0] if "results" in answer else answer
                assert receipt["status"] == 200, receipt
                indices.setdefault(receipt["event_id"], set()).add(receipt["index"])
                fresh[receipt["event_id"]] = fresh.get(receipt["event_id"], 0) + (not receipt["duplicate"])
            assert len(indices) == 30 and all(len(found) == 1 for found in indices.values()), indices
            assert all(count == 1 for count in fresh.values()), f"non-duplicate answers per event: {fresh}"
            assert sorted(i for found in indices.values() for i in found) == list(range(before, before + 30))
            assert await _size(session, url) == before + 30
            assert await _metric(session, url, "auditlog_audit_events_accepted_total", admin) == accepted_before + 30
            logged = envelopes[0]["event"]

            # 3. Refusals. Keys to refuse with: one revoked, one valid from 3 h to 2 h ago (expired).
            revoked, expired = Producer(agent.name), Producer(agent.name)
            status, _, body = await _call(session, "POST", f"{url}/api/v1/producers/{agent.name}/keys",
                                          headers=admin, json={"public_key": revoked.public_b64})
            assert status == 201, body
            past = _now_ms() - 3 * 3_600_000
            status, _, body = await _call(
                session, "POST", f"{url}/api/v1/producers/{agent.name}/keys", headers=admin,
                json={"public_key": expired.public_b64, "not_before": format_timestamp_ms(past),
                      "not_after": format_timestamp_ms(past + 3_600_000)})
            assert status == 201, body
            return revoked, expired, logged

    revoked, expired, logged = asyncio.run(scenario())
    revoke = auditlog("producer", "revoke-key", "--producer", agent.name, "--key-id", revoked.key_id,
                      "--reason", "compromised", "--server", url, "--data-dir", str(data_dir))
    kind, change = parse_entry(asyncio.run(_fetch_entry(url, _cli_index(revoke), _admin_headers(data_dir))))
    assert (kind, change["change"], change["key_id"]) == ("registry-change", "key-revoked", revoked.key_id)

    stranger = Producer("stranger")
    other = Producer("agent-2")
    invalid = agent.event("run-bad")
    del invalid["tenant"]
    invalid["event_type"] = "not a token!"
    altered = agent.envelope(agent.event("run-bad"))
    altered["event"]["event_type"] = "outcome"
    reused = copy.deepcopy(logged)
    reused["event_type"] = "denial"
    in_validity = _now_ms() - 2 * 3_600_000 - 60_000  # inside the expired key's validity period
    cases = [
        # (name, envelope, status, problem code, a word the detail must contain)
        ("unknown producer", stranger.envelope(stranger.event("run-bad")), 401, "unknown-producer", "stranger"),
        ("revoked key", revoked.envelope(revoked.event("run-bad")), 401, "key-revoked", "revoked"),
        ("expired key", expired.envelope(expired.event("run-bad", ts=in_validity)), 401, "key-expired",
         "retired"),
        ("expired key, timestamp now", expired.envelope(expired.event("run-bad")), 401, "key-expired", "retired"),
        ("signed by another key", agent.envelope(agent.event("run-bad"), key=other.key), 401, "bad-signature",
         "signature"),
        ("altered after signing", altered, 401, "bad-signature", "signature"),
        ("foreign tenant", agent.envelope(agent.event("run-bad") | {"tenant": "globex"}), 403,
         "tenant-forbidden", "globex"),
        ("event_id reused for other content", agent.envelope(reused), 409, "event-conflict", logged["event_id"]),
        ("invalid event", agent.envelope(invalid), 422, "invalid-event", "(and 1 more)"),
    ]

    async def refusals():
        async with aiohttp.ClientSession() as session:
            before = await _size(session, url)
            conflicts = await _metric(session, url, "auditlog_audit_events_conflict_total", _admin_headers(data_dir))
            for name, envelope, want_status, code, word in cases:
                status, content_type, body = await _call(session, "POST", f"{url}/api/v1/events", json=envelope)
                assert (status, content_type) == (want_status, PROBLEM), (name, status, body)
                assert body["type"] == f"urn:auditlog:problem:{code}", (name, body)
                assert body["status"] == want_status and body["title"], (name, body)
                assert word in body["detail"], (name, body["detail"])
                if code == "invalid-event":
                    fields = {error["field"] for error in body["errors"]}
                    assert {"$.event.tenant", "$.event.event_type"} <= fields, body["errors"]
                    assert all(error["message"] for error in body["errors"])
            assert await _size(session, url) == before, "a refusal stored something"
            assert await _metric(session, url, "auditlog_audit_events_conflict_total", _admin_headers(data_dir)) == conflicts + 1
            # The refused retry did not disturb the original: it is still answered as a duplicate.
            status, _, body = await _call(session, "POST", f"{url}/api/v1/events", json=agent.envelope(logged))
            assert status == 200 and body["duplicate"] and body["event_id"] == logged["event_id"]
            # Registry changes without the admin token are refused and store nothing either.
            status, content_type, body = await _call(session, "POST", f"{url}/api/v1/producers",
                                                     json={"producer": "intruder", "tenants": ["acme"]})
            assert (status, content_type, body["type"]) == (401, PROBLEM, "urn:auditlog:problem:unauthenticated")
            assert await _size(session, url) == before

    asyncio.run(refusals())
    server.stop()
    assert server.proc.returncode == 0, "".join(server.output)


async def _fetch_entry(url: str, index: int, admin: dict) -> bytes:
    async with aiohttp.ClientSession() as session:
        return await _entry(session, url, index, admin)


# --- 4, 5: timelines, offline evidence, the fail-closed SDK --------------------------------------------------

def _table_rows(output: str) -> list[dict]:
    """The rows of `auditlog timeline`'s table, keyed by its header."""
    lines = output.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("#"))
    names = lines[header_at].split()
    assert set(lines[header_at + 1]) <= {"-", " "}, "a rule under the header"
    rows = []
    for line in lines[header_at + 2:]:
        if not line.strip() or line.startswith("note:"):
            break
        # The time column holds one space ("2026-01-01 12:00:00.000"): split it back together.
        cells = line.split()
        cells = cells[:2] + [" ".join(cells[2:4])] + cells[4:]
        rows.append(dict(zip(names[:2] + ["time"] + names[4:], cells)))
    return rows


def test_timeline_evidence_offline_and_sdk_fail_closed(server_factory, tmp_path):
    server = server_factory().start()
    url, data_dir = server.url, server.data_dir
    log_key = (data_dir / "log.vkey").read_text().strip()
    agent, reviewer = Producer("agent-1"), Producer("reviewer")

    # The SDK's producer key comes from `auditlog producer keygen`.
    seed_file = tmp_path / "sdk.seed"
    keygen = auditlog("producer", "keygen", "--out", str(seed_file))
    assert keygen.returncode == 0, keygen.stderr
    sdk_seed = base64.b64decode(seed_file.read_text())
    sdk = Producer("sdk-agent", key=SigningKey(sdk_seed))
    assert sdk.public_b64 in keygen.stdout and sdk.key_id in keygen.stdout

    run_id = f"run-{uuid.uuid4().hex[:8]}"
    # Causal order differs from both log order (children are submitted first) and timestamp order (each child is
    # dated before its parent, within the keys' validity): only the parent links give intent, model_call,
    # human_review, outcome.
    base = _now_ms() + 2_000
    intent = agent.event(run_id, "intent", ts=base + 300)
    call = agent.event(run_id, "model_call", parent=intent["event_id"], ts=base + 200)
    review = reviewer.event(run_id, "human_review", parent=call["event_id"], ts=base + 100,
                            actor={"type": "user", "id": "reviewer-7"})
    done = agent.event(run_id, "outcome", parent=review["event_id"], ts=base, outcome={"status": "success"})
    causal = [intent, call, review, done]

    async def setup():
        async with aiohttp.ClientSession() as session:
            admin = _admin_headers(data_dir)
            for producer in (agent, reviewer, sdk):
                await _register(session, url, admin, producer)
            indices = {}
            for producer, event in ((agent, done), (reviewer, review), (agent, call), (agent, intent)):
                status, _, body = await _call(session, "POST", f"{url}/api/v1/events",
                                              json=producer.envelope(event))
                assert status == 200, body
                indices[event["event_id"]] = body["index"]
            status, _, body = await _call(session, "POST", f"{url}/api/v1/events",
                                          json=agent.envelope(agent.event("some-other-run")))
            assert status == 200, body
            return indices

    indices = asyncio.run(setup())
    assert [indices[e["event_id"]] for e in causal] == sorted(indices.values(), reverse=True)

    # 4a. The timeline, as a table in causal order.
    shown = auditlog("timeline", "--run", run_id, "--server", url, "--log-key", log_key, "--token",
                     _admin_token(data_dir))
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}: 4 events" in shown.stdout
    rows = _table_rows(shown.stdout)
    assert [row["type"] for row in rows] == ["intent", "model_call", "human_review", "outcome"], shown.stdout
    assert [row["event"] for row in rows] == [e["event_id"] for e in causal]
    assert [row["index"] for row in rows] == [str(indices[e["event_id"]]) for e in causal]
    assert [row["parent"] for row in rows] == ["-"] + [e["event_id"] for e in causal[:-1]]
    assert [row["producer"] for row in rows] == ["agent-1", "agent-1", "reviewer", "agent-1"]
    assert rows[2]["actor"] == "user:reviewer-7"

    # 4b. The evidence bundle, verified by the CLI against the log key before it is written.
    bundle_file = tmp_path / "evidence.json"
    exported = auditlog("timeline", "--run", run_id, "--server", url, "--evidence", str(bundle_file),
                        "--log-key", log_key, f"--token={_admin_token(data_dir)}")
    assert exported.returncode == 0, exported.stderr
    assert "verified: 4 events" in exported.stdout and bundle_file.exists()

    # 5a. The SDK with the server up: the block runs once the intent is acknowledged; intent and outcome logged.
    def recorder() -> Recorder:
        return Recorder(url, producer="sdk-agent", signing_key=sdk_seed, log_key=log_key, tenant="acme",
                        actor={"type": "agent", "id": "sdk-agent"}, retries=2, backoff=0.05, timeout=5,
                        token=_admin_token(data_dir))

    ran: list[str] = []
    sdk_run = f"sdk-{uuid.uuid4().hex[:8]}"
    with recorder().action(sdk_run, context={"case_id": "case-sdk"}) as action:
        ran.append("up")
        action.record("tool_call")
    assert ran == ["up"]
    assert action.intent.index < action.outcome.index and not action.outcome.duplicate
    assert action.outcome.event["parent_event_id"] == action.intent.event["event_id"]
    assert action.outcome.event["outcome"] == {"status": "success"}

    async def sdk_timeline():
        async with aiohttp.ClientSession() as session:
            status, _, body = await _call(session, "GET", f"{url}/api/v1/runs/{sdk_run}/timeline",
                                          headers=_admin_headers(data_dir))
            assert status == 200, body
            return body, await _size(session, url)

    timeline, size_before_stop = asyncio.run(sdk_timeline())
    assert [e["event"]["event_type"] for e in timeline["events"]] == ["intent", "tool_call", "outcome"]
    assert [e["index"] for e in timeline["events"]][::2] == [action.intent.index, action.outcome.index]

    # The server stops: what follows is offline.
    server.stop()
    assert server.proc.returncode == 0, "".join(server.output)

    # 4c. Offline verification; then one flipped byte in one event's entry, at three places in the entry.
    verified = auditlog("verify-evidence", str(bundle_file), "--log-key", log_key)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK: run {run_id}: 4 events from agent-1, reviewer")
    bundle = json.loads(bundle_file.read_text())
    assert [json.loads(base64.b64decode(e["entry"]))["event"]["event_id"] for e in bundle["events"]] == [
        e["event_id"] for e in causal]
    entry = base64.b64decode(bundle["events"][2]["entry"])
    for offset in (0, len(entry) // 2, len(entry) - 1):
        tampered = copy.deepcopy(bundle)
        flipped = bytearray(entry)
        flipped[offset] ^= 0x01
        tampered["events"][2]["entry"] = base64.b64encode(bytes(flipped)).decode()
        with pytest.raises(EvidenceError, match=r"events\[2\].*not included in the checkpoint"):
            verify_bundle(tampered, log_key)
    # The command, once (a process start costs a second): non-zero, naming the check and the event.
    tampered_file = tmp_path / "tampered.json"
    tampered_file.write_text(json.dumps(tampered))
    refused = auditlog("verify-evidence", str(tampered_file), "--log-key", log_key)
    assert refused.returncode == 1, refused.stdout
    assert "verification failed: check 5 (events)" in refused.stderr and "events[2]" in refused.stderr, refused.stderr
    assert "not included in the checkpoint" in refused.stderr, refused.stderr
    # The bundle's checkpoint is the log's and covers every event: only the flipped bytes were at fault.
    checkpoint, _ = open_checkpoint(bundle["checkpoint"].encode(), parse_verifier_key(log_key))
    assert checkpoint.size > max(indices.values())

    # 5b. The SDK with the server gone: the intent cannot be delivered, so the block does not run.
    with pytest.raises(RecorderError, match="attempts"):
        with recorder().action(f"sdk-down-{uuid.uuid4().hex[:8]}"):
            ran.append("down")
    assert ran == ["up"]

    # Restarted on the same data, the log is as it was when it stopped, and the registry replayed from it still
    # admits the SDK's key.
    restarted = server_factory().start()

    async def after_restart():
        async with aiohttp.ClientSession() as session:
            return await _size(session, restarted.url)

    assert asyncio.run(after_restart()) == size_before_stop
    again = Recorder(restarted.url, producer="sdk-agent", signing_key=sdk_seed, log_key=log_key, tenant="acme",
                     actor={"type": "agent", "id": "sdk-agent"}, retries=2, backoff=0.05, timeout=5)
    assert again.record("intent", run_id=f"sdk-after-{uuid.uuid4().hex[:8]}").index == size_before_stop
    restarted.stop()
