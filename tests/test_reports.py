"""Compliance reports (log/audit/report.py, api/reports/, GET /api/v1/reports): over a seeded tenant with approvals,
denials, reviews with edits and one deliberately broken run for each completeness finding, the JSON names every
finding with its offending event and maps it to the right controls, counts the reviews, the edits and the costs, and
verifies the period against the signed checkpoint; the PDF's text (pdftotext) and the self-contained HTML say the
same; an entry altered in the database is a tampered event and an INVALID chain.

The seeded log is built once per module, in process (SQLite), and copied for the test that tampers with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess

import pytest
import sqlalchemy as sa

from log.audit.periods import parse_day_or_time
from log.audit.report import ReportRequest, build_report
from log.audit.retention import Retention
from log.audit.service import AuditService
from log.blobs import FileBlobStore
from log.service import Log, LogConfig
from log.storage.schema import access_log, entries
from tests.test_audit_blobs import Producer, _clock

ORIGIN = "example.com/reports"
TENANT = "acme"
DRAFT = b"Refund the customer 120 EUR for the late delivery, as policy R-7 allows."
FINAL = b"Refund the customer 100 EUR for the late delivery, as policy R-7 allows."
MISSING = b"a payload nobody stored"
FROM, TO = "2026-12-05", "2026-12-08"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ref(data: bytes) -> dict:
    return {"sha256": _sha(data), "size": len(data), "media_type": "text/plain"}


class _Run:
    """Events of one run, numbered, each a child of the previous unless told otherwise."""

    def __init__(self, run_id: str, day: int, tenant: str = TENANT):
        self.run_id, self.day, self.tenant, self.events = run_id, day, tenant, []

    def add(self, event_type: str, parent: str | None | bool = True, actor=("agent", "agent-7"), second=0,
            **fields) -> str:
        event_id = f"{self.run_id}.{len(self.events) + 1}"
        if parent is True:
            parent = self.events[-1]["event_id"] if self.events else None
        event = {"schema": "auditlog.event/v1", "event_id": event_id, "trace_id": f"tr-{self.run_id}",
                 "run_id": self.run_id, "timestamp": f"2026-12-0{self.day}T09:00:{second:02d}.000Z",
                 "tenant": self.tenant, "actor": {"type": actor[0], "id": actor[1]}, "event_type": event_type,
                 **fields}
        if parent:
            event["parent_event_id"] = parent
        self.events.append(event)
        return event_id


POLICY = {"policy": {"decision": "allow", "matched_rule": "refunds-under-500", "snapshot": "policy-v12"}}
REVIEWER = {"type": "user", "id": "reviewer-3"}


def _runs() -> list[_Run]:
    ok = _Run("run-approved", 5)
    ok.add("intent", actor=("user", "clerk-1"))
    ok.add("policy_decision", second=1, **{"policy": {**POLICY["policy"], "decision": "review"}})
    ok.add("approval", second=31, actor=("user", "reviewer-3"), approval={"approver": REVIEWER,
                                                                         "review_dwell_ms": 2500},
           snapshot={"policy_snapshot": "policy-v12", "model_id": "model-a"})
    ok.add("tool_call", second=32, metadata={"input_tokens": 1000, "output_tokens": 200, "cost": "0.25",
                                             "currency": "USD"}, snapshot={"model_id": "model-a"})
    ok.add("outcome", second=33, outcome={"status": "success"})

    edited = _Run("run-edited", 6)
    edited.add("intent", actor=("user", "clerk-2"))
    edited.add("model_call", second=1, output=_ref(DRAFT), snapshot={"model_id": "model-b"},
               metadata={"input_tokens": 500, "output_tokens": 100, "cost": "0.10", "currency": "USD"})
    edited.add("human_review", second=40, actor=("user", "reviewer-3"), input=_ref(DRAFT), output=_ref(FINAL),
               approval={"review_dwell_ms": 6500}, policy={"decision": "allow", "snapshot": "policy-v12"})
    edited.add("external_action", second=41, on_behalf_of={"type": "user", "id": "clerk-2"})

    rejected = _Run("run-rejected", 6)
    rejected.add("intent", actor=("user", "clerk-3"))
    rejected.add("human_review", second=9, actor=("user", "reviewer-4"), outcome={"status": "failure"},
                 snapshot={"policy_snapshot": "policy-v12"},
                 approval={"review_dwell_ms": 1500}, metadata={"input_tokens": 10, "cost": "0.01",
                                                               "currency": "EUR"})

    denied = _Run("run-denied-with-rule", 7)
    denied.add("intent", actor=("user", "clerk-4"))
    denied.add("denial", second=2, policy={"decision": "deny", "matched_rule": "no-wire-transfers",
                                           "snapshot": "policy-v12"})

    # One deliberately broken run per event finding.
    no_version = _Run("run-broken-approval", 7)
    no_version.add("intent", actor=("user", "clerk-5"))
    no_version.add("approval", second=5, actor=("user", "reviewer-3"), approval={"approver": REVIEWER})
    no_actor = _Run("run-broken-execution", 7)
    no_actor.add("model_call", second=1)
    no_actor.add("tool_call", second=2)  # its chain reaches no intent, and it names no on_behalf_of
    no_payload = _Run("run-broken-payload", 7)
    no_payload.add("intent", actor=("user", "clerk-6"))
    no_payload.add("model_call", second=3, output=_ref(MISSING))
    no_rule = _Run("run-broken-denial", 7)
    no_rule.add("intent", actor=("user", "clerk-7"))
    no_rule.add("denial", second=4, policy={"decision": "deny", "snapshot": "policy-v12"})
    orphan = _Run("run-orphan", 7)
    orphan.add("outcome", parent="ev-that-was-never-logged", second=8, outcome={"status": "success"})

    other = _Run("run-other-tenant", 7, tenant="globex")
    other.add("tool_call", second=1)
    return [ok, edited, rejected, denied, no_version, no_actor, no_payload, no_rule, orphan, other]


def _seed(data_dir) -> dict:
    """The seeded log: its events, where each landed, an auditor token of acme."""
    producer = Producer("agent-gateway")

    async def main():
        log = await Log.open(LogConfig(data_dir=data_dir, origin=ORIGIN, batch_max_age=0.002))
        audit = await AuditService.open(log, FileBlobStore(data_dir / "blobs"), clock=_clock)
        try:
            await audit.register_producer(producer.name, [TENANT, "globex"])
            await audit.add_key(producer.name, producer.public, not_before=0)
            for blob in (DRAFT, FINAL):
                await audit.put_blob(_sha(blob), blob)
            # Events kept, payloads (blob class) not: the tenant-level finding.
            await Retention(log, audit.blobs, clock=_clock).set_policy(TENANT, "event", "*", 400, "records")
            indices = {}
            for run in _runs():
                body = json.dumps({"events": [producer.envelope(e) for e in run.events]}).encode()
                result = await audit.submit(body)
                for event, receipt in zip(run.events, result.results):
                    indices[event["event_id"]] = receipt.index
            auditor = await audit.create_token("auditor", [TENANT])
            return {"indices": indices, "auditor": auditor.secret}
        finally:
            await audit.close()
            await log.close()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("reports") / "data"
    seed = _seed(data_dir)
    return data_dir, seed


def _report(data_dir, before=None, since=FROM, **kwargs) -> dict:
    async def main():
        log = await Log.open(LogConfig(data_dir=data_dir, origin=ORIGIN, batch_max_age=0.002))
        try:
            if before is not None:
                await log.write(before)
            request = ReportRequest(TENANT, parse_day_or_time(since, "from"), parse_day_or_time(TO, "to"),
                                    kwargs.pop("frameworks", ("all",)))
            return await build_report(log, FileBlobStore(data_dir / "blobs"), request, **kwargs)
        finally:
            await log.close()

    return asyncio.run(main())


def _control(report: dict, framework: str, control_id: str) -> dict:
    return next(c for c in report["controls"] if c["framework"] == framework and c["id"] == control_id)


def test_the_report_finds_every_finding_maps_the_controls_and_counts_reviews_and_costs(seeded):
    data_dir, seed = seeded
    at = seed["indices"]
    report = _report(data_dir)
    acme_events = sum(1 for run in _runs() if run.tenant == TENANT for _ in run.events)

    summary = report["summary"]
    assert summary["line"] == (f"Verified {acme_events} events · Chain integrity: VALID · First event: "
                               f"2026-12-05T09:00:00.000Z · Last event: 2026-12-07T09:00:08.000Z · Gaps detected: 1 · "
                               f"Tampered events: 0")
    assert report["verification"]["gaps"] == [{
        "kind": "missing-parent", "index": at["run-orphan.1"], "event_id": "run-orphan.1",
        "parent_event_id": "ev-that-was-never-logged", "producer": "agent-gateway", "run_id": "run-orphan"}]
    assert report["verification"]["signatures"]["checked"] == acme_events
    assert report["checkpoint"]["witnessed"] is False and report["checkpoint"]["size"] > max(at.values())

    findings = {f["check"]: f for f in report["findings"]}
    offending = {check: [(i["index"], i["event_id"]) for i in f["items"]] for check, f in findings.items()}
    assert offending == {
        "approval-without-policy-version": [(at["run-broken-approval.2"], "run-broken-approval.2")],
        "execution-without-actor": [(at["run-broken-execution.2"], "run-broken-execution.2")],
        "unprovable-payload": [(at["run-broken-payload.2"], "run-broken-payload.2")],
        "denial-without-rationale": [(at["run-broken-denial.2"], "run-broken-denial.2")],
        "no-retention-policy": [(None, None)],
    }
    assert "payloads" in findings["no-retention-policy"]["items"][0]["detail"]

    # The control mapping: each finding counts against its controls; a clean control is evidenced by its events.
    cc81 = _control(report, "soc2", "CC8.1")
    assert cc81["status"] == "findings" and [f["event_id"] for f in cc81["findings"]["items"]] == [
        "run-broken-approval.2"]
    assert _control(report, "soc2", "CC6.1")["findings"]["count"] == 2  # the rule-less denial, the actor-less call
    assert _control(report, "hipaa", "164.312(b)")["findings"]["count"] == 2  # the payload, the retention
    assert _control(report, "eu-ai-act", "Art. 19")["status"] == "findings"
    assert _control(report, "iso27001", "A.16.1.7")["iso2022"] == "A.5.28"
    assert _control(report, "iso27001", "A.12.4.2")["iso2022"] == "A.8.15"
    cc62 = _control(report, "soc2", "CC6.2")
    assert cc62["status"] == "evidenced" and cc62["evidence"]["count"] >= 1  # the auditor token, created in period
    hipaa_d = _control(report, "hipaa", "164.312(d)")
    assert {"index": at["run-edited.4"], "event_id": "run-edited.4", "event_type": "external_action"} in \
        hipaa_d["evidence"]["items"]

    review = report["review"]
    assert (review["reviews"], review["approved"], review["edited"], review["rejected"]) == (4, 2, 1, 1)  # two approvals name their approver
    assert review["median_dwell_ms"] == 2500
    assert review["commonest_edits"] == [{"removed": "120", "added": "100", "count": 1}]

    cost = report["cost"]
    assert (cost["input_tokens"], cost["output_tokens"], cost["cost"]) == (1510, 300, {"EUR": "0.01",
                                                                                      "USD": "0.35"})
    assert {"producer": "agent-gateway", "model": "model-b", "events": 1, "input_tokens": 500,
            "output_tokens": 100, "cost": {"USD": "0.10"}} in cost["by_producer_model"]

    producers = {p["producer"]: p for p in report["producers"]}
    assert producers["agent-gateway"]["events"] == acme_events
    assert producers["agent-gateway"]["broken_parent_link_count"] == 1
    assert producers["agent-gateway"]["silences"][0]["from"].startswith("2026-12-0")
    charts = report["charts"]
    assert charts["events_per_day"]["days"] == ["2026-12-05", "2026-12-06", "2026-12-07"]
    # Each approval's (and approving review's) wait after the event it answers.
    assert sorted(charts["approval_latency_ms"]["values"]) == [5000, 9000, 30000, 39000]
    json.dumps(report)  # JSON-able throughout


def test_a_run_that_began_before_the_period_is_followed_back_to_its_intent(seeded):
    """run-approved's intent and policy decision come before this period, its approval, tool call and outcome in it:
    the tool call's chain still reaches the intent (through the index), so it is no execution-without-actor finding;
    run-broken-execution, wholly in the period and without an intent, still is. Only the period's events count."""
    data_dir, seed = seeded
    report = _report(data_dir, since="2026-12-05T09:00:20.000Z")
    executions = next(f for f in report["findings"] if f["check"] == "execution-without-actor")
    assert [item["event_id"] for item in executions["items"]] == ["run-broken-execution.2"]
    assert report["summary"]["events"] == 22 - 2  # the run's intent and policy decision are outside the period


def test_an_altered_entry_is_a_tampered_event_and_an_invalid_chain(seeded, tmp_path):
    data_dir, seed = seeded
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    index = seed["indices"]["run-denied-with-rule.2"]
    removed = seed["indices"]["run-other-tenant.1"]

    def alter(tx):  # what someone with the database file does, the server running: a denial rewritten,
        (data,) = tx.execute(sa.select(entries.c.data).where(entries.c.idx == index))[0]
        altered = bytes(data).replace(b"no-wire-transfers", b"wire-transfers-ok")
        tx.execute(sa.update(entries).where(entries.c.idx == index).values(data=altered))
        tx.execute(sa.delete(entries).where(entries.c.idx == removed))  # another tenant's event taken out

    report = _report(copy, before=alter, frameworks=("iso27001",))
    assert "Chain integrity: INVALID" in report["summary"]["line"]
    assert report["summary"]["line"].endswith("Tampered events: 1")
    assert "Gaps detected: 2 ·" in report["summary"]["line"]  # the position without an entry, and the orphan
    assert {"kind": "position", "index": removed, "detail": "no entry in the database"} in \
        report["verification"]["gaps"]
    assert report["verification"]["tampered"] == [
        {"index": index, "event_id": None, "reason": "the entry does not hash to its leaf in the checkpoint's tree"}]
    assert _control(report, "iso27001", "A.12.4.2")["status"] == "findings"
    assert {c["framework"] for c in report["controls"]} == {"iso27001"}


def test_a_payload_altered_in_the_store_is_a_mismatch_not_a_missing_blob(seeded, tmp_path):
    """The draft a review cites, rewritten on disk: the store's read refuses bytes that no longer hash to the name,
    and the report says so ("do not hash"), not that the blob is absent."""
    data_dir, seed = seeded
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    (path,) = [p for p in (copy / "blobs").rglob("*") if p.is_file() and p.name.startswith(_sha(DRAFT))]
    path.write_bytes(DRAFT.replace(b"120", b"999"))
    report = _report(copy)
    payloads = next(f for f in report["findings"] if f["check"] == "unprovable-payload")
    altered = [item for item in payloads["items"] if _sha(DRAFT) in item["detail"]]
    assert altered and all("do not hash" in item["detail"] for item in altered), payloads


def test_report_bounds_are_dates_or_zoned_times_before_the_year_10000():
    from log.errors import InvalidInput

    assert parse_day_or_time("2026-01-01", "from") == 1767225600000
    assert parse_day_or_time("9999-12-31T23:59:59.999Z", "to") == 253402300799999
    for text, says in (("2026-W01-1", "nor a date YYYY-MM-DD"), ("2026-01-01T00:00:00", "no time zone"),
                       ("9999-12-31T23:00:00-10:00", "year 10000"), ("1969-12-31", "before 1970")):
        with pytest.raises(InvalidInput, match=says) as raised:
            parse_day_or_time(text, "to")
        assert raised.value.field == "to"


def _pdf_text(pdf: bytes, tmp_path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) is not installed: scripts/test installs it")
    (tmp_path / "r.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], capture_output=True, check=True,
                          timeout=60).stdout.decode()


def test_the_route_answers_json_html_and_pdf_to_an_auditor_of_the_tenant(seeded, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from api.server.app import create_app

    data_dir, seed = seeded
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    auditor = {"Authorization": f"Bearer {seed['auditor']}"}
    period = f"tenant={TENANT}&from={FROM}&to={TO}"

    async def main():
        app = create_app(LogConfig(data_dir=copy, origin=ORIGIN, batch_max_age=0.002))
        async with TestClient(TestServer(app)) as client:
            answers = {}
            for format in ("json", "html", "pdf"):
                response = await client.get(f"/api/v1/reports?{period}&format={format}", headers=auditor)
                assert response.status == 200, await response.text()
                answers[format] = (response.headers["Content-Type"], await response.read(),
                                   response.headers["Auditlog-Chain-Integrity"])
            refusals = {}
            for query, headers in ((f"tenant=globex&from={FROM}&to={TO}", auditor),
                                   (f"{period}&framework=pci", auditor), (f"tenant={TENANT}&from={FROM}", auditor),
                                   (f"{period}&format=docx", auditor), (f"{period}&from=yesterday", auditor),
                                   (period, {})):
                response = await client.get(f"/api/v1/reports?{query}", headers=headers)
                refusals[query] = (response.status, (await response.json()).get("field") if response.status == 400
                                   else None)
            return answers, refusals

    answers, refusals = asyncio.run(main())
    content_type, body, integrity = answers["json"]
    report = json.loads(body)
    line = report["summary"]["line"]
    assert content_type.startswith("application/json") and integrity == "VALID"
    acme_events = sum(len(run.events) for run in _runs() if run.tenant == TENANT)
    assert line.startswith(f"Verified {acme_events} events · Chain integrity: VALID · First event: 2026-12-05")

    content_type, html, _ = answers["html"]
    page = html.decode()
    assert content_type.startswith("text/html") and line in page
    references = re.findall(r"""(?:src|href)\s*=\s*['"]?([^'" >]*)""", page)
    assert len(references) == 2 and all(r.startswith("data:image/png;base64,") for r in references)
    assert "<script" not in page and "url(" not in page and "@import" not in page and "http:" not in page and "https:" not in page

    content_type, pdf, _ = answers["pdf"]
    assert content_type == "application/pdf" and pdf.startswith(b"%PDF")
    text = _pdf_text(pdf, tmp_path)
    assert line in " ".join(text.split())  # the summary line, whatever the wrapping
    for control_id in ("CC6.1", "CC6.2", "CC7.1", "CC8.1", "164.312(b)", "164.312(d)", "Section 404", "A.12.4.1",
                       "A.8.15", "A.16.1.7", "A.5.28", "Art. 12", "Art. 14", "Art. 19"):
        assert control_id in text, control_id
    for check in ("approval-without-policy-version", "execution-without-actor", "unprovable-payload",
                  "denial-without-rationale", "no-retention-policy", "run-broken-approval.2", "run-broken-payload.2"):
        assert check in text, check

    engine = sa.create_engine(f"sqlite:///{copy / 'auditlog.db'}")  # the access log, written at the app's close
    with engine.connect() as connection:
        reads = connection.execute(sa.select(access_log.c.what, access_log.c.target, access_log.c.status)
                                   .where(access_log.c.what == "report")).all()
    engine.dispose()
    assert [tuple(r) for r in reads] == [("report", f"{TENANT} {FROM}..{TO}", 200)] * 3

    assert refusals == {
        f"tenant=globex&from={FROM}&to={TO}": (403, None), f"{period}&framework=pci": (400, "framework"),
        f"tenant={TENANT}&from={FROM}": (400, "to"), f"{period}&format=docx": (400, "format"),
        f"{period}&from=yesterday": (400, "from"), period: (401, None)}
