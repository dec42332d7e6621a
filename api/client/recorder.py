"""The producer SDK: build auditlog.event/v1 events, sign them, deliver them exactly once, and fail closed.

    recorder = Recorder("http://127.0.0.1:8080", producer="kyc-agent", signing_key=seed, log_key=vkey,
                        tenant="acme", actor={"type": "agent", "id": "kyc-agent"})
    with recorder.action("run-42", context={"case_id": "case-9"}) as action:   # or: async with
        result = do_the_thing()                    # runs only if the intent event was acknowledged
        action.record("tool_call", output=recorder.put_blob(result_bytes))

Delivery: an envelope is signed once and re-sent unchanged (same event_id, same bytes) on connection errors,
timeouts, 429 and 5xx, with exponential back-off; the log's (producer, event_id) idempotency makes that
at-least-once delivery land exactly once. 4xx refusals are final and raise `RecorderError` with the problem.

Acknowledgement: an event counts as recorded only when the answer carries a checkpoint whose signature verifies
with the log key given to the Recorder, the leaf hash of the exact entry bytes we sent, and an inclusion proof of
that leaf in that checkpoint. Anything less raises `RecorderError`.

Fail closed: `action()` records an intent event on entry and lets the block run only once that is acknowledged;
on exit it records an outcome event (success, or failure with the exception's type and message) whose parent is
the intent. If the outcome of a successful action cannot be recorded, `RecorderError` is raised; if the action
itself failed, its exception propagates (with the recording failure attached as a note).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from log.audit.canonical import canonicalize
from log.audit.records import Envelope
from log.audit.registry import key_id_for
from log.audit.schema import SCHEMA_ID, format_timestamp_ms, validate_event
from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import LogError
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RecorderError(Exception):
    """An event was not recorded (refused, undeliverable or unproven). `problem` is the server's problem body."""

    def __init__(self, message: str, problem: dict | None = None):
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Acknowledgement:
    """A verified receipt: `event` is at `index` in the log whose signed checkpoint is `checkpoint`."""

    event: dict
    index: int
    duplicate: bool
    checkpoint: Checkpoint
    checkpoint_note: bytes


def generate_key() -> tuple[bytes, bytes, str]:
    """A new producer key: (32-byte seed to keep secret, 32-byte public key to register, key id)."""
    key = SigningKey.generate()
    public = bytes(key.verify_key)
    return bytes(key), public, key_id_for(public)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Recorder:
    """Signs and submits events for one producer. Thread-safe for the sync API; one event loop for async."""

    def __init__(self, url: str, *, producer: str, signing_key: bytes, log_key: str, tenant: str, actor: dict,
                 on_behalf_of: dict | None = None, retries: int = 6, backoff: float = 0.1, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.producer = producer
        self._key = SigningKey(signing_key)
        self.key_id = key_id_for(bytes(self._key.verify_key))
        self._log_verifier = parse_verifier_key(log_key)
        self.tenant = tenant
        self.actor = actor
        self.on_behalf_of = on_behalf_of
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._session = None

    # -- building and signing ----------------------------------------------------------------------------------
    def event(self, event_type: str, *, run_id: str, trace_id: str | None = None,
              parent_event_id: str | None = None, event_id: str | None = None, timestamp: int | str | None = None,
              **fields: Any) -> dict:
        """A complete auditlog.event/v1 event (validated): ids default to new UUIDs, the trace to the run, the
        timestamp to now. `timestamp` is when the event happened, as Unix milliseconds or an RFC 3339 string
        (`2026-11-23T14:05:09.123Z`): an event rebuilt later from a record of the act keeps the act's time."""
        if timestamp is None:
            timestamp = _now_ms()
        event = {"schema": SCHEMA_ID, "event_id": event_id or str(uuid.uuid4()), "trace_id": trace_id or run_id,
                 "run_id": run_id,
                 "timestamp": format_timestamp_ms(timestamp) if isinstance(timestamp, int) else timestamp,
                 "tenant": self.tenant, "actor": self.actor, "event_type": event_type}
        if parent_event_id is not None:
            event["parent_event_id"] = parent_event_id
        if self.on_behalf_of is not None:
            event["on_behalf_of"] = self.on_behalf_of
        event.update({k: v for k, v in fields.items() if v is not None})
        return validate_event(event)

    def sign(self, event: dict) -> Envelope:
        canonical = canonicalize(event)
        return Envelope(self.producer, self.key_id, self._key.sign(canonical).signature, event, canonical)

    # -- acknowledgement ---------------------------------------------------------------------------------------
    def _acknowledge(self, envelope: Envelope, status: int, body: bytes) -> Acknowledgement:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            problem = answer if isinstance(answer, dict) else None
            detail = (problem or {}).get("detail") or body[:200].decode(errors="replace")
            raise RecorderError(f"event {envelope.event['event_id']} refused ({status}): {detail}", problem)
        try:
            note = answer["checkpoint"].encode()
            checkpoint, _ = open_checkpoint(note, self._log_verifier)
            leaf_hash = hash_leaf(envelope.entry_bytes())
            if base64.b64decode(answer["leaf_hash"]) != leaf_hash:
                raise RecorderError("the log acknowledged a different entry than the one sent")
            proof = [base64.b64decode(h) for h in answer["inclusion_proof"]]
            verify_inclusion(leaf_hash, answer["index"], checkpoint.size, proof, checkpoint.root_hash)
        except (KeyError, TypeError, ValueError, LogError) as exc:
            raise RecorderError(f"the acknowledgement of event {envelope.event['event_id']} does not verify: "
                                f"{exc}") from exc
        return Acknowledgement(envelope.event, answer["index"], bool(answer.get("duplicate")), checkpoint, note)

    def _payload(self, envelope: Envelope) -> bytes:
        return json.dumps(envelope.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    # -- sync --------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None, content_type: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _deliver(self, method: str, path: str, body: bytes | None, content_type: str) -> tuple[int, bytes]:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, answer = self._request(method, path, body, content_type)
            except OSError as exc:  # connection refused/reset, timeout
                last = exc
                continue
            if status not in RETRY_STATUSES:
                return status, answer
            last = RecorderError(f"{method} {path}: HTTP {status}")
        raise RecorderError(f"{method} {path} failed after {self.retries + 1} attempts: {last}")

    def submit(self, envelope: Envelope) -> Acknowledgement:
        status, body = self._deliver("POST", "/api/v1/events?proofs=true", self._payload(envelope),
                                     "application/json")
        return self._acknowledge(envelope, status, body)

    def record(self, event_type: str, **fields: Any) -> Acknowledgement:
        return self.submit(self.sign(self.event(event_type, **fields)))

    def put_blob(self, data: bytes, media_type: str | None = None) -> dict:
        """Store a payload in the log's blob store; returns the content reference for an event's input/output."""
        digest = hashlib.sha256(data).hexdigest()
        status, body = self._deliver("PUT", f"/api/v1/blobs/{digest}", data, "application/octet-stream")
        if status not in (200, 201):
            raise RecorderError(f"blob {digest} refused ({status}): {body[:200]!r}")
        ref = {"sha256": digest, "size": len(data)}
        if media_type:
            ref["media_type"] = media_type
        return ref

    # -- async -------------------------------------------------------------------------------------------------
    async def _adeliver(self, envelope: Envelope) -> tuple[int, bytes]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        payload = self._payload(envelope)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with self._session.post(self.url + "/api/v1/events?proofs=true", data=payload,
                                              headers={"Content-Type": "application/json"}) as response:
                    status, body = response.status, await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = exc
                continue
            if status not in RETRY_STATUSES:
                return status, body
            last = RecorderError(f"HTTP {status}")
        raise RecorderError(f"event {envelope.event['event_id']} undeliverable after {self.retries + 1} "
                            f"attempts: {last}")

    async def asubmit(self, envelope: Envelope) -> Acknowledgement:
        return self._acknowledge(envelope, *await self._adeliver(envelope))

    async def arecord(self, event_type: str, **fields: Any) -> Acknowledgement:
        return await self.asubmit(self.sign(self.event(event_type, **fields)))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- fail-closed actions -----------------------------------------------------------------------------------
    def action(self, run_id: str, *, intent_type: str = "intent", trace_id: str | None = None,
               parent_event_id: str | None = None, **fields: Any) -> Action:
        """A block guarded by an acknowledged intent event; use with `with` or `async with`."""
        return Action(self, run_id, intent_type, trace_id, parent_event_id, fields)


class Action:
    """See `Recorder.action`. `intent` is the acknowledged intent; `record()` logs a child event."""

    def __init__(self, recorder: Recorder, run_id: str, intent_type: str, trace_id: str | None,
                 parent_event_id: str | None, fields: dict):
        self._recorder = recorder
        self.run_id = run_id
        self.trace_id = trace_id or run_id
        self._intent_event = recorder.event(intent_type, run_id=run_id, trace_id=self.trace_id,
                                            parent_event_id=parent_event_id, **fields)
        self.intent: Acknowledgement | None = None
        self.outcome: Acknowledgement | None = None
        self.output: dict | None = None  # a content reference for the outcome event, if the block sets one

    @property
    def event_id(self) -> str:
        return self._intent_event["event_id"]

    def _child(self, event_type: str, fields: dict) -> dict:
        return self._recorder.event(event_type, run_id=self.run_id, trace_id=self.trace_id,
                                    parent_event_id=self.event_id, **fields)

    def _outcome(self, exc: BaseException | None) -> dict:
        fields: dict[str, Any] = {"context": self._intent_event.get("context"), "output": self.output}
        if exc is None:
            fields["outcome"] = {"status": "success"}
        else:
            fields["outcome"] = {"status": "failure"}
            fields["error"] = {"code": type(exc).__name__[:128], "message": str(exc)[:1024]}
        return self._child("outcome", fields)

    def record(self, event_type: str, **fields: Any) -> Acknowledgement:
        return self._recorder.submit(self._recorder.sign(self._child(event_type, fields)))

    async def arecord(self, event_type: str, **fields: Any) -> Acknowledgement:
        return await self._recorder.asubmit(self._recorder.sign(self._child(event_type, fields)))

    def __enter__(self) -> Action:
        self.intent = self._recorder.submit(self._recorder.sign(self._intent_event))
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            self.outcome = self._recorder.submit(self._recorder.sign(self._outcome(exc)))
        except RecorderError as failure:
            if exc is None:
                raise
            exc.add_note(f"auditlog: the failure outcome could not be recorded: {failure}")
        return False

    async def __aenter__(self) -> Action:
        self.intent = await self._recorder.asubmit(self._recorder.sign(self._intent_event))
        return self

    async def __aexit__(self, kind, exc, tb) -> bool:
        try:
            self.outcome = await self._recorder.asubmit(self._recorder.sign(self._outcome(exc)))
        except RecorderError as failure:
            if exc is None:
                raise
            exc.add_note(f"auditlog: the failure outcome could not be recorded: {failure}")
        return False
