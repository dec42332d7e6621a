"""`auditlog serve --read-database-url`: reads from a real PostgreSQL streaming replica (tests/pg_cluster.py: a
private primary and a hot standby made from it with pg_basebackup, each on its own port), with a read worker that
reads from the replica too.

What must hold: proofs, tiles and the checkpoint served agree with what was written; the checkpoint served is never
one the replica lacks: while the standby's replay is paused, writes are still acknowledged (a signed event's receipt
with its inclusion proof too), the served checkpoint and the events listed stay at the replica's state, and a proof,
tile or entry only the primary has waits, then is refused 503 with Retry-After, while /readyz and /metrics name the
lag; once replay resumes the replica catches up and all of them are served; the monitor verifies the log through
the server; with the standby stopped, reads answer 503 and writes 200.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
from nacl.signing import SigningKey

from log.audit.canonical import canonicalize
from log.audit.registry import key_id_for
from log.audit.schema import format_timestamp_ms
from log.checkpoint import open_checkpoint
from log.errors import InvalidInput
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_consistency, verify_inclusion
from log.service import Log, LogConfig
from tests.credentials import ADMIN
from tests.e2e.test_witnessed_log import wait_for
from tests.pg_cluster import streaming_replica
from tests.processes import REPO, ServerProcess, child_processes
from tests.reference_tree import mth

pytestmark = pytest.mark.usefixtures("operator_token")

BOUND = 30.0  # seconds any catching up may take here: a generous bound, never a measurement


def _until(check, what: str):
    """Poll `check()` until it returns something true (returned); fail naming `what` after BOUND seconds."""
    return wait_for(what, check, BOUND)


def _request(url: str, data: bytes | None = None, content_type: str = "application/octet-stream",
             ) -> tuple[int, dict, bytes]:
    """(status, headers, body) over a fresh connection (so the kernel spreads them over the writer and its worker)."""
    headers = {"Content-Type": content_type, **ADMIN} if data is not None else dict(ADMIN)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _post_json(url: str, document: dict) -> tuple[int, dict]:
    status, _, body = _request(url, json.dumps(document).encode(), "application/json")
    return status, json.loads(body)


def _signed_event(key: SigningKey, producer: str, run_id: str) -> dict:
    event = {"schema": "auditlog.event/v1", "event_id": str(uuid.uuid4()), "trace_id": f"tr-{run_id}",
             "run_id": run_id, "timestamp": format_timestamp_ms(int(time.time() * 1000)), "tenant": "acme",
             "actor": {"type": "agent", "id": producer}, "event_type": "intent"}
    return {"producer": producer, "key_id": key_id_for(bytes(key.verify_key)), "event": event,
            "signature": base64.b64encode(key.sign(canonicalize(event)).signature).decode()}


def _stored_size(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]


def test_reads_come_from_the_replica_and_never_ahead_of_it(tmp_path):
    with streaming_replica() as clusters:
        primary_url = clusters.primary.create_database()
        clusters.wait_replayed()  # the standby has the database too
        replica_url = clusters.standby.url()
        server = ServerProcess(tmp_path / "data", primary_url,
                               ["--read-database-url", replica_url, "--read-workers", "1",
                                "--batch-max-age-ms", "2"]).start()
        try:
            assert len(child_processes(server.pid, "serve-reads")) == 1
            assert any("reads from the replica" in line for line in server.output), server.output
            _check(server, clusters, primary_url, replica_url, tmp_path)
        finally:
            server.kill()


def _check(server, clusters, primary_url, replica_url, tmp_path) -> None:
    status, _, body = _request(f"{server.url}/api/v1/log")
    assert status == 200, body
    info = json.loads(body)
    verifier = parse_verifier_key(info["verifier_key"])

    # 1. Entries written through the primary; a proof at each receipt's size at once (the replica replays it or the
    #    request waits for it), verified against the receipt's signed checkpoint.
    entries = [f"replicated entry {i}".encode() for i in range(24)]
    for i, entry in enumerate(entries):
        status, _, body = _request(f"{server.url}/api/v1/entries", entry)
        assert status == 200, body
        receipt = json.loads(body)
        assert receipt["index"] == i
        size = receipt["tree_size"]
        status, _, body = _request(f"{server.url}/api/v1/proof/inclusion?index={i}&tree_size={size}")
        assert status == 200, body
        signed, _ = open_checkpoint(receipt["checkpoint"].encode(), verifier, info["origin"])
        verify_inclusion(hash_leaf(entry), i, size,
                         [base64.b64decode(h) for h in json.loads(body)["hashes"]], signed.root_hash)

    # 2. Once replayed: the checkpoint, a consistency proof, the hash tile and the entry bundle served agree with
    #    the entries written.
    clusters.wait_replayed()
    size = len(entries)

    def served_checkpoint(required: bool = True):
        status, _, body = _request(f"{server.url}/checkpoint")
        if status != 200 and not required:
            return None
        assert status == 200, body
        return open_checkpoint(body, verifier, info["origin"])[0]

    checkpoint = _until(lambda: (c := served_checkpoint()).size == size and c, "the replica's checkpoint served")
    assert checkpoint.root_hash == mth(entries)
    status, _, body = _request(f"{server.url}/api/v1/proof/consistency?first=5&second={size}")
    assert status == 200, body
    verify_consistency(5, size, [base64.b64decode(h) for h in json.loads(body)["hashes"]], mth(entries[:5]),
                       checkpoint.root_hash)
    status, _, body = _request(f"{server.url}/tile/0/000.p/{size}")
    assert status == 200 and body == b"".join(hash_leaf(e) for e in entries)
    status, _, body = _request(f"{server.url}/tile/entries/000.p/{size}")
    assert status == 200 and all(entry in body for entry in entries)

    # 3. Replay paused: writes go on, and a signed event's receipt carries its inclusion proof (from the primary,
    #    at the sequencer's checkpoint); the served checkpoint and the events stay at what the replica holds, and
    #    a proof, tile or entry only the primary has waits (bounded), then is refused 503 with Retry-After.
    clusters.pause_replay()
    replayed = _stored_size(replica_url)
    assert replayed == size
    key = SigningKey.generate()
    status, body = _post_json(f"{server.url}/api/v1/producers", {"producer": "agent", "tenants": ["acme"]})
    assert status == 201, body
    status, body = _post_json(f"{server.url}/api/v1/producers/agent/keys",
                              {"public_key": base64.b64encode(bytes(key.verify_key)).decode()})
    assert status == 201, body
    envelope = _signed_event(key, "agent", "run-1")
    status, receipt = _post_json(f"{server.url}/api/v1/events", envelope)
    assert status == 200 and receipt["tree_size"] > replayed, receipt
    signed, _ = open_checkpoint(receipt["checkpoint"].encode(), verifier, info["origin"])
    verify_inclusion(base64.b64decode(receipt["leaf_hash"]), receipt["index"], receipt["tree_size"],
                     [base64.b64decode(h) for h in receipt["inclusion_proof"]], signed.root_hash)
    more = [f"entry written while replay is paused {i}".encode() for i in range(5)]
    for entry in more:
        status, _, body = _request(f"{server.url}/api/v1/entries", entry)
        assert status == 200, body
    newest = json.loads(body)["tree_size"]
    assert newest == receipt["tree_size"] + len(more) and _stored_size(primary_url) == newest
    assert _stored_size(replica_url) == replayed
    status, _, body = _request(f"{server.url}/api/v1/events?run_id=run-1")
    assert status == 200 and json.loads(body)["events"] == [], body
    assert served_checkpoint().size == replayed
    # Each refusal waits REPLICA_WAIT first: one of each kind (either process may answer).
    for path in (f"/api/v1/proof/inclusion?index={newest - 1}&tree_size={newest}",
                 f"/api/v1/proof/inclusion?leaf_hash={base64.urlsafe_b64encode(hash_leaf(more[-1])).decode()}"
                 f"&tree_size={newest}",
                 f"/tile/0/000.p/{newest}", f"/api/v1/entries/{newest - 1}"):
        status, headers, body = _request(server.url + path)
        assert status == 503, (path, body)
        problem = json.loads(body)
        assert problem["type"] == "urn:auditlog:problem:replica-behind", problem
        assert f"up to size {replayed}" in problem["detail"] and int(headers["Retry-After"]) >= 1
    # A size beyond the primary's tree too is refused at once as out of range, not waited for.
    status, _, body = _request(f"{server.url}/api/v1/proof/inclusion?index=0&tree_size={newest + 100}")
    assert status == 400, body
    status, _, body = _request(f"{server.url}/readyz")
    assert status == 200, body
    ready = json.loads(body)
    assert ready["status"] == "ready" and ready["tree_size"] == newest
    replica = ready["replica"]
    assert replica["reachable"] and replica["replay_paused"] is True, replica
    lag = newest - replayed
    assert (replica["replayed_size"], replica["primary_size"], replica["lag_entries"]) == (replayed, newest, lag)
    assert replica["lag_seconds"] > 0 and replica["replay_age_seconds"] is not None
    status, _, body = _request(f"{server.url}/metrics")
    assert status == 200
    metrics = body.decode()
    assert f"auditlog_replica_lag_entries {lag}" in metrics and "auditlog_replica_reachable 1" in metrics

    # 4. Replay resumed: the replica catches up, and the proof refused before is served and verifies.
    clusters.resume_replay()
    checkpoint = _until(lambda: (c := served_checkpoint()).size == newest and c, "the replica caught up")
    status, _, body = _request(f"{server.url}/api/v1/entries/{newest - 1}")
    assert status == 200 and base64.b64decode(json.loads(body)["data"]) == more[-1]
    status, _, body = _request(f"{server.url}/api/v1/events?run_id=run-1")
    assert status == 200 and [e["index"] for e in json.loads(body)["events"]] == [receipt["index"]], body
    status, _, body = _request(f"{server.url}/tile/0/000.p/{newest}")
    assert status == 200 and body[-32:] == hash_leaf(more[-1])
    status, _, body = _request(f"{server.url}/api/v1/proof/inclusion?index={newest - 1}&tree_size={newest}")
    assert status == 200, body
    verify_inclusion(hash_leaf(more[-1]), newest - 1, newest,
                     [base64.b64decode(h) for h in json.loads(body)["hashes"]], checkpoint.root_hash)
    _until(lambda: json.loads(_request(f"{server.url}/readyz")[2])["replica"]["lag_entries"] == 0,
           "/readyz says the replica caught up")

    # 5. The monitor verifies the whole log through the server.
    verified = subprocess.run([sys.executable, "-m", "api.cli", "verify", "--server", server.url,
                               "--key", info["verifier_key"], "--state", str(tmp_path / "monitor.json")],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout + verified.stderr

    # 6. The standby stopped: reads answer 503 (retriable), writes 200, /readyz says so; back, reads are served.
    clusters.standby.stop("fast")
    _until(lambda: _request(f"{server.url}/checkpoint")[0] == 503, "the checkpoint refused without the replica")
    for _ in range(2):
        status, headers, body = _request(f"{server.url}/checkpoint")
        assert status == 503 and "Retry-After" in headers, body
        status, _, body = _request(f"{server.url}/api/v1/proof/consistency?first=1&second={newest}")
        assert status == 503, body
        status, _, body = _request(f"{server.url}/api/v1/entries", b"written while the replica is down")
        assert status == 200, body
    status, _, body = _request(f"{server.url}/readyz")
    assert status == 200, body
    replica = json.loads(body)["replica"]
    assert replica["reachable"] is False and replica["error"], replica
    clusters.standby.start()
    _until(lambda: (c := served_checkpoint(required=False)) is not None and c.size == newest + 2,
           "reads served again once the replica is back")


@pytest.mark.parametrize("primary,replica", [
    (None, "postgresql://postgres@127.0.0.1:5432/standby"),  # the default SQLite log has no replicas
    ("postgresql://postgres@127.0.0.1:5432/primary", "sqlite:///copy.db"),
])
def test_a_read_database_is_a_postgresql_standby_beside_a_postgresql_primary(tmp_path, primary, replica):
    config = LogConfig(data_dir=tmp_path / "data", database_url=primary, read_database_url=replica,
                       origin="e2e.test/log")
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(Log.open(config))
    assert refused.value.field == "read_database_url"
    assert not config.data_dir.exists()  # refused before anything was created
