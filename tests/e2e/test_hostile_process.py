"""The hostile-client corpus (tests/test_hostile.py) against `auditlog serve --read-workers 1`, on SQLite and on
PostgreSQL: every case answered as in process, whichever process takes the connection (a read worker passes most
requests on to the writer, and once answered 500 for a header it could not pass on), and the log afterwards holds
and verifies exactly what it held. NUL in a filter reaches PostgreSQL here, which refuses it in text."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import urllib.request

from log.audit.admin import ADMIN_TOKEN_ENV
from log.checkpoint import open_checkpoint
from log.note_keys import parse_verifier_key
from tests.processes import child_processes
from tests.reference_tree import mth
from tests.test_hostile import ADMIN, ADMIN_TOKEN, CASES, raw_request

ROUNDS = 3  # each case on three connections: the kernel spreads them over the writer and its worker


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={ADMIN[0].decode(): ADMIN[1].decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_the_corpus_over_a_writer_and_its_read_worker(server_factory, monkeypatch):
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN_TOKEN)
    server = server_factory(["--read-workers", "1"]).start()
    assert len(child_processes(server.proc.pid, "serve-reads")) == 1
    port = int(server.url.rsplit(":", 1)[1])
    entries = [b"held %d" % i for i in range(10)]
    for entry in entries:
        request = urllib.request.Request(f"{server.url}/api/v1/entries", data=entry,
                                         headers={"Content-Type": "application/octet-stream", ADMIN[0].decode(): ADMIN[1].decode()})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    async def run_corpus() -> list[str]:
        failures = []
        for case in CASES:
            for _ in range(ROUNDS):
                status, headers, body = await raw_request(port, case)
                problem = json.loads(body) if headers.get("content-type", "").startswith(
                    "application/problem+json") else {}
                if (status, problem.get("status"), problem.get("field")) != (case.status, case.status, case.field):
                    failures.append(f"{case.name}: got {status} {body[:200]!r}")
        return failures

    failures = asyncio.run(run_corpus())
    assert not failures, "\n".join(failures)

    # A gzip-encoded batch is taken whichever process reads it (a worker passed its Content-Encoding on with the
    # body it had already decoded, and the writer refused it).
    for i in range(ROUNDS):
        entry = b"gzipped %d" % i
        body = gzip.compress(json.dumps({"entries": [base64.b64encode(entry).decode()]}).encode())
        request = urllib.request.Request(f"{server.url}/api/v1/entries", data=body,
                                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                                  ADMIN[0].decode(): ADMIN[1].decode()})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["entries"][0]["index"] == len(entries)
        entries.append(entry)

    info = json.loads(_get(f"{server.url}/api/v1/log"))
    checkpoint, _ = open_checkpoint(_get(f"{server.url}/checkpoint"), parse_verifier_key(info["verifier_key"]),
                                    info["origin"])
    assert checkpoint.size == len(entries) and checkpoint.root_hash == mth(entries)
    server.stop()
    assert server.proc.returncode == 0
