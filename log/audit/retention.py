"""Retention: policies an administrator sets per tenant and record class, and the runs that apply them.

Policies. A policy is a log entry (`auditlog.retention-policy/v1`) and a retention_policies row, committed together.
It names a tenant, a record class and a selector, and how many days records it covers are kept (`retain_days`;
null: the policy is removed). The policy in force for (tenant, class, selector) is its latest entry. Classes and
selectors:

  event    event entries of an event type (`tool_call`, ...) or of any type (`*`): their contents are pruned
  blob     blobs cited by events (`event_type:<t>`, `media_type:<type/subtype>` of the reference, or `*`)
  subject  vault data subjects (`*`): their key is shredded (crypto-erasure)

Precedence, for one record: the most specific selector in force wins, whatever the days: for an event, its event
type's policy, else `*`; for a blob citation, the media type's policy, else the citing event type's, else `*`.
A record no policy covers is kept.

Ages (server time: producers' clocks may lie). An event is due when its entry's `received_at` is older than its
policy's days. A blob is due when EVERY event citing it (any tenant's) is past the blob policy that covers that
citation, or is being pruned by the same run (a payload does not outlive the events that cite it: a pruned event's
citations go with its contents). A subject is due when the newest event that carries one of its tokens (or its key's
creation, without one) is older than the subject policy; references are counted as they stand when the run starts.

Runs. `Retention.run` finds what is due per tenant, leaves out what an active legal hold covers (log/audit/holds.py:
counted per hold id), and writes ONE `auditlog.retention-run/v1` entry per tenant with a retention_runs row and the
deletion list (deletion_items) in the same commit, BEFORE anything is deleted. Then it deletes in chunks: entries
are pruned (log/prune.py: one transaction per chunk), blobs unlinked one by one, subjects shredded through the
vault. A hold that arrives while a run deletes stops the deletion of what it covers at the next chunk. The run's
row is marked finished at the end. A run interrupted anywhere (a crash, a SIGKILL, a lost lock) is finished from its
list when the next run starts (the job starts one at each start of the sequencer): what is gone already is skipped,
and nothing is ever half-deleted. A run that finds nothing due and nothing held writes no entry (nothing happened
that an auditor could ask about; the answer to the caller says so).

The deletion list hash is log/audit/lifecycle_names.py `deletion_list_sha256` (SHA-256 of the lines
`<kind> <item>\\n`, sorted bytewise). The entry commits to it; GET /api/v1/deletions/{index} serves the list, so anyone recomputes it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, update

from log.audit import holds as holds_module
from log.audit.canonical import canonicalize, parse_json
from log.audit.errors import InvalidEvent
from log.audit.lifecycle_names import deletion_list_sha256
from log.audit.schema import EVENT_TYPES, TOKEN_PATTERN, format_timestamp_ms, parse_timestamp_ms, python_regex
from log.audit.tables import (
    audit_event_blobs, audit_event_context, audit_event_tokens, audit_events, deletion_items, pruned_entries, retention_policies,
    retention_runs, vault_subject_keys, vault_tokens,
)
from log.blobs import BlobStore
from log.errors import InvalidInput, NotFound
from log import prune
from log.storage import RowInsert
from log.storage.schema import entries

logger = logging.getLogger(__name__)

POLICY_TYPE = "auditlog.retention-policy/v1"
RUN_TYPE = "auditlog.retention-run/v1"
RECORD_CLASSES = ("event", "blob", "subject")
DELETION_KINDS = ("entry", "blob", "subject")
ANY = "*"
DAY_MS = 86_400_000
MAX_RETAIN_DAYS = 36_500  # a century: "keep" for longer than any regulation asks
MAX_REASON = 1024
DELETE_CHUNK = 2000  # entries pruned per transaction (blobs, subjects: holds re-checked per this many)
_TOKEN = python_regex(TOKEN_PATTERN)
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


# -- the deletion list -------------------------------------------------------------------------------------------

# -- records -----------------------------------------------------------------------------------------------------

def _check_reason(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise InvalidEvent(f"{field} must be a string of at most {MAX_REASON} characters", field)
    return value


def _check_tenant(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidEvent(f"{field} must be a tenant (a token: 1-128 of A-Za-z0-9._:~-), not {value!r}"[:200], field)
    return value


def check_selector(record_class: str, selector: Any, field: str = "$.selector") -> str:
    """`selector` if it is valid for `record_class` (see the module docstring); InvalidEvent naming it if not."""
    if not isinstance(selector, str):
        raise InvalidEvent(f"{field} must be a string", field)
    if selector == ANY:
        return selector
    if record_class == "event":
        if selector in EVENT_TYPES:
            return selector
        raise InvalidEvent(f"an event policy's selector is an event type ({', '.join(EVENT_TYPES)}) or *, not "
                           f"{selector!r}"[:300], field)
    if record_class == "blob":
        kind, _, value = selector.partition(":")
        if kind == "event_type" and value in EVENT_TYPES:
            return selector
        if kind == "media_type" and _MEDIA_TYPE.match(value):
            return selector
        raise InvalidEvent(f"a blob policy's selector is event_type:<event type>, media_type:<type/subtype> or *, "
                           f"not {selector!r}"[:300], field)
    raise InvalidEvent(f"a subject policy's selector is *, not {selector!r}"[:200], field)


def policy_change(tenant: str, record_class: str, selector: str, retain_days: int | None, reason: str,
                  at: int) -> dict:
    """A policy change in memory (`at` in ms), checked as `parse_policy` would (InvalidEvent naming the field)."""
    return parse_policy(format_policy({"tenant": tenant, "record_class": record_class, "selector": selector,
                                       "retain_days": retain_days, "reason": reason, "at": at}))


def format_policy(policy: dict) -> dict:
    """The wire object of an in-memory policy change (the log entry is its canonical bytes)."""
    return {"type": POLICY_TYPE, "tenant": policy["tenant"], "record_class": policy["record_class"],
            "selector": policy["selector"], "retain_days": policy["retain_days"], "reason": policy.get("reason") or "",
            "at": format_timestamp_ms(policy["at"])}


def parse_policy(obj: Any) -> dict:
    """The in-memory form of a retention-policy wire object; raises InvalidEvent naming the bad field."""
    if not isinstance(obj, dict) or obj.get("type") != POLICY_TYPE:
        raise InvalidEvent(f"not a {POLICY_TYPE} record", "$.type")
    expected = {"type", "tenant", "record_class", "selector", "retain_days", "reason", "at"}
    if set(obj) != expected:
        missing, unknown = expected - set(obj), set(obj) - expected
        name = sorted(missing or unknown)[0]
        raise InvalidEvent(f"{'missing' if missing else 'unknown'} field {name} in a retention policy", f"$.{name}")
    record_class = obj["record_class"]
    if record_class not in RECORD_CLASSES:
        raise InvalidEvent(f"record_class must be one of {', '.join(RECORD_CLASSES)}, not {record_class!r}"[:200],
                           "$.record_class")
    days = obj["retain_days"]
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_RETAIN_DAYS):
        raise InvalidEvent(f"retain_days must be a whole number of days from 0 to {MAX_RETAIN_DAYS}, or null to "
                           f"remove the policy, not {days!r}"[:200], "$.retain_days")
    at = parse_timestamp_ms(obj["at"]) if isinstance(obj["at"], str) else None
    if at is None:
        raise InvalidEvent("at must be an RFC 3339 UTC timestamp with milliseconds", "$.at")
    return {"tenant": _check_tenant(obj["tenant"], "$.tenant"), "record_class": record_class,
            "selector": check_selector(record_class, obj["selector"]), "retain_days": days,
            "reason": _check_reason(obj["reason"], "$.reason"), "at": at}


def format_run(run: dict) -> dict:
    """The wire object of a retention run: tenant, the policies applied (their entry indices), the counts of what
    is deleted per kind, of what holds kept per hold id, the deletion list's hash, and when."""
    return {"type": RUN_TYPE, "tenant": run["tenant"], "policies": sorted(run["policies"]),
            "deleted": {kind: int(run["deleted"].get(kind, 0)) for kind in DELETION_KINDS},
            "skipped": {hold: int(count) for hold, count in sorted(run["skipped"].items())},
            "list_sha256": run["list_sha256"], "at": format_timestamp_ms(run["at"])}


def parse_run(obj: Any) -> dict:
    """The in-memory form of a retention-run wire object; raises InvalidEvent naming the bad field."""
    if not isinstance(obj, dict) or obj.get("type") != RUN_TYPE:
        raise InvalidEvent(f"not a {RUN_TYPE} record", "$.type")
    expected = {"type", "tenant", "policies", "deleted", "skipped", "list_sha256", "at"}
    if set(obj) != expected:
        name = sorted((expected - set(obj)) or (set(obj) - expected))[0]
        raise InvalidEvent(f"a retention run has exactly {', '.join(sorted(expected))}; not so for {name}",
                           f"$.{name}")
    policies = obj["policies"]
    if not isinstance(policies, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0
                                                 for p in policies):
        raise InvalidEvent("policies must be a list of entry indices", "$.policies")
    deleted = obj["deleted"]
    if not isinstance(deleted, dict) or set(deleted) != set(DELETION_KINDS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in deleted.values()):
        raise InvalidEvent(f"deleted must count each of {', '.join(DELETION_KINDS)}", "$.deleted")
    skipped = obj["skipped"]
    if not isinstance(skipped, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                for v in skipped.values()):
        raise InvalidEvent("skipped must map hold ids to counts", "$.skipped")
    if not isinstance(obj["list_sha256"], str) or not _SHA256.match(obj["list_sha256"]):
        raise InvalidEvent("list_sha256 must be 64 lowercase hex digits", "$.list_sha256")
    at = parse_timestamp_ms(obj["at"]) if isinstance(obj["at"], str) else None
    if at is None:
        raise InvalidEvent("at must be an RFC 3339 UTC timestamp with milliseconds", "$.at")
    return {"tenant": _check_tenant(obj["tenant"], "$.tenant"), "policies": list(policies),
            "deleted": dict(deleted), "skipped": dict(skipped), "list_sha256": obj["list_sha256"], "at": at}


# -- policies in force -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """A policy in force: the entry that set it (`index`), its scope, days and reason."""

    index: int
    tenant: str
    record_class: str
    selector: str
    retain_days: int
    reason: str
    at: int

    def to_json(self) -> dict:
        return {"index": self.index, "tenant": self.tenant, "record_class": self.record_class,
                "selector": self.selector, "retain_days": self.retain_days, "reason": self.reason,
                "at": format_timestamp_ms(self.at)}


def policies_in_force(tx, tenant: str | None = None, record_class: str | None = None) -> list[Policy]:
    """The policies in force (the latest entry per (tenant, class, selector), unless it removed the policy), of one
    tenant or all, ordered by tenant, class, selector."""
    p = retention_policies.c
    latest = select(p.tenant, p.record_class, p.selector, func.max(p.idx).label("idx"))
    if tenant is not None:
        latest = latest.where(p.tenant == tenant)
    if record_class is not None:
        latest = latest.where(p.record_class == record_class)
    latest = latest.group_by(p.tenant, p.record_class, p.selector).subquery()
    rows = tx.execute(select(p.idx, p.record).join(latest, latest.c.idx == p.idx))
    out = []
    for idx, record in rows:
        change = parse_policy(parse_json(record.encode() if isinstance(record, str) else record).value)
        if change["retain_days"] is not None:
            out.append(Policy(idx, change["tenant"], change["record_class"], change["selector"],
                              change["retain_days"], change["reason"], change["at"]))
    return sorted(out, key=lambda q: (q.tenant, q.record_class, q.selector))


class _BlobPolicies:
    """A tenant's blob policies, to find the one covering a citation (media type over event type over *)."""

    def __init__(self, policies: Iterable[Policy]):
        self.by_selector = {q.selector: q for q in policies if q.record_class == "blob"}

    def covering(self, media_type: str | None, event_type: str | None) -> Policy | None:
        if media_type is not None:
            found = self.by_selector.get(f"media_type:{media_type}")
            if found is not None:
                return found
        if event_type is not None:
            found = self.by_selector.get(f"event_type:{event_type}")
            if found is not None:
                return found
        return self.by_selector.get(ANY)


def _citations(tx, sha256s: Sequence[str]) -> list[tuple]:
    """(sha256, tenant, idx, media_type, event_type, received_at) of every citation of the blobs `sha256s`."""
    b, a, e = audit_event_blobs.c, audit_events.c, entries.c
    out: list[tuple] = []
    wanted = sorted(set(sha256s))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        out += tx.execute(select(b.sha256, b.tenant, b.idx, b.media_type, a.event_type, e.received_at)
                          .select_from(audit_event_blobs.join(audit_events, a.idx == b.idx)
                                       .join(entries, e.idx == b.idx))
                          .where(b.sha256.in_(chunk)))
    return out


def blob_retention_until(tx, tenant: str, sha256s: Sequence[str], now_ms: int) -> dict[str, tuple[int, int]]:
    """For the blobs among `sha256s` that a blob policy of `tenant` still obliges the log to keep at `now_ms`:
    sha256 -> (until, the policy's entry index), `until` in Unix ms being when the last of the tenant's citations of
    the blob comes out of its policy. Blobs no policy of the tenant keeps are absent. For a data-subject erasure,
    which must not delete what retention still obliges the log to keep."""
    policies = _BlobPolicies(policies_in_force(tx, tenant, "blob"))
    if not policies.by_selector:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for sha, citing_tenant, _, media_type, event_type, received_at in _citations(tx, sha256s):
        if citing_tenant != tenant:
            continue
        policy = policies.covering(media_type, event_type)
        if policy is None:
            continue
        until = received_at + policy.retain_days * DAY_MS
        if until > now_ms and (sha not in out or until > out[sha][0]):
            out[sha] = (until, policy.index)
    return out


# -- what is due -------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What one run of one tenant deletes, and what holds kept."""

    tenant: str
    policies: set[int] = field(default_factory=set)
    entries: list[int] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # hold id -> items it kept

    def items(self) -> list[tuple[str, str]]:
        return ([("entry", str(i)) for i in self.entries] + [("blob", b) for b in self.blobs]
                + [("subject", f"{self.tenant}/{s}") for s in self.subjects])

    @property
    def empty(self) -> bool:
        return not (self.entries or self.blobs or self.subjects or self.skipped)


class _Holds:
    """The active legal holds at one moment (log/audit/holds.py `ActiveHolds`); no query when there are none."""

    def __init__(self, tx, now_ms: int):
        self._active = holds_module.ActiveHolds.load(tx, now_ms)

    def events(self, tx, indices: Sequence[int]) -> dict[int, str]:
        return self._active.for_events(tx, indices)

    def blobs(self, tx, sha256s: Sequence[str]) -> dict[str, str]:
        return self._active.for_blobs(tx, sha256s)

    def subject(self, tx, tenant: str, subject: str) -> str | None:
        return self._active.for_subject(tx, tenant, subject)


def _due_events(tx, tenant: str, policies: list[Policy], now_ms: int) -> tuple[list[int], set[int]]:
    """Indices of the tenant's event entries past their policy, not pruned yet, ascending; the policies used."""
    a, e, p = audit_events.c, entries.c, pruned_entries.c
    event_policies = {q.selector: q for q in policies if q.record_class == "event"}
    specific = sorted(s for s in event_policies if s != ANY)
    due: list[int] = []
    used: set[int] = set()
    for selector, policy in sorted(event_policies.items()):
        cutoff = now_ms - policy.retain_days * DAY_MS
        condition = a.event_type == selector if selector != ANY else (
            a.event_type.not_in(specific) if specific else True)
        found = [idx for idx, in tx.execute(
            select(a.idx).select_from(audit_events.join(entries, e.idx == a.idx)
                                      .outerjoin(pruned_entries, p.idx == a.idx))
            .where(and_(a.tenant == tenant, condition, e.received_at < cutoff, p.idx.is_(None))))]
        if found:
            due += found
            used.add(policy.index)
    return sorted(due), used


def _due_blobs(tx, tenant: str, policies_of: Callable[[str], _BlobPolicies], pruning: set[int], now_ms: int,
               exists: Callable[[str], bool]) -> tuple[list[str], set[int]]:
    """The blobs the tenant's events cite that are due (module docstring) and still stored; the policies used."""
    b = audit_event_blobs.c
    candidates = [sha for sha, in tx.execute(select(b.sha256).where(b.tenant == tenant).distinct())]
    by_blob: dict[str, list[tuple]] = {}
    for row in _citations(tx, candidates):
        by_blob.setdefault(row[0], []).append(row)
    due: list[str] = []
    used: set[int] = set()
    for sha in sorted(by_blob):
        why: set[int] = set()
        for _, citing_tenant, idx, media_type, event_type, received_at in by_blob[sha]:
            if idx in pruning:
                continue  # its event goes in this run: the payload goes with it
            policy = policies_of(citing_tenant).covering(media_type, event_type)
            if policy is None or received_at + policy.retain_days * DAY_MS > now_ms:
                break
            if citing_tenant == tenant:
                why.add(policy.index)
        else:
            if exists(sha):
                due.append(sha)
                used |= why
    return due, used


def _due_subjects(tx, tenant: str, policy: Policy, now_ms: int) -> list[str]:
    """The tenant's vault subjects not yet erased whose newest reference (module docstring) is past `policy`."""
    k, t, et, e = vault_subject_keys.c, vault_tokens.c, audit_event_tokens.c, entries.c
    newest = (select(func.max(e.received_at))
              .select_from(vault_tokens.join(audit_event_tokens, and_(et.token == t.token, et.tenant == t.tenant))
                           .join(entries, e.idx == et.idx))
              .where(and_(t.tenant == k.tenant, t.subject == k.subject)).scalar_subquery())
    cutoff = now_ms - policy.retain_days * DAY_MS
    rows = tx.execute(select(k.subject, k.created_at, newest).where(
        and_(k.tenant == tenant, k.wrapped_key.is_not(None))))
    return sorted(subject for subject, created_at, latest in rows
                  if (latest if latest is not None else created_at) < cutoff)


def plan_run(tx, tenant: str, now_ms: int, *, exists: Callable[[str], bool], subjects: bool) -> Plan:
    """What a run of `tenant` at `now_ms` deletes and what holds keep (module docstring), read in one state.
    `exists(sha256)`: whether the blob store holds a blob. `subjects`: whether a vault is there to shred with."""
    plan = Plan(tenant)
    policies = policies_in_force(tx, tenant)
    if not policies:
        return plan
    holds = _Holds(tx, now_ms)
    due, used = _due_events(tx, tenant, policies, now_ms)
    held = holds.events(tx, due)
    plan.entries = [idx for idx in due if idx not in held]
    plan.skipped.update(held.values())
    plan.policies |= used

    blob_policies: dict[str, _BlobPolicies] = {tenant: _BlobPolicies(policies)}

    def policies_of(other: str) -> _BlobPolicies:
        if other not in blob_policies:
            blob_policies[other] = _BlobPolicies(policies_in_force(tx, other, "blob"))
        return blob_policies[other]

    if plan.entries or any(q.record_class == "blob" for q in policies):
        blobs, used = _due_blobs(tx, tenant, policies_of, set(plan.entries), now_ms, exists)
        held_blobs = holds.blobs(tx, blobs)
        plan.blobs = [sha for sha in blobs if sha not in held_blobs]
        plan.skipped.update(held_blobs.values())
        if plan.blobs:
            plan.policies |= used
    subject_policy = next((q for q in policies if q.record_class == "subject"), None)
    if subjects and subject_policy is not None:
        for subject in _due_subjects(tx, tenant, subject_policy, now_ms):
            hold = holds.subject(tx, tenant, subject)
            if hold is None:
                plan.subjects.append(subject)
            else:
                plan.skipped[hold] += 1
        if plan.subjects:
            plan.policies.add(subject_policy.index)
    return plan


# -- the service -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    """One tenant's run: its log entry (None when nothing was due and nothing held: no entry written), the counts
    deleted per kind and kept per hold, and the deletion list's hash."""

    tenant: str
    index: int | None
    deleted: dict[str, int]
    skipped: dict[str, int]
    list_sha256: str | None
    policies: list[int]
    lists: tuple = field(default=((), (), ()), repr=False, compare=False)  # entries, blobs, subjects to delete

    def to_json(self) -> dict:
        return {"tenant": self.tenant, "index": self.index, "deleted": self.deleted, "skipped": self.skipped,
                "list_sha256": self.list_sha256, "policies": self.policies}


@dataclass(frozen=True)
class PolicyReceipt:
    index: int
    policy: dict  # the change as logged (wire form)


class Retention:
    """Retention for one log (on the server that sequences it). `vault` is the token vault (an object with
    `shred_subject(tenant, subject, erasure_idx)`, sync or async) or a callable giving it, or None: without one,
    subject policies are kept but applied by no run. `chunk`: items deleted per transaction (per holds check);
    `delay`: seconds slept between deletion chunks (test hooks, from AUDITLOG_TEST_RETENTION_CHUNK and
    AUDITLOG_TEST_RETENTION_DELAY: they let a test kill a run half-way)."""

    def __init__(self, log, blobs: BlobStore, *, vault: Any = None, hold_lock: asyncio.Lock | None = None,
                 clock: Callable[[], float] = time.time, chunk: int = DELETE_CHUNK, delay: float | None = None):
        self.log = log
        self.blobs = blobs
        self._vault = vault
        # HoldBook.lock (log/audit/holds.py): held while a run decides what to delete and writes its entry, and
        # around each chunk's hold check and deletion, so a hold placed meanwhile is never missed; never for a
        # whole run (a hold must not wait a minute for a big run to end).
        self.hold_lock = hold_lock or asyncio.Lock()
        self._clock = clock
        # Test hooks (tests/e2e/test_retention_process.py kills a run half-way): small chunks, a pause after each.
        self.chunk = int(os.environ.get("AUDITLOG_TEST_RETENTION_CHUNK", "0") or 0) or chunk
        self.delay = float(os.environ.get("AUDITLOG_TEST_RETENTION_DELAY", "0") or 0) if delay is None else delay
        self._lock = asyncio.Lock()
        self.deleted = Counter()  # kind -> items deleted by this process (for /metrics)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def vault(self):
        vault = self._vault
        if callable(vault) and not hasattr(vault, "shred_subject"):
            vault = vault()
        return vault

    # -- policies ------------------------------------------------------------------------------------------------
    async def set_policy(self, tenant: str, record_class: str, selector: str, retain_days: int | None,
                         reason: str) -> PolicyReceipt:
        """Set, change (`retain_days`) or remove (`retain_days` None) the policy of (tenant, class, selector): its
        log entry and row are committed together before this returns. Removing a policy that is not in force is
        InvalidInput (nothing to remove)."""
        try:
            change = policy_change(tenant, record_class, selector, retain_days, reason, self._now())
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        if retain_days is None:
            current = await self.log.read(lambda tx: [q for q in policies_in_force(tx, tenant, record_class)
                                                      if q.selector == selector], primary=True)
            if not current:
                raise InvalidInput(f"no {record_class} policy for selector {selector!r} of tenant {tenant!r} is in "
                                   "force: nothing to remove", field="retain_days")
        wire = format_policy(change)
        record = canonicalize(wire)
        row = RowInsert(retention_policies.name, ("tenant", "record_class", "selector", "retain_days", "record"),
                        (tenant, record_class, selector, retain_days, record.decode()))
        added = await self.log.add_entries([record], rows=[[row]])
        return PolicyReceipt(added.first_index, wire)

    async def policies(self, tenant: str | None = None, tenants: frozenset[str] | None = None) -> list[Policy]:
        """The policies in force, of one tenant or all (`tenants`: only those, the caller's scope)."""
        found = await self.log.read(lambda tx: policies_in_force(tx, tenant), primary=True)
        return [q for q in found if tenants is None or q.tenant in tenants]

    # -- runs ----------------------------------------------------------------------------------------------------
    async def run(self, tenant: str | None = None) -> list[RunResult]:
        """Finish any interrupted run, then run retention for `tenant` (or every tenant with a policy): one result
        per tenant, in tenant order. Runs one at a time (a second caller waits for the first)."""
        if tenant is not None:
            _check_tenant_input(tenant)
        async with self._lock:
            await self._resume()
            now = self._now()
            if tenant is None:
                tenants = sorted({q.tenant for q in await self.policies()})
            else:
                tenants = [tenant]
            results = []
            for name in tenants:
                result = await self._run_tenant(name, now)
                if result.index is not None:
                    await self._delete(result.index, name, *result.lists)
                results.append(result)
            return results

    async def resume(self) -> int:
        """Finish every interrupted run (at the start of the sequencer); returns how many there were."""
        async with self._lock:
            return await self._resume()

    async def _run_tenant(self, tenant: str, now: int) -> RunResult:
        async with self.hold_lock:
            return await self._plan_and_log(tenant, now)

    async def _plan_and_log(self, tenant: str, now: int) -> RunResult:
        subjects = self.vault() is not None
        plan = await self.log.read(lambda tx: plan_run(tx, tenant, now, exists=self.blobs.exists,
                                                       subjects=subjects), primary=True)
        if plan.empty:
            return RunResult(tenant, None, dict.fromkeys(DELETION_KINDS, 0), {}, None, [])
        items = plan.items()
        list_sha256 = deletion_list_sha256(items)
        deleted = {"entry": len(plan.entries), "blob": len(plan.blobs), "subject": len(plan.subjects)}
        wire = format_run({"tenant": tenant, "policies": plan.policies, "deleted": deleted,
                           "skipped": plan.skipped, "list_sha256": list_sha256, "at": now})
        record = canonicalize(wire)
        rows = [RowInsert(retention_runs.name, ("tenant", "list_sha256", "started_at", "finished_at"),
                          (tenant, list_sha256, now, None))]
        rows += [RowInsert(deletion_items.name, ("kind", "item"), item, "deletion_idx") for item in items]
        # The run's entry, row and list first, in one commit: from here on the deletion is resumable from the list.
        added = await self.log.add_entries([record], rows=[rows])
        return RunResult(tenant, added.first_index, deleted, dict(wire["skipped"]), list_sha256, wire["policies"],
                         (plan.entries, plan.blobs, plan.subjects))

    async def _resume(self) -> int:
        r = retention_runs.c
        unfinished = await self.log.read(lambda tx: tx.execute(
            select(r.idx, r.tenant).where(r.finished_at.is_(None)).order_by(r.idx)), primary=True)
        for index, tenant in unfinished:
            items = await self.log.read(lambda tx, index=index: deletion_list(tx, index), primary=True)
            logger.warning("finishing retention run %d of tenant %s (%d items), interrupted before", index, tenant,
                           len(items))
            await self._delete(index, tenant,
                               [int(item) for kind, item in items if kind == "entry"],
                               [item for kind, item in items if kind == "blob"],
                               [item.partition("/")[2] for kind, item in items if kind == "subject"])
        return len(unfinished)

    async def _delete(self, index: int, tenant: str, entry_indices: list[int], blobs: list[str],
                      subjects: list[str]) -> None:
        """Delete what run `index` lists, in chunks, each re-checked against the holds active by then; then mark
        the run finished. Safe to repeat: what is gone already is skipped."""
        loop = asyncio.get_running_loop()
        postgresql = getattr(self.log.store, "dialect", "") == "postgresql"
        for start in range(0, len(entry_indices), self.chunk):
            chunk = entry_indices[start:start + self.chunk]
            now = self._now()

            def prune(tx, chunk=chunk, now=now):
                # The holds as the writer's transaction sees them: what a hold covers by now stays.
                held = _Holds(tx, now).events(tx, chunk)
                return prune_entries(tx, [i for i in chunk if i not in held], index, now, postgresql=postgresql)

            async with self.hold_lock:
                self.deleted["entry"] += len(await self.log.write(prune))
            await self._pause()
        for start in range(0, len(blobs), self.chunk):
            chunk = blobs[start:start + self.chunk]
            now = self._now()
            async with self.hold_lock:
                held = await self.log.read(lambda tx, chunk=chunk, now=now: _Holds(tx, now).blobs(tx, chunk),
                                           primary=True)
                for sha in chunk:
                    if sha not in held and await loop.run_in_executor(None, self.blobs.delete, sha):
                        self.deleted["blob"] += 1
            await self._pause()
        vault = self.vault() if subjects else None
        for subject in subjects if vault is not None else ():
            now = self._now()
            async with self.hold_lock:
                hold = await self.log.read(lambda tx, s=subject, now=now: _Holds(tx, now).subject(tx, tenant, s),
                                           primary=True)
                if hold is not None:
                    continue
                outcome = vault.shred_subject(tenant, subject, index)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if getattr(outcome, "destroyed", True):
                    self.deleted["subject"] += 1
        r = retention_runs.c
        finished = self._now()
        await self.log.write(lambda tx: tx.execute(
            update(retention_runs).where(r.idx == index).values(finished_at=finished)))

    async def _pause(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    async def runs(self, tenant: str | None = None, *, after: int = -1, limit: int = 100,
                   tenants: frozenset[str] | None = None) -> list[dict]:
        """The runs, oldest first (after entry index `after`), each with its record as logged and its state."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be between 1 and 1000, not {limit}", field="limit")
        r = retention_runs.c
        query = select(r.idx, r.tenant, r.list_sha256, r.started_at, r.finished_at).where(r.idx > after)
        if tenant is not None:
            query = query.where(r.tenant == tenant)
        if tenants is not None:
            query = query.where(r.tenant.in_(sorted(tenants)))
        query = query.order_by(r.idx).limit(limit)

        def read(tx):
            rows = tx.execute(query)
            records = tx.entries_at([row[0] for row in rows])
            return [(row, records.get(row[0])) for row in rows]

        out = []
        for (idx, name, list_sha256, started_at, finished_at), data in await self.log.read(read):
            run = parse_run(parse_json(data).value) if data else None
            out.append({"index": idx, "tenant": name, "list_sha256": list_sha256,
                        "started_at": format_timestamp_ms(started_at),
                        "finished_at": None if finished_at is None else format_timestamp_ms(finished_at),
                        "deleted": run["deleted"] if run else None, "skipped": run["skipped"] if run else None,
                        "policies": run["policies"] if run else None})
        return out

    async def deletion(self, index: int) -> dict:
        """The deletion list of log entry `index` (a retention run, or a data-subject erasure): {index, type,
        items, list_sha256}, the hash recomputed from the items served. NotFound if that entry lists nothing."""
        if index < 0:
            raise InvalidInput(f"index must not be negative, not {index}", field="index")

        document = await self.log.read(lambda tx: deletion_document(tx, index))
        if document is None:
            raise NotFound(f"entry {index} is not a deletion: no deletion list names it")
        return document


def prune_entries(tx, indices: Sequence[int], deletion_idx: int, now_ms: int, *,
                  postgresql: bool = False) -> list[int]:
    """log/prune.py's `prune_entries` (in the writer's transaction `tx`), and with each pruned event its audit index
    rows that carry contents: context ids, blob references, vault tokens. Its audit_events row stays: the run still
    shows that the event existed, where, and that it was pruned. Returns the indices pruned by this call."""
    done = prune.prune_entries(tx, indices, deletion_idx, now_ms, postgresql=postgresql)
    for table in (audit_event_context, audit_event_blobs, audit_event_tokens):
        prune.delete_rows_of(tx, table, done, postgresql=postgresql)
    return done


def entries_listed(tx, pruned: dict[int, int]) -> set[int]:
    """Of the pruned entries `pruned` (index -> the deletion entry its pruned_entries row names), those whose
    deletion entry is a retention run (a retention_runs row) whose deletion list names the entry: the check
    `auditlog db check` makes of every pruned entry (log/fsck.py `Deletions`)."""
    d, r = deletion_items.c, retention_runs.c
    runs = {idx for idx, in tx.execute(select(r.idx).where(r.idx.in_(sorted(set(pruned.values())))))}
    listed: set[int] = set()
    wanted = sorted(pruned)
    for start in range(0, len(wanted), prune.PRUNE_CHUNK):
        chunk = wanted[start:start + prune.PRUNE_CHUNK]
        for deletion, item in tx.execute(select(d.deletion_idx, d.item).where(
                d.kind == "entry", d.item.in_([str(i) for i in chunk]))):
            index = int(item)
            if pruned.get(index) == deletion and deletion in runs:
                listed.add(index)
    return listed


def deletion_document(tx, index: int) -> dict | None:
    """What GET /api/v1/deletions/{index} answers ({index, type, items, list_sha256}), or None when entry `index`
    lists no deletion."""
    items = deletion_list(tx, index)
    if not items:
        return None
    data = tx.entries_at([index]).get(index)
    kind = parse_json(data).value.get("type") if data else None
    return {"index": index, "type": kind, "items": [[k, i] for k, i in items],
            "list_sha256": deletion_list_sha256(items)}


def deletion_list(tx, index: int) -> list[tuple[str, str]]:
    """The (kind, item) pairs the deletion entry `index` lists, in bytewise order of their lines."""
    d = deletion_items.c
    items = [(kind, item) for kind, item in tx.execute(
        select(d.kind, d.item).where(d.deletion_idx == index))]
    return sorted(items, key=lambda pair: f"{pair[0]} {pair[1]}\n".encode())


def _check_tenant_input(tenant: str) -> None:
    try:
        _check_tenant(tenant, "tenant")
    except InvalidEvent as exc:
        raise InvalidInput(str(exc), field="tenant") from None


__all__ = ["ANY", "DAY_MS", "DELETION_KINDS", "POLICY_TYPE", "Plan", "Policy", "PolicyReceipt", "RECORD_CLASSES",
           "RUN_TYPE", "Retention", "RunResult", "blob_retention_until", "check_selector", "deletion_list",
           "deletion_document", "entries_listed", "format_policy", "format_run", "parse_policy", "parse_run", "plan_run",
           "policies_in_force", "policy_change"]
