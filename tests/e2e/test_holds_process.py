"""Legal holds and data-subject erasure on a real `auditlog serve` (SQLite), driven through the CLI as an operator
would: a hold placed on one run keeps a subject whose events are in it (key and blobs), while another subject's
erasure destroys its key and its blob; the held subject's access bundle verifies offline; the held subject is erased
once the hold is released; `auditlog verify` is VALID at the end.

The other backends and the whole lifecycle flow are tests/e2e of the evidence helper's; the in-process cases of
each rule are tests/test_holds.py, tests/test_subjects.py and tests/test_lifecycle_routes.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request

from tests.processes import ServerProcess
from tests.test_cli_contract import run
from tests.test_lifecycle_routes import Producer, event, ref


def _call(url: str, method: str, path: str, token: str | None, body=None, raw: bytes | None = None):
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_hold_keeps_a_subject_from_erasure_until_released(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        data = tmp_path / "data"
        admin = (data / "admin.token").read_text().strip()
        cli = ["--server", server.url, "--data-dir", str(data)]

        def auditlog(*argv: str) -> tuple[str, str]:
            code, out, err = run(*argv, cwd=tmp_path)
            assert code == 0, f"auditlog {' '.join(argv)}: exit {code}\n{out}\n{err}"
            return out, err

        # Two customers tokenised; a producer records one event for each, each citing a blob of its own.
        tokens = {}
        for who in ("held@example.com", "free@example.com"):
            status, body = _call(server.url, "POST", "/api/v1/vault/tokenize", admin,
                                 {"tenant": "acme", "subject": who, "values": [who]})
            assert status == 200, body
            tokens[who] = json.loads(body)["subject"]
        producer = Producer()
        status, body = _call(server.url, "POST", "/api/v1/producers", admin,
                             {"producer": producer.name, "tenants": ["acme"]})
        assert status == 201, body
        status, body = _call(server.url, "POST", f"/api/v1/producers/{producer.name}/keys", admin,
                             {"public_key": base64.b64encode(producer.public).decode(),
                              "not_before": "2020-01-01T00:00:00.000Z"})
        assert status == 201, body
        blobs = {who: f"the prompt about {who}".encode() for who in tokens}
        for blob in blobs.values():
            assert _call(server.url, "PUT", f"/api/v1/blobs/{hashlib.sha256(blob).hexdigest()}", admin,
                         raw=blob)[0] == 201
        envelopes = [producer.envelope(event(1, run_id="run-held", context={"customer_id": tokens["held@example.com"]},
                                             input=ref(blobs["held@example.com"]))),
                     producer.envelope(event(2, run_id="run-free", context={"customer_id": tokens["free@example.com"]},
                                             input=ref(blobs["free@example.com"])))]
        status, body = _call(server.url, "POST", "/api/v1/events", None, {"events": envelopes})
        assert status == 200, body

        out, _ = auditlog("hold", "place", "--tenant", "acme", "--run", "run-held", "--reason", "litigation",
                          "--reference", "case 2026-17", *cli)
        hold_id = out.split()[0]
        out, _ = auditlog("hold", "list", "--active", "--json", *cli)
        assert [json.loads(line)["hold_id"] for line in out.splitlines()] == [hold_id]

        def blob_status(who: str) -> int:
            return _call(server.url, "GET", f"/api/v1/blobs/{hashlib.sha256(blobs[who]).hexdigest()}", admin)[0]

        auditlog("subject", "access", "--tenant", "acme", "--subject", "held@example.com", "--out",
                 str(tmp_path / "held.json"), "--log-key", str(data / "log.vkey"), *cli)
        auditlog("verify-evidence", str(tmp_path / "held.json"), "--log-key", str(data / "log.vkey"))
        assert b"held@example.com" not in (tmp_path / "held.json").read_bytes()

        out, err = auditlog("subject", "erase", "--tenant", "acme", "--subject", "held@example.com",
                            "--reason", "DSR 31", "--json", *cli)
        answer = json.loads(out)
        assert (answer["complete"], answer["key_shredded"], answer["skipped"]["subject_hold"]) == (False, False, hold_id)
        assert hold_id in err and blob_status("held@example.com") == 200
        assert "held@example.com" not in out + err  # the reference is never echoed

        answer = json.loads(auditlog("subject", "erase", "--tenant", "acme", "--subject", "free@example.com",
                                     "--reason", "DSR 32", "--json", *cli)[0])
        assert (answer["complete"], answer["key_shredded"], answer["blobs_deleted"]) == (True, True, 1)
        assert blob_status("free@example.com") == 404

        auditlog("hold", "release", hold_id, "--reason", "case settled", *cli)
        answer = json.loads(auditlog("subject", "erase", "--tenant", "acme", "--subject", "held@example.com",
                                     "--reason", "DSR 31, after the hold", "--json", *cli)[0])
        assert (answer["complete"], answer["key_shredded"], answer["blobs_deleted"]) == (True, True, 1)
        assert blob_status("held@example.com") == 404

        out, _ = auditlog("verify", "--server", server.url, "--log-key", str(data / "log.vkey"))
        assert "VALID" in out
    finally:
        server.stop()
