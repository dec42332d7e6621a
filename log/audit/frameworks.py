"""The control catalogue of compliance reports: which framework controls the audit log evidences, by which events
or log records, and which completeness findings (log/audit/completeness.py) count against each.

A control is evidenced by the events of the report's tenant and period for which its `predicate` holds, and, for
some, by log records that are not events (`records`: registry changes, token changes, retention policies). The
findings named in `findings` count against it; an `integrity` control also fails when the report's verification
does (a tampered event, a gap in the tree, a tree that does not fold to the signed root). The report engine
(log/audit/report.py) decides each control's status from these: "evidenced", "findings" or "no evidence".

Numbering, as the frameworks publish it:
* SOC 2: the AICPA 2017 Trust Services Criteria (common criteria CC6.1, CC6.2, CC7.1, CC8.1).
* HIPAA: the Security Rule's technical safeguards, 45 CFR 164.312(b) and (d).
* SOX: section 404 of the Sarbanes-Oxley Act of 2002 (management's assessment of internal control over financial
  reporting); the log evidences the authorization chains such controls rest on.
* ISO/IEC 27001: Annex A of the 2013 edition (A.12 operations security, A.16 incident management; A.9 access
  control) with the 2022 edition's number of the control that replaced each (`iso2022`).
* EU AI Act: Regulation (EU) 2024/1689, Art. 12 (record-keeping), Art. 14 (human oversight), Art. 19 (providers
  keep the automatically generated logs for at least six months).

Standard library only: descriptions are this project's summaries, not the frameworks' text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from log.audit import completeness
from log.audit.completeness import EXECUTION_TYPES

SIX_MONTHS_DAYS = 183  # EU AI Act Art. 19: "at least six months"

FRAMEWORKS: dict[str, str] = {
    "soc2": "SOC 2 - AICPA Trust Services Criteria (2017)",
    "hipaa": "HIPAA Security Rule - 45 CFR Part 164, Subpart C",
    "sox": "Sarbanes-Oxley Act of 2002",
    "iso27001": "ISO/IEC 27001 Annex A (2013 numbering, 2022 in brackets)",
    "eu-ai-act": "EU AI Act - Regulation (EU) 2024/1689",
}

# The log records (not events) a control can be evidenced by, as the report engine counts them.
REGISTRY_REMOVALS = "registry-removal"  # a producer key retired or revoked (a producer of the tenant)
TOKEN_REVOCATIONS = "token-revocation"  # an API token covering the tenant revoked
TOKEN_GRANTS = "token-grant"  # an API token covering the tenant created
KEY_GRANTS = "registry-grant"  # a producer of the tenant registered, or given a key
RETENTION_POLICIES = "retention-policy"  # a retention policy in force for the tenant (for Art. 19: six months)
RECORD_KINDS = (REGISTRY_REMOVALS, TOKEN_REVOCATIONS, TOKEN_GRANTS, KEY_GRANTS, RETENTION_POLICIES)

INCIDENT_TYPES = frozenset({"escalation", "denial"})


@dataclass(frozen=True)
class Control:
    framework: str  # a key of FRAMEWORKS
    control_id: str  # as the framework numbers it: "CC6.1", "164.312(b)", "Section 404", "A.12.4.1", "Art. 12"
    name: str
    description: str  # what the log shows for it, in a sentence
    evidence: str  # which events or records evidence it, in words
    predicate: Callable[[dict], bool] | None  # the events that evidence it (None: records only)
    records: tuple[str, ...] = ()  # RECORD_KINDS that evidence it too
    findings: tuple[str, ...] = ()  # completeness check ids counted against it
    integrity: bool = False  # a failed verification of the period counts against it
    iso2022: str | None = None  # an ISO/IEC 27001:2013 control's successor number(s) in the 2022 edition

    @property
    def key(self) -> str:
        return f"{self.framework}:{self.control_id}"

    def to_json(self) -> dict:
        out = {"framework": self.framework, "id": self.control_id, "name": self.name,
               "description": self.description, "evidenced_by": self.evidence,
               "findings_counted": list(self.findings), "integrity": self.integrity}
        if self.iso2022 is not None:
            out["iso2022"] = self.iso2022
        return out


# -- predicates over one event (a valid auditlog.event/v1 object) ----------------------------------------------------

_NONE: dict = {}


def _block(event: dict, name: str) -> dict:
    """A block of a valid event (the schema makes each an object), or an empty one when absent."""
    return event.get(name) or _NONE


def any_event(event: dict) -> bool:
    return True


def access_decision(event: dict) -> bool:
    """A decision on whether something may happen: a policy decision, a denial, an approval, or any event that
    carries the policy engine's verdict."""
    return event.get("event_type") in ("policy_decision", "denial", "approval") or "decision" in _block(event, "policy")


def identified_actor(event: dict) -> bool:
    """An event that says who acted: a person, or an agent acting for one (on_behalf_of)."""
    return _block(event, "actor").get("type") == "user" or "on_behalf_of" in event


def versioned(event: dict) -> bool:
    """An event that records the versions in force (model, prompt, tools, retrieval index, policy)."""
    return bool(_block(event, "snapshot")) or "snapshot" in _block(event, "policy")


def authorization(event: dict) -> bool:
    """A link of an authorization chain: intent, policy decision, approval, human review, denial, escalation."""
    return (event.get("event_type") in ("intent", "policy_decision", "approval", "human_review", "denial",
                                        "escalation") or "approval" in event)


def monitoring_signal(event: dict) -> bool:
    """What monitoring acts on: escalations, denials, errors and failed or cancelled outcomes."""
    return (event.get("event_type") in INCIDENT_TYPES or "error" in event
            or _block(event, "outcome").get("status") in ("failure", "cancelled"))


def operator_action(event: dict) -> bool:
    """An action of a person or the system itself (administrators and operators), not of an agent."""
    return _block(event, "actor").get("type") in ("user", "system")


def execution(event: dict) -> bool:
    return event.get("event_type") in EXECUTION_TYPES


def human_oversight(event: dict) -> bool:
    """A person looked: a human review, an approval, or an escalation to a person."""
    return event.get("event_type") in ("human_review", "approval", "escalation") or "approval" in event


def with_payload(event: dict) -> bool:
    """An event whose inputs or outputs are kept as content-addressed blobs (evidence whose integrity is provable)."""
    return "input" in event or "output" in event


def shape(event: dict) -> tuple:
    """The parts of an event the predicates above read, and nothing else: two events of one shape evidence the same
    controls, so a report evaluates the predicates once per shape (a predicate that reads more must add it here)."""
    policy, approval = _block(event, "policy"), event.get("approval")
    return (event.get("event_type"), _block(event, "actor").get("type"), "on_behalf_of" in event,
            policy.get("decision"), "snapshot" in policy, bool(_block(event, "snapshot")), approval is not None,
            "error" in event, _block(event, "outcome").get("status"), "input" in event or "output" in event)


APPROVAL, EXECUTION, PAYLOAD, DENIAL, RETENTION = completeness.CHECKS  # the checks' ids, in their order

CONTROLS: tuple[Control, ...] = (
    # SOC 2, common criteria.
    Control("soc2", "CC6.1", "Logical access security",
            "Access to protected assets goes through logical access controls; each decision is recorded.",
            "policy decisions, denials and approvals (and every event carrying a policy verdict)",
            access_decision, findings=(DENIAL, EXECUTION)),
    Control("soc2", "CC6.2", "Access provisioning and removal",
            "Credentials are registered before use and removed when no longer authorized.",
            "producer keys registered, retired or revoked and API tokens created or revoked for the tenant",
            None, records=(KEY_GRANTS, REGISTRY_REMOVALS, TOKEN_GRANTS, TOKEN_REVOCATIONS)),
    Control("soc2", "CC7.1", "System monitoring",
            "Detection and monitoring procedures find changes and anomalies; the log is verified end to end.",
            "every event of the period, verified against the signed checkpoint; escalations, errors, failures",
            any_event, findings=(PAYLOAD,), integrity=True),
    Control("soc2", "CC8.1", "Change management",
            "Changes are authorized and the versions in force are recorded with what they did.",
            "events recording model, prompt, tool, retrieval-index or policy versions",
            versioned, findings=(APPROVAL,)),
    # HIPAA Security Rule, technical safeguards.
    Control("hipaa", "164.312(b)", "Audit controls",
            "Activity in systems holding ePHI is recorded and can be examined.",
            "every event of the period, verified against the signed checkpoint, with provable payloads",
            any_event, findings=(PAYLOAD, RETENTION), integrity=True),
    Control("hipaa", "164.312(d)", "Person or entity authentication",
            "Whoever acts is shown to be who they claim: every event is signed by a registered producer key, and "
            "names the person it acted for.",
            "events naming a person or acting on behalf of one (each signature verified)",
            identified_actor, findings=(EXECUTION,)),
    # SOX.
    Control("sox", "Section 404", "Internal control over financial reporting: authorization chains",
            "Every action traces back through its approvals and policy decisions to the intent that started it.",
            "intents, policy decisions, approvals, human reviews, denials and escalations",
            authorization, findings=(APPROVAL, DENIAL, EXECUTION), integrity=True),
    # ISO/IEC 27001 Annex A: 2013 numbering, 2022 successor.
    Control("iso27001", "A.12.4.1", "Event logging",
            "Event logs of user activities, exceptions and security events are produced and kept.",
            "every event of the period", any_event, findings=(PAYLOAD,), iso2022="A.8.15"),
    Control("iso27001", "A.12.4.2", "Protection of log information",
            "Logs are protected against tampering: the period verifies against the signed, witnessed checkpoint.",
            "the verification of the period (leaf hashes, signatures, gaps)", any_event, findings=(PAYLOAD,),
            integrity=True, iso2022="A.8.15"),
    Control("iso27001", "A.12.4.3", "Administrator and operator logs",
            "What administrators and operators do is logged and protected.",
            "events by people and the system; producer-registry and API-token changes",
            operator_action, records=(KEY_GRANTS, REGISTRY_REMOVALS, TOKEN_GRANTS, TOKEN_REVOCATIONS),
            iso2022="A.8.15"),
    Control("iso27001", "A.8.16", "Monitoring activities (new in the 2022 edition; A.12.4 in 2013)",
            "Behaviour is monitored for anomalies and acted on.",
            "escalations, denials, errors, failed or cancelled outcomes", monitoring_signal, integrity=True,
            iso2022="A.8.16"),
    Control("iso27001", "A.12.1.2", "Change management",
            "Changes are controlled; the versions in force are recorded.",
            "events recording model, prompt, tool, retrieval-index or policy versions", versioned,
            findings=(APPROVAL,), iso2022="A.8.32"),
    Control("iso27001", "A.9.1.1, A.9.2.3, A.9.4.2", "Access control, privileged access, secure authentication",
            "Access follows policy; privileged actions need approval; every producer authenticates by signature.",
            "policy decisions, denials and approvals", access_decision, findings=(DENIAL, EXECUTION),
            iso2022="A.5.15, A.8.2, A.8.5"),
    Control("iso27001", "A.16.1.1-A.16.1.6", "Information security incident management",
            "Incidents are reported, assessed, responded to and learned from.",
            "escalations, denials, errors, failed or cancelled outcomes", monitoring_signal, findings=(DENIAL,),
            iso2022="A.5.24-A.5.27"),
    Control("iso27001", "A.16.1.7", "Collection of evidence",
            "Evidence is identified, collected and preserved: the log proves each event, its payloads and how long "
            "they are kept.",
            "events with content-addressed payloads; the period's verification; retention policies",
            with_payload, records=(RETENTION_POLICIES,), findings=(PAYLOAD, RETENTION), integrity=True,
            iso2022="A.5.28"),
    # EU AI Act.
    Control("eu-ai-act", "Art. 12", "Record-keeping",
            "The AI system records events automatically over its lifetime, traceable to who started them.",
            "every event of the period, its execution steps traced to an intent or a principal", any_event,
            findings=(EXECUTION, PAYLOAD), integrity=True),
    Control("eu-ai-act", "Art. 14", "Human oversight",
            "People oversee the system: reviews, approvals and escalations are recorded with the policy they "
            "applied.",
            "human reviews, approvals and escalations", human_oversight, findings=(APPROVAL, DENIAL)),
    Control("eu-ai-act", "Art. 19", "Automatically generated logs (kept at least six months)",
            "The logs are kept for a period fit for purpose, at least six months.",
            f"a retention policy in force for the tenant's events of at least {SIX_MONTHS_DAYS} days (or none "
            "deleting them) and for its payloads", None, records=(RETENTION_POLICIES,), findings=(RETENTION,)),
)

FRAMEWORK_CHOICES = (*FRAMEWORKS, "all")


def controls_for(frameworks: str | list[str] | tuple[str, ...]) -> list[Control]:
    """The controls of the named frameworks ("all" for every one), in catalogue order; ValueError for a name that is
    not one of FRAMEWORK_CHOICES."""
    names = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    for name in names:
        if name not in FRAMEWORK_CHOICES:
            raise ValueError(f"framework must be one of {', '.join(FRAMEWORK_CHOICES)}, not {name!r}")
    wanted = set(FRAMEWORKS) if "all" in names else set(names)
    return [control for control in CONTROLS if control.framework in wanted]
