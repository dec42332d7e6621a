"""The producer SDK: build auditlog.event/v1 events, sign them, deliver them exactly once, and fail closed.

    recorder = Recorder("http://127.0.0.1:8080", producer="kyc-agent", signing_key=seed, log_key=vkey,
                        tenant="acme", actor={"type": "agent", "id": "kyc-agent"})
    with recorder.action("run-42", context={"case_id": "case-9"}) as action:   # or: async with
        result = do_the_thing()                    # runs only if the intent event was acknowledged
        action.record("tool_call", output=recorder.put_blob(result_bytes))

Delivery: an envelope is signed once and re-sent unchanged (same event_id, same bytes) on connection errors,
timeouts, 429 and 5xx, with exponential back-off; the log's (producer, event_id) idempotency makes that
at-least-once delivery land exactly once. Given several servers of one log (`Recorder(["http://a:8080",
"http://b:8080"], ...)`, or one string with commas, as AUDITLOG_SERVER may hold), a send that fails moves on to
the next server (api/client/servers.py), and the servers are asked in turn until each has had `retries + 1`
tries; an event POST and a blob PUT are idempotent, so a resend elsewhere, even after an answer was lost, cannot
log anything twice. 4xx refusals are not retried and raise `EventRefused` with the problem
(for a 409 event-conflict, `problem["index"]` is where the event already logged under that id is).

The outbox (`Recorder(..., outbox="/var/spool/agent")`, api/client/outbox.py): every envelope is written to a
SQLite spool, fsynced, before it is sent, as the exact bytes that will be POSTed, and removed only once its receipt
verifies. A producer that was killed between send and receipt re-sends its spooled envelopes byte for byte with
`flush()` (or `aflush()`), so they land once, at their original index (`duplicate=True`). A refusal that is final
for the envelope itself (invalid, a bad signature, a revoked or expired key, a foreign tenant, an event_id already
used for other content: resending the same bytes can never succeed) moves it to `outbox.refused()` with the
problem; a refusal that configuration can cure (an unknown producer or key, a wrong URL) leaves it spooled.

Order: a new submission first delivers the older spooled envelopes no one is sending (a restarted producer's
backlog, or sends that failed earlier), oldest first, and is itself sent only if each of them landed or was refused
for good. So a producer's events land in the order it made them, an outcome never lands before an intent that is
still spooled, and a backlog is never overtaken by new events that would make it look out of place; the cost is
that a backlog delays the next new event, which could not have been sent anyway while the log was unreachable.

Acknowledgement: an event counts as recorded only when the answer carries a checkpoint whose signature verifies
with the log key given to the Recorder, the leaf hash of the exact entry bytes we sent, and an inclusion proof of
that leaf in that checkpoint. Anything less raises `RecorderError`.

Fail closed: `action()` records an intent event on entry and lets the block run only once that is acknowledged;
on exit it records an outcome event (success, or failure with the exception's type and message) whose parent is
the intent. If the outcome of a successful action cannot be recorded, `RecorderError` is raised; if the action
itself failed, its exception propagates (with the recording failure attached as a note). With an outbox, an intent
that was not acknowledged stays spooled and lands with a later flush: the log then shows an attempt whose block
never ran (no outcome follows it), as it would have if the acknowledgement alone had been lost.

Errors: `RecorderError` is the base; `LogUnreachable` (also `log.errors.Unavailable`) when no answer came,
`ReceiptInvalid` (also `VerificationError`) when the answer does not prove the event was logged, `EventRefused`
(also `InvalidInput`) when the log refused it; each carries `problem`, the server's problem body if any.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from api.client.outbox import Outbox
from api.client.servers import Answer, ServerList, ServersUnavailable, client_timeout
from api.client.tls import client_context
from log.audit.canonical import canonicalize, parse_json
from log.audit.records import Envelope, parse_envelope
from log.audit.registry import key_id_for
from log.audit.schema import SCHEMA_ID, format_timestamp_ms, validate_event
from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import InvalidInput, LogError, Unavailable, VerificationError
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion

PROBLEM_TYPE = "urn:auditlog:problem:"
EVENTS_PATH = "/api/v1/events?proofs=true"
# Problem codes of 4xx refusals that are final for the envelope itself: the same bytes can never be accepted.
# Left out on purpose: unknown-producer and unknown-key (registering them cures it), and answers without an auditlog
# problem type (a wrong URL, a proxy), which say nothing about the envelope.
FINAL_REFUSALS = frozenset({
    "bad-request", "invalid-input", "invalid-event", "payload-too-large", "event-conflict", "bad-signature",
    "key-revoked", "key-expired", "tenant-forbidden",
})

logger = logging.getLogger(__name__)


class RecorderError(Exception):
    """An event was not recorded (refused, undeliverable or unproven). `problem` is the server's problem body.

    From `flush()`: `failures` are the errors of each envelope not delivered, `acknowledgements` what did land."""

    def __init__(self, message: str, problem: dict | None = None):
        super().__init__(message)
        self.problem = problem
        self.failures: list[RecorderError] = []
        self.acknowledgements: list[Acknowledgement] = []


class LogUnreachable(RecorderError, Unavailable):
    """No answer to act on: connection errors, timeouts, 429 or 5xx after every retry. Nothing was acknowledged."""


class ReceiptInvalid(RecorderError, VerificationError):
    """The log answered, but its acknowledgement does not prove that the event sent was logged."""


class EventRefused(RecorderError, InvalidInput):
    """The log refused the envelope (HTTP `status`). `final`: it can never be accepted (see FINAL_REFUSALS)."""

    def __init__(self, message: str, problem: dict | None = None, status: int = 0, final: bool = False):
        super().__init__(message, problem)
        self.status = status
        self.final = final

    @property
    def index(self) -> int | None:
        """For an event-conflict (409): the index of the event already logged under this event_id."""
        return (self.problem or {}).get("index")


class VaultRefused(RecorderError, InvalidInput):
    """The log refused to tokenise (HTTP `status`: a bad value, a tenant the credential does not cover, an erased
    data subject (410)); `problem` says why."""

    def __init__(self, message: str, problem: dict | None = None, status: int = 0):
        super().__init__(message, problem)
        self.status = status


def _problem(body: bytes) -> dict | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _final(status: int, problem: dict | None) -> bool:
    kind = (problem or {}).get("type")
    return (400 <= status < 500 and isinstance(kind, str) and kind.startswith(PROBLEM_TYPE)
            and kind[len(PROBLEM_TYPE):] in FINAL_REFUSALS)


def _severity(error: RecorderError) -> int:
    """Which failure names a batch of them: evidence of misbehaviour first, then the log being unreachable."""
    return 0 if isinstance(error, ReceiptInvalid) else 1 if isinstance(error, LogUnreachable) else 2


def _like(error: RecorderError, message: str) -> RecorderError:
    """An error of `error`'s class and problem with another message."""
    if isinstance(error, EventRefused):
        return EventRefused(message, error.problem, error.status, error.final)
    return type(error)(message, error.problem)


def _spooled_envelope(payload: bytes) -> Envelope:
    """The envelope of a spooled request body, as the log reads it (so its entry bytes are the ones it logs)."""
    parsed = parse_json(payload)
    return parse_envelope(parsed.value, exact=parsed.exact, validate=False)


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
    """Signs and submits events for one producer. Thread-safe for the sync API; one event loop for async.

    `outbox`: a directory (or an `Outbox`) for the durable spool; without one, nothing is written to disk and an
    event not acknowledged is the caller's to resend."""

    def __init__(self, server: str | Sequence[str], *, producer: str, signing_key: bytes, log_key: str, tenant: str, actor: dict,
                 on_behalf_of: dict | None = None, retries: int = 6, backoff: float = 0.1, timeout: float = 10.0,
                 outbox: str | Path | Outbox | None = None, token: str | None = None,
                 ca_cert: str | Path | None = None):
        # `server`: the log's URL, or several (a sequence, or one string with commas): tried in turn, each up to
        # retries + 1 times, with a back-off of `backoff` seconds doubling per failure (api/client/servers.py).
        self.servers = ServerList(server, attempts=retries + 1, backoff=backoff)
        # A bearer credential (role writer) for what needs one beyond the event's own signature: blob uploads.
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl = client_context(ca_cert)  # None: the system trust store (api/client/tls.py)
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
        self._owns_outbox = outbox is not None and not isinstance(outbox, Outbox)
        self.outbox: Outbox | None = Outbox(outbox) if self._owns_outbox else outbox
        self._sending: set[int] = set()  # spooled envelopes this process is sending now (by seq)
        self._sending_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server asked first: the one that answered last."""
        return self.servers.current

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
    def _acknowledge(self, envelope: Envelope, answer: Answer) -> Acknowledgement:
        event_id, status, body, server = envelope.event["event_id"], answer.status, answer.body, answer.url
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200:
            problem = answer if isinstance(answer, dict) else None
            detail = (problem or {}).get("detail") or body[:200].decode(errors="replace")
            message = f"event {event_id} refused by {server} ({status}): {detail}"
            if status >= 500:
                raise LogUnreachable(message, problem)
            raise EventRefused(message, problem, status, _final(status, problem))
        try:
            note = answer["checkpoint"].encode()
            checkpoint, _ = open_checkpoint(note, self._log_verifier)
            leaf_hash = hash_leaf(envelope.entry_bytes())
            if base64.b64decode(answer["leaf_hash"]) != leaf_hash:
                raise ValueError("the log acknowledged a different entry than the one sent")
            proof = [base64.b64decode(h) for h in answer["inclusion_proof"]]
            verify_inclusion(leaf_hash, answer["index"], checkpoint.size, proof, checkpoint.root_hash)
        except (KeyError, TypeError, ValueError, AttributeError, LogError) as exc:
            raise ReceiptInvalid(f"the acknowledgement of event {event_id} from {server} does not verify: "
                                 f"{exc}") from exc
        return Acknowledgement(envelope.event, answer["index"], bool(answer.get("duplicate")), checkpoint, note)

    def _payload(self, envelope: Envelope) -> bytes:
        return json.dumps(envelope.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    # -- the outbox: what is spooled, who sends it, what becomes of it ---------------------------------------
    @contextmanager
    def _claim(self, seqs: list[int]) -> Iterator[list[int]]:
        """The seqs among `seqs` that no one in this process is sending, marked as sent by the caller until exit."""
        with self._sending_lock:
            claimed = [seq for seq in seqs if seq not in self._sending]
            self._sending.update(claimed)
        try:
            yield claimed
        finally:
            with self._sending_lock:
                self._sending.difference_update(claimed)

    def _backlog(self, before: int | None) -> list[int]:
        return self.outbox.seqs(self.producer, before) if self.outbox is not None else []

    def _settle(self, seq: int, envelope: Envelope | None, answer: Answer | Exception
                ) -> tuple[Acknowledgement | RecorderError, Callable[[], None]]:
        """What became of spooled envelope `seq` (`answer`: the log's, or why there was none), and
        the outbox change that records it (run on a thread by the async API)."""
        outbox = self.outbox
        assert outbox is not None
        if envelope is None:  # the spooled bytes are not an envelope (written by someone else, or damaged)
            error = EventRefused(f"spooled envelope {seq} cannot be read: {answer}; moved to the outbox's refused "
                                 f"envelopes", None, 0, True)
            return error, lambda: outbox.refuse(seq, 0, None, str(error))
        if isinstance(answer, RecorderError):
            return answer, lambda: outbox.failed(seq, str(answer))
        assert isinstance(answer, Answer)
        try:
            return self._acknowledge(envelope, answer), lambda: outbox.remove(seq)
        except RecorderError as exc:
            error = exc  # (an `except ... as` name is unbound when its block ends; the lambdas run later)
        if isinstance(error, EventRefused) and error.final:
            error.args = (f"{error}; moved to the outbox's refused envelopes",)
            return error, lambda: outbox.refuse(seq, error.status, error.problem, str(error))
        return error, lambda: outbox.failed(seq, str(error))

    def _load(self, seq: int) -> tuple[Envelope | None | Exception, bytes] | None:
        """A spooled envelope and its bytes (the envelope None with the reason when they cannot be read); None when
        it is no longer spooled (delivered meanwhile by another process)."""
        spooled = self.outbox.get(seq)
        if spooled is None:
            return None
        try:
            return _spooled_envelope(spooled.payload), spooled.payload
        except LogError as exc:
            return exc, spooled.payload

    def _untried(self, seqs: list[int]) -> list[RecorderError]:
        """Errors for spooled envelopes left unsent because the log is unreachable."""
        spooled = [self.outbox.get(seq) for seq in seqs]
        return [LogUnreachable(f"event {s.event_id}: not tried, the log being unreachable") for s in spooled if s]

    @staticmethod
    def _failure(failures: list[RecorderError], acks: list[Acknowledgement], tried: int) -> RecorderError:
        """One error for a flush's failures, of the class of the gravest, naming each event not delivered."""
        first = min(failures, key=_severity)
        names = "; ".join(str(f) for f in failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5
                                                           else "")
        error = _like(first, f"{len(failures)} of {tried} spooled events not delivered: {names}")
        error.failures, error.acknowledgements = failures, acks
        return error

    @staticmethod
    def _blocked(new_event: str, older: RecorderError) -> RecorderError:
        error = _like(older, f"event {new_event} stays spooled, not sent, so that it does not overtake an older "
                             f"spooled event: {older}")
        error.failures = [older]
        return error

    # -- sync --------------------------------------------------------------------------------------------------
    def _deliver(self, method: str, path: str, body: bytes | None, content_type: str) -> Answer:
        """An idempotent request (an event POST, a blob PUT) to the servers in turn: the first answer that is not
        "not now" (a connection error, 429, 5xx), or LogUnreachable naming each server and why."""
        try:
            return self.servers.request(method, path, idempotent=True, body=body, timeout=self.timeout,
                                        headers={"Content-Type": content_type, **self._auth}, ssl_context=self._ssl)
        except ServersUnavailable as exc:
            raise LogUnreachable(str(exc)) from exc

    def _send(self, envelope: Envelope, payload: bytes) -> Answer | RecorderError:
        try:
            return self._deliver("POST", EVENTS_PATH, payload, "application/json")
        except LogUnreachable as exc:
            exc.args = (f"event {envelope.event['event_id']}: {exc}",)
            return exc

    def _send_spooled(self, seq: int) -> Acknowledgement | RecorderError | None:
        loaded = self._load(seq)
        if loaded is None:
            return None
        envelope, payload = loaded
        if not isinstance(envelope, Envelope):
            result, record = self._settle(seq, None, envelope)
        else:
            result, record = self._settle(seq, envelope, self._send(envelope, payload))
        record()
        return result

    def _drain(self, before: int | None) -> tuple[list[Acknowledgement], list[RecorderError], int]:
        """Send the spooled envelopes (older than `before`, or all) no one here is sending, oldest first; stop at
        the first the log could not be reached for (the rest would wait as long)."""
        acks: list[Acknowledgement] = []
        failures: list[RecorderError] = []
        with self._claim(self._backlog(before)) as claimed:
            for position, seq in enumerate(claimed):
                result = self._send_spooled(seq)
                if isinstance(result, Acknowledgement):
                    acks.append(result)
                elif isinstance(result, RecorderError):
                    failures.append(result)
                    if isinstance(result, LogUnreachable):
                        if before is None:
                            failures += self._untried(claimed[position + 1:])
                        break
            return acks, failures, len(claimed)

    def flush(self) -> list[Acknowledgement]:
        """Send every spooled envelope of this producer, oldest first, byte for byte as first spooled; returns the
        verified acknowledgements. Raises a `RecorderError` naming each that was not delivered (still spooled, or
        moved to `outbox.refused()`), with `acknowledgements` of those that were. Without an outbox: []."""
        acks, failures, tried = self._drain(None)
        if failures:
            raise self._failure(failures, acks, tried)
        return acks

    def submit(self, envelope: Envelope) -> Acknowledgement:
        payload = self._payload(envelope)
        if self.outbox is None:
            answer = self._send(envelope, payload)
            if isinstance(answer, RecorderError):
                raise answer
            return self._acknowledge(envelope, answer)
        seq = self.outbox.put(envelope.producer, envelope.event["event_id"], payload)
        with self._claim([seq]):
            _, failures, _ = self._drain(seq)
            self._check_backlog(envelope, failures)
            result, record = self._settle(seq, envelope, self._send(envelope, payload))
            record()
        if isinstance(result, RecorderError):
            raise result
        return result

    def _check_backlog(self, envelope: Envelope, failures: list[RecorderError]) -> None:
        for failure in failures:
            if isinstance(failure, EventRefused) and failure.final:
                logger.warning("auditlog outbox: %s", failure)  # kept in outbox.refused(), never retried
            else:
                raise self._blocked(envelope.event["event_id"], failure)

    def record(self, event_type: str, **fields: Any) -> Acknowledgement:
        return self.submit(self.sign(self.event(event_type, **fields)))

    def put_blob(self, data: bytes, media_type: str | None = None) -> dict:
        """Store a payload in the log's blob store; returns the content reference for an event's input/output."""
        digest = hashlib.sha256(data).hexdigest()
        answer = self._deliver("PUT", f"/api/v1/blobs/{digest}", data, "application/octet-stream")
        if answer.status not in (200, 201):
            raise RecorderError(f"blob {digest} refused by {answer.url} ({answer.status}): {answer.body[:200]!r}")
        ref = {"sha256": digest, "size": len(data)}
        if media_type:
            ref["media_type"] = media_type
        return ref

    def tokenize(self, values: str | Sequence[str], *, subject: str) -> str | list[str]:
        """Vault tokens for `values` of the data subject `subject` (its reference: a customer id, an account
        number) in the recorder's tenant: a token for a single string, a list (in order) for a sequence. Record the
        tokens in events, never the values: the same value always gets the same token in this tenant, and only a
        vault-reader with a purpose turns it back, logged. Needs the Recorder's `token` to be a writer's covering the
        tenant. Sent as one request per 10,000 values, resent like a blob PUT (the same values get the same tokens).
        Raises VaultRefused (a 4xx: bad value, foreign tenant, erased subject) or LogUnreachable."""
        from log import defaults

        single = isinstance(values, str)
        items = [values] if single else list(values)
        tokens: list[str] = []
        for start in range(0, len(items), defaults.VAULT_MAX_VALUES):
            chunk = items[start:start + defaults.VAULT_MAX_VALUES]
            body = json.dumps({"tenant": self.tenant, "subject": subject, "values": chunk}).encode()
            answer = self._deliver("POST", "/api/v1/vault/tokenize", body, "application/json")
            problem = _problem(answer.body)
            if answer.status != 200:
                raise VaultRefused(f"tokenising refused by {answer.url} ({answer.status}): "
                                   f"{(problem or {}).get('detail') or answer.body[:200]!r}", problem, answer.status)
            try:
                got = json.loads(answer.body)["tokens"]
            except (ValueError, KeyError, TypeError):
                got = None
            if not isinstance(got, list) or len(got) != len(chunk):
                raise RecorderError(f"the tokenise answer of {answer.url} does not hold {len(chunk)} tokens")
            tokens += got
        return tokens[0] if single else tokens

    async def atokenize(self, values: str | Sequence[str], *, subject: str) -> str | list[str]:
        """`tokenize` for async code (on a thread: the event loop keeps running)."""
        return await asyncio.to_thread(self.tokenize, values, subject=subject)

    def close(self) -> None:
        """Close the outbox the Recorder opened (the async session needs `aclose`)."""
        if self._owns_outbox and self.outbox is not None:
            self.outbox.close()

    # -- async -------------------------------------------------------------------------------------------------
    async def _adeliver(self, envelope: Envelope, payload: bytes) -> Answer | RecorderError:
        """`_send` for the async API: the event POST to the servers in turn, as `_deliver` sends it."""
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(timeout=client_timeout(self.timeout), connector=connector)
        try:
            return await self.servers.arequest(self._session, "POST", EVENTS_PATH, idempotent=True, data=payload,
                                               headers={"Content-Type": "application/json", **self._auth},
                                               timeout=self.timeout)
        except ServersUnavailable as exc:
            return LogUnreachable(f"event {envelope.event['event_id']}: {exc}")

    async def _asend_spooled(self, seq: int) -> Acknowledgement | RecorderError | None:
        loaded = await asyncio.to_thread(self._load, seq)
        if loaded is None:
            return None
        envelope, payload = loaded
        if not isinstance(envelope, Envelope):
            result, record = self._settle(seq, None, envelope)
        else:
            result, record = self._settle(seq, envelope, await self._adeliver(envelope, payload))
        await asyncio.to_thread(record)
        return result

    async def _adrain(self, before: int | None) -> tuple[list[Acknowledgement], list[RecorderError], int]:
        """`_drain` for the async API."""
        acks: list[Acknowledgement] = []
        failures: list[RecorderError] = []
        with self._claim(await asyncio.to_thread(self._backlog, before)) as claimed:
            for position, seq in enumerate(claimed):
                result = await self._asend_spooled(seq)
                if isinstance(result, Acknowledgement):
                    acks.append(result)
                elif isinstance(result, RecorderError):
                    failures.append(result)
                    if isinstance(result, LogUnreachable):
                        if before is None:
                            failures += await asyncio.to_thread(self._untried, claimed[position + 1:])
                        break
            return acks, failures, len(claimed)

    async def aflush(self) -> list[Acknowledgement]:
        """`flush` for the async API."""
        acks, failures, tried = await self._adrain(None)
        if failures:
            raise self._failure(failures, acks, tried)
        return acks

    async def asubmit(self, envelope: Envelope) -> Acknowledgement:
        payload = self._payload(envelope)
        if self.outbox is None:
            answer = await self._adeliver(envelope, payload)
            if isinstance(answer, RecorderError):
                raise answer
            return self._acknowledge(envelope, answer)
        seq = await asyncio.to_thread(self.outbox.put, envelope.producer, envelope.event["event_id"], payload)
        with self._claim([seq]):
            _, failures, _ = await self._adrain(seq)
            self._check_backlog(envelope, failures)
            result, record = self._settle(seq, envelope, await self._adeliver(envelope, payload))
            await asyncio.to_thread(record)
        if isinstance(result, RecorderError):
            raise result
        return result

    async def arecord(self, event_type: str, **fields: Any) -> Acknowledgement:
        return await self.asubmit(self.sign(self.event(event_type, **fields)))

    async def aclose(self) -> None:
        """Close the HTTP session, and the outbox the Recorder opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.close()

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
