"""Completeness: the failures an audit of AI records must catch, as findings that name the offending events.

Compliance reports (log/audit/report.py), audit drills (api/cli/drill.py) and the web explorer read events through
these same five checks:

1. approval-without-policy-version: an approval (event_type "approval", or any event carrying `approval`) that
   names no policy version: neither `snapshot.policy_snapshot` nor `policy.snapshot`. Nobody can later say which
   rules the approver applied.
2. execution-without-actor: an execution (tool_call, tool_result, external_action) with no `on_behalf_of` whose
   chain of parents within its run never reaches an `intent`: what was done cannot be traced to who asked for it.
3. unprovable-payload: an event names a blob (by SHA-256) that the store no longer holds, or holds with other bytes,
   and no logged deletion (a retention run, an erasure, a blob erasure) accounts for it.
4. denial-without-rationale: a denial (event_type "denial", or `policy.decision` "deny") without the rule that
   matched (`policy.matched_rule`) or without the policy version it was matched in.
5. no-retention-policy: the tenant has no retention policy in force for its events (context) or for its blobs
   (results), so nothing says how long the records are kept.

Pure functions over (log index, event) pairs; what a check needs from storage comes in as data or a callable, so
an auditor's offline drill runs them on the events of an evidence bundle as the server's report runs them on its
database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from log.audit.schema import content_references

CHECKS: dict[str, str] = {
    "approval-without-policy-version": "Approval events without policy version context",
    "execution-without-actor": "Execution logs disconnected from the initiating actor",
    "unprovable-payload": "Payloads whose integrity cannot be proven",
    "denial-without-rationale": "Denied actions without a link to the policy rationale",
    "no-retention-policy": "No retention policy for context and results",
}

EXECUTION_TYPES = frozenset({"tool_call", "tool_result", "external_action"})
# What a blob_state callable answers; "deleted" means a logged deletion accounts for the blob being gone.
BLOB_STATES = ("present", "missing", "mismatch", "deleted")


@dataclass(frozen=True)
class Finding:
    check: str  # a key of CHECKS
    index: int | None  # the offending entry's log index; None for a finding about the tenant
    event_id: str | None
    run_id: str | None
    detail: str  # one sentence naming what is missing

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown completeness check {self.check!r}")

    @property
    def title(self) -> str:
        return CHECKS[self.check]

    def to_json(self) -> dict:
        return {"check": self.check, "index": self.index, "event_id": self.event_id, "run_id": self.run_id,
                "detail": self.detail}


def _part(event: dict, name: str) -> dict:
    value = event.get(name)
    return value if isinstance(value, dict) else {}


def policy_version(event: dict) -> str | None:
    """The policy version an event names: `policy.snapshot`, else `snapshot.policy_snapshot`; None for neither."""
    return _part(event, "policy").get("snapshot") or _part(event, "snapshot").get("policy_snapshot") or None


def is_approval(event: dict) -> bool:
    return event.get("event_type") == "approval" or "approval" in event


def is_denial(event: dict) -> bool:
    return event.get("event_type") == "denial" or _part(event, "policy").get("decision") == "deny"


def _finding(check: str, index: int, event: dict, detail: str) -> Finding:
    return Finding(check, index, event.get("event_id"), event.get("run_id"), detail)


def event_findings(events: Sequence[tuple[int, dict]]) -> list[Finding]:
    """Checks 1, 2 and 4 over `events` (any number of runs, any order); findings in log index order. A run's
    causal chains are followed among the events given, so pass whole runs for check 2."""
    by_run: dict[str, dict[str, dict]] = {}
    for index, event in sorted(events, key=lambda pair: pair[0]):
        by_run.setdefault(event.get("run_id"), {}).setdefault(event.get("event_id"), event)
    findings: list[Finding] = []
    for index, event in sorted(events, key=lambda pair: pair[0]):
        if is_approval(event) and policy_version(event) is None:
            findings.append(_finding("approval-without-policy-version", index, event,
                                     "the approval names no policy version (policy.snapshot or "
                                     "snapshot.policy_snapshot)"))
        if (event.get("event_type") in EXECUTION_TYPES and not event.get("on_behalf_of")
                and not _reaches_intent(event, by_run.get(event.get("run_id"), {}))):
            findings.append(_finding("execution-without-actor", index, event,
                                     f"the {event.get('event_type')} has no on_behalf_of and no chain of parents "
                                     f"to an intent in run {event.get('run_id')}"))
        if is_denial(event):
            missing = [name for name, present in (("policy.matched_rule", _part(event, "policy").get("matched_rule")),
                                                  ("a policy version", policy_version(event))) if not present]
            if missing:
                findings.append(_finding("denial-without-rationale", index, event,
                                         f"the denial names no {' and no '.join(missing)}"))
    return findings


def _reaches_intent(event: dict, run: dict[str, dict]) -> bool:
    seen: set[str] = set()
    current: dict | None = event
    while current is not None:
        if current.get("event_type") == "intent":
            return True
        parent = current.get("parent_event_id")
        if not isinstance(parent, str) or parent in seen:
            return False
        seen.add(parent)
        current = run.get(parent)
    return False


def payload_findings(events: Sequence[tuple[int, dict]], blob_state: Callable[[str], str]) -> list[Finding]:
    """Check 3: each blob an event names, by `blob_state(sha256)` (one of BLOB_STATES); each blob asked about once.
    A blob gone with a logged deletion ("deleted") is accounted for, not a finding."""
    states: dict[str, str] = {}
    findings: list[Finding] = []
    for index, event in sorted(events, key=lambda pair: pair[0]):
        for sha256 in content_references(event):
            if sha256 not in states:
                states[sha256] = blob_state(sha256)
            state = states[sha256]
            if state == "missing":
                findings.append(_finding("unprovable-payload", index, event,
                                         f"blob {sha256} is not in the store and no logged deletion accounts for it"))
            elif state == "mismatch":
                findings.append(_finding("unprovable-payload", index, event,
                                         f"the store's bytes for blob {sha256} do not hash to it"))
            elif state not in ("present", "deleted"):
                raise ValueError(f"blob_state answered {state!r} for {sha256}, not one of {BLOB_STATES}")
    return findings


def retention_findings(tenant: str, policies: Sequence[dict]) -> list[Finding]:
    """Check 5: `policies` are the retention policies in force (dicts with tenant, record_class, selector,
    retain_days, as GET /api/v1/retention/policies lists them); a finding when none covers the tenant's events
    (context) or none its blobs (results)."""
    classes = {policy.get("record_class") for policy in policies
               if policy.get("tenant") == tenant and policy.get("retain_days") is not None}
    findings = []
    for record_class, what in (("event", "its events (context)"), ("blob", "its payloads (results)")):
        if record_class not in classes:
            findings.append(Finding("no-retention-policy", None, None, None,
                                    f"tenant {tenant} has no retention policy for {what}"))
    return findings
