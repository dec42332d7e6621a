"""Legal holds: the `auditlog.legal-hold/v1` records, the legal_holds rows written with them, and the matcher that
everything that deletes asks first (retention runs, data-subject erasure, blob DELETE).

A hold is placed by an administrator with a scope, a reason and a reference (a case number, a court order), and
released later with a reason; both are log entries, and the legal_holds row is written in the same transaction as
each (a RowInsert with the placement, a RowUpdate with the release), so the table never disagrees with the log.

The record (RFC 8785 canonical JSON, times RFC 3339 UTC with milliseconds; the same fields for every change):

    {"type": "auditlog.legal-hold/v1", "change": "placed" | "released" | "deletion-refused", "hold_id": "<16 hex>",
     "tenant": T, "scope": {...}, "reason": "...", "reference": "...", "at": "..."}

`reason` is required (non-empty) for a placement and a release; `reference` is required for a placement and may be
empty for a release (the order that lifts a hold, where there is one). A release repeats the hold's scope, so that
the entry alone says what stopped being held. A `deletion-refused` record is the hold at work: a deletion asked of
something the hold covers (a blob DELETE) was refused. It carries the hold's scope and reference, the refused
request's reason (may be empty) and one more field, `"refused": {"kind": "blob", "item": "<sha256 hex>"}`. It is
in the log, not only in the access log, because an attempt to delete what litigation holds is what counsel will
ask to be shown, provably and for as long as the log lives (the access log is pruned and may lose its last second).

The scope (a field left out does not narrow it; lists are sorted and without duplicates):

    {"tenant": T,                                   required: a hold never reaches another tenant
     "run_ids": [...], "context": [{"name", "value"}...], "subjects": ["vt.<26>"...], "actor_id": A,
     "from": time, "to": time}                      an event's `timestamp` (audit_events.ts), both bounds inclusive

An event is in scope when its tenant is the hold's and it matches EVERY other field given; a list field matches
when any of its values does. `subjects` names data subjects by their tokens (design20): an event matches when it
contains the subject token itself or any token of that subject's vault mappings. Bounds are inclusive on purpose:
a hold errs on the side of keeping.

The matcher, `ActiveHolds`, works on any transaction `Log.read` or `Log.write` lends (`tx.execute`): a caller
that deletes should ask inside (or after) the transaction whose state it deletes from, and hold placement,
release and deletion are serialised by `HoldBook.lock` in the server, so that a hold placed while a deletion is
decided cannot be missed by it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, or_, select

from log.audit.canonical import canonicalize, parse_json
from log.audit.errors import InvalidEvent
from log.audit.schema import TOKEN_PATTERN, format_timestamp_ms, parse_timestamp_ms, python_regex
from log.audit.lifecycle_names import is_vault_token
from log.audit.tables import (
    audit_event_blobs, audit_event_context, audit_event_tokens, audit_events, legal_holds, vault_tokens,
)
from log.errors import Conflict, InvalidInput, NotFound
from log.storage import RowInsert, RowUpdate

LEGAL_HOLD_TYPE = "auditlog.legal-hold/v1"
HOLD_CHANGES = ("placed", "released", "deletion-refused")
REFUSED_KINDS = ("blob",)
SCOPE_FIELDS = ("tenant", "run_ids", "context", "subjects", "actor_id", "from", "to")
MAX_SCOPE_VALUES = 256  # per list field of a scope: a hold names cases and runs, not a data set
MAX_TEXT = 1024  # reason and reference, in characters
# Indices per IN list: far below SQLite's bound-variable limit, and a plan PostgreSQL keeps to index lookups.
MATCH_CHUNK = 500

_TOKEN = python_regex(TOKEN_PATTERN)
_CONTEXT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")  # as the event schema's context property names
_HOLD_ID = re.compile(r"^[0-9a-f]{16}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


class HeldByLegalHold(Conflict):
    """A deletion refused because an active legal hold covers what it would delete (HTTP 409). `hold_id` names the
    hold; `index` is the log entry that records the refusal."""

    code = "legal-hold"

    def __init__(self, message: str, hold_id: str, index: int | None = None):
        super().__init__(message, index)
        self.hold_id = hold_id

    @property
    def problem_members(self) -> dict:
        return {"hold_id": self.hold_id}


def new_hold_id() -> str:
    """A fresh hold id: 16 random lowercase hex digits."""
    return secrets.token_hex(8)


def check_hold_id(value: Any, field: str = "hold_id") -> str:
    if not isinstance(value, str) or not _HOLD_ID.match(value):
        raise InvalidInput(f"{field} must be 16 lowercase hex digits, not {value!r}"[:200], field=field)
    return value


# -- scope ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HoldScope:
    """What a hold covers (see the module docstring). Times are Unix milliseconds, both bounds inclusive."""

    tenant: str
    run_ids: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()
    subjects: tuple[str, ...] = ()
    actor_id: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None

    @property
    def tenant_wide(self) -> bool:
        """True when the scope is the whole tenant: it then holds every event, blob and subject of it."""
        return not (self.run_ids or self.context or self.subjects or self.actor_id is not None
                    or self.from_ms is not None or self.to_ms is not None)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"tenant": self.tenant}
        if self.run_ids:
            out["run_ids"] = list(self.run_ids)
        if self.context:
            out["context"] = [{"name": name, "value": value} for name, value in self.context]
        if self.subjects:
            out["subjects"] = list(self.subjects)
        if self.actor_id is not None:
            out["actor_id"] = self.actor_id
        if self.from_ms is not None:
            out["from"] = format_timestamp_ms(self.from_ms)
        if self.to_ms is not None:
            out["to"] = format_timestamp_ms(self.to_ms)
        return out


def _token(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidEvent(f"{field} must be a token (1-128 of A-Za-z0-9._:~-), not {value!r}"[:300], field)
    return value


def _list(value: Any, field: str) -> list:
    if not isinstance(value, list) or not value:
        raise InvalidEvent(f"{field} must be a non-empty list (leave it out to not narrow the scope)", field)
    if len(value) > MAX_SCOPE_VALUES:
        raise InvalidEvent(f"{field} has {len(value)} values; at most {MAX_SCOPE_VALUES}", field)
    return value


def _time(value: Any, field: str) -> int:
    ms = parse_timestamp_ms(value) if isinstance(value, str) else None
    if ms is None:
        raise InvalidEvent(f"{field} must be an RFC 3339 UTC timestamp with milliseconds "
                           f"(2026-01-31T00:00:00.000Z), not {value!r}"[:300], field)
    return ms


def parse_scope(obj: Any, field: str = "$.scope") -> HoldScope:
    """A HoldScope from its JSON object; raises InvalidEvent naming the bad field (as a JSON path under `field`)."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"{field} must be an object with at least tenant", field)
    unknown = set(obj) - set(SCOPE_FIELDS)
    if unknown:
        raise InvalidEvent(f"unknown scope field(s): {', '.join(sorted(unknown))} (known: {', '.join(SCOPE_FIELDS)})",
                           f"{field}.{sorted(unknown)[0]}")
    if "tenant" not in obj:
        raise InvalidEvent("a hold's scope names its tenant", f"{field}.tenant")
    tenant = _token(obj["tenant"], f"{field}.tenant")
    run_ids = context = subjects = ()
    if "run_ids" in obj:
        items = _list(obj["run_ids"], f"{field}.run_ids")
        run_ids = tuple(sorted({_token(v, f"{field}.run_ids[{i}]") for i, v in enumerate(items)}))
    if "context" in obj:
        pairs = set()
        for i, item in enumerate(_list(obj["context"], f"{field}.context")):
            where = f"{field}.context[{i}]"
            if not isinstance(item, dict) or set(item) != {"name", "value"}:
                raise InvalidEvent("a context item is an object with exactly name and value", where)
            name = item["name"]
            if not isinstance(name, str) or not _CONTEXT_NAME.match(name):
                raise InvalidEvent(f"name must be a context id name ([a-z][a-z0-9_]{{0,63}}), not {name!r}"[:200],
                                   f"{where}.name")
            pairs.add((name, _token(item["value"], f"{where}.value")))
        context = tuple(sorted(pairs))
    if "subjects" in obj:
        tokens = set()
        for i, value in enumerate(_list(obj["subjects"], f"{field}.subjects")):
            if not is_vault_token(value):
                raise InvalidEvent(f"a subject is named by its vault token (vt. and 26 of a-z2-7), not {value!r}"
                                   [:200], f"{field}.subjects[{i}]")
            tokens.add(value)
        subjects = tuple(sorted(tokens))
    actor_id = _token(obj["actor_id"], f"{field}.actor_id") if "actor_id" in obj else None
    from_ms = _time(obj["from"], f"{field}.from") if "from" in obj else None
    to_ms = _time(obj["to"], f"{field}.to") if "to" in obj else None
    if from_ms is not None and to_ms is not None and to_ms < from_ms:
        raise InvalidEvent("to must not be earlier than from", f"{field}.to")
    return HoldScope(tenant, run_ids, context, subjects, actor_id, from_ms, to_ms)


# -- records ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HoldChange:
    """One `auditlog.legal-hold/v1` record in memory (`at` in Unix milliseconds)."""

    change: str
    hold_id: str
    scope: HoldScope
    reason: str
    reference: str
    at: int
    refused: tuple[str, str] | None = None  # deletion-refused: (kind, item)

    @property
    def tenant(self) -> str:
        return self.scope.tenant


def format_hold_change(change: HoldChange) -> dict:
    """The wire object of a hold change (the log entry is its canonical bytes)."""
    out = {"type": LEGAL_HOLD_TYPE, "change": change.change, "hold_id": change.hold_id, "tenant": change.tenant,
           "scope": change.scope.to_json(), "reason": change.reason, "reference": change.reference,
           "at": format_timestamp_ms(change.at)}
    if change.refused is not None:
        out["refused"] = {"kind": change.refused[0], "item": change.refused[1]}
    return out


def _text(value: Any, field: str, *, required: bool) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidEvent(f"{field[2:]} must be a string of at most {MAX_TEXT} characters", field)
    if required and not value.strip():
        raise InvalidEvent(f"{field[2:]} is required (a hold is placed and released for a stated reason, "
                           f"with a reference such as a case or order number)", field)
    return value


def parse_hold_change(obj: Any) -> HoldChange:
    """The in-memory form of a legal-hold wire object; raises InvalidEvent naming the bad field."""
    if not isinstance(obj, dict) or obj.get("type") != LEGAL_HOLD_TYPE:
        raise InvalidEvent(f"not a {LEGAL_HOLD_TYPE} record", "$.type")
    fields = {"type", "change", "hold_id", "tenant", "scope", "reason", "reference", "at"}
    if obj.get("change") == "deletion-refused":
        fields.add("refused")
    unknown, missing = set(obj) - fields, fields - set(obj)
    if unknown:
        raise InvalidEvent(f"unknown field(s) in a legal hold: {', '.join(sorted(unknown))}",
                           f"$.{sorted(unknown)[0]}")
    if missing:
        raise InvalidEvent(f"{sorted(missing)[0]} is required", f"$.{sorted(missing)[0]}")
    kind = obj["change"]
    if kind not in HOLD_CHANGES:
        raise InvalidEvent(f"change must be one of {', '.join(HOLD_CHANGES)}, not {kind!r}"[:200], "$.change")
    hold_id = obj["hold_id"]
    if not isinstance(hold_id, str) or not _HOLD_ID.match(hold_id):
        raise InvalidEvent("hold_id must be 16 lowercase hex digits", "$.hold_id")
    scope = parse_scope(obj["scope"])
    if _token(obj["tenant"], "$.tenant") != scope.tenant:
        raise InvalidEvent("tenant must be the scope's tenant", "$.tenant")
    reason = _text(obj["reason"], "$.reason", required=kind != "deletion-refused")
    reference = _text(obj["reference"], "$.reference", required=kind != "released")
    refused = None
    if kind == "deletion-refused":
        item = obj["refused"]
        if not isinstance(item, dict) or set(item) != {"kind", "item"} or item["kind"] not in REFUSED_KINDS:
            raise InvalidEvent(f"refused must be {{kind, item}} with kind one of {', '.join(REFUSED_KINDS)}",
                               "$.refused")
        if not isinstance(item["item"], str) or not _SHA256.match(item["item"]):
            raise InvalidEvent("a refused blob is named by its sha256 (64 lowercase hex digits)", "$.refused.item")
        refused = (item["kind"], item["item"])
    return HoldChange(kind, hold_id, scope, reason, reference, _time(obj["at"], "$.at"), refused)


def hold_change_entry(change: HoldChange) -> bytes:
    """The log entry of a hold change, checked as `parse_hold_change` would (InvalidEvent otherwise)."""
    wire = format_hold_change(change)
    parse_hold_change(wire)
    return canonicalize(wire)


def placed_row(change: HoldChange) -> RowInsert:
    """The legal_holds row of a placement, for `Log.add_entries(rows=...)`: placed_idx is the entry's index."""
    return RowInsert(legal_holds.name, ("hold_id", "tenant", "scope", "reason", "reference", "placed_at"),
                     (change.hold_id, change.tenant, canonicalize(change.scope.to_json()).decode(), change.reason,
                      change.reference, change.at), index_column="placed_idx")


def released_row(change: HoldChange) -> RowUpdate:
    """The legal_holds change of a release: released_idx (the entry's index, once) and released_at."""
    return RowUpdate(legal_holds.name, ("hold_id",), (change.hold_id,), "released_idx", ("released_at",),
                     (change.at,))


# -- holds as stored --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hold:
    """A legal_holds row. `released_idx` None: the hold is active."""

    hold_id: str
    scope: HoldScope
    reason: str
    reference: str
    placed_idx: int
    placed_at: int
    released_idx: int | None = None
    released_at: int | None = None

    @property
    def tenant(self) -> str:
        return self.scope.tenant

    @property
    def active(self) -> bool:
        return self.released_idx is None

    def to_json(self) -> dict:
        return {"hold_id": self.hold_id, "tenant": self.tenant, "scope": self.scope.to_json(),
                "reason": self.reason, "reference": self.reference, "active": self.active,
                "placed_index": self.placed_idx, "placed_at": format_timestamp_ms(self.placed_at),
                "released_index": self.released_idx,
                "released_at": None if self.released_at is None else format_timestamp_ms(self.released_at)}


_HOLD_COLUMNS = (legal_holds.c.hold_id, legal_holds.c.scope, legal_holds.c.reason, legal_holds.c.reference,
                 legal_holds.c.placed_idx, legal_holds.c.placed_at, legal_holds.c.released_idx,
                 legal_holds.c.released_at)


def _hold(row) -> Hold:
    hold_id, scope, reason, reference, placed_idx, placed_at, released_idx, released_at = row
    return Hold(hold_id, parse_scope(parse_json(scope.encode()).value), reason, reference, placed_idx, placed_at,
                released_idx, released_at)


def select_holds(tx, *, tenant: str | None = None, active: bool | None = None,
                 hold_id: str | None = None) -> list[Hold]:
    """The holds in tx's state, in the order they were placed: all, or a tenant's, the active (or released) ones,
    or one."""
    h = legal_holds.c
    query = select(*_HOLD_COLUMNS).order_by(h.placed_idx)
    if tenant is not None:
        query = query.where(h.tenant == tenant)
    if active is not None:
        query = query.where(h.released_idx.is_(None) if active else h.released_idx.is_not(None))
    if hold_id is not None:
        query = query.where(h.hold_id == hold_id)
    return [_hold(row) for row in tx.execute(query)]


# -- the matcher -------------------------------------------------------------------------------------------------

def in_chunks(items: Sequence, size: int = MATCH_CHUNK) -> Iterable[Sequence]:
    """`items` in slices of at most `size` (IN lists of a bounded length)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ActiveHolds:
    """The holds placed and not released in one transaction's state, and which events, blobs and data subjects
    they keep from deletion. Make with `ActiveHolds.load(tx, now_ms)`; each lookup takes a transaction of the same
    log (the one it was loaded in, or a later one: holds only ever stop by a release, which a caller deleting
    under `HoldBook.lock` cannot race). With no active hold every lookup answers at once, without a query."""

    def __init__(self, holds: Sequence[Hold], subject_tokens: Mapping[str, frozenset[str]], as_of: int):
        self.holds = tuple(holds)  # in placement order: the first hold that covers something is the one named
        self.as_of = as_of
        self._subject_tokens = subject_tokens  # hold_id -> every token its `subjects` stand for
        self._tenants = sorted({hold.tenant for hold in holds})

    @classmethod
    def load(cls, tx, now_ms: int) -> ActiveHolds:
        """The active holds in tx's state. `now_ms` is the time the answer is as of (`as_of`, for the caller's
        records); every hold placed and not released is active whatever its placed_at says: a clock that
        disagrees must never let a hold be missed. A scope's subjects are expanded here to every token of their
        vault mappings (vault_tokens), erased subjects' included (their rows stay, sealed)."""
        holds = select_holds(tx, active=True)
        expanded: dict[str, frozenset[str]] = {}
        t = vault_tokens.c
        for hold in holds:
            if hold.scope.subjects:
                tokens = set(hold.scope.subjects)
                for chunk in in_chunks(hold.scope.subjects):
                    tokens.update(token for token, in tx.execute(
                        select(t.token).where(t.tenant == hold.tenant, t.subject.in_(list(chunk))).distinct()))
                expanded[hold.hold_id] = frozenset(tokens)
        return cls(holds, expanded, now_ms)

    def __bool__(self) -> bool:
        return bool(self.holds)

    def hold(self, hold_id: str) -> Hold:
        """The active hold `hold_id` (one a lookup named)."""
        return next(hold for hold in self.holds if hold.hold_id == hold_id)

    def _event_conditions(self, hold: Hold):
        a, scope = audit_events.c, hold.scope
        conditions = [a.tenant == scope.tenant]
        if scope.run_ids:
            conditions.append(a.run_id.in_(list(scope.run_ids)))
        if scope.actor_id is not None:
            conditions.append(a.actor_id == scope.actor_id)
        if scope.from_ms is not None:
            conditions.append(a.ts >= scope.from_ms)
        if scope.to_ms is not None:
            conditions.append(a.ts <= scope.to_ms)
        if scope.context:
            c = audit_event_context.c
            conditions.append(exists().where(c.idx == a.idx, or_(*(
                and_(c.name == name, c.value == value) for name, value in scope.context))))
        if scope.subjects:
            k = audit_event_tokens.c
            conditions.append(exists().where(k.idx == a.idx, k.tenant == scope.tenant,
                                             k.token.in_(sorted(self._subject_tokens[hold.hold_id]))))
        return conditions

    def for_events(self, tx, indices: Sequence[int]) -> dict[int, str]:
        """Event entry index -> the id of the first-placed active hold that covers it, for those of `indices`
        that one covers. Indices that are no audit event (other entries) are never held here."""
        if not self.holds or not indices:
            return {}
        a = audit_events.c
        wanted = sorted(set(indices))
        held: dict[int, str] = {}
        for hold in self.holds:
            conditions = self._event_conditions(hold)
            for chunk in in_chunks([i for i in wanted if i not in held]):
                for idx, in tx.execute(select(a.idx).where(a.idx.in_(list(chunk)), *conditions)):
                    held[idx] = hold.hold_id
        return held

    def for_blobs(self, tx, sha256s: Sequence[str]) -> dict[str, str]:
        """Blob sha256 -> the id of a hold that covers it: a blob is held when any event citing it
        (audit_event_blobs) is held. The hold named is that of the earliest such event."""
        if not self.holds or not sha256s:
            return {}
        b = audit_event_blobs.c
        citing: list[tuple[str, int]] = []
        for chunk in in_chunks(sorted(set(sha256s))):
            citing += tx.execute(select(b.sha256, b.idx).where(b.sha256.in_(list(chunk)),
                                                                b.tenant.in_(self._tenants)))
        held_events = self.for_events(tx, [idx for _, idx in citing])
        held: dict[str, str] = {}
        for sha256, idx in sorted(citing, key=lambda pair: pair[1]):
            if idx in held_events and sha256 not in held:
                held[sha256] = held_events[idx]
        return held

    def for_subject(self, tx, tenant: str, subject: str) -> str | None:
        """The id of a hold that keeps data subject `subject` (its token) of `tenant` from erasure, or None. A
        subject is held when a hold of its tenant names one of its tokens (the subject token or any token of its
        mappings) or is tenant-wide, or when any event containing one of its tokens is held."""
        holds = [hold for hold in self.holds if hold.tenant == tenant]
        if not holds:
            return None
        t = vault_tokens.c
        tokens = {subject} | {token for token, in tx.execute(
            select(t.token).where(t.tenant == tenant, t.subject == subject).distinct())}
        for hold in holds:
            if hold.scope.tenant_wide or tokens & set(hold.scope.subjects):
                return hold.hold_id
        k = audit_event_tokens.c
        events: set[int] = set()
        for chunk in in_chunks(sorted(tokens)):
            events.update(idx for idx, in tx.execute(
                select(k.idx).where(k.tenant == tenant, k.token.in_(list(chunk)))))
        held = self.for_events(tx, sorted(events))
        return held[min(held)] if held else None


# -- placing and releasing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HoldReceipt:
    """A hold change, logged: the hold after it and the index of its entry."""

    hold: Hold
    index: int


class HoldBook:
    """Places, releases and lists legal holds through a Log (`add_entries`, `read`).

    `lock` serialises every change of holds with every deletion that asks them (blob DELETE, erasure, retention
    runs take it around deciding and deleting), so a hold placed while a deletion is decided cannot be missed.
    """

    def __init__(self, log, *, clock: Callable[[], float] = time.time):
        self.log = log
        self.lock = asyncio.Lock()
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def place(self, scope: Any, reason: Any, reference: Any) -> HoldReceipt:
        """Place a hold on `scope` (a HoldScope or its JSON object): its entry and row are committed before this
        returns. InvalidInput (naming the field) for a bad scope, or a missing reason or reference."""
        try:
            parsed = scope if isinstance(scope, HoldScope) else parse_scope(scope, "$.scope")
            change = HoldChange("placed", new_hold_id(), parsed, _text(reason, "$.reason", required=True),
                                _text(reference, "$.reference", required=True), self._now())
            entry = hold_change_entry(change)
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        async with self.lock:
            added = await self.log.add_entries([entry], rows=[[placed_row(change)]])
        index = added.first_index
        return HoldReceipt(Hold(change.hold_id, change.scope, change.reason, change.reference, index, change.at),
                           index)

    async def release(self, hold_id: str, reason: Any, reference: Any = "") -> HoldReceipt:
        """Release an active hold: its entry and the row's release are committed together before this returns.
        NotFound for an unknown hold, Conflict for one already released, InvalidInput without a reason."""
        check_hold_id(hold_id)
        async with self.lock:
            found = await self.log.read(lambda tx: select_holds(tx, hold_id=hold_id), primary=True)
            if not found:
                raise NotFound(f"no legal hold {hold_id}")
            hold = found[0]
            if not hold.active:
                raise Conflict(f"legal hold {hold_id} was released already, by entry {hold.released_idx}",
                               hold.released_idx)
            try:
                change = HoldChange("released", hold_id, hold.scope, _text(reason, "$.reason", required=True),
                                    _text(reference, "$.reference", required=False), self._now())
                entry = hold_change_entry(change)
            except InvalidEvent as exc:
                raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
            added = await self.log.add_entries([entry], rows=[[released_row(change)]])
        index = added.first_index
        return HoldReceipt(Hold(hold.hold_id, hold.scope, hold.reason, hold.reference, hold.placed_idx,
                                hold.placed_at, index, change.at), index)

    async def refuse_deletion(self, hold: Hold, kind: str, item: str, reason: str) -> int:
        """Log that a deletion of `item` (a blob's sha256) was refused because `hold` covers it; returns the entry's
        index, committed. Call under `lock`, with the hold just found active."""
        try:
            entry = hold_change_entry(HoldChange("deletion-refused", hold.hold_id, hold.scope,
                                                 _text(reason, "$.reason", required=False), hold.reference,
                                                 self._now(), (kind, item)))
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        return (await self.log.add_entries([entry])).first_index

    async def list(self, *, tenant: str | None = None, active: bool | None = None) -> list[Hold]:
        """The holds, in placement order (from the primary: what deletions decide from)."""
        if tenant is not None:
            _token_input(tenant, "tenant")
        return await self.log.read(lambda tx: select_holds(tx, tenant=tenant, active=active), primary=True)

    async def active(self) -> ActiveHolds:
        """The active holds as of now, from the primary."""
        now = self._now()
        return await self.log.read(lambda tx: ActiveHolds.load(tx, now), primary=True)

    async def blob_hold(self, sha256: str) -> Hold | None:
        """The active hold that covers blob `sha256`, or None (from the primary). Call under `lock` when deleting."""
        now = self._now()

        def read(tx) -> Hold | None:
            holds = ActiveHolds.load(tx, now)
            hold_id = holds.for_blobs(tx, [sha256]).get(sha256)
            return None if hold_id is None else holds.hold(hold_id)

        return await self.log.read(read, primary=True)


def _token_input(value: Any, field: str) -> str:
    try:
        return _token(value, field)
    except InvalidEvent as exc:
        raise InvalidInput(str(exc), field=field) from None


__all__ = ["ActiveHolds", "HeldByLegalHold", "Hold", "HoldBook", "HoldChange", "HoldReceipt", "HoldScope",
           "LEGAL_HOLD_TYPE",
           "check_hold_id", "format_hold_change", "hold_change_entry", "new_hold_id", "parse_hold_change",
           "parse_scope", "placed_row", "released_row", "select_holds"]
