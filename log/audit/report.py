"""Compliance reports: one tenant's audit events over a period, verified against a signed checkpoint, mapped to
framework controls (log/audit/frameworks.py), with the completeness findings (completeness.py), per-producer gaps,
human-review statistics (review.py), cost and token totals and chart data. `build_report` returns a JSON-able
dict; api/reports/ renders it as HTML or PDF.

Verification, against ONE signed checkpoint: the witnessed one (with its cosignatures) when the server has witnesses
and passes it, else the log's latest. Its signature is checked with the log's key first.

* The tree. Every level-0 hash tile the checkpoint's tree has is read from the database and folded (RFC 6962) into
  its root, which must equal the signed root: the leaf hashes below are then the ones the checkpoint commits to.
* Events. Every event of the tenant whose timestamp is in [from, to) and whose index is below the checkpoint's size
  (the audit index, audit_events) has its entry re-hashed (SHA-256(0x00 || entry)) and compared with that leaf hash,
  and its producer's Ed25519 signature over the canonical event re-verified with the key the registry (rebuilt from
  the registry-change entries below the size, each re-hashed against the tree too) gives for it, valid at the
  event's timestamp, for a producer registered for the tenant. Signatures are checked in the server's verifier
  processes when it has them, else in processes started for a large report, else here.
* "Tampered events": events whose entry does not hash to its leaf, or is no audit envelope, or whose signature does
  not verify. Their contents are left out of everything else in the report.
* "Gaps detected": (a) positions below the checkpoint's size the database cannot produce (no entry row, or an empty
  one) that no pruned_entries row accounts for (a retention run deleting contents is not a gap: the leaf hash stays
  and the run's entry says why); the tree commits to every position, and a position's tenant cannot be told
  without its bytes, so these are counted over the whole tree; plus (b) events of the period whose
  `parent_event_id` names no event of the same tenant anywhere in the log below the size (pruned events count as
  present: the index keeps their ids).
* "Chain integrity" is VALID when the tiles fold to the signed root, every registry entry and every event hashes to
  its leaf, every signature verifies and there is no gap of kind (a); else INVALID.
* Events whose contents a retention run pruned are counted apart ("pruned"): their leaf hashes stay in the tree,
  their bytes are gone, so they are neither verified nor tampered. Events of the period above the checkpoint's size
  are counted as "not covered" (a witnessed checkpoint lags the log).

The summary line has the issue's exact form: `Verified 12,847 events · Chain integrity: VALID · First event: <ts> ·
Last event: <ts> · Gaps detected: 0 · Tampered events: 0`, where the count is the events verified (re-hashed and
signature-checked, tampered ones included) and first/last are their earliest and latest timestamps.

Events are read by complete runs (up to BATCH_EVENTS at a time), so memory stays bounded at any size and each run's
causal chain is whole for completeness check 2 (within the period).
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_, case, func, select

from log.audit import completeness, deleted, frameworks, review
from log.audit.canonical import parse_json
from log.audit.records import ENVELOPE_TYPE, parse_registry_change
from log.audit.registry import Registry
from log.audit.retention import policies_in_force
from log.audit.schema import CONTENT_REF_PATHS, content_references, format_timestamp_ms, parse_timestamp_ms
from log.audit.tables import access_tokens, audit_events, audit_registry
from log.audit.verifier import VerifierPool, VerifierUnavailable
from log.checkpoint import open_checkpoint
from log.compact import CompactRange
from log.blobs import BlobNotFound
from log.errors import InvalidInput, LogError, SignatureError
from log.hashing import HASH_SIZE, hash_leaves
from log.note import parse_note
from log.note_keys import parse_verifier_key
from log.prune import pruned_at
from log.storage.schema import entries as log_entries
from log.storage.schema import pruned_entries, tiles
from log.tiles import TILE_WIDTH

FORMAT = "auditlog.compliance-report/v1"
BATCH_EVENTS = 4096  # events read and checked at a time (whole runs)
RUNS_PER_QUERY = 500  # run ids per IN (...)
TILES_PER_READ = 1024  # level-0 tiles per read while folding the tree
LISTED = 20  # evidencing events listed per control (all are counted)
FINDINGS_LISTED = 200  # findings listed per check (all are counted)
GAPS_LISTED = 100
SILENCES_LISTED = 3
EDITS_LISTED = 10
DIFFS_READ = 200  # edited reviews whose draft and final blobs are read for "commonest edits"
DIFF_BLOB_LIMIT = 64 << 10  # bytes of a draft or final read for a diff
BATCHES_IN_FLIGHT = 4  # read and checked, their signatures not yet verified (more held only grows the heap the GC walks)
VERIFIER_NICENESS = 10  # the report's own verifier processes run behind it (_yield_to_this_process)
SIGNATURE_CHUNK = 2048  # signatures per request to a verifier process (half a batch: one to each of two)
OWN_VERIFIERS_FROM = 20_000  # events from which a report without the server's verifier starts processes of its own
LATENCY_BUCKETS_MS = (1_000, 10_000, 60_000, 300_000, 3_600_000, 86_400_000)
_decode = json.JSONDecoder().decode
_REFERENCING = frozenset(path[0] for path in CONTENT_REF_PATHS)  # the top-level fields a blob reference can be in
_EVENT_PREFIX = b'{"event":'
_EVENT_END = b',"key_id":'


@dataclass(frozen=True)
class ReportRequest:
    tenant: str
    since_ms: int  # inclusive
    until_ms: int  # exclusive
    frameworks: tuple[str, ...] = ("all",)

    def __post_init__(self) -> None:
        if self.until_ms <= self.since_ms:
            raise InvalidInput("to must be later than from", field="to")
        try:
            frameworks.controls_for(self.frameworks)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="framework") from None


@dataclass
class _Producer:
    events: int = 0
    times: array.array = field(default_factory=lambda: array.array("q"))


@dataclass
class _Usage:
    events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: dict = field(default_factory=dict)  # currency -> Decimal


class _Tally:
    """What the report accumulates over the batches; only counts, capped lists and per-event integers."""

    def __init__(self, controls: list[frameworks.Control]):
        self.controls = controls
        # The predicates are evaluated once per event shape (frameworks.shape), and events counted per shape.
        self.predicated = [c for c in controls if c.predicate is not None and c.predicate is not frameworks.any_event]
        self.by_shape: dict[tuple, tuple[str, ...]] = {}  # shape -> the keys of the controls its events evidence
        self.shape_count: Counter = Counter()
        self.evidence_listed: dict[str, list] = {c.key: [] for c in controls}
        self.unlisted = {c.key for c in self.predicated}  # controls whose evidence list is not full yet
        self.first_events: list[dict] = []  # the evidence listed for controls every event evidences
        self.analysed = 0  # events verified and tallied
        self.checked = 0
        self.pruned = 0
        self.first: str | None = None
        self.last: str | None = None
        self.tampered: list[dict] = []
        self.findings: list[completeness.Finding] = []
        self.orphans: list[tuple[int, str, str, str, str]] = []  # (index, event_id, parent, producer, run_id)
        self.producers: dict[str, _Producer] = {}
        self.per_day: Counter = Counter()  # (day, event_type) -> events
        self.latencies: list[int] = []
        self.verdicts: Counter = Counter()
        self.dwell: list[int] = []
        self.edited: list[tuple[str, str]] = []  # (draft sha256, final sha256) of edited reviews, for the diffs
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost: dict[str, Decimal] = {}
        self.usage: dict[tuple[str, str], _Usage] = {}
        self.blob_states: dict[str, str] = {}

    def tamper(self, index: int, event_id: str | None, reason: str) -> None:
        self.tampered.append({"index": index, "event_id": event_id, "reason": reason})

    def add_event(self, index: int, producer: str, event: dict, ms: int, by_id: dict[str, tuple[dict, int]]) -> None:
        """One verified event's contribution (`ms` its timestamp; by_id: its batch's events and times by id, for
        parent lookups)."""
        timestamp = event["timestamp"]
        if self.first is None or timestamp < self.first:
            self.first = timestamp
        if self.last is None or timestamp > self.last:
            self.last = timestamp
        kind = event["event_type"]
        shape = frameworks.shape(event)
        evidenced = self.by_shape.get(shape)
        if evidenced is None:
            evidenced = self.by_shape[shape] = tuple(c.key for c in self.predicated if c.predicate(event))
        self.shape_count[shape] += 1
        if self.unlisted:
            self._list(evidenced, index, event)
        self.analysed += 1
        if len(self.first_events) < LISTED:
            self.first_events.append({"index": index, "event_id": event["event_id"], "event_type": kind})
        stats = self.producers.get(producer)
        if stats is None:
            stats = self.producers[producer] = _Producer()
        stats.events += 1
        stats.times.append(ms)
        parent_id = event.get("parent_event_id")
        parent = by_id.get(parent_id) if parent_id else None
        if parent_id and parent is None:
            self.orphans.append((index, event["event_id"], parent_id, producer, event["run_id"]))
        self.per_day[(timestamp[:10], kind)] += 1
        if parent is not None and completeness.is_approval(event):
            self.latencies.append(ms - parent[1])
        verdict = review.review_verdict(event)
        if verdict is not None:
            self.verdicts[verdict] += 1
            dwell = (event.get("approval") or {}).get("review_dwell_ms")
            if isinstance(dwell, int):
                self.dwell.append(dwell)
            if verdict == "edited" and len(self.edited) < DIFFS_READ:
                draft, final = (event.get("input") or {}).get("sha256"), (event.get("output") or {}).get("sha256")
                if draft and final:
                    self.edited.append((draft, final))
        metadata = event.get("metadata")
        if metadata:
            self._usage(producer, event, metadata)

    def _list(self, keys: tuple[str, ...], index: int, event: dict) -> None:
        for key in keys:
            if key in self.unlisted:
                listed = self.evidence_listed[key]
                listed.append({"index": index, "event_id": event["event_id"], "event_type": event["event_type"]})
                if len(listed) >= LISTED:
                    self.unlisted.discard(key)

    def evidence_count(self, key: str) -> int:
        return sum(count for shape, count in self.shape_count.items() if key in self.by_shape[shape])

    def _usage(self, producer: str, event: dict, metadata: dict) -> None:
        model = (event.get("snapshot") or {}).get("model_id") or "-"
        usage = self.usage.get((producer, model))
        if usage is None:
            usage = self.usage[(producer, model)] = _Usage()
        usage.events += 1
        tokens_in, tokens_out = metadata.get("input_tokens", 0), metadata.get("output_tokens", 0)
        usage.input_tokens += tokens_in
        usage.output_tokens += tokens_out
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        if "cost" in metadata:
            currency = metadata.get("currency", "unspecified")
            try:
                amount = Decimal(metadata["cost"])
            except InvalidOperation:
                return
            usage.cost[currency] = usage.cost.get(currency, Decimal(0)) + amount
            self.cost[currency] = self.cost.get(currency, Decimal(0)) + amount


@dataclass
class _Batch:
    """One batch of events read: (index, producer, entry bytes) present, and how many were pruned; and the runs'
    events of the tenant outside the period, as the index knows them, for the causal chains (`_context_event`)."""

    rows: list[tuple[int, str, bytes]]
    pruned: int
    context: list[tuple[int, dict]] = field(default_factory=list)


@dataclass
class _Checked:
    """A batch after hashing and parsing: the events whose leaf hash matched, and their signature jobs."""

    events: list[tuple[int, str, dict, int]]  # (index, producer, event, its timestamp in ms)
    jobs: list[tuple[bytes, bytes, bytes]]  # (public key, canonical event bytes, signature) per event with a key
    job_events: list[int]  # position in `events` of each job
    context: list[tuple[int, dict]] = field(default_factory=list)  # _Batch.context, passed on


class _Signatures:
    """Ed25519 verdicts in batches: the verifier processes when there are some, else this process (a thread)."""

    def __init__(self, pool: VerifierPool | None):
        self.pool = pool
        self.checked = 0
        self.in_processes = 0

    async def verify(self, jobs: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        chunks = [jobs[i:i + SIGNATURE_CHUNK] for i in range(0, len(jobs), SIGNATURE_CHUNK)]
        verdicts = await asyncio.gather(*(self._chunk(chunk) for chunk in chunks))
        self.checked += len(jobs)
        return [v for chunk in verdicts for v in chunk]

    async def _chunk(self, jobs) -> list[bool]:
        if self.pool is not None:
            try:
                verdicts = await self.pool.verify(jobs)
                self.in_processes += len(jobs)
                return verdicts
            except VerifierUnavailable:
                pass
        return await asyncio.to_thread(_verify_here, jobs)


def _yield_to_this_process(pids: list[int]) -> None:
    """Lower the report's own verifier processes' priority. This process reads, re-hashes and tallies every event
    (the longer path) while they check signatures: scheduled as equals, three busy processes on two cores gave it
    two thirds of one and it set the pace; ahead of them it keeps a core, and they have the rest."""
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, VERIFIER_NICENESS)
        except (OSError, AttributeError):  # not permitted, or no such call here: equals, as before
            pass


def _context_event(run_id: str, event_id: str, parent_event_id: str | None, event_type: str) -> dict:
    """An event of a reported run outside the report's period, as the audit index knows it: enough for the causal
    chains the completeness checks follow. Neither checked nor counted: the period's events are."""
    return {"run_id": run_id, "event_id": event_id, "parent_event_id": parent_event_id, "event_type": event_type}


def _verify_here(jobs) -> list[bool]:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    keys: dict[bytes, VerifyKey] = {}
    out = []
    for public_key, message, signature in jobs:
        key = keys.get(public_key)
        if key is None:
            key = keys[public_key] = VerifyKey(public_key)
        try:
            key.verify(message, signature)
            out.append(True)
        except (BadSignatureError, ValueError, TypeError):
            out.append(False)
    return out


async def build_report(log, blobs, request: ReportRequest, *, checkpoint_note: bytes | None = None,
                       witnessed: bool = False, verifier_pool: VerifierPool | None = None,
                       now_ms: int | None = None) -> dict:
    """The report (module docstring). `log` is a `log.service.Log` (its `read`, key and checkpoint), `blobs` the
    audit blob store. `checkpoint_note`: the signed checkpoint to verify against (default the log's latest);
    `witnessed`: it is the witnessed one (its cosignature lines name the witnesses; the server's witness job verified
    each before storing it, and the report names them, it does not check them again). `verifier_pool`: the server's
    signature verifier processes, if any. Heavy work runs on threads and in processes, not on the event loop."""
    return await _Report(log, blobs, request, checkpoint_note, witnessed, verifier_pool, now_ms).run()


class _Report:
    def __init__(self, log, blobs, request: ReportRequest, note: bytes | None, witnessed: bool,
                 pool: VerifierPool | None, now_ms: int | None):
        self.log, self.blobs, self.request = log, blobs, request
        self.note = note if note is not None else log.checkpoint.note
        self.witnessed = witnessed
        self.pool = pool
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.controls = frameworks.controls_for(request.frameworks)
        self.tally = _Tally(self.controls)
        self.problems: list[str] = []
        self.leaves: dict[int, bytes] = {}  # level-0 tile index -> its leaf hashes, within the checkpoint's tree
        self.keys: dict = {}  # (producer, key_id) -> its ProducerKey, found and tenant-checked once
        self.analysing = asyncio.Lock()  # one batch's tally at a time (the tally is not thread-safe)

    async def run(self) -> dict:
        started = time.perf_counter()
        verifier = parse_verifier_key(self.log.verifier_key)
        try:
            checkpoint, _ = open_checkpoint(self.note, verifier)
        except SignatureError as exc:
            raise InvalidInput(f"the checkpoint to verify against does not verify with the log key: {exc}",
                               field="checkpoint") from None
        self.size = checkpoint.size
        cosigners = sorted({s.name for s in parse_note(self.note).signatures if s.name != verifier.name})
        tree_ok = await self.log.read(lambda tx: self._fold_tree(tx, checkpoint.root_hash))
        registry, registry_records = await self.log.read(self._registry)
        positions = await self.log.read(self._missing_positions)
        runs, not_covered = await self.log.read(self._runs)

        total = sum(count for _, count in runs)
        own_pool = None
        pool = self.pool
        if pool is None and total >= OWN_VERIFIERS_FROM:
            own_pool = pool = VerifierPool(max(2, os.cpu_count() or 2))
            await own_pool.start()
            _yield_to_this_process(own_pool.pids())
        signatures = _Signatures(pool)
        pending: list[asyncio.Task] = []
        try:
            for batch_runs in _batches(runs):
                batch = await self.log.read(lambda tx, runs=batch_runs: self._read_batch(tx, runs))
                checked = await asyncio.to_thread(self._check_batch, batch, registry)
                pending.append(asyncio.create_task(self._finish_batch(checked, signatures)))
                if len(pending) >= BATCHES_IN_FLIGHT:  # bounded: batches verifying while the next is read and parsed
                    await pending.pop(0)
            for task in pending:
                await task
        finally:
            for task in pending:
                task.cancel()
            if own_pool is not None:
                await own_pool.close()

        tally = self.tally
        orphans = await self.log.read(self._unresolved_parents)
        policies, records = await self.log.read(lambda tx: self._records(tx, registry, registry_records))
        retention = completeness.retention_findings(self.request.tenant, [p.to_json() for p in policies])
        tally.findings.extend(retention)
        edits = await asyncio.to_thread(self._commonest_edits)

        gaps = [{"kind": "position", "index": i, "detail": detail} for i, detail in positions]
        gaps += [{"kind": "missing-parent", "index": index, "event_id": event_id, "parent_event_id": parent,
                  "producer": producer, "run_id": run_id}
                 for index, event_id, parent, producer, run_id in orphans]
        integrity_ok = tree_ok and not positions and not tally.tampered and not self.problems
        tampered = sorted(tally.tampered, key=lambda t: t["index"])
        summary = {
            "events": tally.checked, "integrity": "VALID" if integrity_ok else "INVALID",
            "first_event": tally.first, "last_event": tally.last, "gaps": len(gaps), "tampered": len(tampered),
            "pruned": tally.pruned, "not_covered": not_covered,
        }
        summary["line"] = summary_line(summary)
        findings_by_check = {check: [f for f in tally.findings if f.check == check] for check in completeness.CHECKS}
        return {
            "format": FORMAT,
            "tenant": self.request.tenant,
            "period": {"from": format_timestamp_ms(self.request.since_ms),
                       "to": format_timestamp_ms(self.request.until_ms)},
            "generated_at": format_timestamp_ms(self.now_ms),
            "frameworks": sorted({c.framework for c in self.controls}, key=list(frameworks.FRAMEWORKS).index),
            "log": {"origin": self.log.origin, "verifier_key": self.log.verifier_key},
            "checkpoint": {"size": self.size, "root_hash": base64.b64encode(checkpoint.root_hash).decode(),
                           "witnessed": self.witnessed, "cosigners": cosigners, "note": self.note.decode()},
            "summary": summary,
            "verification": {
                "tree": "The level-0 tiles fold to the signed root" if tree_ok else
                        "The level-0 tiles do NOT fold to the signed root",
                "gaps": gaps[:GAPS_LISTED], "tampered": tampered[:GAPS_LISTED], "problems": self.problems,
                "signatures": {"checked": signatures.checked, "in_processes": signatures.in_processes},
                "seconds": round(time.perf_counter() - started, 3),
            },
            "controls": self._controls(findings_by_check, records, integrity_ok, policies),
            "findings": [{"check": check, "title": title, "count": len(findings_by_check[check]),
                          "items": [f.to_json() for f in findings_by_check[check][:FINDINGS_LISTED]]}
                         for check, title in completeness.CHECKS.items()],
            "producers": self._producers(orphans),
            "review": self._review(edits),
            "cost": self._cost(),
            "charts": self._charts(),
        }

    # -- the tree ---------------------------------------------------------------------------------------------------
    def _fold_tree(self, tx, root: bytes) -> bool:
        """Read every level-0 tile of the checkpoint's tree, keep its leaf hashes, fold them into the root."""
        size = self.size
        count = -(-size // TILE_WIDTH)
        tree = CompactRange()
        for first in range(0, count, TILES_PER_READ):
            last = min(count, first + TILES_PER_READ)
            rows = dict(tx.execute(select(tiles.c.idx, tiles.c.data)
                                   .where(and_(tiles.c.level == 0, tiles.c.idx >= first, tiles.c.idx < last))))
            for n in range(first, last):
                width = min(TILE_WIDTH, size - n * TILE_WIDTH)
                data = bytes(rows.get(n) or b"")[:width * HASH_SIZE]
                if len(data) != width * HASH_SIZE:
                    self.problems.append(f"level-0 tile {n} holds {len(data) // HASH_SIZE} of the {width} hashes "
                                         f"the checkpoint's tree needs")
                    return False
                self.leaves[n] = data
                tree.extend([data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
        return tree.root() == root

    def _leaf(self, index: int) -> bytes | None:
        tile = self.leaves.get(index // TILE_WIDTH)
        if tile is None:
            return None
        at = (index % TILE_WIDTH) * HASH_SIZE
        return tile[at:at + HASH_SIZE]

    def _missing_positions(self, tx) -> list[tuple[int, str]]:
        """Gaps of kind (a): positions below the size with no entry, or an empty one no prune accounts for. One
        scan counts both; the positions are looked for only when the counts disagree with the size and the prunes."""
        e, p = log_entries.c, pruned_entries.c
        stored, empty = tx.execute(select(func.count(), func.coalesce(func.sum(case((func.length(e.data) == 0, 1),
                                                                                 else_=0)), 0))
                                   .where(e.idx < self.size))[0]
        pruned = tx.execute(select(func.count()).select_from(pruned_entries).where(p.idx < self.size))[0][0]
        if stored == self.size and empty == pruned:
            return []
        found: list[tuple[int, str]] = []
        if stored < self.size:
            expected = 0
            for idx, in tx.execute(select(e.idx).where(e.idx < self.size).order_by(e.idx)):
                found.extend((i, "no entry in the database") for i in range(expected, idx))
                expected = idx + 1
            found.extend((i, "no entry in the database") for i in range(expected, self.size))
        emptied = [idx for idx, in tx.execute(select(e.idx).where(e.idx < self.size, func.length(e.data) == 0))]
        if emptied:
            accounted = pruned_at(tx, emptied)
            found.extend((i, "an empty entry no retention run pruned") for i in emptied if i not in accounted)
        return sorted(found)

    # -- the registry -----------------------------------------------------------------------------------------------
    def _registry(self, tx) -> tuple[Registry, list[tuple[int, dict]]]:
        """The producer registry folded from its entries below the size, each re-hashed against the tree."""
        r = audit_registry.c
        rows = tx.execute(select(r.idx).where(r.idx < self.size).order_by(r.idx))
        indices = [idx for idx, in rows]
        data = tx.entries_at(indices)
        registry, records = Registry(), []
        hashes = hash_leaves([data.get(i, b"") for i in indices])
        for index, leaf in zip(indices, hashes):
            if leaf != self._leaf(index):
                self.problems.append(f"registry entry {index} does not hash to its leaf in the checkpoint's tree")
                continue
            change = parse_registry_change(parse_json(data[index]).value)
            registry.apply(change)
            records.append((index, change))
        return registry, records

    # -- events -----------------------------------------------------------------------------------------------------
    def _period(self):
        a = audit_events.c
        return and_(a.tenant == self.request.tenant, a.ts >= self.request.since_ms, a.ts < self.request.until_ms)

    def _runs(self, tx) -> tuple[list[tuple[str, int]], int]:
        a = audit_events.c
        runs = [(run_id, count) for run_id, count in tx.execute(
            select(a.run_id, func.count()).where(self._period(), a.idx < self.size).group_by(a.run_id)
            .order_by(func.min(a.idx)))]
        not_covered = tx.execute(select(func.count()).select_from(audit_events)
                                 .where(self._period(), a.idx >= self.size))[0][0]
        return runs, not_covered

    def _read_batch(self, tx, run_ids: list[str]) -> _Batch:
        """The batch's events: looked up by run (ix_audit_events_run), the tenant and period applied here, not in
        SQL, where they would lead the planner to the tenant's whole period for every batch."""
        a = audit_events.c
        tenant, since, until = self.request.tenant, self.request.since_ms, self.request.until_ms
        rows = []
        context = []
        for start in range(0, len(run_ids), RUNS_PER_QUERY):
            for idx, producer, row_tenant, ts, *linked in tx.execute(
                    select(a.idx, a.producer, a.tenant, a.ts, a.run_id, a.event_id, a.parent_event_id, a.event_type)
                    .where(a.run_id.in_(run_ids[start:start + RUNS_PER_QUERY]), a.idx < self.size)):
                if row_tenant != tenant:
                    continue
                if since <= ts < until:
                    rows.append((idx, producer))
                else:
                    context.append((idx, _context_event(*linked)))
        rows.sort()
        data = tx.entries_at([idx for idx, _ in rows])
        present = [(idx, producer, data[idx]) for idx, producer in rows if data.get(idx)]
        empty = [idx for idx, _ in rows if not data.get(idx)]
        # An event whose bytes are gone without a prune is a gap of kind (a), which _missing_positions counts.
        return _Batch(present, len(pruned_at(tx, empty)) if empty else 0, context)

    def _check_batch(self, batch: _Batch, registry: Registry) -> _Checked:
        """Re-hash, parse, and prepare the signature checks of one batch (on a thread)."""
        tally = self.tally
        tally.pruned += batch.pruned
        hashes = hash_leaves([data for _, _, data in batch.rows])
        events: list[tuple[int, str, dict, int]] = []
        jobs: list[tuple[bytes, bytes, bytes]] = []
        job_events: list[int] = []
        tenant = self.request.tenant
        keys = self.keys
        for (index, producer, data), leaf in zip(batch.rows, hashes):
            tally.checked += 1
            if leaf != self._leaf(index):
                tally.tamper(index, None, "the entry does not hash to its leaf in the checkpoint's tree")
                continue
            event = None
            try:
                envelope = _decode(data.decode())
                event = envelope["event"]
                if envelope.get("type") != ENVELOPE_TYPE or not isinstance(event, dict):
                    raise ValueError
                signature = binascii.a2b_base64(envelope["signature"])
                signer = (envelope["producer"], envelope["key_id"])
                key = keys.get(signer)
                if key is None:  # looked up once per producer key: its registry entry and tenants
                    key = registry.key(*signer)
                    registry.check_tenant(signer[0], tenant)
                    keys[signer] = key
                ms = parse_timestamp_ms(event.get("timestamp"))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error):
                tally.tamper(index, None, "the entry is not an audit envelope")
                continue
            except LogError as exc:
                tally.tamper(index, event.get("event_id") if event else None,
                             f"the signature cannot be checked: {exc}")
                continue
            if event.get("tenant") != tenant or ms is None or not key.valid_at(ms):
                tally.tamper(index, event.get("event_id"), "the event's key was not valid at its timestamp, or the "
                                                           "event is not the tenant's")
                continue
            # The canonical event bytes the signature covers are the entry's (envelope.entry_bytes puts them first).
            message = data[len(_EVENT_PREFIX):data.rindex(_EVENT_END)]
            job_events.append(len(events))
            jobs.append((key.public_key, message, signature))
            events.append((index, producer, event, ms))
        return _Checked(events, jobs, job_events, batch.context)

    async def _finish_batch(self, checked: _Checked, signatures: _Signatures) -> None:
        verdicts = await signatures.verify(checked.jobs)
        bad = {checked.job_events[n] for n, valid in enumerate(verdicts) if not valid}
        kept = []
        for position, item in enumerate(checked.events):
            if position in bad:
                self.tally.tamper(item[0], item[2].get("event_id"), "the producer's signature does not verify")
            else:
                kept.append(item)
        cited = {sha for _, _, event, _ in kept if not _REFERENCING.isdisjoint(event)
                 for sha in content_references(event)}
        unknown = [sha for sha in cited if sha not in self.tally.blob_states]
        if unknown:
            states = await asyncio.to_thread(self._blob_states, unknown)
            gone = [sha for sha, state in states.items() if state == "missing"]
            if gone:
                listed = await self.log.read(lambda tx: deleted.blob_deletions(tx, gone, self.size))
                states.update((sha, "deleted") for sha in listed)
            self.tally.blob_states.update(states)
        async with self.analysing:
            await asyncio.to_thread(self._analyse, kept, checked.context)

    def _blob_states(self, sha256s: list[str]) -> dict[str, str]:
        """Each blob as completeness.payload_findings reads it. The store's `get` checks the bytes against the hash
        (BlobStore.get): absent is "missing", bytes that do not hash to it (or cannot be read) "mismatch"."""
        states = {}
        for sha in sha256s:
            try:
                self.blobs.get(sha)
                states[sha] = "present"
            except BlobNotFound:
                states[sha] = "missing"
            except LogError:
                states[sha] = "mismatch"
        return states

    def _analyse(self, events: list[tuple[int, str, dict, int]], context: Sequence[tuple[int, dict]] = ()) -> None:
        tally = self.tally
        by_id = {event["event_id"]: (event, ms) for _, _, event, ms in events}
        for index, producer, event, ms in events:
            tally.add_event(index, producer, event, ms, by_id)
        pairs = [(index, event) for index, _, event, _ in events]
        if context:  # the runs' events outside the period link chains (an intent logged before `from`), no more
            in_period = {index for index, _ in pairs}
            tally.findings.extend(f for f in completeness.event_findings(pairs + list(context)) if f.index in in_period)
        else:
            tally.findings.extend(completeness.event_findings(pairs))
        citing = [(index, event) for index, event in pairs if not _REFERENCING.isdisjoint(event)]
        tally.findings.extend(completeness.payload_findings(citing, tally.blob_states.__getitem__))

    def _unresolved_parents(self, tx) -> list[tuple[int, str, str, str, str]]:
        """Gaps of kind (b): the orphans' parents looked for among all the tenant's events below the size."""
        orphans = self.tally.orphans
        wanted = sorted({parent for _, _, parent, _, _ in orphans})
        a = audit_events.c
        found: set[str] = set()
        for start in range(0, len(wanted), RUNS_PER_QUERY):
            found.update(event_id for event_id, in tx.execute(select(a.event_id).where(
                a.tenant == self.request.tenant, a.idx < self.size,
                a.event_id.in_(wanted[start:start + RUNS_PER_QUERY]))))
        return sorted(o for o in orphans if o[2] not in found)

    # -- records ----------------------------------------------------------------------------------------------------
    def _records(self, tx, registry: Registry, registry_records: list[tuple[int, dict]]):
        """The retention policies in force for the tenant, and the log records that evidence controls, by kind."""
        tenant, since, until = self.request.tenant, self.request.since_ms, self.request.until_ms
        producers = {p.producer_id for p in registry.producers() if tenant in p.tenants}
        records: dict[str, list[dict]] = {kind: [] for kind in frameworks.RECORD_KINDS}
        for index, change in registry_records:
            if change["producer"] not in producers or not since <= change["at"] < until:
                continue
            kind = (frameworks.KEY_GRANTS if change["change"] in ("producer-registered", "key-added")
                    else frameworks.REGISTRY_REMOVALS)
            records[kind].append({"index": index, "record": f"{change['change']} {change['producer']}"
                                  + (f" key {change['key_id']}" if change.get("key_id") else "")})
        t = access_tokens.c
        scopes: dict[str, str | None] = {}
        for index, token_id, change, at, tenants in tx.execute(
                select(t.idx, t.token_id, t.change, t.at, t.tenants).where(t.idx < self.size).order_by(t.idx)):
            if change == "token-created":
                scopes[token_id] = tenants
            covers = scopes.get(token_id) is None or tenant in (scopes.get(token_id) or "").split(",")
            if covers and since <= at < until:
                kind = frameworks.TOKEN_GRANTS if change == "token-created" else frameworks.TOKEN_REVOCATIONS
                records[kind].append({"index": index, "record": f"{change} {token_id}"})
        policies = [p for p in policies_in_force(tx, tenant) if p.index < self.size]
        records[frameworks.RETENTION_POLICIES] = [
            {"index": p.index, "record": f"{p.record_class} {p.selector}: {p.retain_days} days"} for p in policies]
        return policies, records

    # -- sections ---------------------------------------------------------------------------------------------------
    def _controls(self, findings_by_check: dict, records: dict, integrity_ok: bool, policies) -> list[dict]:
        tally = self.tally
        out = []
        for control in self.controls:
            if control.predicate is frameworks.any_event:
                listed, count = list(tally.first_events), tally.analysed
            else:
                listed, count = list(tally.evidence_listed[control.key]), tally.evidence_count(control.key)
            for kind in control.records:
                count += len(records[kind])
                listed += [{"index": r["index"], "record": r["record"]} for r in records[kind][:LISTED]]
            against = [f for check in control.findings for f in findings_by_check[check]]
            notes = []
            if control.integrity and not integrity_ok:
                notes.append("the period's verification failed (tampered events, gaps or a tree that does not fold "
                             "to the signed root)")
            if frameworks.RETENTION_POLICIES in control.records and control.framework == "eu-ai-act":
                short = [p for p in policies if p.record_class == "event"
                         and p.retain_days < frameworks.SIX_MONTHS_DAYS]
                notes += [f"event retention policy {p.selector!r} keeps {p.retain_days} days, less than six months"
                          for p in short]
            status = "findings" if against or notes else "evidenced" if count else "no evidence"
            out.append({**control.to_json(), "status": status,
                        "evidence": {"count": count, "items": listed[:LISTED]},
                        "findings": {"count": len(against), "items": [f.to_json() for f in against[:LISTED]]},
                        "notes": notes})
        return out

    def _producers(self, orphans) -> list[dict]:
        out = []
        broken: dict[str, list] = {}
        for index, event_id, parent, producer, run_id in orphans:
            broken.setdefault(producer, []).append({"index": index, "event_id": event_id,
                                                    "parent_event_id": parent, "run_id": run_id})
        for name, stats in sorted(self.tally.producers.items()):
            times = sorted(stats.times)
            intervals = [(times[i + 1] - times[i], times[i], times[i + 1]) for i in range(len(times) - 1)]
            median = statistics.median([gap for gap, _, _ in intervals]) if intervals else None
            silences = sorted(intervals, reverse=True)[:SILENCES_LISTED]
            out.append({
                "producer": name, "events": stats.events,
                "first_event": format_timestamp_ms(times[0]), "last_event": format_timestamp_ms(times[-1]),
                "median_interval_ms": median,
                "silences": [{"from": format_timestamp_ms(start), "to": format_timestamp_ms(end), "ms": gap,
                              "times_median": round(gap / median, 1) if median else None}
                             for gap, start, end in silences],
                "broken_parent_links": broken.get(name, [])[:GAPS_LISTED],
                "broken_parent_link_count": len(broken.get(name, [])),
            })
        return out

    def _commonest_edits(self) -> list[tuple[tuple[str, str], int]]:
        counts: Counter = Counter()
        for draft_sha, final_sha in self.tally.edited:
            draft, final = self._text(draft_sha), self._text(final_sha)
            if draft is not None and final is not None:
                counts.update(review.edit_pairs(draft, final))
        return counts.most_common(EDITS_LISTED)

    def _text(self, sha: str) -> str | None:
        if self.tally.blob_states.get(sha) != "present":
            return None
        try:
            data = self.blobs.get(sha)
        except LogError:
            return None
        if len(data) > DIFF_BLOB_LIMIT:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _review(self, edits) -> dict:
        verdicts = self.tally.verdicts
        reviews = sum(verdicts.values())
        return {
            "reviews": reviews,
            **{verdict: verdicts[verdict] for verdict in review.VERDICTS},
            "shares": {verdict: round(verdicts[verdict] / reviews, 4) if reviews else None
                       for verdict in review.VERDICTS},
            "median_dwell_ms": statistics.median(self.tally.dwell) if self.tally.dwell else None,
            "commonest_edits": [{"removed": removed, "added": added, "count": count}
                                for (removed, added), count in edits],
            "diffs_read": len(self.tally.edited),
        }

    def _cost(self) -> dict:
        tally = self.tally
        return {
            "input_tokens": tally.input_tokens, "output_tokens": tally.output_tokens,
            "cost": {currency: str(amount) for currency, amount in sorted(tally.cost.items())},
            "by_producer_model": [
                {"producer": producer, "model": model, "events": usage.events, "input_tokens": usage.input_tokens,
                 "output_tokens": usage.output_tokens,
                 "cost": {currency: str(amount) for currency, amount in sorted(usage.cost.items())}}
                for (producer, model), usage in sorted(self.tally.usage.items())],
        }

    def _charts(self) -> dict:
        tally = self.tally
        days = sorted({day for day, _ in tally.per_day})
        types = sorted({kind for _, kind in tally.per_day})
        latencies = sorted(tally.latencies)
        buckets, start = [], 0
        for bound in (*LATENCY_BUCKETS_MS, None):
            count = sum(1 for ms in latencies if ms >= start and (bound is None or ms < bound))
            buckets.append({"below_ms": bound, "count": count})
            start = bound if bound is not None else start
        return {
            "events_per_day": {"days": days, "types": {kind: [tally.per_day[(day, kind)] for day in days]
                                                       for kind in types}},
            "approval_latency_ms": {
                "count": len(latencies), "median": statistics.median(latencies) if latencies else None,
                "p90": latencies[int(0.9 * (len(latencies) - 1))] if latencies else None,
                "max": latencies[-1] if latencies else None, "buckets": buckets, "values": latencies[:5000]},
        }


def _batches(runs: Sequence[tuple[str, int]]):
    """Run ids in groups of whole runs of about BATCH_EVENTS events (a bigger run is a group of its own)."""
    group, events = [], 0
    for run_id, count in runs:
        if group and events + count > BATCH_EVENTS:
            yield group
            group, events = [], 0
        group.append(run_id)
        events += count
    if group:
        yield group


def summary_line(summary: dict) -> str:
    """The verification summary in the issue's form."""
    return (f"Verified {summary['events']:,} events · Chain integrity: {summary['integrity']} · "
            f"First event: {summary['first_event'] or 'none'} · Last event: {summary['last_event'] or 'none'} · "
            f"Gaps detected: {summary['gaps']:,} · Tampered events: {summary['tampered']:,}")


__all__ = ["FORMAT", "ReportRequest", "build_report", "summary_line"]
