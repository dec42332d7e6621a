"""A verifying client of an auditlog server: nothing it returns is taken on the server's word.

Trust starts from one thing the caller supplies, the log's verifier key (a signed-note key string). From it:

1. every checkpoint is opened with that key (signature, origin) before its root is believed;
2. the roots the client believes are kept by tree size; two different roots for one size are a split view and
   raise ProofError;
3. every inclusion proof is checked against a believed root, with the leaf hash computed by the client (from the
   entry it submitted or fetched), never the one the server reports;
4. a root for an older tree size, when needed, is computed from the tiles and believed only after a consistency
   proof from it to a signed checkpoint's root verifies;
5. every consistency proof is checked between two believed roots.

Failures raise `log.errors.VerificationError` subclasses (ProofError, SignatureError). Error answers of the server
come back as the log error their problem `type` names (InvalidInput, NotFound, Unavailable...), so callers can
branch on the same classes as in-process code. `LogClient` is async (aiohttp); `SyncLogClient` wraps it for
scripts.

Several servers: `LogClient(["http://a:8080", "http://b:8080"], vkey)` (or "http://a:8080,http://b:8080") asks the
one that answered last and moves on to the next on connection errors and 503s (api/client/servers.py: reads
always, a plain entry POST only when nothing was sent). The failover is the transport's alone: whatever server an
answer comes from, it is checked by the steps above as if that server were the only one, and a bad proof or
signature raises VerificationError at once. Trying another server instead would hide the evidence of a log that
lies, and a lying server would pass for as long as an honest one answered; the trust is in the log key, not in
whichever server happens to answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from api.client.servers import AnswerLost, ServerList, check_url, client_timeout
from api.client.tls import client_context
from log.bundles import decode_entry_bundle, encode_entry_bundle
from log.checkpoint import Checkpoint, open_checkpoint
from log.compact import CompactRange, frontier_node_ids
from log.errors import EntryPruned, InvalidInput, LogError, NotFound, ProofError, Unavailable, VerificationError
from log.hashing import EMPTY_ROOT, HASH_SIZE, hash_leaf
from log.note_keys import Verifier, parse_verifier_key
from log.proofs import verify_consistency, verify_inclusion
from log.tile_nodes import node_hash_from_tile, tile_for_node
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID
from witness.http_errors import summarise_body

MAX_BATCH = 4096
PROOF_CONCURRENCY = 16
PROBLEM_PREFIX = "urn:auditlog:problem:"


@dataclass(frozen=True)
class InclusionProof:
    """A verified proof that `leaf_hash` is entry `index` of the tree of `tree_size` whose root is `root`."""

    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    root: bytes


@dataclass(frozen=True)
class ConsistencyProof:
    """A verified proof that the tree (second, second_root) extends (first, first_root)."""

    first: int
    second: int
    hashes: tuple[bytes, ...]
    first_root: bytes
    second_root: bytes


@dataclass(frozen=True)
class Receipt:
    """An entry the log accepted, with its inclusion in the signed checkpoint it came with verified."""

    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    note: bytes  # the signed checkpoint note as received
    proof: tuple[bytes, ...]

    @property
    def tree_size(self) -> int:
        return self.checkpoint.size


@dataclass(frozen=True)
class VerifiedEvent:
    """An audit event the log listed, checked: `entry` (the bytes whose leaf hash was computed here) is entry `index`
    of the believed tree of `tree_size`, and `envelope` (log.audit.records.Envelope) is what those bytes hold."""

    index: int
    entry: bytes
    leaf_hash: bytes
    tree_size: int
    envelope: object

    @property
    def event(self) -> dict:
        return self.envelope.event

    @property
    def producer(self) -> str:
        return self.envelope.producer


@dataclass(frozen=True)
class EventPage:
    """One page of GET /api/v1/events, every event verified; `next_cursor` is the log's, None on the last page."""

    events: list[VerifiedEvent]
    next_cursor: str | None
    checkpoint: Checkpoint


# GET /api/v1/events' filters (api/server/audit_routes.py), and what each asks of an event: the client checks every
# listed event against them, so a log that answers outside the filter is caught like one that answers a wrong entry.
EVENT_FILTERS = ("tenant", "run_id", "trace_id", "actor_id", "actor_type", "event_type", "producer", "case_id",
                 "alert_id", "customer_id", "since", "until")


def _filter_value(envelope, name: str):
    event = envelope.event
    actor = event.get("actor") if isinstance(event.get("actor"), dict) else {}
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    if name == "producer":
        return envelope.producer
    if name in ("actor_id", "actor_type"):
        return actor.get(name.removeprefix("actor_"))
    if name in ("case_id", "alert_id", "customer_id"):
        return context.get(name)
    if name.startswith("context."):
        return context.get(name.removeprefix("context."))
    return event.get(name)


def event_mismatch(envelope, filters: dict[str, str]) -> str | None:
    """The first filter of GET /api/v1/events that `envelope`'s event does not satisfy (`name=value`), or None."""
    from log.audit.schema import parse_timestamp_ms

    for name, value in filters.items():
        if name in ("since", "until"):
            at, bound = parse_timestamp_ms(envelope.event.get("timestamp")), parse_timestamp_ms(value)
            if bound is None:
                raise InvalidInput(f"{name} must be an RFC 3339 UTC timestamp with milliseconds, not {value!r}",
                                   field=name)
            if at is None or (at < bound if name == "since" else at >= bound):
                return f"{name}={value} (the event's timestamp is {envelope.event.get('timestamp')})"
        elif name not in EVENT_FILTERS and not name.startswith("context."):
            raise InvalidInput(f"{name!r} is not a filter of GET /api/v1/events", field=name)
        elif _filter_value(envelope, name) != value:
            return f"{name}={value}"
    return None


def _error_classes() -> dict[str, type[LogError]]:
    found: dict[str, type[LogError]] = {}
    pending = [LogError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def _pruned_problem(problem: dict, detail: str) -> LogError:
    """The EntryPruned a 410 problem names: its pruned entries (index -> deletion entry) and, for a bundle, the bundle
    with the pruned entries as zero bytes. A body that does not say so is malformed."""
    try:
        listed = problem.get("pruned") or [{"index": problem["index"], "deletion_index": problem["deletion_index"]}]
        pruned = {}
        for item in listed:
            index, deletion = item["index"], item["deletion_index"]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (index, deletion)):
                raise TypeError
            pruned[index] = deletion
        present = problem.get("bundle")
        present = None if present is None else base64.b64decode(present, validate=True)
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError):
        return _malformed("a 410 (entry-pruned) problem without its pruned entries")
    if not pruned:
        return _malformed("a 410 (entry-pruned) problem without its pruned entries")
    return EntryPruned(detail, pruned, present)


def _malformed(what: str) -> VerificationError:
    return VerificationError(f"malformed server response: {what}")


def _b64_hash(value, what: str) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not valid base64") from None
    if len(decoded) != 32:
        raise _malformed(f"{what} is {len(decoded)} bytes, not 32")
    return decoded


def _int(document: dict, name: str) -> int:
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed(f"{name} is not a non-negative integer: {value!r}")
    return value


def _hash_list(document: dict) -> tuple[bytes, ...]:
    hashes = document.get("hashes")
    if not isinstance(hashes, list):
        raise _malformed("hashes is not a list")
    return tuple(_b64_hash(h, f"hashes[{i}]") for i, h in enumerate(hashes))


def _envelope_shown(item: dict, entry: bytes, name: str, shown_by: str):
    """The audit envelope `entry` holds, checked to be the event `item` shows beside it (a listed event, a timeline's
    event): VerificationError naming `name` when the entry holds no envelope or another one."""
    from log.audit.errors import InvalidEvent
    from log.audit.records import parse_entry

    try:
        kind, envelope = parse_entry(entry)
    except InvalidEvent as exc:
        raise VerificationError(f"{name}: {shown_by} an entry that is not an audit event: {exc}") from None
    if kind != "envelope":
        raise VerificationError(f"{name}: {shown_by} a {kind} record as an event")
    if {key: item.get(key) for key in ("producer", "key_id", "signature", "event")} != envelope.to_json():
        raise VerificationError(f"{name}: the event {shown_by} is not the one its entry holds")
    return envelope


def _partial_of(tile_id: TileID, full: bytes) -> bytes:
    """The bytes of partial `tile_id` inside its full tile's; the full bytes as they are when they hold no such
    prefix (the caller's checks then reject them)."""
    if tile_id.level is not None:
        return full[:tile_id.width * HASH_SIZE] if len(full) == TILE_WIDTH * HASH_SIZE else full
    try:
        entries = decode_entry_bundle(full)
    except InvalidInput:
        return full
    return encode_entry_bundle(entries[:tile_id.width]) if len(entries) == TILE_WIDTH else full


def tile_width_in_tree(level: int | None, index: int, size: int) -> int:
    """The width tile (level, index) has in a tree of `size` (entry bundles: level None, like level 0); 0: none."""
    count = size >> (TILE_HEIGHT * (level or 0))
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


class LogClient:
    """Async verifying client. Use `async with LogClient(url, vkey) as client:` or call `close()`."""

    def __init__(
        self,
        server: str | Sequence[str] | ServerList,
        verifier_key: str | Verifier,
        *,
        origin: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        token: str | None = None,
        ca_cert: str | Path | None = None,
    ):
        """`server`: the log's URL, several (a sequence, or one string with commas), or a ServerList with its own
        failover settings. `ca_cert`: a PEM file of the CA certificate(s) an https:// log's certificate must chain
        to (default: the system trust store); ignored when `session` is given (the session's own connector
        decides). `timeout`: seconds one request to one server may take."""
        self.servers = server if isinstance(server, ServerList) else ServerList(server)
        # A bearer credential for the private routes (entry contents, events, evidence); public ones need none.
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl = client_context(ca_cert)
        self.verifier = parse_verifier_key(verifier_key) if isinstance(verifier_key, str) else verifier_key
        self.origin = origin or self.verifier.name
        self._session = session
        self._own_session = session is None
        self._timeout = client_timeout(timeout)
        self._roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self._latest: Checkpoint | None = None
        self._latest_note: bytes | None = None
        self._codes = _error_classes()

    async def __aenter__(self) -> "LogClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The server asked first: the one that answered last (`servers.current`)."""
        return self.servers.current

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ----------------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def _request(self, method: str, path: str, *, answers: tuple[int, ...] = (), idempotent: bool = True,
                       **kwargs) -> tuple[bytes, str]:
        """The body and content type of a 2xx or 3xx answer (or one of the statuses in `answers`) from the first
        server that gives one (api/client/servers.py; `idempotent=False` for a request a resend could carry out
        twice); other answers raise the log error they mean (`_error`), no server answering ServersUnavailable."""
        if self._auth:
            kwargs["headers"] = {**kwargs.get("headers", {}), **self._auth}
        answer = await self.servers.arequest(self._http(), method, path, idempotent=idempotent, answers=answers,
                                             timeout=self._timeout.total, **kwargs)
        if answer.status >= 400 and answer.status not in answers:
            raise self._error(answer.status, answer.content_type, answer.body, f"{method} {path}", answer.url)
        return answer.body, answer.content_type

    def _error(self, status: int, content_type: str, body: bytes, what: str, url: str) -> LogError:
        """The log error a problem response names (by its type), or a plain LogError for anything else."""
        if content_type == "application/problem+json":
            try:
                problem = json.loads(body)
                code = str(problem.get("type", "")).removeprefix(PROBLEM_PREFIX)
                detail = f"{what}: HTTP {status}: {problem.get('detail', '')}"
                cls = self._codes.get(code)
                if cls is EntryPruned:
                    return _pruned_problem(problem, detail)
                if cls is not None and issubclass(cls, InvalidInput):
                    return cls(detail, field=problem.get("field"))
                if cls is not None and not issubclass(cls, VerificationError):
                    return cls(detail)
            except (ValueError, AttributeError, TypeError):
                pass
        answer = f"{what} at {url}: HTTP {status}: {summarise_body(body, content_type)}"
        if status == 404:
            return NotFound(answer)
        if status >= 500 or status in (408, 425, 429):
            return Unavailable(answer)
        if 400 <= status < 500:
            return InvalidInput(answer)
        return LogError(answer)

    async def _get_json(self, path: str, params: dict | None = None) -> dict:
        body, _ = await self._request("GET", path, params=params)
        try:
            document = json.loads(body)
        except ValueError:
            raise _malformed(f"GET {path} did not answer JSON") from None
        if not isinstance(document, dict):
            raise _malformed(f"GET {path} did not answer a JSON object")
        return document

    # -- checkpoints and roots ------------------------------------------------------------------------------------
    def believe(self, note: bytes) -> Checkpoint:
        """Open a signed checkpoint with the verifier key and remember its root (step 1 and 2 of the module doc)."""
        checkpoint, _ = open_checkpoint(note, self.verifier, self.origin)
        self._remember(checkpoint.size, checkpoint.root_hash)
        if self._latest is None or checkpoint.size >= self._latest.size:
            self._latest, self._latest_note = checkpoint, note
        return checkpoint

    def _remember(self, size: int, root: bytes) -> None:
        held = self._roots.get(size)
        if held is not None and held != root:
            raise ProofError(
                f"split view: two roots for tree size {size}: {base64.b64encode(held).decode()} and "
                f"{base64.b64encode(root).decode()}"
            )
        self._roots[size] = root

    @property
    def latest(self) -> Checkpoint | None:
        """The largest verified checkpoint seen so far."""
        return self._latest

    @property
    def latest_note(self) -> bytes | None:
        return self._latest_note

    async def checkpoint(self) -> Checkpoint:
        """Fetch /checkpoint and verify its signature and origin."""
        return (await self.signed_checkpoint())[0]

    async def signed_checkpoint(self) -> tuple[Checkpoint, bytes]:
        """Fetch /checkpoint, verify it, and return it with the signed note as served."""
        note, _ = await self._request("GET", "/checkpoint")
        return self.believe(note), note

    async def witnessed_checkpoint(self) -> tuple[Checkpoint, bytes]:
        """Fetch /checkpoint.witnessed: the log's signature is verified and its root believed; the witnesses'
        cosignatures are left to the caller (api.client.evidence.check_cosignatures, with the keys it trusts)."""
        note, _ = await self._request("GET", "/checkpoint.witnessed")
        return self.believe(note), note

    async def latest_timestamp(self) -> tuple[Checkpoint, bytes, bytes]:
        """Fetch /api/v1/timestamps/latest: (the stamped checkpoint, verified and believed; its note's bytes, which
        the token covers; the DER TimeStampResp, unverified: witness.rfc3161.verify_timestamp with the TSA's
        certificate)."""
        document = await self._get_json("/api/v1/timestamps/latest")
        note = document.get("checkpoint")
        if not isinstance(note, str):
            raise _malformed("the timestamp answer holds no checkpoint")
        try:
            token = base64.b64decode(document.get("timestamp") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _malformed("the timestamp is not base64") from None
        checkpoint = self.believe(note.encode())
        if _int(document, "tree_size") != checkpoint.size:
            raise _malformed(f"tree_size {document.get('tree_size')} is not the stamped checkpoint's size "
                             f"{checkpoint.size}")
        return checkpoint, note.encode(), token

    async def root_at(self, size: int) -> bytes:
        """The root of the tree of `size`, believed (step 4): held, or from tiles checked by a consistency proof."""
        held = self._roots.get(size)
        if held is not None:
            return held
        latest = self._latest if self._latest is not None and self._latest.size >= size else await self.checkpoint()
        if size > latest.size:
            raise InvalidInput(f"tree size {size} is beyond the latest checkpoint size {latest.size}", field="size")
        if size == latest.size:
            return latest.root_hash
        root = await self._root_from_tiles(size, latest.size)
        await self._check_consistency(size, latest.size, root, latest.root_hash)
        self._remember(size, root)
        return root

    async def _root_from_tiles(self, size: int, served_size: int) -> bytes:
        """The root of [0, size) folded from the tiles of the served tree (unverified until a proof checks it)."""
        nodes = frontier_node_ids(size)
        located = [tile_for_node(height, index) for height, index in nodes]
        wanted = list(dict.fromkeys((t.level, t.index) for t, _, _ in located))
        fetched = dict(zip(wanted, await asyncio.gather(*(
            self.tile(TileID(level, index, tile_width_in_tree(level, index, served_size)))
            for level, index in wanted
        ))))
        hashes = []
        for tile_id, start, count in located:
            data = fetched[(tile_id.level, tile_id.index)]
            if len(data) < (start + count) * 32:
                raise _malformed(f"tile {tile_id.path()} is {len(data)} bytes, too short")
            hashes.append(node_hash_from_tile(data, start, count))
        return CompactRange(size, hashes).root()

    # -- proofs -------------------------------------------------------------------------------------------------
    async def _check_consistency(self, first: int, second: int, first_root: bytes, second_root: bytes):
        document = await self._get_json("/api/v1/proof/consistency", {"first": str(first), "second": str(second)})
        if _int(document, "first") != first or _int(document, "second") != second:
            raise _malformed(f"consistency proof is for ({document.get('first')}, {document.get('second')}), "
                             f"not the ({first}, {second}) asked for")
        hashes = _hash_list(document)
        verify_consistency(first, second, list(hashes), first_root, second_root)
        return hashes

    async def consistency(self, first: int, second: int | None = None) -> ConsistencyProof:
        """A verified consistency proof between two believed roots (second: default the latest checkpoint)."""
        if second is None:
            second = (await self.checkpoint()).size
        if first < 1 or first > second:
            raise InvalidInput(f"need 1 <= first <= second, not first={first}, second={second}", field="first")
        second_root = await self.root_at(second)
        first_root = await self.root_at(first)
        hashes = await self._check_consistency(first, second, first_root, second_root)
        return ConsistencyProof(first, second, hashes, first_root, second_root)

    async def inclusion_proof(
        self, index: int | None = None, tree_size: int | None = None, *, leaf_hash: bytes | None = None
    ) -> InclusionProof:
        """A verified inclusion proof of entry `index` (or of the entry with `leaf_hash`) in the tree of `tree_size`.

        With only an index, the entry is fetched and hashed here. tree_size defaults to the latest checkpoint's.
        """
        if tree_size is None:
            tree_size = (await self.checkpoint()).size
        root = await self.root_at(tree_size)
        if index is None:
            if leaf_hash is None:
                raise InvalidInput("give an index or a leaf hash", field="index")
            params = {"leaf_hash": base64.urlsafe_b64encode(leaf_hash).decode().rstrip("="),
                      "tree_size": str(tree_size)}
        else:
            if leaf_hash is None:
                leaf_hash = hash_leaf(await self.entry(index, verify=False))
            params = {"index": str(index), "tree_size": str(tree_size)}
        document = await self._get_json("/api/v1/proof/inclusion", params)
        got_index = _int(document, "index")
        if (index is not None and got_index != index) or _int(document, "tree_size") != tree_size:
            raise _malformed(f"inclusion proof is for ({got_index}, {document.get('tree_size')}), "
                             f"not the ({index}, {tree_size}) asked for")
        hashes = _hash_list(document)
        verify_inclusion(leaf_hash, got_index, tree_size, list(hashes), root)
        return InclusionProof(got_index, tree_size, leaf_hash, hashes, root)

    # -- writes -------------------------------------------------------------------------------------------------
    async def add(self, entry: bytes) -> Receipt:
        """Append one entry; verify the returned checkpoint and the entry's inclusion in it. The POST is sent to
        another server only when nothing reached the first (it carries no idempotency key): an answer lost after
        sending raises AnswerLost, and whether the entry was logged is then the caller's to find out (its leaf hash,
        `inclusion_proof(leaf_hash=...)`), since sending it again could log it twice."""
        try:
            body, _ = await self._request("POST", "/api/v1/entries", data=entry, idempotent=False,
                                          headers={"Content-Type": "application/octet-stream"})
        except AnswerLost as exc:
            leaf = base64.b64encode(hash_leaf(entry)).decode()
            raise AnswerLost(f"{exc}; whether the entry was logged, its leaf hash {leaf} tells "
                             f"(`auditlog proof --leaf-hash {leaf}`)", exc.url) from None
        document = self._parse_json(body, "POST /api/v1/entries")
        return (await self._receipts(document, [entry], [document]))[0]

    async def add_many(self, entries: list[bytes]) -> list[Receipt]:
        """Append entries with the batch API (chunks of 4,096), verifying each one's inclusion. Each chunk's POST
        fails over as `add`'s does: only when nothing was sent."""
        receipts: list[Receipt] = []
        for start in range(0, len(entries), MAX_BATCH):
            chunk = entries[start:start + MAX_BATCH]
            payload = {"entries": [base64.b64encode(e).decode() for e in chunk]}
            body, _ = await self._request("POST", "/api/v1/entries", json=payload, idempotent=False)
            document = self._parse_json(body, "POST /api/v1/entries")
            items = document.get("entries")
            if not isinstance(items, list) or len(items) != len(chunk) or not all(isinstance(i, dict) for i in items):
                raise _malformed(f"the batch answer does not hold {len(chunk)} receipts")
            receipts += await self._receipts(document, chunk, items)
        return receipts

    @staticmethod
    def _parse_json(body: bytes, what: str) -> dict:
        try:
            document = json.loads(body)
        except ValueError:
            raise _malformed(f"{what} did not answer JSON") from None
        if not isinstance(document, dict):
            raise _malformed(f"{what} did not answer a JSON object")
        return document

    async def _receipts(self, document: dict, entries: list[bytes], items: list[dict]) -> list[Receipt]:
        note = document.get("checkpoint")
        if not isinstance(note, str):
            raise _malformed("no checkpoint in the answer")
        note_bytes = note.encode()
        checkpoint = self.believe(note_bytes)
        if _int(document, "tree_size") != checkpoint.size:
            raise _malformed(f"tree_size {document.get('tree_size')} is not the checkpoint's size {checkpoint.size}")
        limit = asyncio.Semaphore(PROOF_CONCURRENCY)

        async def receipt(position: int, entry: bytes, item: dict) -> Receipt:
            leaf_hash = hash_leaf(entry)
            if _b64_hash(item.get("leaf_hash"), f"entries[{position}].leaf_hash") != leaf_hash:
                raise ProofError(f"the server's leaf hash for entry {position} is not the hash of what was sent")
            index = _int(item, "index")
            if index >= checkpoint.size:
                raise ProofError(f"index {index} is outside the checkpoint of size {checkpoint.size}")
            async with limit:
                proof = await self.inclusion_proof(index, checkpoint.size, leaf_hash=leaf_hash)
            return Receipt(index, leaf_hash, checkpoint, note_bytes, proof.hashes)

        return list(await asyncio.gather(*(
            receipt(position, entry, item) for position, (entry, item) in enumerate(zip(entries, items))
        )))

    # -- reads --------------------------------------------------------------------------------------------------
    async def entry(self, index: int, *, verify: bool = True) -> bytes:
        """The bytes of entry `index`; with verify, proven included in the latest checkpoint first."""
        data, _ = await self._request("GET", f"/api/v1/entries/{int(index)}",
                                      headers={"Accept": "application/octet-stream"})
        if verify:
            await self.inclusion_proof(index, leaf_hash=hash_leaf(data))
        return data

    async def events(self, filters: dict[str, str] | None = None, *, cursor: str | None = None,
                     limit: int | None = None) -> EventPage:
        """One page of GET /api/v1/events with `filters` (the API's names: tenant, run_id, ..., case_id,
        context.<name>, since, until), each event checked before it is returned, as the producer SDK checks its
        receipts: the leaf hash of the listed entry bytes, computed here, proven included in a signed checkpoint;
        the listed envelope the one those bytes hold; the event inside the filters; indices ascending. Pass
        `next_cursor` back as `cursor` for the next page. Any failure raises VerificationError naming the event."""

        filters = dict(filters or {})
        for name in filters:
            if name not in EVENT_FILTERS and not name.startswith("context."):
                raise InvalidInput(f"{name!r} is not a filter of GET /api/v1/events", field=name)
        params = {**filters, **({"cursor": cursor} if cursor is not None else {}),
                  **({"limit": str(limit)} if limit is not None else {})}
        document = await self._get_json("/api/v1/events", params)
        items, next_cursor = document.get("events"), document.get("next_cursor")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise _malformed("the events answer holds no list of events")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise _malformed("next_cursor is not a string")
        if not items and next_cursor is not None and not document.get("pruned"):
            # (a page of pruned events only lists them apart, under "pruned", and may be followed by another)
            raise _malformed("an empty page of events names a next page")
        if limit is not None and len(items) > limit:
            raise _malformed(f"{len(items)} events in a page of at most {limit}")
        listed: list[tuple[int, bytes, str]] = []
        for item in items:
            index = _int(item, "index")
            event = item.get("event")
            name = f"event {event.get('event_id')!r} at index {index}" if isinstance(event, dict) else \
                f"the event at index {index}"
            if listed and index <= listed[-1][0]:
                raise _malformed(f"{name} is listed after index {listed[-1][0]}: indices must ascend")
            try:
                entry = base64.b64decode(item.get("entry") or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise _malformed(f"{name}: entry is not base64") from None
            listed.append((index, entry, name))
        if listed and (self._latest is None or self._latest.size <= listed[-1][0]):
            await self.checkpoint()
        checkpoint = self._latest
        if listed and checkpoint.size <= listed[-1][0]:
            raise ProofError(f"{listed[-1][2]} is beyond the log's signed checkpoint of size {checkpoint.size}")
        limiter = asyncio.Semaphore(PROOF_CONCURRENCY)

        async def check(item: dict, index: int, entry: bytes, name: str) -> VerifiedEvent:
            leaf_hash = hash_leaf(entry)
            async with limiter:
                try:
                    await self.inclusion_proof(index, checkpoint.size, leaf_hash=leaf_hash)
                except VerificationError as exc:
                    raise ProofError(f"{name}: its entry's inclusion in the log's signed checkpoint of size "
                                     f"{checkpoint.size} does not verify: {exc}") from None
            envelope = _envelope_shown(item, entry, name, "the log listed")
            outside = event_mismatch(envelope, filters)
            if outside is not None:
                raise VerificationError(f"{name}: the log listed an event outside the filter {outside}")
            return VerifiedEvent(index, entry, leaf_hash, checkpoint.size, envelope)

        checked = await asyncio.gather(*(check(item, *row) for item, row in zip(items, listed)),
                                       return_exceptions=True)
        for outcome in checked:  # the first failure in log order, whichever finished first
            if isinstance(outcome, BaseException):
                raise outcome
        return EventPage(list(checked), next_cursor, checkpoint)

    async def tile(self, tile_id: TileID) -> bytes:
        """The raw bytes of a hash tile or entry bundle. Unauthenticated by itself: callers check it against a root.

        A partial tile the log answers 404 for is read from the full tile: tlog-tiles lets a log delete a partial
        tile once the full one exists (a static copy, `serve --publish-dir`, does), and a full tile's first W hashes
        (a full bundle's first W entries) are the partial one's. The original 404 is raised when that fails too."""
        try:
            data, _ = await self._request("GET", "/" + tile_id.path())
            return data
        except NotFound:
            if tile_id.level is None:
                await self._raise_if_published_pruned(tile_id)
            if not tile_id.is_partial:
                raise
            try:
                full, _ = await self._request("GET", "/" + TileID(tile_id.level, tile_id.index).path())
            except NotFound:
                pass
            else:
                return _partial_of(tile_id, full)
            raise

    async def _raise_if_published_pruned(self, tile_id: TileID) -> None:
        """A static copy (`serve --publish-dir`) writes, instead of a bundle holding pruned entries, the 410 the log
        answers for it as `<bundle>.pruned.json` (api/server/publishing.py): raised as that EntryPruned when there."""
        try:
            body, _ = await self._request("GET", "/" + tile_id.path() + ".pruned.json")
            problem = json.loads(body)
        except (LogError, ValueError):
            return
        if isinstance(problem, dict) and str(problem.get("type", "")).removeprefix(PROBLEM_PREFIX) == "entry-pruned":
            raise _pruned_problem(problem, f"GET /{tile_id.path()}: {problem.get('detail', '')}")

    async def deletion(self, index: int) -> dict:
        """GET /api/v1/deletions/{index}: the deletion list of a retention run (or erasure) entry, as the server
        says it (unverified: check its items against the hash the entry commits to)."""
        return await self._get_json(f"/api/v1/deletions/{int(index)}")

    async def log_info(self) -> dict:
        """GET /api/v1/log as the server says it (unverified; use checkpoint() for anything that matters)."""
        return await self._get_json("/api/v1/log")

    async def readiness(self) -> dict:
        """GET /readyz as the server says it, ready (200) or not (503 with its `reason`): whether the log has
        witnesses (`witness`) and a TSA (`timestamp`), and how far each lags (api/server/readiness.py)."""
        body, content_type = await self._request("GET", "/readyz", answers=(503,))
        try:
            document = json.loads(body) if content_type == "application/json" else None
        except ValueError:
            document = None
        if not isinstance(document, dict) or "status" not in document:
            raise Unavailable(f"GET {self.base_url}/readyz did not answer a readiness report")
        return document

    async def run_timeline(self, run_id: str, tenant: str | None = None, *, proofs: bool = True) -> dict:
        """GET /api/v1/runs/<run>/timeline as the server says it (the audit personality; unverified)."""
        params = {"proofs": "true" if proofs else "false", **({"tenant": tenant} if tenant else {})}
        return await self._get_json(f"/api/v1/runs/{quote(run_id, safe='')}/timeline", params)

    async def verified_timeline(self, run_id: str, tenant: str | None = None) -> dict:
        """GET /api/v1/runs/<run>/timeline, checked before it is returned: its checkpoint signed by the log key (and
        believed: no second root for its size), each event's entry bytes hashed here and proven included in that
        checkpoint by the proof the timeline carries, the event shown the one those bytes hold, and of this run
        (and tenant). Any failure raises VerificationError naming the event."""

        timeline = await self.run_timeline(run_id, tenant)
        note = timeline.get("checkpoint")
        if not isinstance(note, str):
            raise _malformed("the timeline holds no checkpoint")
        checkpoint = self.believe(note.encode())
        if _int(timeline, "tree_size") != checkpoint.size:
            raise _malformed(f"the timeline's tree_size {timeline.get('tree_size')} is not its checkpoint's size "
                             f"{checkpoint.size}")
        items = timeline.get("events")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise _malformed("the timeline holds no list of events")
        for item in items:
            index = _int(item, "index")
            event = item.get("event")
            name = f"event {event.get('event_id')!r} at index {index}" if isinstance(event, dict) else \
                f"the event at index {index}"
            try:
                entry = base64.b64decode(item.get("entry") or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise _malformed(f"{name}: entry is not base64") from None
            proof = item.get("inclusion_proof")
            if not isinstance(proof, list):
                raise _malformed(f"{name}: no inclusion proof")
            hashes = [_b64_hash(h, f"{name}: inclusion_proof[{i}]") for i, h in enumerate(proof)]
            try:
                verify_inclusion(hash_leaf(entry), index, checkpoint.size, hashes, checkpoint.root_hash)
            except LogError as exc:
                raise ProofError(f"{name}: its inclusion in the checkpoint of size {checkpoint.size} does not "
                                 f"verify: {exc}") from None
            envelope = _envelope_shown(item, entry, name, "the timeline showed")
            outside = event_mismatch(envelope, {"run_id": run_id, **({"tenant": tenant} if tenant else {})})
            if outside is not None:
                raise VerificationError(f"{name}: the timeline of run {run_id!r} holds an event outside it "
                                        f"({outside})")
        return timeline

    async def run_evidence(self, run_id: str, tenant: str | None = None) -> dict:
        """GET /api/v1/runs/<run>/evidence: the run's evidence bundle as served, unverified (verify it offline with
        api.client.evidence.verify_run_bundle)."""
        params = {"tenant": tenant} if tenant else None
        return await self._get_json(f"/api/v1/runs/{quote(run_id, safe='')}/evidence", params)

    async def listed_events(self, filters: dict[str, str], *, cursor: str | None = None,
                            limit: int | None = None) -> dict:
        """One page of GET /api/v1/events as the server says it, `{"events", "next_cursor"}`, unverified: for
        choosing what to fetch and verify (an audit drill picks runs from it), where `events()` would prove every
        event's inclusion first."""
        params = {**filters, **({"cursor": cursor} if cursor is not None else {}),
                  **({"limit": str(limit)} if limit is not None else {})}
        return await self._get_json("/api/v1/events", params)

    async def blob(self, sha256: str) -> bytes:
        """GET /api/v1/blobs/<sha256>: the bytes as served (the caller hashes them: nothing here checks them)."""
        data, _ = await self._request("GET", f"/api/v1/blobs/{quote(sha256, safe='')}")
        return data

    async def retention_policies(self, tenant: str | None = None) -> list[dict]:
        """GET /api/v1/retention/policies (an admin's route): the policies in force, of `tenant` or all, as the
        server says them (each is the entry at its index)."""
        document = await self._get_json("/api/v1/retention/policies", {"tenant": tenant} if tenant else None)
        policies = document.get("policies")
        if not isinstance(policies, list) or not all(isinstance(p, dict) for p in policies):
            raise _malformed("the retention policies answer holds no list of policies")
        return policies

    # -- audit drills (api/server/drills_routes.py) ----------------------------------------------------------------
    async def record_drill(self, drill: dict) -> dict:
        """POST /api/v1/drills: log an audit drill's result (log/audit/drills.py: tenant, seed, scenario, runs,
        checks); `{"index", "drill"}`, the record as logged (the server sets at, by and the summary). Needs an
        auditor credential covering the tenant, or an admin's. Not resent once sent: each is an entry of its own."""
        body, _ = await self._request("POST", "/api/v1/drills", idempotent=False, json=drill)
        document = self._parse_json(body, "POST /api/v1/drills")
        if not isinstance(document.get("index"), int) or not isinstance(document.get("drill"), dict):
            raise _malformed("the drill's answer does not hold its entry's index and record")
        return document

    async def drills(self, tenant: str | None = None, *, limit: int | None = None, after: int | None = None) -> dict:
        """GET /api/v1/drills: `{"drills": [{"index", ...record}], "next_cursor"}`, newest first, as the server says
        it (each record is the entry at its index: `entry(index)` proves it); `after`: a page's next_cursor."""
        params = {name: str(value) for name, value in (("tenant", tenant), ("limit", limit), ("after", after))
                  if value is not None}
        document = await self._get_json("/api/v1/drills", params)
        if not isinstance(document.get("drills"), list):
            raise _malformed("the drills answer holds no list of drills")
        return document


    # -- the token vault (api/server/vault_routes.py) --------------------------------------------------------------
    async def tokenize(self, tenant: str, subject: str, values: Sequence[str]) -> dict:
        """Tokens for `values` of the data subject `subject` (its reference, e.g. a customer id) in `tenant`, in
        order: `{"tenant", "subject" (the subject's token), "tokens", "created"}`. Needs a writer (or admin)
        credential covering the tenant. Sent in requests of at most 10,000 values; a resend after a lost answer is
        harmless (the same values get the same tokens, mappings already stored are kept)."""
        from log import defaults

        values = list(values)
        if not values:
            raise InvalidInput("give at least one value to tokenise", field="values")
        out = {"tenant": tenant, "subject": None, "tokens": [], "created": 0}
        for start in range(0, len(values), defaults.VAULT_MAX_VALUES):
            chunk = values[start:start + defaults.VAULT_MAX_VALUES]
            body, _ = await self._request("POST", "/api/v1/vault/tokenize",
                                          json={"tenant": tenant, "subject": subject, "values": chunk})
            document = self._parse_json(body, "POST /api/v1/vault/tokenize")
            tokens = document.get("tokens")
            if not isinstance(tokens, list) or len(tokens) != len(chunk) or not all(
                    isinstance(t, str) and t.startswith("vt.") for t in tokens):
                raise _malformed(f"the tokenise answer does not hold {len(chunk)} tokens")
            out["subject"] = document.get("subject")
            out["tokens"] += tokens
            out["created"] += int(document.get("created", 0))
        return out

    async def detokenize(self, tenant: str, tokens: Sequence[str], purpose: str) -> dict:
        """The values of vault `tokens` in `tenant`, for `purpose`: `{"tenant", "values": [{"token", "status"
        (found, unknown, erased), "value"?}], "index"}`, `index` being the log entry that records this request
        (committed before the values were read). Needs a vault-reader credential covering the tenant. Not resent
        to another server once sent: each request is a log entry of its own."""
        body, _ = await self._request("POST", "/api/v1/vault/detokenize", idempotent=False,
                                      json={"tenant": tenant, "tokens": list(tokens), "purpose": purpose})
        document = self._parse_json(body, "POST /api/v1/vault/detokenize")
        values = document.get("values")
        if not isinstance(values, list) or len(values) != len(tokens) or not isinstance(document.get("index"), int):
            raise _malformed(f"the detokenise answer does not hold {len(tokens)} values and its log entry")
        return document


class SyncLogClient:
    """A blocking wrapper around LogClient for scripts: each call runs on a private event loop."""

    def __init__(self, server: str | Sequence[str] | ServerList, verifier_key: str | Verifier, **kwargs):
        self._loop = asyncio.new_event_loop()
        self._client = LogClient(server, verifier_key, **kwargs)

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def checkpoint(self) -> Checkpoint:
        return self._run(self._client.checkpoint())

    def add(self, entry: bytes) -> Receipt:
        return self._run(self._client.add(entry))

    def add_many(self, entries: list[bytes]) -> list[Receipt]:
        return self._run(self._client.add_many(entries))

    def inclusion_proof(self, index=None, tree_size=None, *, leaf_hash=None) -> InclusionProof:
        return self._run(self._client.inclusion_proof(index, tree_size, leaf_hash=leaf_hash))

    def consistency(self, first: int, second: int | None = None) -> ConsistencyProof:
        return self._run(self._client.consistency(first, second))

    def entry(self, index: int, *, verify: bool = True) -> bytes:
        return self._run(self._client.entry(index, verify=verify))

    def tile(self, tile_id: TileID) -> bytes:
        return self._run(self._client.tile(tile_id))

    def tokenize(self, tenant: str, subject: str, values: Sequence[str]) -> dict:
        return self._run(self._client.tokenize(tenant, subject, values))

    def detokenize(self, tenant: str, tokens: Sequence[str], purpose: str) -> dict:
        return self._run(self._client.detokenize(tenant, tokens, purpose))

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.close()

    def __enter__(self) -> "SyncLogClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "EVENT_FILTERS", "AnswerLost", "ConsistencyProof", "EventPage", "InclusionProof", "LogClient", "Receipt",
    "ServerList", "SyncLogClient", "VerifiedEvent", "check_url", "event_mismatch", "tile_width_in_tree",
]
