"""The audit personality: signed producer envelopes in, exactly once; run timelines and evidence out.

`AuditService` sits beside a `Log` and uses only its public extension points: `add_entries` with idempotency
keys and index rows, `inclusion_proof`, `checkpoint`, and `read` for its own queries (its index tables, then the
entries they point at, in one committed state).

Ingest of a submission (one envelope, or `{"events": [...]}`), per envelope, in order; the first failing step
refuses that envelope alone, and a refused envelope is never stored:

Steps 1-3 are `intake.check_body`; 4-8 are here.

1. Shape: producer, key_id, signature, event, nothing else (422 invalid-event).
2. The event against auditlog.event/v1, every field-level error listed (422 invalid-event); its timestamp no more
   than MAX_FUTURE_SKEW_MS ahead of our clock.
3. RFC 8785 canonical bytes of the event; the whole envelope entry within the log's entry size limit.
4. Producer and key in the in-memory registry (401 unknown-producer / unknown-key).
5. The Ed25519 signature over the canonical event (401 bad-signature). With verifier processes (verifier.py),
   steps 1-3 and this one run there, for keys the registry taught them; else, or when none answers, here: a few
   signatures on the event loop, more on a small thread pool.
6. The producer may write for the event's tenant (403 tenant-forbidden).
7. The key is valid at the event's timestamp and usable now (401 key-revoked / key-expired; see registry.py).
   A refused envelope that is a retry of an event already logged gets the original receipt instead.
8. All admitted envelopes go to the sequencer in ONE `add_entries` call with idempotency key
   SHA-256(producer, event_id) and content hash SHA-256(canonical event), and their index rows. The answer comes
   back only after the commit: a new index, the original index (`duplicate`), or a conflict (409
   event-conflict: that event_id was logged with other content).

No step before 8 touches the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, select

from log.audit import deleted
from log.audit import evidence as evidence_format
from log.audit.canonical import canonicalize, parse_json
from log.audit.errors import AuthenticationFailed, EventConflict, InvalidEvent, KeyExpired, KeyRevoked
from log.audit.holds import HeldByLegalHold, HoldBook
from log.audit.intake import CheckedEnvelope, check_body
from log.audit.records import (
    Envelope, format_blob_erasure, format_registry_change, format_token_change, parse_entry, parse_registry_change,
    parse_token_change, registry_change, token_change,
)
from log.audit.registry import Registry, key_id_for
from log.audit.schema import content_references, parse_timestamp_ms
from log.audit.tables import (
    EVENT_COLUMNS, access_tokens, audit_blob_uploads, audit_event_blobs, audit_event_context, audit_event_tokens,
    audit_events, audit_registry, deletion_items,
)
from log.audit.tokens import ApiToken, TokenRegistry, new_token, token_digest
from log.audit.timeline import Node, causal_order
from log.audit.lifecycle_names import tokens_in_event
from log.audit.vault import Vault
from log.audit.vault_keys import MasterKey
from log.audit.verifier import VerifierPool, VerifierUnavailable
from log.blobs import BlobStore, check_digest
from log.checkpoint import Checkpoint
from log.errors import Conflict, InvalidInput, LogError, NotFound, Unavailable
from log.note import parse_note
from log.sequencer import EntryOutcome, IdempotencyKey, Published
from log.prune import pruned_at
from log.storage import RowInsert
from log.storage.hints import not_index_key
from log.storage.schema import entries as log_entries

MAX_TIMELINE = 10_000
MAX_PAGE = 1000
INLINE_VERIFY = 4  # without a verifier process: this many signatures or fewer on the event loop, more on threads


@dataclass
class AuditStats:
    """Counters for /metrics: `counters()` gives name -> value (all monotonically increasing)."""

    events_accepted: int = 0
    events_duplicate: int = 0
    events_conflict: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # problem code -> count
    registry_changes: int = 0
    blobs_stored: int = 0
    blobs_erased: int = 0
    signatures: dict[str, int] = field(default_factory=dict)  # where they were checked -> count

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1

    def checked_signatures(self, where: str, count: int) -> None:
        self.signatures[where] = self.signatures.get(where, 0) + count

    def counters(self) -> dict[str, int]:
        out = {"events_accepted": self.events_accepted, "events_duplicate": self.events_duplicate,
               "events_conflict": self.events_conflict, "registry_changes": self.registry_changes,
               "blobs_stored": self.blobs_stored, "blobs_erased": self.blobs_erased}
        for code, count in sorted(self.refused.items()):
            out[f"events_refused{{code=\"{code}\"}}"] = count
        for where, count in sorted(self.signatures.items()):
            out[f"signatures_checked{{where=\"{where}\"}}"] = count
        return out


@dataclass(frozen=True)
class Receipt:
    """An event's place in the log. `proof` is its inclusion proof in the submission's checkpoint, if asked."""

    producer: str
    event_id: str
    index: int
    leaf_hash: bytes
    duplicate: bool
    proof: list[bytes] | None = None


@dataclass(frozen=True)
class SubmitResult:
    """One outcome per submitted envelope, in order: a Receipt or the LogError that refused it."""

    results: list[Receipt | LogError]
    checkpoint: Published
    single: bool  # the body was one envelope, not {"events": [...]}


@dataclass(frozen=True)
class RegistryReceipt:
    index: int
    change: dict
    checkpoint: Published


@dataclass(frozen=True)
class TokenReceipt:
    """A token change, logged: the token's state after it, and where the record is in the log."""

    token: ApiToken
    index: int
    checkpoint: Published
    secret: str | None = None  # the whole token, on creation only: shown once, stored nowhere


@dataclass(frozen=True)
class LoggedEvent:
    index: int
    data: bytes  # the entry bytes, as in the log
    envelope: Envelope
    proof: list[bytes] | None = None


@dataclass(frozen=True)
class PrunedEvent:
    """An event whose entry a retention run pruned (log/prune.py): what the audit index and the tree still say of
    it. Its leaf hash still proves it was logged at `index`; `deletion_index` is the run's entry."""

    index: int
    leaf_hash: bytes
    deletion_index: int
    event_id: str
    run_id: str
    tenant: str
    event_type: str


@dataclass(frozen=True)
class Timeline:
    run_id: str
    events: list[LoggedEvent]  # causal order
    checkpoint: Published
    external_parents: dict[str, str]  # event_id -> parent event_id not in this run
    pruned: list[PrunedEvent] = field(default_factory=list)  # the run's events whose contents were deleted


@dataclass(frozen=True)
class EventQuery:
    tenant: str | None = None
    run_id: str | None = None
    trace_id: str | None = None
    actor_id: str | None = None
    actor_type: str | None = None
    event_type: str | None = None
    producer: str | None = None
    context: tuple[tuple[str, str], ...] = ()
    since: int | None = None  # Unix ms, inclusive
    until: int | None = None  # Unix ms, exclusive
    after: int = -1  # cursor: only entries with a larger index
    limit: int = 100
    tenants: frozenset[str] | None = None  # the caller's scope: only these tenants' events (None: every tenant)


@dataclass(frozen=True)
class EventPage:
    events: list[LoggedEvent]
    next_cursor: int | None  # pass as `after` for the next page; None when this was the last
    pruned: list[PrunedEvent] = field(default_factory=list)  # events of the page whose contents were deleted


class _Admitted:
    __slots__ = ("position", "checked", "key", "error")

    def __init__(self, position: int, checked: CheckedEnvelope, key):
        self.position, self.checked, self.key, self.error = position, checked, key, None


ANY_UPLOADER = "*"  # audit_blob_uploads' tenant for a credential that covers every tenant


class AuditService:
    """Create with `await AuditService.open(log, blobs)`; `close()` when done (before closing the log).

    `vault_master_key`: the token vault's master key (log/audit/vault_keys.py); None: a service without a vault,
    whose `vault` answers every call Unavailable. `open` refuses a master key other than the vault's."""

    def __init__(self, log, blobs: BlobStore, *, clock: Callable[[], float] = time.time, verify_threads: int = 2,
                 verify_processes: int = 0, vault_master_key: MasterKey | None = None):
        self.log = log
        self.blobs = blobs
        self.vault = Vault(log, vault_master_key, clock=clock)
        self.registry = Registry()
        self.tokens = TokenRegistry()
        self.stats = AuditStats()
        self._clock = clock
        # Legal holds; its lock is taken around every deletion that must respect them (log/audit/holds.py).
        self.holds = HoldBook(log, clock=clock)
        self._registry_lock = asyncio.Lock()
        self._verifier = concurrent.futures.ThreadPoolExecutor(verify_threads, thread_name_prefix="audit-verify")
        self.verifier_pool = VerifierPool(verify_processes) if verify_processes else None
        self._io = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="audit-io")

    @classmethod
    async def open(cls, log, blobs: BlobStore, **kwargs) -> AuditService:
        """Rebuild the registry from its index table (every registry-change entry, in log order), as the primary
        holds it: what ingest decides from must not lag behind a read replica."""
        service = cls(log, blobs, **kwargs)
        try:
            await service.vault.check_master_key()  # a wrong master key stops the start
            await service.reload()
        except BaseException:
            await service.close()
            raise
        return service

    async def reload(self) -> None:
        """Rebuild the producer and token registries from the database: at the start, and when this server takes
        over sequencing a log that another server changed meanwhile."""
        registry, tokens = Registry(), TokenRegistry()
        # From the primary: what ingest decides from must not lag behind a read replica.
        for _, record in await self._registry_records(None, None, primary=True):
            registry.apply(parse_registry_change(parse_json(record).value))
        for index, record in await self._token_records(None, primary=True):
            tokens.apply(parse_token_change(parse_json(record).value), index)
        self.registry, self.tokens = registry, tokens
        # Taking over: another sequencer may have changed the vault meanwhile (erasures), or set it up under another
        # master key (refused then, call by call, rather than mixing two keys' mappings).
        self.vault.clear_cache()
        await self.vault.check_master_key(refuse_calls=True)
        self._teach_verifiers()

    async def close(self) -> None:
        if self.verifier_pool is not None:
            await self.verifier_pool.close()
        self._verifier.shutdown(wait=True)
        self._io.shutdown(wait=True)
        self.vault.close()

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def _read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- ingest ---------------------------------------------------------------------------------------------
    async def submit(self, body: bytes, *, proofs: bool | None = None) -> SubmitResult:
        """Steps 1-8 of the module docstring for a request body. `proofs` (default: only for a single envelope)
        asks for each receipt's inclusion proof in the returned checkpoint."""
        now = self._now()
        single, items, signed_with = await self._check_body(body, now)  # steps 1-3, and 5 where it could
        if proofs is None:
            proofs = single
        results: list[Receipt | LogError | None] = [None] * len(items)
        admitted: list[_Admitted] = []
        for position, item in enumerate(items):
            if isinstance(item, LogError):
                results[position] = item
                continue
            try:
                admitted.append(_Admitted(position, item, self.registry.key(item.producer, item.key_id)))  # step 4
            except LogError as exc:
                results[position] = exc

        # Step 5: a signature the verifier process saw verify with this very key is done; the rest are checked now.
        if signed_with is None:
            await self._verify_signatures(admitted)
        else:
            unsure = [item for item in admitted if signed_with[item.position] != item.key.public_key]
            self.stats.checked_signatures("process", len(admitted) - len(unsure))
            await self._verify_signatures(unsure)

        to_log: list[_Admitted] = []
        maybe_retries: list[_Admitted] = []
        for item in admitted:
            if item.error is None:
                try:
                    self.registry.check_tenant(item.checked.producer, item.checked.tenant)
                    item.key.check_usable(item.checked.timestamp_ms, now)
                except (KeyRevoked, KeyExpired) as exc:
                    item.error = exc
                    maybe_retries.append(item)
                except LogError as exc:
                    item.error = exc
            if item.error is None:
                to_log.append(item)
            else:
                results[item.position] = item.error

        if maybe_retries:
            for item, receipt in zip(maybe_retries, await self._find_logged(maybe_retries)):
                if receipt is not None:
                    results[item.position] = receipt
                    self.stats.events_duplicate += 1

        checkpoint = self.log.committed_checkpoint  # a write's answer: the primary's, never a read replica's
        if to_log:
            checkpoint = await self._append(to_log, results)
        for result in results:
            if isinstance(result, LogError):
                self.stats.refuse(result.code)
        if proofs:
            results = await self._with_proofs(results, checkpoint)
        return SubmitResult(results, checkpoint, single)

    async def _check_body(self, body: bytes, now: int) -> tuple[bool, list, list[bytes | None] | None]:
        """`check_body` in a verifier process when there is one, with the public key each valid signature there
        verified with (None for the rest); else here, with no signatures checked (None)."""
        if self.verifier_pool is not None:
            try:
                checked = await self.verifier_pool.check(body, now)
            except VerifierUnavailable:
                pass
            else:
                return checked.single, checked.items, checked.signed_with
        single, items = check_body(body, now)
        return single, items, None

    def _teach_verifiers(self) -> None:
        """Every registered key to the verifier processes, which then verify signatures while checking bodies."""
        if self.verifier_pool is not None:
            self.verifier_pool.learn_keys(key.public_key for producer in self.registry.producers()
                                          for key in producer.keys.values())

    async def _verify_signatures(self, admitted: list[_Admitted]) -> None:
        """Step 5: sets `error` on each item whose signature does not verify. In a verifier process when there is
        one (even a single signature: the hand-off costs the event loop less than verifying), else a few on the
        event loop and more on the thread pool."""
        if not admitted:
            return
        if self.verifier_pool is not None:
            try:
                verdicts = await self.verifier_pool.verify(
                    [(item.key.public_key, item.checked.event_bytes, item.checked.signature) for item in admitted])
            except VerifierUnavailable:
                pass  # verified below, in this process
            else:
                for item, valid in zip(admitted, verdicts, strict=True):
                    if not valid:
                        item.error = item.key.bad_signature()
                self.stats.checked_signatures("process", len(admitted))
                return
        if len(admitted) <= INLINE_VERIFY:
            _verify_chunk(admitted)
            self.stats.checked_signatures("event_loop", len(admitted))
            return
        loop = asyncio.get_running_loop()
        workers = self._verifier._max_workers
        chunk = -(-len(admitted) // workers)
        await asyncio.gather(*(loop.run_in_executor(self._verifier, _verify_chunk, admitted[i:i + chunk])
                               for i in range(0, len(admitted), chunk)))
        self.stats.checked_signatures("thread", len(admitted))

    async def _find_logged(self, items: list[_Admitted]) -> list[Receipt | None]:
        """Receipts for authentic envelopes refused for their key's state that are retries of logged events."""
        found = await self._read(self.log.store.find_keys, [i.checked.idempotency_key for i in items])
        out: list[Receipt | None] = []
        for item in items:
            checked = item.checked
            prior = found.get(checked.idempotency_key)
            out.append(Receipt(checked.producer, checked.event_id, prior.index, prior.leaf_hash, True)
                       if prior is not None and prior.content_hash == checked.content_hash else None)
        return out

    async def _append(self, items: list[_Admitted], results: list) -> Published:
        """Step 8."""
        entries, keys, rows = [], [], []
        for item in items:
            checked = item.checked
            entries.append(checked.entry)
            keys.append(IdempotencyKey(checked.idempotency_key, checked.content_hash))
            rows.append(index_rows(checked))
        added = await self.log.add_entries(entries, keys=keys, rows=rows)
        for item, outcome in zip(items, added.outcomes):
            checked = item.checked
            if isinstance(outcome, Conflict):
                self.stats.events_conflict += 1
                results[item.position] = EventConflict(
                    f"producer {checked.producer!r} already logged event {checked.event_id!r} with "
                    f"different content, at index {outcome.index}; an event_id names one event forever",
                    outcome.index)
                continue
            assert isinstance(outcome, EntryOutcome)
            if outcome.duplicate:
                self.stats.events_duplicate += 1
            else:
                self.stats.events_accepted += 1
            results[item.position] = Receipt(checked.producer, checked.event_id, outcome.index, outcome.leaf_hash,
                                             outcome.duplicate)
        return added.checkpoint

    async def _with_proofs(self, results: list, checkpoint: Published) -> list:
        async def prove(result):
            if not isinstance(result, Receipt) or result.index >= checkpoint.size:
                return result
            proof = await self.log.inclusion_proof(result.index, checkpoint.size, from_primary=True)
            return Receipt(result.producer, result.event_id, result.index, result.leaf_hash, result.duplicate, proof)

        if len(results) == 1:  # a single envelope: no task to gather
            return [await prove(results[0])]
        return list(await asyncio.gather(*(prove(r) for r in results)))

    # -- registry -------------------------------------------------------------------------------------------
    async def register_producer(self, producer: str, tenants: Sequence[str], reason: str = "") -> RegistryReceipt:
        return await self._change("producer-registered", producer, tenants=tuple(tenants), reason=reason)

    async def add_key(self, producer: str, public_key: bytes, *, not_before: int | None = None,
                      not_after: int | None = None, reason: str = "") -> RegistryReceipt:
        """Register an Ed25519 public key (32 raw bytes) for `producer`; its key id is `key_id_for(public_key)`."""
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise InvalidInput("public_key must be 32 raw Ed25519 public-key bytes", field="public_key")
        now = self._now()
        return await self._change("key-added", producer, key_id=key_id_for(public_key), public_key=public_key,
                                  not_before=now if not_before is None else not_before, not_after=not_after,
                                  reason=reason)

    async def retire_key(self, producer: str, key_id: str, *, not_after: int | None = None,
                         reason: str = "") -> RegistryReceipt:
        """Rotation: the key signs nothing dated from `not_after` (default now) on; older events stay valid."""
        return await self._change("key-retired", producer, key_id=key_id,
                                  not_after=self._now() if not_after is None else not_after, reason=reason)

    async def revoke_key(self, producer: str, key_id: str, *, revoked_at: int | None = None,
                         reason: str = "") -> RegistryReceipt:
        """Compromise: nothing new is accepted with the key, and events dated from `revoked_at` (default now;
        may be earlier) never verify."""
        return await self._change("key-revoked", producer, key_id=key_id,
                                  revoked_at=self._now() if revoked_at is None else revoked_at, reason=reason)

    async def _change(self, kind: str, producer: str, **fields) -> RegistryReceipt:
        async with self._registry_lock:
            change = registry_change(kind, producer, self._now(), **fields)
            self.registry.check(change)
            record = canonicalize(format_registry_change(change))
            row = RowInsert(audit_registry.name, ("producer", "key_id", "change", "record"),
                            (producer, change.get("key_id"), kind, record.decode()))
            added = await self.log.add_entries([record], rows=[[row]])
            self.registry.apply(change)
            self._teach_verifiers()
            self.stats.registry_changes += 1
            return RegistryReceipt(added.first_index, change, added.checkpoint)

    async def _registry_records(self, producer: str | None, key_ids: Sequence[str] | None, *,
                                primary: bool = False) -> list[tuple[int, bytes]]:
        """(index, record) of the registry changes, in log order: all, or those of `producer` that name no key or
        one of `key_ids`."""
        query = select(audit_registry.c.idx, audit_registry.c.record).order_by(audit_registry.c.idx)
        if producer is not None:
            query = query.where(audit_registry.c.producer == producer)
        if key_ids is not None:
            query = query.where(audit_registry.c.key_id.in_(list(key_ids)) | audit_registry.c.key_id.is_(None))
        return await self.log.read(lambda tx: [(idx, record.encode()) for idx, record in tx.execute(query)],
                                   primary=primary)

    # -- API tokens -----------------------------------------------------------------------------------------------
    async def create_token(self, role: str, tenants: Sequence[str] | None = None, *, expires_at: int | None = None,
                           reason: str = "") -> TokenReceipt:
        """A new API token for `role` and `tenants`, logged (its hash, never the token) before it is answered. The
        receipt carries the token itself, which nothing keeps: the caller shows it once."""
        now = self._now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        token_id, secret = new_token()
        try:
            change = token_change("token-created", token_id, now, role=role,
                                  tenants=None if tenants is None else tuple(tenants), expires_at=expires_at,
                                  sha256=token_digest(secret), reason=reason)
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        receipt = await self._token_change(change)
        return TokenReceipt(receipt.token, receipt.index, receipt.checkpoint, secret)

    async def revoke_token(self, token_id: str, reason: str = "") -> TokenReceipt:
        """Revoke a token (at once: the next request with it is refused), logged first."""
        try:
            change = token_change("token-revoked", token_id, self._now(), reason=reason)
        except InvalidEvent as exc:
            raise InvalidInput(str(exc), field=(exc.field or "$").removeprefix("$.")) from None
        return await self._token_change(change)

    async def _token_change(self, change: dict) -> TokenReceipt:
        async with self._registry_lock:
            self.tokens.check(change)
            record = canonicalize(format_token_change(change))
            tenants = change.get("tenants")
            row = RowInsert(access_tokens.name,
                            ("token_id", "change", "at", "role", "tenants", "expires_at", "sha256", "record"),
                            (change["token_id"], change["change"], change["at"], change.get("role"),
                             None if tenants is None else ",".join(sorted(tenants)), change.get("expires_at"),
                             change["sha256"].hex() if "sha256" in change else None, record.decode()))
            added = await self.log.add_entries([record], rows=[[row]])
            self.tokens.apply(change, added.first_index)
            return TokenReceipt(self.tokens.get(change["token_id"]), added.first_index, added.checkpoint)

    async def _token_records(self, token_id: str | None, *, primary: bool = False) -> list[tuple[int, bytes]]:
        """(index, record) of the token changes, in log order: all, or those of `token_id`."""
        query = select(access_tokens.c.idx, access_tokens.c.record).order_by(access_tokens.c.idx)
        if token_id is not None:
            query = query.where(access_tokens.c.token_id == token_id)
        return await self.log.read(lambda tx: [(idx, record.encode()) for idx, record in tx.execute(query)],
                                   primary=primary)

    # -- blobs ----------------------------------------------------------------------------------------------
    async def put_blob(self, digest: str, data: bytes) -> bool:
        created = await self._read(self.blobs.put, check_digest(digest), data)
        if created:
            self.stats.blobs_stored += 1
        return created

    async def put_blob_from(self, digest: str, pieces: AsyncIterator[bytes]) -> bool:
        """`put_blob` for bytes that come in pieces (an HTTP body): each piece goes to the store as it comes
        (BlobStore.writer), so memory holds one piece, not the blob. Whatever `pieces` raises (a client gone, a body
        too big) leaves nothing stored, and is raised."""
        writer = await self._read(self.blobs.writer, check_digest(digest))
        try:
            async for piece in pieces:
                await self._read(writer.write, piece)
            created = await self._read(writer.commit)
        except BaseException:
            writer.abort()  # a close and an unlink, here: a cancelled request must not leave the file behind
            raise
        if created:
            self.stats.blobs_stored += 1
        return created

    async def get_blob(self, digest: str) -> bytes:
        return await self._read(self.blobs.get, check_digest(digest))

    async def record_blob_upload(self, sha256: str, tenants: frozenset[str] | None) -> None:
        """Remember that a credential scoped to `tenants` (None: every tenant, stored as "*") uploaded blob `sha256`:
        one audit_blob_uploads row per tenant, through the log's writer, rows already there left alone (another
        tenant's upload of the same content adds that tenant). Call once the blob is durably stored."""
        digest = check_digest(sha256)
        scope = sorted(tenants) if tenants is not None else [ANY_UPLOADER]
        u = audit_blob_uploads.c

        def work(tx) -> None:
            # The log's single writer runs this, so a select-then-insert cannot race another upload's rows.
            have = {tenant for tenant, in tx.execute(
                select(u.tenant).where(u.sha256 == digest, u.tenant.in_(scope)))}
            missing = [{"sha256": digest, "tenant": tenant} for tenant in scope if tenant not in have]
            if missing:
                tx.execute_many(audit_blob_uploads.insert(), missing)

        await self.log.write(work)

    async def blob_tenants(self, sha256: str) -> set[str]:
        """The tenants whose auditors may read blob `sha256`: those with a logged event that refers to it (anywhere
        the event schema admits a reference) and whose scope an uploading credential covered (audit_blob_uploads).
        When an uploader covered every tenant ("*"), or the blob has no upload rows (stored before migration 0011:
        uploader unknown), every citing tenant. Empty for a blob no event names."""
        digest = check_digest(sha256)
        b, u = audit_event_blobs.c, audit_blob_uploads.c
        citing = select(b.tenant).where(b.sha256 == digest).distinct()
        uploaded = select(u.tenant).where(u.sha256 == digest)

        def read(tx) -> set[str]:
            cited = {tenant for tenant, in tx.execute(citing)}
            if not cited:
                return cited
            uploaders = {tenant for tenant, in tx.execute(uploaded)}
            if not uploaders or ANY_UPLOADER in uploaders:
                return cited
            return cited & uploaders

        return await self.log.read(read)

    async def erase_blob(self, digest: str, reason: str) -> int:
        """Delete a blob, first logging the erasure (so the record exists even if the delete must be retried).
        Returns the erasure record's index. No entry, tile or proof changes: events refer to blobs by hash.

        A blob that an active legal hold covers (an event citing it is in the hold's scope) is not deleted: the
        refusal is logged (a legal-hold `deletion-refused` entry) and HeldByLegalHold raised. Under the holds'
        lock, so a hold placed meanwhile is seen."""
        check_digest(digest)
        if not await self._read(self.blobs.exists, digest):
            raise NotFound(f"no blob {digest}")
        async with self.holds.lock:
            hold = await self.holds.blob_hold(digest)
            if hold is not None:
                index = await self.holds.refuse_deletion(hold, "blob", digest, reason)
                raise HeldByLegalHold(f"blob {digest} is under legal hold {hold.hold_id} (reference "
                                      f"{hold.reference[:80]!r}): not deleted; entry {index} records the refusal",
                                      hold.hold_id, index)
            record = canonicalize(format_blob_erasure(digest, self._now(), reason))
            # With its deletion_items row, in the entry's commit: evidence bundles find the entry that erased a blob
            # by it (log/audit/deleted.py).
            row = RowInsert(deletion_items.name, ("kind", "item"), ("blob", digest), index_column="deletion_idx")
            added = await self.log.add_entries([record], rows=[[row]])
            await self._read(self.blobs.delete, digest)
        self.stats.blobs_erased += 1
        return added.first_index

    # -- queries --------------------------------------------------------------------------------------------
    async def query_events(self, query: EventQuery) -> EventPage:
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {query.limit}", field="limit")
        size = self.log.checkpoint.size
        rows, pruned = await self._select_events(query, size)
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        last = rows[-1][0] if rows else None
        events = [_logged(index, data) for index, data in rows if index not in pruned]
        return EventPage(events, last if more else None, [pruned[index] for index, _ in rows if index in pruned])

    async def _select_events(self, query: EventQuery, size: int) -> tuple[list[tuple[int, bytes]],
                                                                          dict[int, PrunedEvent]]:
        """(index, entry bytes) of the events `query` asks for (one more than its limit): the indices from the
        audit index, then their entries, batched, from the same committed state; and those of them that a
        retention run pruned, by index."""
        statement = events_statement(query, size)

        def read(tx) -> tuple[list[tuple[int, bytes]], dict[int, PrunedEvent]]:
            indices = [idx for idx, in tx.execute(statement)]
            data = tx.entries_at(indices)
            rows = [(idx, data[idx]) for idx in indices if idx in data]
            return rows, _pruned_events(tx, [idx for idx, entry in rows if not entry])

        return await self.log.read(read)

    async def timeline(self, run_id: str, tenant: str | None = None, *, proofs: bool = True,
                       tenants: frozenset[str] | None = None) -> Timeline:
        """One run's events in causal order, each with its inclusion proof in the latest checkpoint. `tenants`:
        the caller's scope; events of other tenants are left out (a run with none in scope is NotFound)."""
        checkpoint = self.log.checkpoint
        rows, pruned = await self._select_events(EventQuery(run_id=run_id, tenant=tenant, limit=MAX_TIMELINE,
                                                            tenants=tenants), checkpoint.size)
        if not rows:
            raise NotFound(f"no events for run {run_id!r}" + (f" of tenant {tenant!r}" if tenant else ""))
        if len(rows) > MAX_TIMELINE:
            raise InvalidInput(f"run {run_id!r} has more than {MAX_TIMELINE} events; query it with "
                               f"/api/v1/events?run_id=... instead", field="run_id")
        events = [_logged(index, data) for index, data in rows if index not in pruned]
        ordering = causal_order([_node(e) for e in events])
        ordered = [events[p] for p in ordering.order]
        external = {events[p].envelope.event["event_id"]: parent for p, parent in ordering.external_parents.items()}
        if proofs:
            hashes = await asyncio.gather(*(self.log.inclusion_proof(e.index, checkpoint.size) for e in ordered))
            ordered = [LoggedEvent(e.index, e.data, e.envelope, h) for e, h in zip(ordered, hashes)]
        return Timeline(run_id, ordered, checkpoint, external, [pruned[index] for index in sorted(pruned)])

    async def evidence(self, run_id: str, tenant: str | None = None, *,
                       attested: Sequence[tuple[bytes, bytes | None]] = (),
                       tenants: frozenset[str] | None = None) -> dict:
        """An evidence bundle for one run (see evidence.py): the timeline, and every registry record of the
        producers and keys it used, each with its inclusion proof in the same checkpoint; and what of the run was
        deleted (pruned events, deleted blobs, erased subjects) with the entries that record it, proven too.

        `attested`: the log's checkpoints that carry more than its signature, best first, as (the note with its
        cosignature lines, the RFC 3161 token over exactly those bytes or None); the server passes the newest
        timestamped one, then the newest witnessed one. The first whose tree covers every entry the bundle proves is
        the bundle's checkpoint (with its token); when none does, the latest checkpoint is."""
        query = EventQuery(run_id=run_id, tenant=tenant, limit=MAX_TIMELINE, tenants=tenants)
        return await self._evidence_bundle(
            lambda size: events_statement(query, size), attested, run_id=run_id,
            none=f"no events for run {run_id!r}" + (f" of tenant {tenant!r}" if tenant else ""),
            too_many=(f"run {run_id!r} has more than {MAX_TIMELINE} events; query it with /api/v1/events?run_id=... "
                      f"instead", "run_id"))

    async def subject_evidence(self, tenant: str, subject: str, tokens: Sequence[str], *,
                               attested: Sequence[tuple[bytes, bytes | None]] = ()) -> dict:
        """A data subject's access bundle (evidence.py, v3 with `subject`): every event of `tenant` that carries one
        of `tokens` (the subject's vault tokens, audit_event_tokens), in causal order, with what of them was deleted,
        as `evidence` builds a run's. `subject` is the subject's token (never its reference). NotFound when no event
        carries the tokens (pruned events lose their token rows: only retained events are found)."""
        wanted = sorted(set(tokens))
        if not wanted:
            raise NotFound(f"subject {subject} of tenant {tenant!r} has no tokens")
        t = audit_event_tokens.c

        def statement(size: int):
            return (select(t.idx).where(t.tenant == tenant, t.token.in_(wanted), t.idx < size).distinct()
                    .order_by(t.idx).limit(MAX_TIMELINE + 1))

        return await self._evidence_bundle(
            statement, attested, subject={"tenant": tenant, "subject": subject, "tokens": wanted},
            none=f"no events of tenant {tenant!r} carry the tokens of subject {subject}",
            too_many=(f"subject {subject} has more than {MAX_TIMELINE} events", "subject"))

    async def _evidence_bundle(self, statement, attested: Sequence[tuple[bytes, bytes | None]], *,
                               run_id: str | None = None, subject: dict | None = None, none: str,
                               too_many: tuple[str, str]) -> dict:
        """The bundle of the events `statement(size)` selects (their indices, at most MAX_TIMELINE + 1).

        The blob store is looked at between two reads: first the events (present or pruned, one state), then which
        cited blobs are gone, then their deletions. A deletion commits its entry and list before it unlinks, so a
        blob found gone is listed by the second read; one deleted after the look is still present at the look."""
        size = self.log.checkpoint.size

        def read_events(tx):
            indices = [idx for idx, in tx.execute(statement(size))]
            return indices, *deleted.split_pruned(tx, indices)

        indices, present, pruned = await self.log.read(read_events)
        if not present and not pruned:
            raise NotFound(none)
        if len(indices) > MAX_TIMELINE:
            raise InvalidInput(too_many[0], field=too_many[1])
        events = [_logged(index, data) for index, data in sorted(present.items())]
        ordering = causal_order([_node(e) for e in events])
        events = [events[p] for p in ordering.order]

        cited: dict[str, None] = {}
        tokens_by_tenant: dict[str, set[str]] = {}
        for event in events:
            cited.update(dict.fromkeys(content_references(event.envelope.event)))
            tokens_by_tenant.setdefault(event.envelope.event["tenant"], set()).update(
                tokens_in_event(event.envelope.event_bytes))
        gone = [sha for sha in cited if not await self._read(self.blobs.exists, sha)]

        def read_deletions(tx):
            blobs = deleted.blob_deletions(tx, gone, size)
            subjects = deleted.erased_subjects(tx, tokens_by_tenant, size) if tokens_by_tenant else []
            needed = {*pruned.values(), *blobs.values(), *(s[3] for s in subjects)}
            return blobs, subjects, deleted.deletion_records(tx, needed)

        blob_deletions, subjects, (records, items, policies) = await self.log.read(read_deletions)

        last = max([*present, *pruned, *records, *policies])
        note, token = self.log.checkpoint.note, None
        for candidate, candidate_token in attested:
            if _note_size(candidate) > last:
                note, token = candidate, candidate_token
                break
        size = _note_size(note)
        if size <= last:  # a read that saw entries the checkpoint in memory does not cover yet: a moment later it does
            raise Unavailable("the log's checkpoint does not cover the entries just read yet; retry")

        async def prove(indices_: Sequence[int]) -> list[list[bytes]]:
            return list(await asyncio.gather(*(self.log.inclusion_proof(i, size) for i in indices_)))

        pruned_order = sorted(pruned)
        leaf_hashes = await self._read(self.log.node_hashes, [(0, i) for i in pruned_order]) if pruned else {}
        pruned_proofs = await prove(pruned_order)
        record_order, policy_order = sorted(records), sorted(policies)
        record_proofs, policy_proofs = await prove(record_order), await prove(policy_order)
        lost = evidence_format.Deletions(
            pruned_events=[evidence_format.PrunedEvent(i, leaf_hashes[(0, i)], proof, pruned[i])
                           for i, proof in zip(pruned_order, pruned_proofs)],
            deleted_blobs=blob_deletions,
            missing_blobs=[sha for sha in gone if sha not in blob_deletions],
            erased_subjects=[evidence_format.ErasedSubject(*s) for s in subjects],
            deletions=[(i, records[i], proof) for i, proof in zip(record_order, record_proofs)],
            items=items,
            policies=[(i, policies[i], proof) for i, proof in zip(policy_order, policy_proofs)],
        )

        proofs = await prove([e.index for e in events])
        used: dict[str, set[str]] = {}
        for event in events:
            used.setdefault(event.envelope.producer, set()).add(event.envelope.key_id)
        registry_entries = []
        for producer, key_ids in sorted(used.items()):
            for index, data in await self._registry_records(producer, sorted(key_ids)):
                if index < size:
                    registry_entries.append((index, data, await self.log.inclusion_proof(index, size)))
        return evidence_format.build_bundle(
            origin=self.log.origin, log_key=self.log.verifier_key, checkpoint_note=note, timestamp=token,
            run_id=run_id, subject=subject,
            events=[(e.index, e.data, proof) for e, proof in zip(events, proofs)],
            registry_entries=registry_entries, deletions=lost,
        )


def _note_size(note: bytes) -> int:
    """The tree size of a checkpoint note the log signed (its own, so not verified here)."""
    return Checkpoint.from_text(parse_note(note).text).size


# The filters that can drive a search, most selective first: each has an index (column, idx, ...) that yields its
# events in index order from the cursor on. A run, a trace or an actor has few events; a producer, a tenant or an event
# type many. The tenant's and the actor's indexes also hold the time and the event type (and the actor's the tenant),
# so their pages are checked in the index itself.
_DRIVERS = ("run_id", "trace_id", "actor_id", "producer", "tenant", "event_type")


def events_statement(query: EventQuery, size: int):
    """The indices of the page of audit events that `query` asks for, in a tree of `size` entries, ascending: one
    more than query.limit, so the caller knows whether another page follows.

    A context id's search is driven from the context index (audit_event_context (name, value, idx), joined): a
    correlated EXISTS per event walked every event of the tenant instead (most of a second at 10^6 events). Without
    one, on SQLite, the first filter of _DRIVERS the query has drives it and the others are `not_index_keys`:
    SQLite keeps no statistics, and took an equality on a tenant (a few values) for as selective as one on a run
    (10^5 values), driving a run's search from the tenant's index. PostgreSQL's planner, with statistics, chooses."""
    a = audit_events.c
    source, position, conditions = audit_events, a.idx, []
    for name, value in query.context:
        c = audit_event_context.alias()
        if position is a.idx:
            source, position = c.join(audit_events, a.idx == c.c.idx), c.c.idx
        else:
            source = source.join(c, c.c.idx == position)
        conditions += [c.c.name == name, c.c.value == value]
    conditions += [position > query.after, position < size]
    tenant = query.tenant
    if tenant is None and query.tenants is not None and len(query.tenants) == 1:
        tenant = next(iter(query.tenants))  # a scope of one tenant is that tenant's filter
    values = {"run_id": query.run_id, "trace_id": query.trace_id, "actor_id": query.actor_id,
              "producer": query.producer, "tenant": tenant, "event_type": query.event_type}
    driver = None if query.context else next((name for name in _DRIVERS if values[name] is not None), None)

    def column(name: str):
        bare = getattr(a, name)
        return bare if name == driver or (driver is None and not query.context) else not_index_key(bare)

    for name, value in values.items():
        if value is not None:
            conditions.append(column(name) == value)
    if query.actor_type is not None:
        conditions.append(a.actor_type == query.actor_type)
    if query.tenants is not None:
        conditions.append(column("tenant").in_(sorted(query.tenants)))
    if query.since is not None:
        conditions.append(a.ts >= query.since)
    if query.until is not None:
        conditions.append(a.ts < query.until)
    return select(a.idx).select_from(source).where(and_(*conditions)).order_by(position).limit(query.limit + 1)


def _verify_chunk(items: list[_Admitted]) -> None:
    for item in items:
        try:
            item.key.verify(item.checked.event_bytes, item.checked.signature)
        except AuthenticationFailed as exc:
            item.error = exc


def index_rows(checked: CheckedEnvelope) -> list[RowInsert]:
    """The index rows an accepted envelope's entry is committed with (ingest, an archive's restore, the benchmarks'
    bulk-written logs: one definition, so the index never depends on how the entry came in)."""
    rows = [RowInsert(audit_events.name, EVENT_COLUMNS, checked.event_row)]
    for name, value in checked.context_rows:
        rows.append(RowInsert(audit_event_context.name, ("name", "value"), (name, value)))
    media_types = checked.blob_media_types or (None,) * len(checked.blobs)
    for digest, media_type in zip(checked.blobs, media_types):
        rows.append(RowInsert(audit_event_blobs.name, ("sha256", "tenant", "media_type"),
                              (digest, checked.tenant, media_type)))
    for token in tokens_in_event(checked.event_bytes):  # a data subject's events, found from the index
        rows.append(RowInsert(audit_event_tokens.name, ("token", "tenant"), (token, checked.tenant)))
    return rows


def _pruned_events(tx, indices: list[int]) -> dict[int, PrunedEvent]:
    """Of `indices` (events whose entry read empty), those a retention run pruned, as the index still shows them."""
    if not indices:
        return {}
    pruned = pruned_at(tx, indices)
    if not pruned:
        return {}
    a, e = audit_events.c, log_entries.c
    rows = tx.execute(select(a.idx, e.leaf_hash, a.event_id, a.run_id, a.tenant, a.event_type)
                      .select_from(audit_events.join(log_entries, e.idx == a.idx))
                      .where(a.idx.in_(sorted(pruned))))
    return {idx: PrunedEvent(idx, bytes(leaf_hash), pruned[idx], event_id, run_id, tenant, event_type)
            for idx, leaf_hash, event_id, run_id, tenant, event_type in rows}


def _logged(index: int, data: bytes) -> LoggedEvent:
    kind, envelope = parse_entry(data)
    if kind != "envelope":
        raise InvalidEvent(f"entry {index} is indexed as an audit event but is a {kind} record", "$")
    return LoggedEvent(index, data, envelope)


def _node(event: LoggedEvent) -> Node:
    e = event.envelope.event
    return Node(event.index, e["event_id"], e.get("parent_event_id"), parse_timestamp_ms(e["timestamp"]))


__all__ = ["AuditService", "AuditStats", "EventPage", "EventQuery", "LoggedEvent", "PrunedEvent", "Receipt", "RegistryReceipt",
           "SubmitResult", "Timeline", "TokenReceipt", "index_rows"]
