"""Audit drills: the `auditlog.audit-drill/v1` record an auditor's drill leaves in the log, and its index.

A drill (`auditlog drill`, api/cli/drill.py) picks runs of a tenant at random with a seed, fetches each run's evidence
bundle, verifies it offline, rebuilds the timeline, runs the completeness checks, and times it. Its result is one
log entry, the RFC 8785 canonical JSON of:

    {"type": "auditlog.audit-drill/v1", "tenant": T, "at": "<RFC 3339 ms>", "by": "<credential>",
     "seed": 12345, "scenario": "random" | "denied-action" | "approval-trace" | "incident-replay" | "scope" | "retention",
     "period": {"since": "<RFC 3339 ms>" | null, "until": ... | null},
     "runs": [{"run_id", "events": n, "evidence": "valid" | "invalid" | "unavailable", "failed_check": str | null,
               "findings": [{"check", "index": n | null, "event_id": str | null}], "findings_total": n,
               "time_to_evidence_ms": n | null}],
     "checks": [{"check": "scope" | "retention", "status": "passed" | "failed" | "not-checked", "detail": str}],
     "summary": {"runs", "passed", "failed", "findings", "checks_failed", "time_to_evidence_ms": {"median", "max"}}}

`period` is the window of event timestamps the runs were picked from (null: unbounded): with the tenant, the
scenario and the seed, what repeats the pick. `at` and `by` are the server's: its clock when it logged the drill,
and the credential that asked (the access log's name for it: "token:<id>", "oidc:<issuer>#<sub>", "admin-token").
A run passes when its evidence verified and
it has no finding. `time_to_evidence_ms` is from asking for the bundle to its offline verification passing (null
when it did not pass). An entry is at most 65,535 bytes, so a run records at most MAX_RUN_FINDINGS findings and
`findings_total` counts them all; `summary` is computed from the runs and checks, never taken on trust (a body
whose summary disagrees is refused).

The entry and its `audit_drills` row (migration 0016) are committed together through the sequencer; the row lets
GET /api/v1/drills list a tenant's drills newest first without reading every entry.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from log.audit.canonical import canonicalize, parse_json
from log.audit.errors import InvalidEvent
from log.audit.schema import MAX_SAFE_INTEGER, TOKEN_PATTERN, format_timestamp_ms, parse_timestamp_ms, python_regex
from log.errors import InvalidInput
from log.storage import RowInsert
from log.tiles import MAX_ENTRY_SIZE

DRILL_TYPE = "auditlog.audit-drill/v1"
SCENARIOS = ("random", "denied-action", "approval-trace", "incident-replay", "scope", "retention")
EVIDENCE_STATES = ("valid", "invalid", "unavailable")
DRILL_CHECKS = ("scope", "retention")  # tenant-level checks a scenario makes beside its runs
CHECK_STATES = ("passed", "failed", "not-checked")
MAX_RUNS = 100
MAX_RUN_FINDINGS = 20
MAX_TEXT = 1000
MAX_BY = 4096  # a credential's name: an OIDC one is its issuer and subject, and a bearer JWT is at most 4 KiB
MAX_LIST = 1000  # drills per page of GET /api/v1/drills

_TOKEN = python_regex(TOKEN_PATTERN)
_CHECK_ID = re.compile(r"^[a-z][a-z0-9-]{0,63}\Z")  # completeness.CHECKS keys; a pattern, so old records stay readable

_RUN_FIELDS = {"run_id", "events", "evidence", "failed_check", "findings", "findings_total", "time_to_evidence_ms"}
_FINDING_FIELDS = {"check", "index", "event_id"}
_CHECK_FIELDS = {"check", "status", "detail"}
_SUBMITTED = {"tenant", "seed", "scenario", "period", "runs", "checks", "summary"}
_RECORD = _SUBMITTED | {"type", "at", "by"}


# -- checks of single values ---------------------------------------------------------------------------------------

def _exact(obj: Any, expected: set[str], optional: set[str], what: str, path: str) -> dict:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"{what} must be a JSON object", path or "$")
    missing = sorted(expected - optional - set(obj))
    unknown = sorted(set(obj) - expected)
    if missing or unknown:
        name = (missing or unknown)[0]
        raise InvalidEvent(f"{'missing' if missing else 'unknown'} field {name[:40]!r} in {what} (its fields: "
                           f"{', '.join(sorted(expected))})", f"{path}.{name[:40]}")
    return obj


def _count(value: Any, path: str, *, maximum: int = MAX_SAFE_INTEGER, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidEvent(f"{path.removeprefix('$.')} must be a whole number from 0 to {maximum}"
                           + (" or null" if nullable else "") + f", not {value!r}"[:80], path)
    return value


def _token(value: Any, path: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidEvent(f"{path.removeprefix('$.')} must be a token (1-128 of A-Za-z0-9._:~-), not "
                           f"{value!r}"[:200], path)
    return value


def _text(value: Any, path: str, limit: int, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidEvent(f"{path.removeprefix('$.')} must be a string of at most {limit} characters"
                           + (" or null" if nullable else ""), path)
    return value


def _choice(value: Any, choices: tuple[str, ...], path: str) -> str:
    if value not in choices:
        raise InvalidEvent(f"{path.removeprefix('$.')} must be one of {', '.join(choices)}, not {value!r}"[:200], path)
    return value


# -- the parts --------------------------------------------------------------------------------------------------

def _finding(obj: Any, path: str) -> dict:
    _exact(obj, _FINDING_FIELDS, set(), "a finding", path)
    check = obj["check"]
    if not isinstance(check, str) or not _CHECK_ID.match(check):
        raise InvalidEvent(f"a finding's check must be a completeness check id (lowercase, dashes), not "
                           f"{check!r}"[:200], f"{path}.check")
    return {"check": check, "index": _count(obj["index"], f"{path}.index", nullable=True),
            "event_id": _token(obj["event_id"], f"{path}.event_id", nullable=True)}


def _run(obj: Any, path: str) -> dict:
    _exact(obj, _RUN_FIELDS, set(), "a drilled run", path)
    evidence = _choice(obj["evidence"], EVIDENCE_STATES, f"{path}.evidence")
    failed_check = _text(obj["failed_check"], f"{path}.failed_check", MAX_TEXT, nullable=True)
    if (evidence == "valid") != (failed_check is None):
        raise InvalidEvent("failed_check is null exactly when the evidence is valid (it says why it is not)",
                           f"{path}.failed_check")
    elapsed = _count(obj["time_to_evidence_ms"], f"{path}.time_to_evidence_ms", nullable=True)
    if (evidence == "valid") != (elapsed is not None):
        raise InvalidEvent("time_to_evidence_ms is a number exactly when the evidence is valid (the time until "
                           "its verification passed)", f"{path}.time_to_evidence_ms")
    findings = obj["findings"]
    if not isinstance(findings, list) or len(findings) > MAX_RUN_FINDINGS:
        raise InvalidEvent(f"findings must be a list of at most {MAX_RUN_FINDINGS} findings (findings_total counts "
                           "them all)", f"{path}.findings")
    findings = [_finding(f, f"{path}.findings[{i}]") for i, f in enumerate(findings)]
    total = _count(obj["findings_total"], f"{path}.findings_total")
    if total < len(findings):
        raise InvalidEvent(f"findings_total ({total}) counts fewer findings than are listed ({len(findings)})",
                           f"{path}.findings_total")
    return {"run_id": _token(obj["run_id"], f"{path}.run_id"), "events": _count(obj["events"], f"{path}.events"),
            "evidence": evidence, "failed_check": failed_check, "findings": findings, "findings_total": total,
            "time_to_evidence_ms": elapsed}


def _period(obj: Any) -> dict:
    _exact(obj, {"since", "until"}, set(), "a drill's period", "$.period")
    for name in ("since", "until"):
        value = obj[name]
        if value is not None and (not isinstance(value, str) or parse_timestamp_ms(value) is None):
            raise InvalidEvent(f"period.{name} must be an RFC 3339 UTC timestamp with milliseconds, or null",
                               f"$.period.{name}")
    return {"since": obj["since"], "until": obj["until"]}


def _check(obj: Any, path: str) -> dict:
    _exact(obj, _CHECK_FIELDS, set(), "a drill check", path)
    return {"check": _choice(obj["check"], DRILL_CHECKS, f"{path}.check"),
            "status": _choice(obj["status"], CHECK_STATES, f"{path}.status"),
            "detail": _text(obj["detail"], f"{path}.detail", MAX_TEXT)}


def run_passed(run: dict) -> bool:
    """A drilled run passes when its evidence verified and it has no finding."""
    return run["evidence"] == "valid" and run["findings_total"] == 0


def summarize(runs: list[dict], checks: list[dict]) -> dict:
    """The summary of a drill's runs and checks (what the record's `summary` must be)."""
    times = sorted(r["time_to_evidence_ms"] for r in runs if r["time_to_evidence_ms"] is not None)
    passed = sum(1 for r in runs if run_passed(r))
    return {"runs": len(runs), "passed": passed, "failed": len(runs) - passed,
            "findings": sum(r["findings_total"] for r in runs),
            "checks_failed": sum(1 for c in checks if c["status"] == "failed"),
            "time_to_evidence_ms": {"median": statistics.median_low(times) if times else None,
                                    "max": times[-1] if times else None}}


def drill_passed(drill: dict) -> bool:
    """Every run passed and no check failed."""
    summary = drill["summary"]
    return summary["failed"] == 0 and summary["checks_failed"] == 0


def _parts(obj: dict) -> dict:
    """The checked parts every drill object has (submitted or logged), summary computed and compared."""
    runs = obj["runs"]
    if not isinstance(runs, list) or len(runs) > MAX_RUNS:
        raise InvalidEvent(f"runs must be a list of at most {MAX_RUNS} drilled runs", "$.runs")
    runs = [_run(r, f"$.runs[{i}]") for i, r in enumerate(runs)]
    seen: set[str] = set()
    for i, run in enumerate(runs):
        if run["run_id"] in seen:
            raise InvalidEvent(f"run {run['run_id']!r} is drilled twice", f"$.runs[{i}].run_id")
        seen.add(run["run_id"])
    checks = obj["checks"]
    if not isinstance(checks, list) or len(checks) > len(DRILL_CHECKS):
        raise InvalidEvent(f"checks must be a list of at most {len(DRILL_CHECKS)} checks", "$.checks")
    checks = [_check(c, f"$.checks[{i}]") for i, c in enumerate(checks)]
    if len({c["check"] for c in checks}) != len(checks):
        raise InvalidEvent("each check appears at most once", "$.checks")
    summary = summarize(runs, checks)
    if "summary" in obj and obj["summary"] != summary:
        raise InvalidEvent(f"summary does not agree with the runs and checks: they make {summary}"[:300],
                           "$.summary")
    return {"tenant": _token(obj["tenant"], "$.tenant"),
            "seed": _count(obj["seed"], "$.seed"), "scenario": _choice(obj["scenario"], SCENARIOS, "$.scenario"),
            "period": _period(obj["period"]),
            "runs": runs, "checks": checks, "summary": summary}


# -- the record ----------------------------------------------------------------------------------------------------

def parse_submission(obj: Any) -> dict:
    """A drill as a client submits it (the record without type, at and by; summary optional, checked when given),
    checked; InvalidEvent naming the field (JSON path) otherwise."""
    _exact(obj, _SUBMITTED, {"summary"}, "a drill", "$")
    return _parts(obj)


def format_drill(drill: dict) -> dict:
    """The wire object of a drill in memory (`at` in Unix ms); its canonical bytes are the log entry."""
    return {"type": DRILL_TYPE, "tenant": drill["tenant"], "at": format_timestamp_ms(drill["at"]),
            "by": drill["by"], "seed": drill["seed"], "scenario": drill["scenario"],
            "period": dict(drill["period"]),
            "runs": [dict(r, findings=[dict(f) for f in r["findings"]]) for r in drill["runs"]],
            "checks": [dict(c) for c in drill["checks"]], "summary": summarize(drill["runs"], drill["checks"])}


def parse_drill(obj: Any) -> dict:
    """The in-memory form of an `auditlog.audit-drill/v1` wire object (`at` in Unix ms); InvalidEvent naming the bad
    field."""
    if not isinstance(obj, dict) or obj.get("type") != DRILL_TYPE:
        raise InvalidEvent(f"not a {DRILL_TYPE} record", "$.type")
    _exact(obj, _RECORD, set(), "an audit drill record", "$")
    at = parse_timestamp_ms(obj["at"]) if isinstance(obj["at"], str) else None
    if at is None:
        raise InvalidEvent("at must be an RFC 3339 UTC timestamp with milliseconds", "$.at")
    by = obj["by"]
    if not isinstance(by, str) or not by or len(by) > MAX_BY:
        raise InvalidEvent(f"by must be the credential's name, 1-{MAX_BY} characters", "$.by")
    return {**_parts(obj), "at": at, "by": by}


def drill_entry(drill: dict) -> bytes:
    """The log entry of a drill in memory: canonical bytes; InvalidEvent naming `runs` when it is over the size an
    entry may have (fewer findings per run, or fewer runs, fit)."""
    record = canonicalize(format_drill(drill))
    if len(record) > MAX_ENTRY_SIZE:
        raise InvalidEvent(f"the drill's record is {len(record)} bytes; a log entry holds at most {MAX_ENTRY_SIZE}: "
                           "list fewer findings per run (findings_total still counts them) or drill fewer runs",
                           "$.runs")
    return record


# -- the service ---------------------------------------------------------------------------------------------------

_COLUMNS = ("tenant", "drilled_at", "drilled_by", "runs", "passed", "failed", "findings", "record")


def drill_row(drill: dict, record: bytes) -> RowInsert:
    """The `audit_drills` row of a drill entry (`record`, its bytes; `drill`, the record as parse_drill reads it):
    one definition for the sequencer's write and an archive's restore."""
    from log.audit.tables import audit_drills  # SQLAlchemy: loaded by the server, not by `auditlog drill`

    summary = drill["summary"]
    return RowInsert(audit_drills.name, _COLUMNS, (
        drill["tenant"], drill["at"], drill["by"], summary["runs"], summary["passed"], summary["failed"],
        summary["findings"], record.decode()))


class Drills:
    """The drills of one log: record one (its entry and row committed together), list them."""

    def __init__(self, log, clock: Callable[[], float] = time.time):
        self.log = log
        self._clock = clock

    async def record(self, submitted: Any, by: str) -> tuple[int, dict]:
        """Log the drill a client submitted (parse_submission), at the server's time and as `by`: (its entry's index,
        the record as logged). InvalidInput naming the field for a bad one."""
        try:
            drill = {**parse_submission(submitted), "at": int(self._clock() * 1000), "by": by}
            record = drill_entry(drill)
            parse_drill(parse_json(record).value)  # what is logged must read back: `by` is checked there
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        added = await self.log.add_entries([record], rows=[[drill_row(drill, record)]])
        return added.first_index, parse_json(record).value

    async def list(self, tenant: str | None = None, *, tenants: frozenset[str] | None = None, after: int | None = None,
                   limit: int = 100) -> tuple[list[dict], int | None]:
        """Drills newest first, each `{"index", ...the record}`: of `tenant` (or all), within `tenants` (None: any),
        older than entry `after` (a previous page's next_cursor). Returns the page and the next cursor (None: the
        last page)."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}, not {limit}", field="limit")
        from sqlalchemy import select

        from log.audit.tables import audit_drills

        d = audit_drills.c
        query = select(d.idx, d.record)
        if tenant is not None:
            query = query.where(d.tenant == tenant)
        if tenants is not None:
            query = query.where(d.tenant.in_(sorted(tenants)))
        if after is not None:
            query = query.where(d.idx < after)
        query = query.order_by(d.idx.desc()).limit(limit + 1)
        rows = list(await self.log.read(lambda tx: list(tx.execute(query))))
        page = [{"index": idx, **parse_json(record.encode() if isinstance(record, str) else record).value}
                for idx, record in rows[:limit]]
        return page, (page[-1]["index"] if len(rows) > limit else None)


__all__ = ["CHECK_STATES", "DRILL_CHECKS", "DRILL_TYPE", "Drills", "EVIDENCE_STATES", "MAX_RUNS", "MAX_RUN_FINDINGS",
           "SCENARIOS", "drill_entry", "drill_passed", "format_drill", "parse_drill", "parse_submission", "run_passed",
           "summarize"]
