"""Data-subject requests (issue 20): access to everything the log holds about a data subject, and its erasure.

A subject is named by the caller with a reference (a customer id, an e-mail address); everywhere in the log and its
tables it is the reference's token in the tenant (`Vault.subject_token`). The reference itself is never logged,
stored outside the vault, or put in a URL.

Access (`access`) finds every event of the tenant that carries one of the subject's tokens (audit_event_tokens:
the subject token and every token of its vault mappings) and answers them as an evidence bundle the offline verifier
checks (`AuditService.subject_evidence`, log/audit/evidence.py). It is a read: it is recorded in the access log
(api/server/access_log.py) with the subject's token as its target, as every other read of contents is, and not as a
log entry: it changes nothing the log proves, and reads must not queue behind the one writer.

Erasure (`erase`) is a write and is logged first. In order, under the legal holds' lock (log/audit/holds.py):

1. Decide, in one read of the primary: the subject's tokens, the events carrying them, the blobs those events cite
   that are still stored; which of those an active legal hold covers (`ActiveHolds.for_blobs`), a retention policy
   still obliges the log to keep (`retention.blob_retention_until`), or another event cites too (a blob is
   content-addressed: the same bytes cited by an event that does not carry the subject's tokens, of this tenant or
   another, are that record's too, such as a system prompt every run sends; erasing one person must not delete
   others' records, so such a blob is kept and counted, and an administrator who finds it personal deletes it with
   `DELETE /api/v1/blobs/{sha256}`); whether a hold covers the subject itself (`ActiveHolds.for_subject`: its key
   is then kept).
2. Log the `auditlog.subject-erasure/v1` entry, and in the same transaction its deletion_items rows (the list its
   `list_sha256` commits to: `subject <tenant>/<token>` when the key goes, `blob <sha256>` per blob that goes) and
   its subject_erasures row (finished_at NULL). Nothing is destroyed before this commit: a crash before it leaves
   everything as it was and nothing logged.
3. Destroy: shred the subject's key (`Vault.shred_subject`, idempotent), delete each listed blob (an unlink each,
   idempotent). A crash here leaves the entry and its list: `resume` (at start, on takeover, before each erasure)
   finishes every erasure whose row is unfinished, from its list, skipping what is already gone.
4. Mark the row finished.

The record (RFC 8785 canonical JSON; times RFC 3339 UTC with milliseconds):

    {"type": "auditlog.subject-erasure/v1", "tenant": T, "subject": "vt.<token>", "reason": "...", "at": "...",
     "key_shredded": true | false, "blobs_deleted": n, "list_sha256": "<hex>",
     "skipped": {"subject_hold": hold id | null, "blobs_held": {hold id: count},
                 "blobs_retained": {"<retention-policy entry index>": count}, "blobs_shared": count}}

`key_shredded` false with `subject_hold` set: a legal hold covers the subject, its key (and so its identities) are
kept until the hold is released and the erasure asked again; the answer says `complete: false`. Asking again is
always allowed: each request is its own entry, and destruction is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from log.audit.canonical import canonicalize
from log.audit.errors import InvalidEvent
from log.audit.holds import MAX_TEXT, ActiveHolds, in_chunks
from log.audit.lifecycle_names import deletion_list_sha256, is_vault_token
from log.audit.retention import blob_retention_until
from log.audit.schema import TOKEN_PATTERN, format_timestamp_ms, python_regex
from log.audit.tables import (
    audit_event_blobs, audit_event_tokens, deletion_items, subject_erasures, vault_tokens,
)
from log.errors import InvalidInput, NotFound
from log.storage import RowInsert

SUBJECT_ERASURE_TYPE = "auditlog.subject-erasure/v1"
_TOKEN = python_regex(TOKEN_PATTERN)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidInput(f"{field} must be a string of at most {MAX_TEXT} characters", field=field)
    if not value.strip():
        raise InvalidInput(f"{field} is required: an erasure is logged with why it was asked", field=field)
    return value


def _tenant(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidInput(f"tenant must be a tenant id (a token), not {str(value)[:80]!r}", field="tenant")
    return value


def _reference(value: Any) -> str:
    # The reference is personal data: it is checked, never echoed back in a message.
    if not isinstance(value, str) or not value:
        raise InvalidInput("subject must be the data subject's reference (a non-empty string)", field="subject")
    return value


@dataclass(frozen=True)
class ErasurePlan:
    """What step 1 decided. `items` is the deletion list (kind, item)."""

    tenant: str
    subject: str
    items: list[tuple[str, str]]
    subject_hold: str | None
    blobs_held: dict[str, int] = field(default_factory=dict)
    blobs_retained: dict[str, int] = field(default_factory=dict)
    blobs_shared: int = 0

    @property
    def blobs(self) -> list[str]:
        return [item for kind, item in self.items if kind == "blob"]


def format_subject_erasure(plan: ErasurePlan, reason: str, at: int) -> dict:
    """The wire object of an erasure (the log entry is its canonical bytes)."""
    return {"type": SUBJECT_ERASURE_TYPE, "tenant": plan.tenant, "subject": plan.subject, "reason": reason,
            "at": format_timestamp_ms(at), "key_shredded": plan.subject_hold is None,
            "blobs_deleted": len(plan.blobs), "list_sha256": deletion_list_sha256(plan.items),
            "skipped": {"subject_hold": plan.subject_hold, "blobs_held": dict(sorted(plan.blobs_held.items())),
                        "blobs_retained": dict(sorted(plan.blobs_retained.items())),
                        "blobs_shared": plan.blobs_shared}}


def parse_subject_erasure(obj: Any) -> dict:
    """Check an erasure's wire object (as `format_subject_erasure` makes them); raises InvalidEvent naming the
    field. Returns it."""
    if not isinstance(obj, dict) or obj.get("type") != SUBJECT_ERASURE_TYPE:
        raise InvalidEvent(f"not a {SUBJECT_ERASURE_TYPE} record", "$.type")
    fields = {"type", "tenant", "subject", "reason", "at", "key_shredded", "blobs_deleted", "list_sha256", "skipped"}
    if set(obj) != fields:
        raise InvalidEvent(f"a subject erasure has exactly {', '.join(sorted(fields))}", "$")
    if not isinstance(obj["tenant"], str) or not _TOKEN.match(obj["tenant"]):
        raise InvalidEvent("tenant must be a tenant id", "$.tenant")
    if not is_vault_token(obj["subject"]):
        raise InvalidEvent("subject must be the subject's vault token", "$.subject")
    if not isinstance(obj["key_shredded"], bool):
        raise InvalidEvent("key_shredded must be true or false", "$.key_shredded")
    count = obj["blobs_deleted"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise InvalidEvent("blobs_deleted must be a count", "$.blobs_deleted")
    skipped = obj["skipped"]
    if not isinstance(skipped, dict) or set(skipped) != {"subject_hold", "blobs_held", "blobs_retained",
                                                          "blobs_shared"}:
        raise InvalidEvent("skipped has exactly subject_hold, blobs_held, blobs_retained and blobs_shared",
                           "$.skipped")
    if (skipped["subject_hold"] is None) != obj["key_shredded"]:
        raise InvalidEvent("the key is shredded exactly when no hold covers the subject", "$.key_shredded")
    return obj


@dataclass(frozen=True)
class ErasureReceipt:
    """An erasure, logged and carried out (as far as holds allow)."""

    tenant: str
    subject: str
    index: int
    record: dict

    @property
    def complete(self) -> bool:
        """True when nothing of the subject was kept for a hold or a retention obligation (blobs other records
        cite too are not the subject's alone, and do not make an erasure incomplete)."""
        skipped = self.record["skipped"]
        return skipped["subject_hold"] is None and not skipped["blobs_held"] and not skipped["blobs_retained"]

    def to_json(self) -> dict:
        record = self.record
        return {"tenant": self.tenant, "subject": self.subject, "index": self.index, "complete": self.complete,
                "key_shredded": record["key_shredded"], "blobs_deleted": record["blobs_deleted"],
                "list_sha256": record["list_sha256"], "skipped": record["skipped"], "at": record["at"]}


def _erasure_rows(plan: ErasurePlan, at: int) -> list[RowInsert]:
    rows = [RowInsert(deletion_items.name, ("kind", "item"), item, index_column="deletion_idx")
            for item in sorted(set(plan.items))]
    rows.append(RowInsert(subject_erasures.name, ("tenant", "subject", "started_at"), (plan.tenant, plan.subject, at)))
    return rows


class SubjectRequests:
    """Data-subject access and erasure over an AuditService (its log, vault, blobs and holds).

    `retention_until(tx, tenant, sha256s, now_ms) -> {sha256: (until_ms, policy_idx)}` names the blobs a retention
    policy still obliges the log to keep (default log/audit/retention.py `blob_retention_until`)."""

    def __init__(self, audit, retention_until: Callable = blob_retention_until, *,
                 clock: Callable[[], float] = time.time):
        self.audit = audit
        self._retention_until = retention_until
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def subject_tokens(self, tenant: str, reference: str) -> tuple[str, list[str]]:
        """(subject token, every token of the subject: its own and its mappings'), sorted."""
        subject = await self.audit.vault.subject_token(_tenant(tenant), _reference(reference))
        return subject, sorted({subject, *await self.audit.vault.tokens_of_subject(tenant, subject)})

    async def access(self, tenant: str, reference: str, *, attested: Sequence = ()) -> tuple[str, dict]:
        """(subject token, the evidence bundle of every event of `tenant` carrying one of the subject's tokens).
        NotFound when the log holds none."""
        subject, tokens = await self.subject_tokens(tenant, reference)
        t = audit_event_tokens.c
        found = await self.audit.log.read(lambda tx: [row for chunk in in_chunks(tokens) for row in tx.execute(
            select(t.idx).where(t.tenant == tenant, t.token.in_(list(chunk))).limit(1))], primary=True)
        if not found:
            raise NotFound(f"no event of tenant {tenant!r} carries a token of this data subject ({subject})")
        return subject, await self.audit.subject_evidence(tenant, subject, tokens, attested=attested)

    def _plan(self, tx, tenant: str, subject: str, now: int) -> ErasurePlan:
        """Step 1, in one transaction's state."""
        holds = ActiveHolds.load(tx, now)
        v, t, b = vault_tokens.c, audit_event_tokens.c, audit_event_blobs.c
        tokens = sorted({subject} | {token for token, in tx.execute(
            select(v.token).where(v.tenant == tenant, v.subject == subject).distinct())})
        events: set[int] = set()
        for chunk in in_chunks(tokens):
            events.update(idx for idx, in tx.execute(
                select(t.idx).where(t.tenant == tenant, t.token.in_(list(chunk)))))
        cited: set[str] = set()
        for chunk in in_chunks(sorted(events)):
            cited.update(sha for sha, in tx.execute(
                select(b.sha256).where(b.tenant == tenant, b.idx.in_(list(chunk)))))
        blobs = sorted(sha for sha in cited if self.audit.blobs.exists(sha))
        held = holds.for_blobs(tx, blobs)
        retained = self._retention_until(tx, tenant, [sha for sha in blobs if sha not in held], now)
        free = [sha for sha in blobs if sha not in held and sha not in retained]
        citing: dict[str, set[int]] = {}
        for chunk in in_chunks(free):  # every tenant's citations: another tenant's record is never erased here
            for sha, idx in tx.execute(select(b.sha256, b.idx).where(b.sha256.in_(list(chunk)))):
                citing.setdefault(sha, set()).add(idx)
        own = [sha for sha in free if citing.get(sha, set()) <= events]
        subject_hold = holds.for_subject(tx, tenant, subject)
        items = [] if subject_hold is not None else [("subject", f"{tenant}/{subject}")]
        items += [("blob", sha) for sha in own]
        blobs_held: dict[str, int] = {}
        for hold_id in held.values():
            blobs_held[hold_id] = blobs_held.get(hold_id, 0) + 1
        blobs_retained: dict[str, int] = {}
        for _, policy in retained.values():
            blobs_retained[str(policy)] = blobs_retained.get(str(policy), 0) + 1
        return ErasurePlan(tenant, subject, items, subject_hold, blobs_held, blobs_retained, len(free) - len(own))

    async def erase(self, tenant: str, reference: str, reason: str) -> ErasureReceipt:
        """Erase a data subject: steps 1-4 of the module docstring. Returns once everything the entry lists is
        destroyed (or raises, the entry logged: `resume` finishes it)."""
        reason = _text(reason, "reason")
        subject = await self.audit.vault.subject_token(_tenant(tenant), _reference(reference))
        async with self.audit.holds.lock:
            await self._resume_locked()
            now = self._now()
            plan = await self.audit.log.read(lambda tx: self._plan(tx, tenant, subject, now), primary=True)
            record = format_subject_erasure(plan, reason, now)
            parse_subject_erasure(record)
            added = await self.audit.log.add_entries([canonicalize(record)], rows=[_erasure_rows(plan, now)])
            index = added.first_index
            await self._destroy(index, plan.tenant, plan.subject, plan.items)
        return ErasureReceipt(tenant, subject, index, record)

    async def _destroy(self, index: int, tenant: str, subject: str, items: Sequence[tuple[str, str]]) -> None:
        """Steps 3 and 4 for the erasure logged at `index`."""
        for kind, item in items:
            if kind == "subject":
                await self.audit.vault.shred_subject(tenant, subject, index)
        for kind, item in items:
            if kind == "blob":
                await self.audit._read(self.audit.blobs.delete, item)
        s = subject_erasures.c
        finished = self._now()
        await self.audit.log.write(lambda tx: tx.execute(
            update(subject_erasures).where(s.idx == index).values(finished_at=finished)))

    async def resume(self) -> int:
        """Finish every erasure logged but not carried out (a crash between its entry and its end); returns how
        many. Idempotent; call on the sequencer (at start, on takeover)."""
        async with self.audit.holds.lock:
            return await self._resume_locked()

    async def _resume_locked(self) -> int:
        s, d = subject_erasures.c, deletion_items.c

        def read(tx):
            pending = tx.execute(select(s.idx, s.tenant, s.subject).where(s.finished_at.is_(None)).order_by(s.idx))
            return [(idx, tenant, subject, [(kind, item) for kind, item in tx.execute(
                select(d.kind, d.item).where(d.deletion_idx == idx))]) for idx, tenant, subject in pending]

        pending = await self.audit.log.read(read, primary=True)
        for index, tenant, subject, items in pending:
            await self._destroy(index, tenant, subject, items)
        return len(pending)


__all__ = ["ErasurePlan", "ErasureReceipt", "SUBJECT_ERASURE_TYPE", "SubjectRequests", "format_subject_erasure",
           "parse_subject_erasure"]
