"""The five completeness checks (log/audit/completeness.py) and the reading of human reviews (log/audit/review.py):
each check fires on the event that breaks it and on nothing else."""

import pytest

from log.audit.completeness import (
    CHECKS, Finding, event_findings, payload_findings, retention_findings,
)
from log.audit.review import edit_pairs, is_review, review_verdict, text_diff

A, B = "a" * 64, "b" * 64


def event(event_id, event_type, parent=None, run="run-1", **fields):
    return {"event_id": event_id, "run_id": run, "event_type": event_type, "parent_event_id": parent, **fields}


def good_run(run="run-1"):
    """intent -> policy decision (allow, versioned) -> approval (versioned) -> tool call -> outcome."""
    return [
        (0, event("i", "intent", run=run)),
        (1, event("p", "policy_decision", "i", run, policy={"decision": "allow", "matched_rule": "r1",
                                                             "snapshot": "policies@v7"})),
        (2, event("a", "approval", "p", run, approval={"required": True}, snapshot={"policy_snapshot": "v7"})),
        (3, event("t", "tool_call", "a", run, input={"sha256": A})),
        (4, event("o", "outcome", "t", run, outcome={"status": "success"}, output={"sha256": B})),
    ]


def checks_of(findings):
    return [(f.check, f.index) for f in findings]


def test_a_complete_run_has_no_findings():
    assert event_findings(good_run()) == []
    assert payload_findings(good_run(), lambda sha: "present") == []


def test_an_approval_without_policy_version():
    run = good_run()
    run[2] = (2, event("a", "approval", "p", approval={"required": True}))
    assert checks_of(event_findings(run)) == [("approval-without-policy-version", 2)]


def test_an_execution_cut_off_from_its_intent_unless_on_behalf_of_names_someone():
    run = good_run()
    run[3] = (3, event("t", "tool_call", "missing-parent"))
    found = event_findings(run)
    assert checks_of(found) == [("execution-without-actor", 3)]
    assert found[0].event_id == "t" and found[0].run_id == "run-1"
    run[3] = (3, event("t", "tool_call", "missing-parent", on_behalf_of={"type": "user", "id": "u1"}))
    assert event_findings(run) == []
    # An intent of ANOTHER run with the same event id does not count.
    other = [(9, event("x", "intent", run="run-2")), (10, event("t2", "external_action", "x"))]
    assert checks_of(event_findings(other)) == [("execution-without-actor", 10)]


def test_a_denial_without_rule_or_version():
    denied = [(0, event("i", "intent")),
              (1, event("d", "policy_decision", "i", policy={"decision": "deny", "snapshot": "v7"})),
              (2, event("n", "denial", "i", snapshot={"policy_snapshot": "v7"}, policy={"decision": "deny",
                                                                                         "matched_rule": "r9"})),
              (3, event("n2", "denial", "i"))]
    found = event_findings(denied)
    assert checks_of(found) == [("denial-without-rationale", 1), ("denial-without-rationale", 3)]
    assert "matched_rule" in found[0].detail and "version" not in found[0].detail
    assert "matched_rule" in found[1].detail and "version" in found[1].detail


def test_payloads_missing_or_altered_are_findings_unless_a_deletion_accounts_for_them():
    states = {A: "missing", B: "deleted"}
    asked = []

    def state(sha):
        asked.append(sha)
        return states[sha]

    run = good_run() + [(5, event("t3", "tool_call", "a", input={"sha256": A}))]
    assert checks_of(payload_findings(run, state)) == [("unprovable-payload", 3), ("unprovable-payload", 5)]
    assert sorted(asked) == [A, B]  # each blob asked about once
    states[A] = "mismatch"
    assert "do not hash" in payload_findings(run, lambda sha: states[sha])[0].detail
    with pytest.raises(ValueError):
        payload_findings(run, lambda sha: "gone")


def test_retention_policies_for_events_and_blobs():
    policies = [{"tenant": "acme", "record_class": "event", "selector": "*", "retain_days": 400},
                {"tenant": "globex", "record_class": "blob", "selector": "*", "retain_days": 30},
                {"tenant": "acme", "record_class": "blob", "selector": "*", "retain_days": None}]
    found = retention_findings("acme", policies)
    assert [(f.check, f.index) for f in found] == [("no-retention-policy", None)]
    assert "payloads" in found[0].detail
    assert len(retention_findings("initech", policies)) == 2
    assert retention_findings("acme", policies[:1] + [{**policies[1], "tenant": "acme"}]) == []


def test_findings_name_known_checks_only():
    assert len(CHECKS) == 5
    with pytest.raises(ValueError):
        Finding("made-up", 1, "e", "r", "x")
    assert Finding("no-retention-policy", None, None, None, "d").to_json()["check"] == "no-retention-policy"


@pytest.mark.parametrize("fields, verdict", [
    ({"event_type": "human_review", "input": {"sha256": A}, "output": {"sha256": A}}, "approved"),
    ({"event_type": "human_review", "input": {"sha256": A}, "output": {"sha256": B}}, "edited"),
    ({"event_type": "human_review", "input": {"sha256": A}, "outcome": {"status": "cancelled"}}, "rejected"),
    ({"event_type": "human_review", "policy": {"decision": "deny"}}, "rejected"),
    ({"event_type": "human_review", "input": {"sha256": A}, "output": {"sha256": B},
      "extensions": {"review": {"decision": "approved"}}}, "approved"),
    ({"event_type": "approval", "approval": {"approver": {"type": "user", "id": "u"}}}, "approved"),
    ({"event_type": "approval", "approval": {"required": True}}, None),
    ({"event_type": "tool_call"}, None),
])
def test_review_verdicts(fields, verdict):
    assert review_verdict(fields) == verdict
    assert is_review(fields) == (verdict is not None)


def test_review_diff_restores_both_sides_and_pairs_the_edits():
    draft = "Refund the customer 100 EUR today.\nClose the case."
    final = "Refund the customer 80 EUR today.\nEscalate the case to compliance."
    diff = text_diff(draft, final)
    assert "".join(text for op, text in diff if op != "+") == draft
    assert "".join(text for op, text in diff if op != "-") == final
    assert edit_pairs(draft, final) == [("100", "80"), ("Close", "Escalate"), ("", "to compliance")]
    assert edit_pairs("same", "same") == [] and text_diff("", "") == []
