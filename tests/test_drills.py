"""Audit drills: the `auditlog.audit-drill/v1` record (log/audit/drills.py) and its routes in process
(api/server/drills_routes.py, the real app).

What each would catch:
- test_a_drill_record_reads_back_as_it_was_written: a formatter and parser that disagree, a summary not computed from
  the runs, a record that parse_entry does not classify, a record that is not canonical.
- test_a_bad_drill_is_refused_naming_its_field: a malformed drill logged (a lying summary, a run drilled twice, a
  valid run with a failed check, more findings listed than counted), or refused without naming the field.
- test_drills_over_http: a drill logged without its entry or row, `at`/`by` taken from the client, another tenant's
  auditor or a writer allowed to log one, another tenant's drills listed, pagination that repeats or skips a drill.
- test_the_drill_command_...: a broken run passed, a finding lost, a drill not logged or logged as someone else, a
  seed that does not repeat its pick, an auditor drilling another tenant, an empty period taken for a clean drill.
- test_drills_are_logged_..._on_postgresql: the drills' rows on PostgreSQL (its column types and lengths).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server.app import create_app
from api.server.audit_routes import AUDIT
from log.audit.canonical import canonicalize, parse_json
from log.audit.drills import (DRILL_TYPE, MAX_RUN_FINDINGS, drill_entry, drill_passed, format_drill, parse_drill,
                              parse_submission)
from log.audit.errors import InvalidEvent
from log.audit.records import parse_entry

ADMIN_TOKEN = "drills-admin-token-0123456789abc"


def _run(run_id: str, *, evidence="valid", findings=(), ms=400) -> dict:
    return {"run_id": run_id, "events": 5, "evidence": evidence,
            "failed_check": None if evidence == "valid" else "check 4 (inclusion): the proof does not verify",
            "findings": [dict(f) for f in findings], "findings_total": len(findings),
            "time_to_evidence_ms": ms if evidence == "valid" else None}


FINDING = {"check": "execution-without-actor", "index": 12, "event_id": "ev-12"}


def submission(tenant: str = "acme") -> dict:
    return {"tenant": tenant, "seed": 12345, "scenario": "random",
            "period": {"since": "2026-10-01T00:00:00.000Z", "until": None},
            "runs": [_run("run-1", ms=300), _run("run-2", findings=[FINDING], ms=900),
                     _run("run-3", evidence="invalid")],
            "checks": [{"check": "scope", "status": "passed", "detail": "another tenant's run: 404"}]}


def test_a_drill_record_reads_back_as_it_was_written():
    drill = {**parse_submission(submission()), "at": 1_765_166_400_000, "by": "token:0123456789abcdef"}
    assert drill["summary"] == {"runs": 3, "passed": 1, "failed": 2, "findings": 1, "checks_failed": 0,
                                "time_to_evidence_ms": {"median": 300, "max": 900}}
    assert not drill_passed(drill)
    wire = format_drill(drill)
    assert wire["type"] == DRILL_TYPE and wire["at"] == "2025-12-08T04:00:00.000Z"
    assert parse_drill(wire) == drill
    entry = drill_entry(drill)
    assert entry == canonicalize(json.loads(entry))
    kind, value = parse_entry(entry)
    assert (kind, value) == ("audit-drill", drill)
    # A drill of nothing (a retention scenario whose credential could not read the policies) is a drill too.
    empty = {**parse_submission({"tenant": "acme", "seed": 0, "scenario": "retention",
                                 "period": {"since": None, "until": None}, "runs": [], "checks": [
        {"check": "retention", "status": "not-checked", "detail": "not checked: credential cannot read policies"}]}),
        "at": 0, "by": "admin-token"}
    assert parse_drill(format_drill(empty)) == empty and drill_passed(empty)
    assert empty["summary"]["time_to_evidence_ms"] == {"median": None, "max": None}


def _broken(change) -> tuple[dict, str]:
    body = submission()
    field = change(body)
    return body, field


REFUSALS = {
    "missing seed": lambda b: (b.pop("seed"), "$.seed")[1],
    "unknown member": lambda b: (b.__setitem__("at", "2026-01-01T00:00:00.000Z"), "$.at")[1],
    "boolean seed": lambda b: (b.__setitem__("seed", True), "$.seed")[1],
    "bad scenario": lambda b: (b.__setitem__("scenario", "fire-drill"), "$.scenario")[1],
    "bad tenant": lambda b: (b.__setitem__("tenant", "a b"), "$.tenant")[1],
    "valid with a failed check": lambda b: (b["runs"][0].__setitem__("failed_check", "x"),
                                            "$.runs[0].failed_check")[1],
    "invalid with a time": lambda b: (b["runs"][2].__setitem__("time_to_evidence_ms", 5),
                                      "$.runs[2].time_to_evidence_ms")[1],
    "a run twice": lambda b: (b["runs"][1].__setitem__("run_id", "run-1"), "$.runs[1].run_id")[1],
    "more listed than counted": lambda b: (b["runs"][1].__setitem__("findings_total", 0),
                                           "$.runs[1].findings_total")[1],
    "too many listed": lambda b: (b["runs"][1].update(findings=[FINDING] * (MAX_RUN_FINDINGS + 1),
                                                      findings_total=MAX_RUN_FINDINGS + 1), "$.runs[1].findings")[1],
    "bad check id": lambda b: (b["runs"][1]["findings"][0].__setitem__("check", "Not A Check"),
                               "$.runs[1].findings[0].check")[1],
    "a lying summary": lambda b: (b.__setitem__("summary", {"runs": 3, "passed": 3, "failed": 0, "findings": 0,
                                                            "checks_failed": 0, "time_to_evidence_ms": {
                                                                "median": 300, "max": 900}}), "$.summary")[1],
    "a check twice": lambda b: (b["checks"].append(dict(b["checks"][0])), "$.checks")[1],
    "a period without its end": lambda b: (b["period"].pop("until"), "$.period.until")[1],
    "a period that is no time": lambda b: (b["period"].__setitem__("since", "2026-10-01"), "$.period.since")[1],
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_bad_drill_is_refused_naming_its_field(name):
    body, field = _broken(REFUSALS[name])
    with pytest.raises(InvalidEvent) as caught:
        parse_submission(body)
    assert caught.value.field == field, str(caught.value)


def test_a_logged_record_is_refused_without_its_server_fields():
    wire = format_drill({**parse_submission(submission()), "at": 0, "by": "admin-token"})
    for name, value in (("by", ""), ("at", "yesterday"), ("type", "auditlog.audit-drill/v2")):
        with pytest.raises(InvalidEvent) as caught:
            parse_drill({**wire, name: value})
        assert caught.value.field == f"$.{name}"


def _serve(log_config, work):
    async def main():
        app = create_app(log_config, admin_token=ADMIN_TOKEN)
        async with TestClient(TestServer(app)) as client:
            audit = app[AUDIT]
            tokens = {}
            for name, role, tenants in (("acme", "auditor", ["acme"]), ("globex", "auditor", ["globex"]),
                                        ("writer", "writer", ["acme"])):
                receipt = await audit.create_token(role, tenants)
                tokens[name] = ({"Authorization": f"Bearer {receipt.secret}"}, f"token:{receipt.token.token_id}")
            tokens["admin"] = ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, "admin-token")
            return await work(app, client, tokens)

    return asyncio.run(main())


def test_drills_over_http(log_config):
    async def work(app, client, tokens):
        acme, acme_name = tokens["acme"]
        answer = await client.post("/api/v1/drills", json=submission(), headers=acme)
        assert answer.status == 201, await answer.text()
        first = await answer.json()
        drill = first["drill"]
        assert drill["by"] == acme_name and drill["type"] == DRILL_TYPE and drill["summary"]["failed"] == 2
        logged = (await app[AUDIT].log.entry(first["index"])).data
        assert parse_json(logged).value == drill  # the entry is the record answered
        assert parse_entry(logged)[0] == "audit-drill"

        # The server's clock and credential, never the client's; an admin may log any tenant's drill.
        forged = dict(submission("globex"), at="2020-01-01T00:00:00.000Z", by="someone-else")
        answer = await client.post("/api/v1/drills", json=forged, headers=tokens["admin"][0])
        assert answer.status == 400 and (await answer.json())["field"] == "at"
        answer = await client.post("/api/v1/drills", json=submission("globex"), headers=tokens["admin"][0])
        assert answer.status == 201 and (await answer.json())["drill"]["by"] == "admin-token"
        second = await client.post("/api/v1/drills", json=dict(submission(), seed=7), headers=acme)
        second = await second.json()

        # Who may: not another tenant's auditor, not a writer, not without a credential.
        for headers, status in ((tokens["globex"][0], 403), (tokens["writer"][0], 403), ({}, 401)):
            answer = await client.post("/api/v1/drills", json=submission(), headers=headers)
            assert answer.status == status, await answer.text()
        # Bad input: a problem naming the field.
        body = submission()
        body["runs"][0]["evidence"] = "fine"
        answer = await client.post("/api/v1/drills", json=body, headers=acme)
        problem = await answer.json()
        assert answer.status == 400 and problem["field"] == "runs[0].evidence", problem
        for raw, field in ((b"[1]", "$"), (b"{not json", "$"), (b'{"seed": 1}', "tenant"), (b"[" * 100_000, "$"),
                           (json.dumps(dict(submission(), seed=2**70)).encode(), "seed")):
            answer = await client.post("/api/v1/drills", data=raw, headers=acme)
            assert answer.status == 400 and (await answer.json())["field"] == field

        # Listing: newest first, the auditor's tenants only, paged without repeats.
        answer = await client.get("/api/v1/drills", headers=acme)
        listed = (await answer.json())["drills"]
        assert [d["index"] for d in listed] == [second["index"], first["index"]]
        assert {d["tenant"] for d in listed} == {"acme"} and listed[1] == {"index": first["index"], **drill}
        page = await (await client.get("/api/v1/drills?tenant=acme&limit=1", headers=acme)).json()
        assert [d["index"] for d in page["drills"]] == [second["index"]] and page["next_cursor"] == second["index"]
        page = await (await client.get(f"/api/v1/drills?tenant=acme&limit=1&after={page['next_cursor']}",
                                       headers=acme)).json()
        assert [d["index"] for d in page["drills"]] == [first["index"]] and page["next_cursor"] is None
        everything = await (await client.get("/api/v1/drills", headers=tokens["admin"][0])).json()
        assert len(everything["drills"]) == 3
        assert (await client.get("/api/v1/drills?tenant=acme", headers=tokens["globex"][0])).status == 403
        assert [d["tenant"] for d in (await (await client.get("/api/v1/drills", headers=tokens["globex"][0]))
                                      .json())["drills"]] == ["globex"]
        assert (await client.get("/api/v1/drills", headers=tokens["writer"][0])).status == 403
        for query, field in (("limit=0", "limit"), ("after=x", "after"), ("color=red", "color"),
                             ("tenant=a&tenant=b", "tenant"), ("tenant=a%00b", "tenant"),
                             ("after=99999999999999999999", "after")):
            answer = await client.get(f"/api/v1/drills?{query}", headers=acme)
            assert answer.status == 400 and (await answer.json())["field"] == field, query

    _serve(log_config, work)


def test_a_record_too_big_for_an_entry_is_refused_naming_runs():
    body = submission()
    body["runs"] = [_run(f"run-{n:03d}-" + "x" * 100, findings=[dict(FINDING, event_id="e" * 128)] * 20)
                    for n in range(30)]
    drill = {**parse_submission(copy.deepcopy(body)), "at": 0, "by": "admin-token"}
    with pytest.raises(InvalidEvent) as caught:
        drill_entry(drill)
    assert caught.value.field == "$.runs"


# -- the command, against a live in-process server -----------------------------------------------------------------

def _call(url: str, method: str, path: str, token: str, body: dict | None = None) -> dict:
    import urllib.request

    request = urllib.request.Request(url + path, method=method, headers={"Authorization": f"Bearer {token}",
                                                                         "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _seed_runs(url: str, admin: str) -> None:
    """acme: two whole runs (intent -> tool_call -> outcome) and one whose tool_call reaches no intent and names no
    on_behalf_of (execution-without-actor); globex: one whole run."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from log.audit.registry import key_id_for
    from log.audit.schema import format_timestamp_ms

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    _call(url, "POST", "/api/v1/producers", admin, {"producer": "gw", "tenants": ["acme", "globex"], "reason": ""})
    _call(url, "POST", "/api/v1/producers/gw/keys", admin, {"public_key": base64.b64encode(public).decode(),
                                                           "not_before": "2020-01-01T00:00:00.000Z"})
    stamp = format_timestamp_ms(int(time.time() * 1000) - 60_000)
    events = []

    def add(tenant, run, n, event_type, parent=None, **extra):
        events.append({"schema": "auditlog.event/v1", "event_id": f"{run}-ev{n}", "trace_id": "tr", "run_id": run,
                       "timestamp": stamp, "tenant": tenant, "actor": {"type": "agent", "id": "agent-1"},
                       "event_type": event_type, "parent_event_id": parent, **extra})

    for tenant, run in (("acme", "run-a"), ("acme", "run-b"), ("globex", "run-g")):
        add(tenant, run, 1, "intent")
        add(tenant, run, 2, "tool_call", f"{run}-ev1")
        add(tenant, run, 3, "outcome", f"{run}-ev2", outcome={"status": "success"})
    add("acme", "run-broken", 1, "tool_call")
    envelopes = [{"producer": "gw", "key_id": key_id_for(public), "event": e,
                  "signature": base64.b64encode(key.sign(canonicalize(e))).decode()} for e in events]
    answer = _call(url, "POST", "/api/v1/events", admin, {"events": envelopes})
    assert answer["accepted"] == len(events), answer


def test_the_drill_command_verifies_checks_logs_and_exits_by_what_it_found(log_config, live_server, capsys):
    from api.cli.main import main
    from log.keys import read_signer_key

    url = live_server(create_app(log_config, admin_token=ADMIN_TOKEN))
    vkey = read_signer_key(log_config.resolved_key_file()).verifier_key
    _seed_runs(url, ADMIN_TOKEN)
    auditors = {tenant: _call(url, "POST", "/api/v1/tokens", ADMIN_TOKEN, {"role": "auditor", "tenants": [tenant]})
                for tenant in ("acme", "globex")}
    common = ["--server", url, "--log-key", vkey, "--json"]

    # Every acme run, the broken one among them: exit 1, its finding named, the drill logged as the auditor's.
    code = main(["drill", "--tenant", "acme", "--runs", "5", "--seed", "7", "--since", "2020-01-01", "--token",
                 auditors["acme"]["secret"], *common])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    drill = out["drill"]
    assert drill["period"] == {"since": "2020-01-01T00:00:00.000Z", "until": None}
    assert sorted(r["run_id"] for r in drill["runs"]) == ["run-a", "run-b", "run-broken"] and out["candidates"] == 3
    assert {r["evidence"] for r in drill["runs"]} == {"valid"}
    broken = next(r for r in drill["runs"] if r["run_id"] == "run-broken")
    assert [f["check"] for f in broken["findings"]] == ["execution-without-actor"]
    assert drill["summary"]["passed"] == 2 and drill["summary"]["findings"] == 1
    assert drill["by"] == f"token:{auditors['acme']['token']['token_id']}" and drill["seed"] == 7
    listed = _call(url, "GET", "/api/v1/drills?tenant=acme", auditors["acme"]["secret"])["drills"]
    assert [d["index"] for d in listed] == [out["index"]] and listed[0]["summary"] == drill["summary"]
    entry = _call(url, "GET", f"/api/v1/entries/{out['index']}", ADMIN_TOKEN)
    assert parse_entry(base64.b64decode(entry["data"]))[1]["runs"] == parse_drill(drill)["runs"]

    # The same seed over the same runs picks the same runs.
    code = main(["drill", "--tenant", "acme", "--runs", "2", "--seed", "7", "--token", auditors["acme"]["secret"],
                 *common])
    again = json.loads(capsys.readouterr().out)["drill"]["runs"]
    code_again = main(["drill", "--tenant", "acme", "--runs", "2", "--seed", "7", "--token",
                       auditors["acme"]["secret"], *common])
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)["drill"]["runs"]] == \
        [r["run_id"] for r in again] and code == code_again

    # globex's one clean run, the scope scenario with its own auditor: every check holds, exit 0.
    code = main(["drill", "--tenant", "globex", "--runs", "3", "--scenario", "scope", "--token",
                 auditors["globex"]["secret"], *common])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["drill"]["checks"][0]["status"] == "passed" and out["drill"]["summary"]["passed"] == 1
    # No events in the period asked for is bad input, not a drill of nothing.
    assert main(["drill", "--tenant", "globex", "--runs", "1", "--until", "2020-01-01", "--token",
                 auditors["globex"]["secret"], *common]) == 2
    # ... and the acme auditor may not drill globex at all.
    assert main(["drill", "--tenant", "globex", "--runs", "1", "--token", auditors["acme"]["secret"], *common]) == 2
    capsys.readouterr()


def test_drills_are_logged_with_their_rows_and_listed_on_postgresql(tmp_path):
    """(SQLite: test_drills_over_http.) A long OIDC credential's name fits its row."""
    from log.audit.drills import Drills
    from log.service import Log, LogConfig
    from tests.conftest import TEST_ORIGIN
    from tests.postgres import fresh_database

    async def work(url):
        log = await Log.open(LogConfig(data_dir=tmp_path / "data", database_url=url, origin=TEST_ORIGIN,
                                       batch_max_age=0.002))
        try:
            drills = Drills(log, clock=lambda: 1_765_166_400.0)
            first, _ = await drills.record(submission(), "oidc:https://idp.example#" + "s" * 3000)
            second, logged = await drills.record(submission("globex"), "admin-token")
            assert logged["at"] == "2025-12-08T04:00:00.000Z"
            page, cursor = await drills.list(tenants=frozenset({"acme"}))
            assert [d["index"] for d in page] == [first] and cursor is None
            assert page[0]["by"].startswith("oidc:") and page[0]["summary"]["failed"] == 2
            page, cursor = await drills.list(limit=1)
            assert [d["index"] for d in page] == [second] and cursor == second
            assert [d["index"] for d in (await drills.list(after=cursor))[0]] == [first]
        finally:
            await log.close()

    with fresh_database() as url:
        asyncio.run(work(url))
