"""Human review, as the log records it: one definition that compliance reports, audit drills and the web explorer
(api/server/explorer/review.js mirrors it) all read events by.

A review is an event with `event_type` "human_review", or an "approval" that names its `approval.approver`:

* `actor` is the reviewer (type "user") and the event's `timestamp` is when they acted;
* `input` is what they saw (the AI's draft, a blob) and `output` what they let through (the final action, a blob);
* `approval.review_dwell_ms` is how long they looked.

The verdict is `extensions.review.decision` when the producer states one ("approved", "edited", "rejected");
otherwise it is read off the event: "rejected" when `outcome.status` is failure or cancelled or `policy.decision` is
deny; "edited" when input and output name different blobs; else "approved". The diff between draft and final is
where the AI is consistently wrong, so edits are compared word by word, whitespace kept, and reported as
(removed, added) pairs that can be counted across many reviews.

Standard library only: the offline drill and the report engine both import it.
"""

from __future__ import annotations

import difflib
import re

VERDICTS = ("approved", "edited", "rejected")
REJECTING_OUTCOMES = frozenset({"failure", "cancelled"})

# Words (letters, digits, underscore), runs of whitespace, or single other characters: the units a reviewer edits.
_UNITS = re.compile(r"\w+|\s+|[^\w\s]")


def is_review(event: dict) -> bool:
    """True for a human review: a human_review event, or an approval that names its approver."""
    kind = event.get("event_type")
    if kind == "human_review":
        return True
    approval = event.get("approval")
    return kind == "approval" and isinstance(approval, dict) and isinstance(approval.get("approver"), dict)


def _sha256_of(event: dict, field: str) -> str | None:
    reference = event.get(field)
    return reference.get("sha256") if isinstance(reference, dict) else None


def review_verdict(event: dict) -> str | None:
    """"approved", "edited" or "rejected" for a review (the module docstring says how); None for any other event."""
    if not is_review(event):
        return None
    stated = ((event.get("extensions") or {}).get("review") or {}) if isinstance(event.get("extensions"), dict) else {}
    decision = stated.get("decision") if isinstance(stated, dict) else None
    if decision in VERDICTS:
        return decision
    outcome = event.get("outcome") if isinstance(event.get("outcome"), dict) else {}
    policy = event.get("policy") if isinstance(event.get("policy"), dict) else {}
    if outcome.get("status") in REJECTING_OUTCOMES or policy.get("decision") == "deny":
        return "rejected"
    draft, final = _sha256_of(event, "input"), _sha256_of(event, "output")
    if draft is not None and final is not None and draft != final:
        return "edited"
    return "approved"


def _units(text: str) -> list[str]:
    return _UNITS.findall(text)


def text_diff(draft: str, final: str) -> list[tuple[str, str]]:
    """The change from `draft` to `final` as runs of (op, text): "=" kept, "-" removed, "+" added, word by word.
    Joining the "=" and "-" texts gives the draft back; joining the "=" and "+" texts gives the final."""
    a, b = _units(draft), _units(final)
    out: list[tuple[str, str]] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + text)
        else:
            out.append((op, text))

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            add("=", "".join(a[i1:i2]))
        else:
            add("-", "".join(a[i1:i2]))
            add("+", "".join(b[j1:j2]))
    return out


def edit_pairs(draft: str, final: str) -> list[tuple[str, str]]:
    """Each change from `draft` to `final` as (removed text, added text), whitespace at either end trimmed: one
    pair per run of changes between kept text, "" for a side with nothing. Counting these over many reviews gives
    the commonest edits."""
    pairs: list[tuple[str, str]] = []
    removed: list[str] = []
    added: list[str] = []
    for op, text in text_diff(draft, final) + [("=", "")]:
        if op == "-":
            removed.append(text)
        elif op == "+":
            added.append(text)
        elif removed or added:
            pair = ("".join(removed).strip(), "".join(added).strip())
            if pair != ("", ""):
                pairs.append(pair)
            removed, added = [], []
    return pairs
