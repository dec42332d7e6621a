"""The access log against real `auditlog serve` processes with real credentials (API tokens the admin creates).

What it holds the server to:
1. reads of contents with a credential are listed with who (the token's credential and role), what, target, when,
   the client's address and the status: an auditor's events query, timeline, evidence and blob reads, a monitor's
   entry reads (also a 404 for a run that is not there);
2. reads without a credential are not recorded: the public routes, and a `--public` log's entries read anonymously;
3. entry reads the read workers answer are recorded once each, like the writer's: N reads over N fresh connections
   (spread by the kernel over writer and workers) are N records;
4. a clean shutdown (SIGTERM) loses nothing: reads made just before it are in the access log after a restart;
5. `GET /api/v1/access-log` needs an admin: 401 without a credential or with a wrong one, 403 for an auditor; its
   filters (credential, what, target, since) narrow the answer; `auditlog access-log --json` lists the same records.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from nacl.signing import SigningKey

from api.client.recorder import Recorder
from tests.processes import REPO, ServerProcess


def auditlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AUDITLOG_TOKEN": "", "AUDITLOG_ADMIN_TOKEN": ""})


def get(url: str, token: str | None = None, *, fresh: bool = True) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if fresh:
        headers["Connection"] = "close"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, body: bytes, token: str, content_type: str = "application/octet-stream") -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def make_token(server: ServerProcess, data_dir, role: str, *tenants: str) -> str:
    args = ["token", "create", "--role", role, "--server", server.url, "--data-dir", str(data_dir)]
    for tenant in tenants:
        args += ["--tenant", tenant]
    done = auditlog(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


def access_log(server: ServerProcess, admin: str, **filters) -> list[dict]:
    records, cursor = [], None
    while True:
        query = urllib.parse.urlencode({**filters, "limit": "1000", **({"cursor": cursor} if cursor else {})})
        status, body = get(f"{server.url}/api/v1/access-log?{query}", admin)
        assert status == 200, body
        answer = json.loads(body)
        records += answer["records"]
        cursor = answer["next_cursor"]
        if cursor is None:
            return records


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_reads_are_recorded_with_who_what_when_across_workers_and_a_clean_shutdown(tmp_path):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, None, ["--read-workers", "2"]).start()
    try:
        admin = (data_dir / "admin.token").read_text().strip()
        auditor = make_token(server, data_dir, "auditor", "acme")
        monitor = make_token(server, data_dir, "monitor")

        # A producer's run with a blob, so that there is something of tenant acme to read.
        seed = b"\x05" * 32
        public = base64.b64encode(bytes(SigningKey(seed).verify_key)).decode()
        for args in (["register", "--producer", "agent", "--tenant", "acme"],
                     ["add-key", "--producer", "agent", "--public-key", public]):
            done = auditlog("producer", *args, "--server", server.url, "--data-dir", str(data_dir))
            assert done.returncode == 0, done.stdout + done.stderr
        writer = make_token(server, data_dir, "writer", "acme")
        recorder = Recorder(server.url, producer="agent", signing_key=seed,
                            log_key=(data_dir / "log.vkey").read_text().strip(), tenant="acme",
                            actor={"type": "agent", "id": "agent"}, token=writer)
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        ref = recorder.put_blob(b"a prompt")
        recorder.record("intent", run_id=run_id, input=ref)
        digest = ref["sha256"]

        started = int(time.time() * 1000)
        # 1. The auditor's reads.
        assert get(f"{server.url}/api/v1/events?tenant=acme", auditor)[0] == 200
        assert get(f"{server.url}/api/v1/runs/{run_id}/timeline", auditor)[0] == 200
        assert get(f"{server.url}/api/v1/runs/{run_id}/evidence", auditor)[0] == 200
        assert get(f"{server.url}/api/v1/blobs/{digest}", auditor)[0] == 200
        assert get(f"{server.url}/api/v1/runs/no-such-run/timeline", auditor)[0] == 404
        # 2. Reads without a credential: public routes answer, entries are refused; nothing recorded either way.
        assert get(f"{server.url}/checkpoint")[0] == 200
        assert get(f"{server.url}/api/v1/proof/consistency?first=1")[0] == 200
        assert get(f"{server.url}/api/v1/entries/0")[0] == 401
        # 3. The monitor's entry reads, each on a fresh connection: the writer and both workers answer some.
        size = json.loads(get(f"{server.url}/api/v1/log")[1])["tree_size"]
        reads = 30
        for i in range(reads):
            status, _ = get(f"{server.url}/api/v1/entries/{i % size}", monitor)
            assert status == 200

        # 5. The query needs an admin.
        assert get(f"{server.url}/api/v1/access-log")[0] == 401
        assert get(f"{server.url}/api/v1/access-log", "not-a-token")[0] == 401
        assert get(f"{server.url}/api/v1/access-log", auditor)[0] == 403

        expected = 5

        def auditor_reads():
            found = [r for r in access_log(server, admin) if r["role"] == "auditor"]
            return found if len(found) >= expected else None

        mine = wait_for(auditor_reads)
        assert mine, [(r["role"], r["what"], r["target"], r["status"]) for r in access_log(server, admin)][:8]
        kinds = [(r["what"], r["status"]) for r in mine]
        assert ("events", 200) in kinds and ("timeline", 200) in kinds and ("evidence", 200) in kinds
        assert ("timeline", 404) in kinds and ("blob", 200) in kinds
        credential = mine[0]["credential"]
        assert credential.startswith("token:") and all(r["credential"] == credential for r in mine)
        assert all(r["remote"] == "127.0.0.1" and r["at_ms"] >= started - 1000 for r in mine)
        assert [r["target"] for r in mine if r["what"] == "timeline"] == [run_id, "no-such-run"]

        def entry_reads_recorded():
            found = access_log(server, admin, what="entry")
            return found if len(found) >= reads else None

        entry_reads = wait_for(entry_reads_recorded)
        assert entry_reads and len(entry_reads) == reads, f"{len(entry_reads or [])} of {reads} entry reads recorded"
        assert {r["role"] for r in entry_reads} == {"monitor"}
        assert not [r for r in access_log(server, admin) if r["role"] not in ("auditor", "monitor")], \
            "a read without a credential (or the admin's query) was recorded"

        # Filters.
        assert access_log(server, admin, credential=credential) == mine
        assert [r["target"] for r in access_log(server, admin, what="timeline", target=run_id)] == [run_id]
        cli = auditlog("access-log", "--server", server.url, f"--token={admin}", "--what", "evidence", "--json")
        assert cli.returncode == 0, cli.stderr
        assert [json.loads(line)["target"] for line in cli.stdout.splitlines()] == [run_id]

        # 4. A clean shutdown right after reads loses none of them.
        for i in range(20):
            assert get(f"{server.url}/api/v1/entries/{i % size}", monitor)[0] == 200
        server.stop()
        assert server.proc.returncode == 0, "".join(server.output[-30:])
        server = ServerProcess(data_dir, None, []).start()
        assert len(access_log(server, admin, what="entry")) >= reads + 20
    finally:
        server.stop()


def test_a_public_log_does_not_record_anonymous_reads(tmp_path):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, None, ["--public"]).start()
    try:
        admin = (data_dir / "admin.token").read_text().strip()
        post(f"{server.url}/api/v1/entries", b"public entry", admin)
        assert get(f"{server.url}/api/v1/entries/0")[0] == 200  # anonymous: allowed, not recorded
        monitor = make_token(server, data_dir, "monitor")
        assert get(f"{server.url}/api/v1/entries/0", monitor)[0] == 200  # with a credential: recorded
        # A read worker (serve's default starts them) hands the reads it answered to the writer within a second.
        records = wait_for(lambda: access_log(server, admin))
        assert [(r["role"], r["what"], r["target"]) for r in records] == [("monitor", "entry", "0")]
    finally:
        server.stop()
