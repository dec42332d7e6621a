"""Shared workload pieces: entry generation, timing, percentiles, and the in-memory integration path."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ENTRY_SIZE = 256
BATCH_SIZE = 1024


def random_entries(count: int, size: int = ENTRY_SIZE) -> list[bytes]:
    """`count` distinct random entries of `size` bytes (made before any timing starts)."""
    blob = os.urandom(count * size)
    return [blob[i:i + size] for i in range(0, count * size, size)]


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def integrate_in_memory(entries: Sequence[bytes], batch_size: int = BATCH_SIZE):
    """What the sequencer does per batch, minus signing and storage: hash the leaves, extend the frontier and its
    edge tiles, and take the changed tiles. Returns (frontier, edge, tile writes).
    """
    from log.compact import CompactRange
    from log.hashing import hash_leaves
    from log.edge import EdgeTiles, extend_tree

    frontier = CompactRange()
    edge = EdgeTiles(0, {})
    tiles_written = 0
    for batch in chunks(entries, batch_size):
        extend_tree(frontier, edge, hash_leaves(batch))
        tiles_written += len(edge.take_dirty())
    return frontier, edge, tiles_written


def timed(fn: Callable, *args) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - started, value


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def write_log(url: str, count: int, origin: str = "bench.example/log"):
    """A log of `count` random entries at `url` (schema migrated first), written by the Sequencer in batches of
    BATCH_SIZE (one checkpoint per batch) under a new key; returns that key's signer. What the db check, db copy and
    archive benchmarks measure against."""
    import asyncio

    from log.note_keys import generate_signer_key, parse_signer_key
    from log.sequencer import Sequencer
    from log.storage.engine import upgrade_schema
    from log.storage.store import SqlLogStore

    async def sequence(store, signer) -> None:
        seq = Sequencer(store, store.acquire_writer(), signer, batch_size=BATCH_SIZE, max_pending=1 << 22)
        await seq.start()
        try:
            pending = [asyncio.create_task(seq.submit(batch)) for batch in chunks(random_entries(count), BATCH_SIZE)]
            await asyncio.gather(*pending)
        finally:
            await seq.close()

    signer = parse_signer_key(generate_signer_key(origin)[0])
    upgrade_schema(url)
    store = SqlLogStore(url)
    try:
        asyncio.run(sequence(store, signer))
    finally:
        store.close()
    return signer


# -- a big log of signed audit events ------------------------------------------------------------------------------

AUDIT_ORIGIN = "bench.example/audit"
AUDIT_TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")
DAY_MS = 86_400_000
AUDIT_BATCH = 4096  # events per add_entries call while building
AUDIT_FORMAT = 1  # bump when the generator changes what it writes: cached logs are rebuilt


@dataclass(frozen=True)
class AuditLog:
    """A log `write_audit_log` wrote: where it is and what is in it (everything a benchmark needs to start a server
    on it and to choose realistic queries; the values themselves it picks from the index)."""

    data_dir: Path  # the log key (log.key) and the blob store (blobs/) are here; the SQLite database too by default
    database_url: str
    origin: str
    events: int  # signed audit events written
    runs: int
    tenants: tuple[str, ...]  # biggest first (tenant i gets a share proportional to 1/(i+1))
    producers: dict[str, str]  # tenant -> its producer (one Ed25519 key each, registered before its events)
    first_ms: int  # the earliest and latest event timestamps (Unix ms)
    last_ms: int
    seed: int
    size: int  # entries in the log: the events, the registry changes, the retention policies
    seconds: float  # how long the build took

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "data_dir": str(self.data_dir), "tenants": list(self.tenants)}

    @classmethod
    def from_json(cls, value: dict) -> "AuditLog":
        return cls(**{**value, "data_dir": Path(value["data_dir"]), "tenants": tuple(value["tenants"])})


def _signing_key(seed: int, producer: str):
    from nacl.signing import SigningKey

    return SigningKey(hashlib.sha256(f"auditlog-bench:{seed}:{producer}".encode()).digest())


class AuditEvents:
    """The events of a seeded audit workload, in timestamp order (as a server receives them), with the blobs they
    cite. Runs of 5-10 events, one of five shapes an AI agent's work takes:

      automatic  intent -> policy_decision (allow) -> model_call -> tool_call -> tool_result -> model_call -> outcome
      approved   intent -> retrieval? -> policy_decision (review) -> approval -> tool_call -> tool_result -> outcome
      reviewed   intent -> retrieval -> model_call (the draft) -> policy_decision (review) -> human_review (draft in,
                 final out: approved as is, edited or rejected) -> external_action -> outcome
      denied     intent -> model_call -> policy_decision (deny) -> denial -> outcome (failure)
      escalated  intent -> model_call -> policy_decision (escalate) -> escalation -> human_review -> tool_call ->
                 tool_result -> model_call -> outcome

    each event the child of the one before (a tool_result of its tool_call). Users start runs (intent) and review
    (approval, human_review), agents act on their behalf, the policy engine ("policy-engine", the same id in every
    tenant) decides. Cases (context case_id) span a few runs and traces one or two; model calls carry tokens, cost
    and their prompt and answer as blobs. Runs start spread evenly over `days` days ending at `end_ms`.

    `defects`: the share of runs with one deliberate gap of the kind an audit must catch (an approval without a
    policy version, a tool call disconnected from its intent and with no on_behalf_of, a denial without its matched
    rule, a model call citing a blob that was never stored), so that a report over the log has findings to find.
    """

    SHAPES = ("automatic", "approved", "reviewed", "denied", "escalated")
    SHAPE_WEIGHTS = (25, 30, 25, 12, 8)
    MEAN_RUN_LENGTH = 6.77  # of the shapes above at those weights; spaces the runs over the period
    BLOB_POOL = 256  # prompts (each with its draft and an edit of it), at most

    def __init__(self, events: int, *, tenants: Sequence[str] = AUDIT_TENANTS, seed: int = 0, days: int = 90,
                 end_ms: int | None = None, defects: float = 0.002):
        import random

        self.count = events
        self.tenants = tuple(tenants)
        self.weights = [1 / (i + 1) for i in range(len(self.tenants))]
        self.seed = seed
        self.rng = random.Random(seed)
        if end_ms is None:  # midnight UTC today: every event is in the past, as ingest demands
            end_ms = int(time.time() * 1000) // DAY_MS * DAY_MS
        self.end_ms = end_ms
        self.start_ms = end_ms - days * DAY_MS
        self.defects = defects
        self.runs = 0
        self._cases: dict[str, list[tuple[str, str, str]]] = {t: [] for t in self.tenants}  # recent (case, trace, user)
        self.blobs = self._blob_pool()
        self.missing_blob = hashlib.sha256(f"never stored {seed}".encode()).hexdigest()

    # -- blobs: prompts, drafts and the finals reviewers let through ----------------------------------------------
    def _blob_pool(self) -> dict[str, bytes]:
        rng = self.rng
        actions = ("refund", "credit", "close the account of", "reissue the card of", "escalate the claim of",
                   "waive the fee of", "change the address of", "approve the loan of")
        blobs: dict[str, bytes] = {}
        self.prompts: list[dict] = []
        self.drafts: list[tuple[dict, dict]] = []  # (the AI's draft, a reviewer's edit of it), as references
        for n in range(max(16, min(self.BLOB_POOL, self.count // 64))):  # a small log, a small pool
            action, amount = rng.choice(actions), rng.randint(5, 5000)
            prompt = (f"Customer {n:04d} asks to {action} customer {n:04d} ({amount} EUR). Summarise the case, "
                      f"check it against the policy and propose the action.").encode()
            draft = (f"Proposed action: {action} customer {n:04d} for {amount} EUR. Reason: the request matches "
                     f"the policy's conditions and the history shows no earlier claim.").encode()
            edited = (f"Proposed action: {action} customer {n:04d} for {amount // 2} EUR after verification. Reason: "
                      f"the request matches the policy's conditions; an earlier claim was found.").encode()
            self.prompts.append(self._ref(blobs, prompt))
            self.drafts.append((self._ref(blobs, draft), self._ref(blobs, edited)))
        self.rejected = self._ref(blobs, b"No action: the reviewer rejected the proposal.")
        return blobs

    @staticmethod
    def _ref(blobs: dict[str, bytes], data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"sha256": digest, "media_type": "text/plain", "size": len(data)}

    # -- events -----------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        """The events, `count` of them, in timestamp order (a run cut short at the end if need be)."""
        import heapq

        from log.audit.schema import format_timestamp_ms

        rng = self.rng
        # Runs start as the events made so far say (so the last starts within the period, an hour before its end,
        # whatever the runs' lengths came to), each at a random point of its share of the period.
        span = self.end_ms - self.start_ms - 3_600_000
        gap = span * self.MEAN_RUN_LENGTH / self.count
        pending: list[tuple[int, int, dict]] = []
        made = emitted = 0
        at = self.start_ms
        while emitted < self.count:
            at = max(at, self.start_ms + int(min(span, span * made / self.count + rng.uniform(0, gap))))
            while pending and (pending[0][0] <= at or made >= self.count):
                ts, _, event = heapq.heappop(pending)
                event["timestamp"] = format_timestamp_ms(ts)
                yield event
                emitted += 1
            if made < self.count:
                run = self._run(rng.choices(self.tenants, self.weights)[0], at)[:self.count - made]
                self.runs += 1
                for ts, event in run:
                    heapq.heappush(pending, (ts, made, event))
                    made += 1

    def _who(self, tenant: str) -> tuple[str, str, str, str | None]:
        """(case id, trace id, user, customer id) of a new run: a case seen lately (its trace continued half the
        time), or a new one."""
        rng, recent = self.rng, self._cases[tenant]
        if recent and rng.random() < 0.7:
            case, trace, user = rng.choice(recent)
            if rng.random() < 0.5:
                trace = f"tr-{rng.getrandbits(64):016x}"
        else:
            case, trace = f"case-{tenant}-{rng.getrandbits(32):08x}", f"tr-{rng.getrandbits(64):016x}"
            user = f"{tenant}-u{rng.randrange(400):03d}"
            recent.append((case, trace, user))
            if len(recent) > 64:
                recent.pop(0)
        customer = f"cust-{int(hashlib.sha256(case.encode()).hexdigest()[:8], 16) % 5000:04d}" \
            if rng.random() < 0.5 else None
        return case, trace, user, customer

    def _run(self, tenant: str, start: int) -> list[tuple[int, dict]]:
        from log.audit.schema import format_timestamp_ms

        rng = self.rng
        run_id = f"run-{rng.getrandbits(64):016x}"
        case, trace, user, customer = self._who(tenant)
        shape = rng.choices(self.SHAPES, self.SHAPE_WEIGHTS)[0]
        agent = f"{tenant}-agent-{rng.randrange(12)}"
        reviewer = f"{tenant}-reviewer-{rng.randrange(15)}"
        rule = f"{tenant}-rule-{rng.randrange(40):02d}"
        policy_version = f"{tenant}-policy-2026.{rng.randrange(1, 4)}"
        prompt = rng.randrange(len(self.prompts))
        defect = rng.random() < self.defects
        context = {"case_id": case} if customer is None else {"case_id": case, "customer_id": customer}
        events: list[tuple[int, dict]] = []
        clock = [start]

        def add(event_type: str, actor: tuple[str, str], after_ms: int, parent: int | None = -1, **fields) -> dict:
            clock[0] += after_ms
            if parent == -1:
                parent = len(events) - 1 if events else None
            event = {"schema": "auditlog.event/v1", "event_id": f"{run_id}.{len(events)}", "trace_id": trace,
                     "run_id": run_id, "tenant": tenant, "actor": {"type": actor[0], "id": actor[1]},
                     "event_type": event_type, "context": context, **fields}
            if parent is not None:
                event["parent_event_id"] = events[parent][1]["event_id"]
            events.append((clock[0], event))
            return event

        as_user, as_agent, engine = ("user", user), ("agent", agent), ("system", "policy-engine")
        on_behalf = {"on_behalf_of": {"type": "user", "id": user}}

        def model_call(answer: dict | None = None) -> dict:
            tokens_in, tokens_out = rng.randint(300, 6000), rng.randint(50, 1500)
            cost = (tokens_in * 3 + tokens_out * 15) / 1_000_000
            return add("model_call", as_agent, rng.randint(200, 4000),
                       snapshot={"model_id": rng.choice(("model-large-2026-06", "model-small-2026-09")),
                                 "prompt_version": f"prompt-{rng.randrange(1, 9)}"},
                       input=self.prompts[prompt] if not (defect and shape == "automatic") else
                       {"sha256": self.missing_blob, "media_type": "text/plain"},
                       output=answer or self.drafts[prompt][0],
                       metadata={"input_tokens": tokens_in, "output_tokens": tokens_out,
                                 "latency_ms": rng.randint(200, 9000), "cost": f"{cost:.6f}", "currency": "USD"})

        def decision(verdict: str) -> dict:
            return add("policy_decision", engine, rng.randint(5, 200),
                       policy={"decision": verdict, "matched_rule": rule, "snapshot": policy_version},
                       snapshot={"policy_snapshot": policy_version})

        def tool_call(connected: bool = True) -> None:
            tool = rng.choice(("payments.refund", "crm.update", "ledger.post", "mail.send"))
            if connected:
                add("tool_call", as_agent, rng.randint(50, 2000), snapshot={"tool_versions": {tool: "1.4.2"}},
                    **on_behalf)
            else:  # the defect: neither a parent chain to the intent nor the user it acted for
                add("tool_call", as_agent, rng.randint(50, 2000), parent=None,
                    snapshot={"tool_versions": {tool: "1.4.2"}})
            add("tool_result", as_agent, rng.randint(50, 3000), metadata={"latency_ms": rng.randint(20, 3000)})

        def review() -> None:
            draft, edited = self.drafts[prompt]
            verdict = rng.choices(("approved", "edited", "rejected"), (70, 22, 8))[0]
            final = {"approved": draft, "edited": edited, "rejected": self.rejected}[verdict]
            dwell = rng.randint(4_000, 600_000)
            fields = {"input": draft, "output": final, "approval": {"review_dwell_ms": dwell},
                      "snapshot": {"policy_snapshot": policy_version}}
            if verdict == "rejected":
                fields["outcome"] = {"status": "cancelled", "reason": "rejected by the reviewer"}
            if rng.random() < 0.5:  # half the producers say so; the other half leave it to be derived
                fields["extensions"] = {"review": {"decision": verdict}}
            add("human_review", ("user", reviewer), dwell, **fields)

        def outcome(status: str = "success", reason: str | None = None) -> None:
            add("outcome", as_agent, rng.randint(20, 500),
                outcome={"status": status} if reason is None else {"status": status, "reason": reason})

        add("intent", as_user, 0, parent=None, **on_behalf)
        if shape == "automatic":
            decision("allow")
            model_call()
            tool_call()
            model_call()
            outcome()
        elif shape == "approved":
            if rng.random() < 0.5:
                add("retrieval", as_agent, rng.randint(50, 800), metadata={"latency_ms": rng.randint(20, 800)})
            decision("review")
            dwell = rng.randint(5_000, 900_000)
            approval = {"required": True, "approver": {"type": "user", "id": reviewer},
                        "approved_at": format_timestamp_ms(clock[0] + dwell), "review_dwell_ms": dwell}
            fields = {"approval": approval} if defect else {"approval": approval,
                                                            "snapshot": {"policy_snapshot": policy_version}}
            add("approval", ("user", reviewer), dwell, **fields)
            tool_call(connected=not defect or rng.random() < 0.5)
            outcome()
        elif shape == "reviewed":
            add("retrieval", as_agent, rng.randint(50, 800), metadata={"latency_ms": rng.randint(20, 800)})
            model_call()
            decision("review")
            review()
            add("external_action", as_agent, rng.randint(100, 3000), **on_behalf)
            outcome()
        elif shape == "denied":
            model_call()
            decision("deny")
            policy = {"decision": "deny", "snapshot": policy_version}
            if not defect:
                policy["matched_rule"] = rule
            add("denial", engine, rng.randint(1, 50), policy=policy)
            outcome("failure", "denied by policy")
        else:
            model_call()
            decision("escalate")
            add("escalation", engine, rng.randint(1, 50), policy={"decision": "escalate", "matched_rule": rule,
                                                                  "snapshot": policy_version})
            review()
            tool_call()
            model_call()
            outcome()
        return events


def write_audit_log(url_or_path: str | Path, events: int = 10**6, *, tenants: Sequence[str] = AUDIT_TENANTS,
                    seed: int = 0, days: int = 90, end_ms: int | None = None, defects: float = 0.002,
                    retention_days: int | None = 400, data_dir: Path | None = None) -> AuditLog:
    """Write a log of `events` signed audit events (`AuditEvents`: runs over `days` days, `tenants` biggest first)
    exactly as a server that had received them would hold it, and fast.

    `url_or_path`: a directory (the log's data dir, SQLite in it) or a database URL (PostgreSQL: then `data_dir`
    holds the log key and the blobs). It must be new. Written in-process through the production write path: each
    tenant's producer registered with its Ed25519 key (valid from a day before the first event) through
    `AuditService`; the blobs the events cite stored and their uploads recorded as an admin's; a retention policy
    of `retention_days` for events and for blobs for every tenant but the last (None: no policies), so a report
    has a tenant without one to find; then every event canonicalised (RFC 8785), signed, put through ingest's own
    checks (`intake.check_envelope`) and handed to the sequencer with its idempotency key and its index rows
    (`service.index_rows`) in batches of AUDIT_BATCH. A server started on the result (`--data-dir`, `--origin
    AUDIT_ORIGIN`) serves it, proofs, evidence and queries as if ingest had written it.
    """
    import asyncio
    import base64

    from log.audit.canonical import canonicalize_parsed
    from log.audit.intake import check_envelope
    from log.audit.registry import key_id_for
    from log.audit.retention import Retention
    from log.audit.service import AuditService, index_rows
    from log.blobs import FileBlobStore
    from log.sequencer import IdempotencyKey
    from log.service import Log, LogConfig

    target = str(url_or_path)
    if "://" in target:
        if data_dir is None:
            raise ValueError("a database URL needs data_dir for the log key and the blobs")
        database_url = target
    else:
        from log.storage.engine import sqlite_url_for

        data_dir = Path(target)
        database_url = sqlite_url_for(data_dir / "auditlog.db")
    data_dir = Path(data_dir)
    workload = AuditEvents(events, tenants=tenants, seed=seed, days=days, end_ms=end_ms, defects=defects)
    producers = {tenant: f"{tenant}-agents" for tenant in workload.tenants}
    keys = {tenant: _signing_key(seed, producer) for tenant, producer in producers.items()}
    key_ids = {tenant: key_id_for(key.verify_key.encode()) for tenant, key in keys.items()}

    async def build() -> tuple[int, int, int]:
        log = await Log.open(LogConfig(data_dir=data_dir, database_url=database_url, origin=AUDIT_ORIGIN,
                                       batch_size=AUDIT_BATCH, max_pending=1 << 20))
        blobs = FileBlobStore(data_dir / "blobs")
        audit = await AuditService.open(log, blobs)
        try:
            for tenant, producer in producers.items():
                await audit.register_producer(producer, [tenant], reason="benchmark workload")
                await audit.add_key(producer, keys[tenant].verify_key.encode(),
                                    not_before=workload.start_ms - DAY_MS, reason="benchmark workload")
            await asyncio.gather(*(audit.put_blob(digest, data) for digest, data in workload.blobs.items()))
            await asyncio.gather(*(audit.record_blob_upload(digest, None) for digest in workload.blobs))
            if retention_days is not None:
                retention = Retention(log, blobs)
                await asyncio.gather(*(retention.set_policy(tenant, record_class, "*", retention_days, "benchmark")
                                       for tenant in workload.tenants[:-1] for record_class in ("event", "blob")))

            now = int(time.time() * 1000)
            pending: set[asyncio.Task] = set()
            first = last = None
            entries, idempotency, rows = [], [], []

            async def flush() -> None:
                nonlocal pending
                pending.add(asyncio.create_task(log.add_entries(entries[:], idempotency[:], rows[:])))
                entries.clear(), idempotency.clear(), rows.clear()
                if len(pending) >= 2:  # one batch committed while the next is signed
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()

            for event in workload:
                tenant = event["tenant"]
                event_bytes = canonicalize_parsed(event, True)
                envelope = {"producer": producers[tenant], "key_id": key_ids[tenant], "event": event,
                            "signature": base64.b64encode(keys[tenant].sign(event_bytes).signature).decode()}
                checked = check_envelope(envelope, True, now)
                assert checked.event_bytes == event_bytes
                entries.append(checked.entry)
                idempotency.append(IdempotencyKey(checked.idempotency_key, checked.content_hash))
                rows.append(index_rows(checked))
                first = checked.timestamp_ms if first is None else first
                last = checked.timestamp_ms
                if len(entries) >= AUDIT_BATCH:
                    await flush()
            if entries:
                await flush()
            for task in pending:
                task.result() if task.done() else await task
            return log.size, first, last
        finally:
            await audit.close()
            await log.close()

    started = time.perf_counter()
    size, first_ms, last_ms = asyncio.run(build())
    return AuditLog(data_dir=data_dir, database_url=database_url, origin=AUDIT_ORIGIN, events=events,
                    runs=workload.runs, tenants=workload.tenants, producers=producers, first_ms=first_ms,
                    last_ms=last_ms, seed=seed, size=size, seconds=round(time.perf_counter() - started, 1))


def _audit_fingerprint() -> str:
    """What a cached audit log's contents depend on: the generator, the writer, ingest's checks and index rows
    (their source). Not the schema: a server (or Log.open) started on a copy migrates it as it would a production
    database, so an index added later is built there, not by rebuilding the log."""
    import inspect

    from log.audit import intake, service

    digest = hashlib.sha256(str(AUDIT_FORMAT).encode())
    for code in (AuditEvents, write_audit_log, intake, service.index_rows):
        digest.update(inspect.getsource(code).encode())
    return digest.hexdigest()[:12]


def cached_audit_log(events: int = 10**6, *, seed: int = 0, **options) -> AuditLog:
    """`write_audit_log` into a SQLite data dir built once and kept in the benchmarks' cache (prooftree.cache_root,
    keyed by size, seed, options and `_audit_fingerprint`). Treat it as read-only: a server started on it writes
    (its access log, tokens), so give each run its own `copy_audit_log`. Events end at midnight UTC of the build's
    day, so the period moves with rebuilds; read it from the AuditLog, never assume it."""
    import json
    import shutil

    from benchmarks.prooftree import cache_root

    label = "-".join(f"{k}={options[k]}" for k in sorted(options)).replace("/", "_")
    target = cache_root() / f"audit-log-{events}-seed{seed}{'-' + label if label else ''}-{_audit_fingerprint()}"
    meta = target / "workload.json"
    if meta.exists():
        from log.storage.engine import sqlite_url_for

        return AuditLog.from_json({**json.loads(meta.read_text()), "data_dir": str(target),
                                   "database_url": sqlite_url_for(target / "auditlog.db")})
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    built = write_audit_log(building, events, seed=seed, **options)
    (building / "workload.json").write_text(json.dumps(built.to_json(), indent=1))
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    return cached_audit_log(events, seed=seed, **options)


def copy_audit_log(source: AuditLog, data_dir: Path) -> AuditLog:
    """A copy of a SQLite audit log's data dir (database, key, blobs) at `data_dir`, to start a server on."""
    import shutil

    from log.storage.engine import sqlite_url_for

    shutil.copytree(source.data_dir, data_dir)
    return dataclasses.replace(source, data_dir=data_dir, database_url=sqlite_url_for(data_dir / "auditlog.db"))
