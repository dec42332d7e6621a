"""`auditlog drill`: an audit drill, run as an auditor runs it, with the caller's credential, against the log.

    auditlog drill --tenant T --runs N [--seed S] [--since WHEN] [--until WHEN]
                   [--scenario random|denied-action|approval-trace|incident-replay|scope|retention]
                   [--server URL] [--token T] [--log-key VKEY] [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]
                   [--json]

1. Candidates: the tenant's runs, from its events as GET /api/v1/events lists them (unverified: they only say what to
   fetch), those timestamped in --since/--until when given (the period is logged with the drill). A scenario narrows them: denied-action, runs holding a denial (log/audit/completeness.py `is_denial`);
   approval-trace, an approval (`is_approval`); incident-replay, an outcome with status failure or an escalation.
   random, scope and retention take every run.
2. N of them are picked at random with the seed (given, or drawn and printed), in the order the log first lists
   them: the same seed over the same runs picks the same runs, so a drill can be repeated.
3. Each: its evidence bundle is fetched and verified offline (api/client/evidence.py, with the log key of
   --log-key, $AUDITLOG_VERIFIER_KEY or <data-dir>/log.vkey, never one the server gives); time-to-evidence runs from
   the request to the verification passing. The verified bundle's events are the run's causal timeline (its check
   7 holds them to log/audit/timeline.py's order), and on them the completeness checks run: approvals without a policy version, executions cut off
   from their intent, denials without their rule (event_findings), and payloads that cannot be proven
   (payload_findings: each blob the events cite is fetched and hashed; one the bundle states deleted is accounted
   for).
4. Scenario checks of the tenant: scope asks, with the same credential, for a tenant outside the drill's (its
   events, and a drilled run's evidence under that tenant) and passes when both are refused (403 or 404), and for
   every drilled event to be of the tenant; a credential that covers every tenant (an admin's) cannot show scope,
   and the check says "not-checked". retention reads the tenant's retention policies (an admin's route: a 403 is
   "not checked: credential cannot read policies") and finds no-retention-policy (`retention_findings`).
5. The result is printed (a table, or --json) and logged (POST /api/v1/drills, log/audit/drills.py); its entry's
   index is printed.

Exit 0: every run passed (evidence verified, no finding) and no check failed; 1: a run failed verification or has
findings, or a check failed; 2: bad input (a flag, a credential refused, no events of the tenant); 3: the log
unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time

from api.cli.exits import USAGE, CommandFailed, say
from api.cli.options import json_option, log_key_option, positive, server_option, token_option, witness_options
from api.cli.query import when
from log.audit.drills import MAX_BY, MAX_RUN_FINDINGS, MAX_RUNS, SCENARIOS, drill_entry, drill_passed, summarize
from log.audit.errors import InvalidEvent
from log.audit.schema import TOKEN_PATTERN, python_regex
from log.errors import (Forbidden, InvalidInput, LogError, NotFound, Unauthenticated, Unavailable,
                        VerificationError)

PAGE = 1000  # events per page while gathering candidates


def _is_incident(event: dict) -> bool:
    outcome = event.get("outcome")
    return event.get("event_type") == "escalation" or (isinstance(outcome, dict)
                                                       and outcome.get("status") == "failure")


def scenario_filter(scenario: str):
    """The predicate a run's events must satisfy (any one of them) to be a candidate of `scenario`; None: any run."""
    from log.audit import completeness

    return {"denied-action": completeness.is_denial, "approval-trace": completeness.is_approval,
            "incident-replay": _is_incident}.get(scenario)


async def candidates(client, tenant: str, scenario: str, period: dict) -> tuple[list[str], int]:
    """The tenant's run ids that fit `scenario` among its events timestamped in `period` ({since, until}, RFC 3339 or
    None), in the order the log first lists them, and how many events were looked at."""
    wanted = scenario_filter(scenario)
    filters = {"tenant": tenant, **{name: value for name, value in period.items() if value is not None}}
    runs: dict[str, bool] = {}
    cursor, seen = None, 0
    while True:
        page = await client.listed_events(filters, cursor=cursor, limit=PAGE)
        for item in page.get("events") or ():
            event = item.get("event") if isinstance(item, dict) else None
            if not isinstance(event, dict) or not isinstance(event.get("run_id"), str):
                continue
            seen += 1
            run_id = event["run_id"]
            runs[run_id] = runs.get(run_id, False) or wanted is None or bool(wanted(event))
        cursor = page.get("next_cursor")
        if not cursor:
            return [run_id for run_id, fits in runs.items() if fits], seen


def pick(runs: list[str], count: int, seed: int) -> list[str]:
    """`count` of `runs` (all when fewer), chosen by `seed` alone: random.Random(seed).sample over the given order."""
    return random.Random(seed).sample(runs, min(count, len(runs)))


def bundle_events(bundle: dict) -> list[tuple[int, dict]]:
    """(index, event) of a VERIFIED bundle's present events (their entry bytes were proven; read them, not the rest)."""
    from log.audit.records import parse_entry

    out = []
    for item in bundle.get("events") or ():
        _, envelope = parse_entry(base64.b64decode(item["entry"]))
        out.append((int(item["index"]), envelope.event))
    return out


async def _blob_states(client, events: list[tuple[int, dict]], deleted: set[str]) -> dict[str, str]:
    """sha256 -> present | missing | mismatch | deleted, for every blob the events cite: fetched and hashed here."""
    from log.audit.schema import content_references

    wanted = sorted({sha for _, event in events for sha in content_references(event)})
    states: dict[str, str] = {}
    for sha in wanted:
        if sha in deleted:
            states[sha] = "deleted"
            continue
        try:
            data = await client.blob(sha)
        except NotFound:
            states[sha] = "missing"
            continue
        states[sha] = "present" if hashlib.sha256(data).hexdigest() == sha else "mismatch"
    return states


async def drill_run(client, tenant: str, run_id: str, log_key: str, witnesses, tsa) -> tuple[dict, list, list]:
    """One run drilled: its record in the drill, every finding as completeness found it, and the verified bundle's
    events in causal order (none when it did not verify)."""
    from api.client.evidence import verify_run_bundle
    from log.audit import completeness

    run = {"run_id": run_id, "events": 0, "evidence": "valid", "failed_check": None, "findings": [],
           "findings_total": 0, "time_to_evidence_ms": None}
    started, bundle = time.monotonic(), None
    try:
        bundle = await client.run_evidence(run_id, tenant)
        report = verify_run_bundle(bundle, log_key, witnesses=witnesses, tsa_trusted=tsa)
    except (NotFound, InvalidInput) as exc:  # gone, or the log refused it: no evidence to verify
        return {**run, "evidence": "unavailable", "failed_check": f"no evidence bundle: {exc}"[:1000]}, [], []
    except VerificationError as exc:  # EvidenceError: the check that failed; or an answer that is no bundle
        listed = bundle.get("events") if isinstance(bundle, dict) else None
        return {**run, "evidence": "invalid", "events": len(listed) if isinstance(listed, list) else 0,
                "failed_check": str(exc)[:1000]}, [], []
    elapsed = round((time.monotonic() - started) * 1000)
    ordered = events = bundle_events(bundle)  # in causal order: verification check 7 held the bundle to it
    deleted = {item.item for item in report.evidence.deleted if item.kind == "blob"}
    states = await _blob_states(client, ordered, deleted)
    findings = completeness.event_findings(ordered) + completeness.payload_findings(ordered, states.__getitem__)
    findings.sort(key=lambda f: (f.index if f.index is not None else -1, f.check))
    run.update(events=len(events), time_to_evidence_ms=elapsed, findings_total=len(findings),
               findings=[{"check": f.check, "index": f.index, "event_id": f.event_id}
                         for f in findings[:MAX_RUN_FINDINGS]])
    return run, findings, ordered


async def _refused(request) -> int | None:
    """The status with which the log refused `request` (a coroutine of the client) with this credential: 403, 404
    or 401; None when it answered."""
    try:
        await request
    except Forbidden:
        return 403
    except NotFound:
        return 404
    except Unauthenticated:
        return 401
    return None


async def scope_check(client, tenant: str, runs: list[dict], events: list[tuple[int, dict]]) -> dict:
    """Whether this credential is held to the drill's tenant: another tenant's events and a drilled run's evidence
    under another tenant are refused, and every drilled event is of the tenant."""
    outside = f"{tenant[:100]}.scope-probe"
    listed = await _refused(client.listed_events({"tenant": outside}, limit=1))
    if listed is None:
        return {"check": "scope", "status": "not-checked",
                "detail": f"this credential may read tenant {outside} too (it covers every tenant, as an admin's "
                          "does): scope shows only with a tenant-scoped auditor's credential"}
    problems = []
    if listed != 403:
        problems.append(f"GET /api/v1/events?tenant={outside} answered {listed}, not 403")
    if runs:
        answered = await _refused(client.run_evidence(runs[0]["run_id"], outside))
        if answered not in (403, 404):
            problems.append(f"the evidence of run {runs[0]['run_id']} under tenant {outside} was "
                            f"{'served' if answered is None else f'answered {answered}'}")
    strays = [f"{e.get('event_id')} ({e.get('tenant')})" for _, e in events if e.get("tenant") != tenant]
    if strays:
        problems.append(f"drilled bundles hold events of other tenants: {', '.join(strays[:5])}")
    if problems:
        return {"check": "scope", "status": "failed", "detail": "; ".join(problems)[:1000]}
    what = f" and run {runs[0]['run_id']}'s evidence under it" if runs else ""
    return {"check": "scope", "status": "passed",
            "detail": f"tenant {outside}'s events{what} refused; all {len(events)} drilled events are of tenant "
                      f"{tenant}"[:1000]}


async def retention_check(client, tenant: str) -> tuple[dict, list]:
    """The tenant's retention policies (an admin's route) and check 5 of completeness over them."""
    from log.audit import completeness

    try:
        policies = await client.retention_policies(tenant)
    except Forbidden:
        return {"check": "retention", "status": "not-checked",
                "detail": "not checked: credential cannot read policies (an admin's route)"}, []
    findings = completeness.retention_findings(tenant, policies)
    if findings:
        return {"check": "retention", "status": "failed",
                "detail": "; ".join(f.detail for f in findings)[:1000]}, findings
    classes = sorted({str(p.get("record_class")) for p in policies})
    return {"check": "retention", "status": "passed",
            "detail": f"{len(policies)} policies in force ({', '.join(classes)})"[:1000]}, []


def fitted(drill: dict) -> dict:
    """The drill with fewer findings listed per run when its record would not fit a log entry (findings_total still
    counts them all); the longest credential name is assumed for `by`, which the server sets."""
    for cap in (MAX_RUN_FINDINGS, 10, 5, 1, 0):
        runs = [dict(r, findings=r["findings"][:cap]) for r in drill["runs"]]
        candidate = {**drill, "runs": runs}
        try:
            drill_entry({**candidate, "at": 0, "by": "x" * MAX_BY})
            return candidate
        except InvalidEvent:
            continue
    return candidate  # the server says why it does not fit


async def _drill(args, log_key: str, witnesses, tsa) -> tuple[dict, dict, list, int]:
    from api.cli import inputs

    async with inputs.log_client(args, log_key) as client:
        period = {"since": args.since, "until": args.until}
        runs_of_tenant, seen = await candidates(client, args.tenant, args.scenario, period)
        if not seen:
            window = " in that period" if args.since or args.until else ""
            raise CommandFailed(f"no events of tenant {args.tenant}{window} are readable with this credential: is the "
                                "tenant right, and the credential an auditor's of it (or an admin's)?", USAGE)
        picked = pick(runs_of_tenant, args.runs, args.seed)
        runs, findings, drilled = [], [], []
        for run_id in picked:
            run, found, events = await drill_run(client, args.tenant, run_id, log_key, witnesses, tsa)
            runs.append(run)
            findings += found
            drilled += events
        checks = []
        if args.scenario == "scope":
            checks.append(await scope_check(client, args.tenant, runs, drilled))
        if args.scenario == "retention":
            check, found = await retention_check(client, args.tenant)
            checks.append(check)
            findings += found
        drill = fitted({"tenant": args.tenant, "seed": args.seed, "scenario": args.scenario, "period": period,
                        "runs": runs, "checks": checks})
        answer = await client.record_drill(drill)
    return drill, answer, findings, len(runs_of_tenant)


def _ms(value) -> str:
    return "-" if value is None else f"{value} ms"


def _print_table(drill: dict, index: int, findings: list, candidates_count: int) -> None:
    period = drill["period"]
    window = "" if period == {"since": None, "until": None} else \
        f", events from {period['since'] or 'the start'} to {period['until'] or 'now'}"
    print(f"audit drill of tenant {drill['tenant']}: scenario {drill['scenario']}, seed {drill['seed']}{window}, "
          f"{len(drill['runs'])} of {candidates_count} candidate runs")
    rows = [("run", "events", "evidence", "time-to-evidence", "findings", "failed check")]
    for run in drill["runs"]:
        rows.append((run["run_id"], str(run["events"]), run["evidence"], _ms(run["time_to_evidence_ms"]),
                     str(run["findings_total"]), run["failed_check"] or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    print("\n".join(lines))
    for finding in findings:
        where = f"entry {finding.index} ({finding.event_id}, run {finding.run_id})" if finding.index is not None \
            else f"tenant {drill['tenant']}"
        print(f"finding: {finding.check}: {where}: {finding.detail}")
    for check in drill["checks"]:
        print(f"check {check['check']}: {check['status']}: {check['detail']}")
    summary = drill["summary"]
    times = summary["time_to_evidence_ms"]
    print(f"summary: {summary['runs']} runs, {summary['passed']} passed, {summary['failed']} failed, "
          f"{summary['findings']} findings, {summary['checks_failed']} checks failed; time-to-evidence median "
          f"{_ms(times['median'])}, max {_ms(times['max'])}")
    print(f"drill logged at index {index}")


def cmd_drill(args) -> int:
    from api.cli import inputs

    if not 1 <= args.runs <= MAX_RUNS:
        raise InvalidInput(f"--runs must be from 1 to {MAX_RUNS}, not {args.runs}", field="runs")
    if not python_regex(TOKEN_PATTERN).match(args.tenant):
        raise InvalidInput(f"--tenant must be a tenant id (1-128 of A-Za-z0-9._:~-), not {args.tenant!r}"[:200],
                           field="tenant")
    log_key = inputs.log_key(args)
    witnesses, tsa = inputs.witness_policy(args), inputs.tsa_certificate(args)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    try:
        drill, answer, findings, count = asyncio.run(_drill(args, log_key, witnesses, tsa))
    except Unavailable as exc:
        raise Unavailable(f"{exc} (the drill, seed {args.seed}, was not logged)") from None
    recorded = answer["drill"]
    # What was logged must be what was drilled: the server sets at, by and the summary, and nothing else.
    sent = ("tenant", "seed", "scenario", "period", "runs", "checks")
    if {k: recorded.get(k) for k in sent} != {k: drill[k] for k in sent} or \
            recorded.get("summary") != summarize(drill["runs"], drill["checks"]):
        raise LogError(f"the log recorded a drill other than the one sent (entry {answer['index']})")
    if args.json:
        print(json.dumps({"index": answer["index"], "drill": recorded, "candidates": count,
                          "findings": [f.to_json() for f in findings]}, indent=1))
    else:
        _print_table(recorded, answer["index"], findings, count)
    if len(drill["runs"]) < args.runs:
        say("drill", f"note: {len(drill['runs'])} of the {args.runs} runs asked for: the tenant has no more that fit "
                     f"scenario {args.scenario}")
    if drill_passed(recorded):
        return 0
    summary = recorded["summary"]
    first = next((r for r in recorded["runs"] if r["evidence"] != "valid"), None)
    why = f"; run {first['run_id']}: {first['failed_check']}" if first is not None else ""
    say("drill", f"{summary['failed']} of {summary['runs']} runs failed (evidence that did not verify, or "
                 f"findings), {summary['checks_failed']} checks failed{why}"[:600])
    return 1


def _seed(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 2**53 - 1:
        raise argparse.ArgumentTypeError(f"the seed must be from 0 to 2^53 - 1, not {value}")
    return value


def add_drill_parser(commands, epilog: str = "") -> None:
    p = commands.add_parser("drill", help="an audit drill: pick runs at random, verify their evidence offline, check "
                                          "completeness, time it, and log the result", epilog=epilog)
    p.add_argument("--tenant", required=True, help="the tenant drilled")
    p.add_argument("--runs", type=positive, required=True, metavar="N", help=f"runs to drill (1 to {MAX_RUNS})")
    p.add_argument("--seed", type=_seed, metavar="S",
                   help="the random pick's seed, to repeat a drill (default: drawn, printed and logged)")
    p.add_argument("--scenario", choices=SCENARIOS, default="random",
                   help="which runs, and which tenant checks (default random)")
    p.add_argument("--since", type=when, metavar="WHEN",
                   help="pick among runs with events timestamped at or after WHEN: RFC 3339 or a duration ago (1d); "
                        "for a big tenant, a period keeps the search for runs short")
    p.add_argument("--until", type=when, metavar="WHEN", help="... and before WHEN (as --since)")
    server_option(p)
    token_option(p)
    log_key_option(p)
    witness_options(p)
    json_option(p)
    p.set_defaults(func=cmd_drill)


__all__ = ["add_drill_parser", "bundle_events", "candidates", "cmd_drill", "pick"]
