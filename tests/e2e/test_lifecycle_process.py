"""The records lifecycle of issue 20 end to end, on a real `auditlog serve` process, on SQLite and on PostgreSQL,
through the SDK and the `auditlog` commands as an organisation would use them:

 1. a producer tokenises two customers' identifiers (Recorder.tokenize) and records events that carry the tokens,
    with payloads in blobs; the vault never puts a value in the log;
 2. a vault-reader detokenises with a purpose (the answer names the log entry that recorded who asked, which tokens
    by hash, and why); without a purpose, or with a writer's credential, it is refused;
 3. a legal hold on one run; retention policies (tool calls and their payloads kept 0 days); a retention run prunes
    the tool call of the other run and deletes its payload, keeps what the hold covers (counted by hold id), and is
    itself a log entry whose deletion list anyone recomputes; a pruned entry answers 410 naming that entry;
 4. the hold released, a second run takes what it kept;
 5. one customer erased (crypto-shredding: detokenising the token then answers "erased"; the customer's payload
    deleted, logged);
 6. the evidence bundles of both runs, exported after all this, verify offline and state each deletion: which
    entry or blob or subject, by which log entry, when, under which policy (a forged claim fails); the other
    customer's access request exports its events as a bundle that verifies;
 7. the log archived, the archive verified offline, served read-only, and a proof checked against it;
and `auditlog verify` (one state file: each round also proves the log consistent with the last) VALID before,
between and after every deletion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from pathlib import Path

from api.cli.main import main as cli_main
from api.client.evidence import verify_evidence
from log.audit.evidence import FORMAT
from tests.processes import ServerProcess
from tests.test_access_control import call, create_token, tenant_recorder

TENANT = "acme"


class Cli:
    """`auditlog` commands run in this process (`api.cli.main.main`: the code the command runs), output captured."""

    def __init__(self, capsys, url: str, log_key: str):
        self.capsys, self.url, self.log_key = capsys, url, log_key

    def __call__(self, *args: str, server: bool = True) -> tuple[int, str]:
        self.capsys.readouterr()
        code = cli_main([*args, *(["--server", self.url] if server else [])])
        out, err = self.capsys.readouterr()
        return code, out + err

    def ok(self, *args: str, server: bool = True) -> str:
        code, out = self(*args, server=server)
        assert code == 0, f"auditlog {' '.join(args)} exited {code}: {out}"
        return out

    def logged_index(self, *args: str) -> int:
        out = self.ok(*args)
        return int(out.rsplit("logged at index ", 1)[1].split()[0])


def _json(body: bytes) -> dict:
    return json.loads(body)


def test_records_lifecycle(tmp_path, database_url, operator_token, capsys):
    data = tmp_path / "data"
    server = ServerProcess(data, database_url, ["--retention-interval", "0"]).start()
    try:
        _lifecycle(tmp_path, data, server, database_url, operator_token, capsys)
    finally:
        server.stop()


def _lifecycle(tmp_path: Path, data: Path, server: ServerProcess, database_url, admin: str, capsys) -> None:
    url = server.url
    log_key = (data / "log.vkey").read_text().strip()
    cli = Cli(capsys, url, log_key)
    state = tmp_path / "verify.state"

    def log_is_valid() -> None:
        cli.ok("verify", "--log-key", log_key, "--state", str(state))

    # 1. Tokens at the boundary: the producer records tokens, never the identifiers.
    writer, _ = create_token(url, admin, "writer", [TENANT])
    vault_reader, _ = create_token(url, admin, "vault-reader", [TENANT])
    recorder = tenant_recorder(url, admin, log_key, TENANT, writer)
    c42, mail42 = recorder.tokenize(["customer-42", "alice@example.com"], subject="customer-42")
    (c7,) = recorder.tokenize(["customer-7"], subject="customer-7")
    assert recorder.tokenize("customer-42", subject="customer-42") == c42  # the same value, the same token

    def record(run: str, event_type: str, parent=None, **fields) -> tuple[str, int]:
        event = recorder.event(event_type, run_id=run, parent_event_id=parent, **fields)
        return event["event_id"], recorder.submit(recorder.sign(event)).index

    # The payloads of tool calls and outcomes have a policy, an intent's (the customer's request) none. An outcome
    # cites its tool call's payload too, so that the payload's deletion shows in the run's evidence after the tool
    # call itself is pruned (a reference only a pruned event held is gone with it).
    held_answer, free_answer, free_request = b"tool answer, case 1", b"tool answer, case 2", b'{"ask": "refund"}'
    h1, h1_index = record("run-held", "intent", context={"customer_id": c42, "case_id": "case-1"},
                          extensions={"email": mail42})
    held_ref = recorder.put_blob(held_answer, "text/plain")
    h2, h2_index = record("run-held", "tool_call", h1, output=held_ref)
    _, h3_index = record("run-held", "outcome", h2, input=held_ref)
    f1, f1_index = record("run-free", "intent", context={"customer_id": c7, "case_id": "case-2"},
                          input=recorder.put_blob(free_request, "application/json"))
    free_ref = recorder.put_blob(free_answer, "text/plain")
    f2, f2_index = record("run-free", "tool_call", f1, output=free_ref)
    record("run-free", "outcome", f2, input=free_ref)
    blobs = {name: hashlib.sha256(content).hexdigest()
             for name, content in (("held", held_answer), ("free answer", free_answer), ("request", free_request))}
    log_is_valid()

    # 2. Detokenising: a vault-reader with a purpose, logged before the values come back; nobody else.
    status, _, body = call(url, "POST", "/api/v1/vault/detokenize", vault_reader,
                           {"tenant": TENANT, "tokens": [c42, mail42], "purpose": "court order 2026-117"})
    assert status == 200, body
    answer = _json(body)
    assert [v["value"] for v in answer["values"]] == ["customer-42", "alice@example.com"]
    status, _, entry = call(url, "GET", f"/api/v1/entries/{answer['index']}", admin)
    access = json.loads(base64.b64decode(_json(entry)["data"]))
    assert access["type"] == "auditlog.vault-access/v1" and access["purpose"] == "court order 2026-117"
    assert sorted(access["token_sha256"]) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in (c42, mail42))
    assert b"alice@example.com" not in base64.b64decode(_json(entry)["data"])
    for token, purpose, expected in ((vault_reader, "", 400), (writer, "curiosity", 403)):
        status, _, body = call(url, "POST", "/api/v1/vault/detokenize", token,
                               {"tenant": TENANT, "tokens": [c42], "purpose": purpose})
        assert status == expected, body
        assert _json(body)["type"] and "alice" not in body.decode()

    # 3. A legal hold on run-held, then retention: tool calls and their payloads are kept 0 days.
    out = cli.ok("hold", "place", "--tenant", TENANT, "--run", "run-held", "--reason", "litigation",
                 "--reference", "case 2026-CV-0117")
    hold_id = out.split()[0]
    event_policy = cli.logged_index("retention", "policy", "set", "--tenant", TENANT, "--class", "event",
                                    "--selector", "tool_call", "--days", "0", "--reason", "raw tool calls: 0 days")
    for event_type in ("tool_call", "outcome"):
        cli.logged_index("retention", "policy", "set", "--tenant", TENANT, "--class", "blob", "--selector",
                         f"event_type:{event_type}", "--days", "0", "--reason", f"{event_type} payloads: 0 days")
    (first,) = [json.loads(line) for line in cli.ok("retention", "run", "--tenant", TENANT, "--json").splitlines()]
    assert first["deleted"] == {"entry": 1, "blob": 1, "subject": 0}, first
    assert first["skipped"] == {hold_id: 2}, first  # run-held's tool call and its payload
    status, _, body = call(url, "GET", f"/api/v1/entries/{f2_index}", admin)
    assert status == 410 and _json(body)["deletion_index"] == first["index"], body
    assert call(url, "GET", f"/api/v1/entries/{h2_index}", admin)[0] == 200  # held
    assert call(url, "GET", f"/api/v1/blobs/{blobs['free answer']}", admin)[0] == 404
    assert call(url, "GET", f"/api/v1/blobs/{blobs['held']}", admin)[0] == 200  # held
    status, _, body = call(url, "GET", f"/api/v1/entries/{first['index']}", admin)
    run_record = json.loads(base64.b64decode(_json(body)["data"]))
    assert run_record["type"] == "auditlog.retention-run/v1" and event_policy in run_record["policies"]
    applied = {first["index"]: run_record["policies"]}
    status, _, body = call(url, "GET", f"/api/v1/deletions/{first['index']}", admin)
    listed = _json(body)
    lines = sorted(f"{kind} {item}\n".encode() for kind, item in listed["items"])
    assert hashlib.sha256(b"".join(lines)).hexdigest() == run_record["list_sha256"] == listed["list_sha256"]
    assert sorted(map(tuple, listed["items"])) == [("blob", blobs["free answer"]), ("entry", str(f2_index))]
    log_is_valid()

    # 4. Released, the hold no longer keeps anything: the next run takes it.
    cli.logged_index("hold", "release", hold_id, "--reason", "settled")
    (second,) = [json.loads(line) for line in cli.ok("retention", "run", "--tenant", TENANT, "--json").splitlines()]
    assert second["deleted"] == {"entry": 1, "blob": 1, "subject": 0} and not second["skipped"], second
    assert call(url, "GET", f"/api/v1/entries/{h2_index}", admin)[0] == 410
    assert call(url, "GET", f"/api/v1/entries/{h3_index}", admin)[0] == 200  # outcomes are kept
    status, _, body = call(url, "GET", f"/api/v1/entries/{second['index']}", admin)
    applied[second["index"]] = json.loads(base64.b64decode(_json(body)["data"]))["policies"]
    log_is_valid()

    # 5. Customer 7 erased: the key destroyed, its request deleted (no policy kept it), the tokens left in events.
    erased = json.loads(cli.ok("subject", "erase", "--tenant", TENANT, "--subject", "customer-7",
                               "--reason", "GDPR art. 17 request 88", "--json"))
    assert erased["key_shredded"] and erased["blobs_deleted"] == 1, erased
    assert call(url, "GET", f"/api/v1/blobs/{blobs['request']}", admin)[0] == 404
    status, _, body = call(url, "POST", "/api/v1/vault/detokenize", vault_reader,
                           {"tenant": TENANT, "tokens": [c7, c42], "purpose": "verify erasure"})
    assert status == 200 and [v["status"] for v in _json(body)["values"]] == ["erased", "found"], body
    assert call(url, "GET", f"/api/v1/entries/{f1_index}", admin)[0] == 200  # the event keeps its token
    log_is_valid()

    # 6. The runs' evidence, after all of it: verified offline, every deletion stated and proven.
    deletions = {}
    for run in ("run-free", "run-held"):
        path = tmp_path / f"{run}.json"
        cli.ok("timeline", "--run", run, "--evidence", str(path), "--log-key", log_key)
        bundle = json.loads(path.read_text())
        assert bundle["format"] == FORMAT
        report = verify_evidence(bundle, log_key).evidence
        deletions[run] = {(d.kind, d.item): (d.deletion.index, [p.index for p in d.policies]) for d in report.deleted}
        out = cli.ok("verify-evidence", str(path), "--log-key", log_key, server=False)
        assert out.count("deleted: ") == len(report.deleted) and "pruned" in out, out
    assert deletions["run-free"] == {
        ("entry", str(f2_index)): (first["index"], applied[first["index"]]),
        ("blob", blobs["free answer"]): (first["index"], applied[first["index"]]),
        ("blob", blobs["request"]): (erased["index"], []),
        ("subject", f"{TENANT}/{erased['subject']}"): (erased["index"], []),
    }
    assert deletions["run-held"] == {
        ("entry", str(h2_index)): (second["index"], applied[second["index"]]),
        ("blob", blobs["held"]): (second["index"], applied[second["index"]]),
    }

    # A deletion claimed of an entry that does not list it fails the check, naming it (exit 1: evidence of misuse).
    bundle = json.loads((tmp_path / "run-free.json").read_text())
    bundle["pruned_events"][0]["deletion_index"] = erased["index"]
    (tmp_path / "forged.json").write_text(json.dumps(bundle))
    code, out = cli("verify-evidence", str(tmp_path / "forged.json"), "--log-key", log_key, server=False)
    assert code == 1 and "check 12 (deletions)" in out, out
    # The remaining customer's access request: every event carrying its tokens, verified before it is written.
    cli.ok("subject", "access", "--tenant", TENANT, "--subject", "customer-42", "--out", str(tmp_path / "dsar.json"),
           "--log-key", log_key)
    subject_bundle = json.loads((tmp_path / "dsar.json").read_text())
    assert [e["index"] for e in subject_bundle["events"]] == [h1_index]
    assert verify_evidence(subject_bundle, log_key).evidence.subject["tokens"] == sorted([c42, mail42])

    # 7. The period archived, verified offline, served read-only: proofs still hold against it.
    archive = tmp_path / "period.tar"
    source = ["--database-url", database_url] if database_url else ["--data-dir", str(data)]
    cli.ok("archive", "--out", str(archive), *source, "--blob-dir", str(data / "blobs"), "--log-key", log_key,
           "--quiet", server=False)
    cli.ok("archive", "verify", str(archive), "--log-key", log_key, "--quiet", server=False)
    archived = ServerProcess(tmp_path / "archive-data", None, ["--archive", str(archive)]).start()
    try:
        served = Cli(capsys, archived.url, log_key)
        served.ok("proof", "--index", str(h1_index), "--log-key", log_key)
        status, _, body = call(archived.url, "GET", "/api/v1/events?" + urllib.parse.urlencode(
            {"run_id": "run-held"}), admin)
        assert status == 200 and h1_index in [e["index"] for e in _json(body)["events"]], body
        status, _, body = call(archived.url, "POST", "/api/v1/events", writer, {"events": []})
        assert status in (405, 503) and _json(body)["detail"], body  # read-only, said in a problem body
    finally:
        archived.stop()
    log_is_valid()

