"""`auditlog serve --read-workers 1` end to end, on SQLite and on PostgreSQL.

Every request opens a new connection, so the kernel spreads them over the writer and its worker. What must hold
whichever process answers: writes are acknowledged once, with consecutive indices; a proof for a size the client
was just acknowledged is served (the worker re-reads the head) and verifies against the signed checkpoint; errors
are the same problems; the worker does real work; it stops with the writer, even when the writer is SIGKILLed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from log.checkpoint import open_checkpoint
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_consistency, verify_inclusion
from tests.credentials import ADMIN
from tests.processes import child_processes
from tests.reference_tree import mth


# The servers here take the operator's admin token (tests/conftest.py operator_token), which every request sends.
pytestmark = pytest.mark.usefixtures("operator_token")


def _request(url: str, data: bytes | None = None, content_type: str = "application/octet-stream"):
    """(status, body) over a fresh connection (urllib never reuses one)."""
    headers = {"Content-Type": content_type, **ADMIN} if data is not None else dict(ADMIN)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _children(pid: int) -> list[int]:
    return child_processes(pid, "serve-reads")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_writes_proofs_and_errors_are_the_same_whichever_process_answers(server_factory):
    server = server_factory(["--read-workers", "1"]).start()
    [worker] = _children(server.proc.pid)
    status, body = _request(f"{server.url}/api/v1/log")
    assert status == 200
    info = json.loads(body)
    verifier = parse_verifier_key(info["verifier_key"])

    entries = [f"read-worker entry {i}".encode() for i in range(120)]
    for i, entry in enumerate(entries):
        status, body = _request(f"{server.url}/api/v1/entries", entry)
        assert status == 200, body
        receipt = json.loads(body)
        assert receipt["index"] == i
        # At once, on another connection: a proof at exactly the size just acknowledged.
        size = receipt["tree_size"]
        status, body = _request(f"{server.url}/api/v1/proof/inclusion?index={i}&tree_size={size}")
        assert status == 200, body
        checkpoint, _ = open_checkpoint(receipt["checkpoint"].encode(), verifier, info["origin"])
        proof = [base64.b64decode(h) for h in json.loads(body)["hashes"]]
        verify_inclusion(hash_leaf(entry), i, size, proof, checkpoint.root_hash)

    worker_cpu = _cpu_seconds(worker)
    status, body = _request(f"{server.url}/checkpoint")
    assert status == 200
    checkpoint, _ = open_checkpoint(body, verifier, info["origin"])
    assert checkpoint.size == len(entries) and checkpoint.root_hash == mth(entries)
    for first in range(1, len(entries) + 1, 7):
        for _ in range(3):
            status, body = _request(f"{server.url}/api/v1/proof/consistency?first={first}&second={len(entries)}")
            assert status == 200, body
            proof = [base64.b64decode(h) for h in json.loads(body)["hashes"]]
            verify_consistency(first, len(entries), proof, mth(entries[:first]), checkpoint.root_hash)
        status, body = _request(f"{server.url}/api/v1/entries/{first - 1}")
        assert status == 200 and base64.b64decode(json.loads(body)["data"]) == entries[first - 1]
    assert _cpu_seconds(worker) > worker_cpu, "the read worker answered nothing"

    # The same problems from either process: a bad index, an unknown route, a write refused by the writer.
    for _ in range(6):
        status, body = _request(f"{server.url}/api/v1/proof/inclusion?index=500&tree_size={len(entries)}")
        assert status == 400 and json.loads(body)["type"] == "urn:auditlog:problem:invalid-input", body
        status, body = _request(f"{server.url}/api/v1/entries", b"{}", content_type="text/plain")
        assert status == 415 and "Content-Type" in json.loads(body)["detail"]
        status, body = _request(f"{server.url}/no/such/route")
        assert status == 404
        status, body = _request(f"{server.url}/readyz")  # a worker passes readiness on: the writer's to tell
        assert status == 200 and json.loads(body)["status"] == "ready", body
        status, body = _request(f"{server.url}/api/v1/entries", b"")  # refused where it arrives, never batched
        assert status == 400 and json.loads(body)["field"] == "body", body

    # A burst of concurrent writes (a worker sends those it gets to the writer in batches): each acknowledged once,
    # at its own index, and the log holds exactly them there.
    from concurrent.futures import ThreadPoolExecutor

    burst = [f"burst entry {i}".encode() for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda entry: _request(f"{server.url}/api/v1/entries", entry), burst))
    by_index = {}
    for entry, (status, body) in zip(burst, answers):
        assert status == 200, body
        receipt = json.loads(body)
        assert base64.b64decode(receipt["leaf_hash"]) == hash_leaf(entry)
        by_index[receipt["index"]] = entry
    assert sorted(by_index) == list(range(len(entries), len(entries) + len(burst)))
    status, body = _request(f"{server.url}/checkpoint")
    checkpoint, _ = open_checkpoint(body, verifier, info["origin"])
    assert checkpoint.root_hash == mth(entries + [by_index[i] for i in sorted(by_index)])

    server.stop()
    assert server.proc.returncode == 0
    assert _gone(worker, 10)


def test_a_worker_stops_when_its_writer_is_killed(server_factory):
    server = server_factory(["--read-workers", "1"]).start()
    [worker] = _children(server.proc.pid)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert _gone(worker, 10), "the read worker outlived its writer"
    restarted = server_factory(["--read-workers", "1"])  # the same data dir: the stale socket is replaced
    restarted.data_dir = server.data_dir
    restarted.start()
    status, _ = _request(f"{restarted.url}/api/v1/entries", b"after a restart")
    assert status == 200
