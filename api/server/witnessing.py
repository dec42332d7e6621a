"""Witnessing from the log's side: send each new checkpoint to the log's witnesses, keep their cosignatures.

`WitnessJob` runs in the log server's event loop. Every `interval` seconds it looks at the log's latest checkpoint
and, for each witness that has not cosigned that size yet, speaks c2sp.org/tlog-witness `add-checkpoint`:

    old <the witness's last cosigned size, as far as the job knows; 0 when it knows nothing>
    <consistency proof lines from that size to the new one, from Log.consistency_proof>

    <the log's signed checkpoint>

and then, by answer:
    200  every line from a key configured for that witness must verify (CosignatureVerifier); lines from other
         keys are ignored, as the spec asks; at least one must verify. They are stored, then served.
    409  with Content-Type text/x.tlog.size: the body is the size the witness holds; re-send from it (a few times).
    4xx  otherwise a refusal, counted, not retried this round: 403, 404, 422 (which includes a same-size checkpoint
         with another root: the witness holds another tree of this size), or a 409 without the size body (what
         witnesses of the tlog-witness text before C2SP/C2SP#280 answer for that same-size case).
    5xx, network errors, timeouts: retried with exponential backoff, then counted as a failure for the round.

Cosignatures live in the `checkpoint_cosignatures` table of the log's own database (log/storage/schema.py), written
through the log's single writer (`Log.write`) and read through `Log.read`. A cosignature is stored before it is
served, and only after it verified.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy import func, insert, select

from api.server.background import BackgroundTask
from log import defaults
from log.errors import InvalidInput, LogError, SignatureError
from log.note import NoteSignature, parse_note
from log.note_keys import CosignatureVerifier
from log.storage.schema import checkpoint_cosignatures
from witness.cosigner import AddCheckpointRequest
from witness.http_errors import describe_exception, summarise_body

logger = logging.getLogger(__name__)

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE_SIZE = 1 << 20
MAX_RESYNCS = 3  # 409 re-sends per witness per round: a witness that keeps moving is tried again next round


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness: its name (for metrics and storage), submission prefix URL, and cosigner verifier key(s)."""

    name: str
    url: str
    verifier_key: str | tuple[str, ...]
    verifiers: tuple[CosignatureVerifier, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = (self.verifier_key,) if isinstance(self.verifier_key, str) else tuple(self.verifier_key)
        if not keys:
            raise InvalidInput(f"witness {self.name!r} has no verifier key", field="verifier_key")
        object.__setattr__(self, "verifiers", tuple(CosignatureVerifier(k) for k in keys))

    @classmethod
    def from_config(cls, text: str) -> WitnessEndpoint:
        """`<submission prefix URL> <verifier key> [<verifier key> ...]`; the name is the first key's name."""
        parts = text.split()
        if len(parts) < 2 or not parts[0].startswith(("http://", "https://")):
            raise InvalidInput(f"witness {text[:80]!r} must be '<url> <verifier key> [<verifier key> ...]'",
                               field="witness")
        keys = tuple(parts[1:])
        return cls(CosignatureVerifier(keys[0]).name, parts[0], keys[0] if len(keys) == 1 else keys)

    @property
    def add_checkpoint_url(self) -> str:
        return self.url.rstrip("/") + "/add-checkpoint"


@dataclass(frozen=True)
class KOfN:
    """A checkpoint is witnessed once `k` distinct configured witnesses have cosigned it."""

    k: int

    def satisfied(self, witnesses: set[str] | frozenset[str]) -> bool:
        return len(witnesses) >= self.k


@dataclass
class _WitnessState:
    known_size: int = 0  # the size we believe the witness last cosigned for this log (0: unknown)
    cosigned_size: int | None = None  # the largest size we hold its cosignature for
    requests: int = 0
    failures: int = 0
    conflicts: int = 0
    refusals: int = 0
    last_error: str = ""


class CosignatureStore:
    """The `checkpoint_cosignatures` table in the log's own database.

    `read` and `write` are the log's (`Log.read`, `Log.write`): reads run on its reader threads, and writes go
    through its single writer (on SQLite the sequencer holds the write lock), each row committing with a batch.
    """

    def __init__(self, read, write):
        self._read = read
        self._write = write

    @classmethod
    def for_log(cls, log) -> CosignatureStore:
        return cls(log.read, log.write)

    async def add(self, size: int, witness: str, signatures: list[tuple[NoteSignature, int]]) -> None:
        now = int(time.time() * 1000)

        def work(tx):
            for sig, timestamp in signatures:
                exists = tx.execute(select(checkpoint_cosignatures.c.size).where(
                    checkpoint_cosignatures.c.size == size, checkpoint_cosignatures.c.witness == witness,
                    checkpoint_cosignatures.c.key_id == sig.key_id))
                if not exists:
                    tx.execute(insert(checkpoint_cosignatures).values(
                        size=size, witness=witness, key_id=sig.key_id, signature_line=sig.to_line(),
                        timestamp=timestamp, created_at=now))

        await self._write(work)

    async def latest_sizes(self) -> dict[str, int]:
        """The largest size each witness has a stored cosignature for."""
        query = select(checkpoint_cosignatures.c.witness, func.max(checkpoint_cosignatures.c.size)).group_by(
            checkpoint_cosignatures.c.witness)
        return await self._read(lambda tx: {witness: size for witness, size in tx.execute(query)})

    async def lines_at(self, sizes: list[int]) -> list[tuple[int, str, str]]:
        """(size, witness, signature line) stored for each of `sizes`."""
        if not sizes:
            return []
        query = select(checkpoint_cosignatures.c.size, checkpoint_cosignatures.c.witness,
                       checkpoint_cosignatures.c.signature_line).where(checkpoint_cosignatures.c.size.in_(sizes))
        return await self._read(lambda tx: [(size, witness, line) for size, witness, line in tx.execute(query)])


class WitnessJob:
    """Gets the log's checkpoints cosigned by `witnesses` and serves them with their cosignatures.

    `await start()` loads what was gathered before and starts the background task; `await stop()` ends it.
    `run_once()` is one round (what the task does every `interval` seconds), for tests and manual triggers.
    """

    def __init__(
        self,
        log,
        witnesses: list[WitnessEndpoint],
        *,
        interval: float = defaults.WITNESS_INTERVAL,
        policy: KOfN | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        store: CosignatureStore | None = None,
    ):
        names = [w.name for w in witnesses]
        if len(set(names)) != len(names):
            raise InvalidInput(f"witness names must be distinct: {names}", field="witnesses")
        self.policy = policy or KOfN(len(witnesses))
        if not witnesses or not 1 <= self.policy.k <= len(witnesses):
            raise InvalidInput(f"policy needs 1 <= k <= {len(witnesses)} witnesses, k is {self.policy.k}",
                               field="policy")
        if interval <= 0 or attempts < 1 or backoff < 0 or timeout <= 0:
            raise InvalidInput("interval and timeout must be positive, attempts at least 1", field="interval")
        self.log = log
        self.witnesses = list(witnesses)
        self.interval = interval
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._store = store
        self._state = {w.name: _WitnessState() for w in witnesses}
        self._lines: dict[int, dict[str, list[str]]] = {}  # size -> witness -> verified signature lines
        self._witnessed: tuple[int, bytes] | None = None  # (size, note) of the latest witnessed checkpoint
        self._witnessed_at: float | None = None
        self._started_at = time.monotonic()
        self._rounds = 0
        self._session: aiohttp.ClientSession | None = None
        self._task = BackgroundTask("auditlog-witnessing")
        self._loaded = False
        self._round_lock = asyncio.Lock()

    # -- lifetime -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._load()
        self._task.start(self._run)

    async def stop(self) -> None:
        """End the task. A later `start()` loads again what is stored: where servers share the log, another may
        have gathered cosignatures meanwhile."""
        await self._task.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loaded = False

    async def _load(self) -> None:
        if self._loaded:
            return
        if self._store is None:
            self._store = CosignatureStore.for_log(self.log)
        latest = await self._store.latest_sizes()
        self._state = {w.name: _WitnessState() for w in self.witnesses}
        self._lines = {}
        for name, state in self._state.items():
            if name in latest:
                state.known_size = state.cosigned_size = latest[name]
        for size, witness, line in await self._store.lines_at(sorted(set(latest.values()))):
            if witness in self._state:
                self._lines.setdefault(size, {}).setdefault(witness, []).append(line)
        await self._update_witnessed()
        self._loaded = True

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except LogError as exc:  # the log's store could not be read: every witness waits for the next round
                logger.warning("witnessing round failed for %s: %s", ", ".join(_named(w) for w in self.witnesses), exc)
            except Exception:  # noqa: BLE001 - one bad round must not end witnessing
                logger.exception("witnessing round failed for %s (unexpected: a bug)",
                                 ", ".join(_named(w) for w in self.witnesses))
            await asyncio.sleep(self.interval)

    # -- one round ------------------------------------------------------------------------------------------
    async def run_once(self) -> None:
        """Send the latest checkpoint to every witness that has not cosigned its size yet.

        Rounds never overlap (the background round and one asked for directly wait for each other): two rounds
        at once would send one witness two checkpoints from the same old size, and one of them would get a 409.
        """
        async with self._round_lock:
            await self._load()
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            published = self.log.checkpoint
            due = [w for w in self.witnesses if self._state[w.name].cosigned_size != published.size]
            self._rounds += 1
            if due:
                await asyncio.gather(*(self._witness(w, published) for w in due))
                await self._update_witnessed()

    async def _witness(self, endpoint: WitnessEndpoint, published) -> None:
        state = self._state[endpoint.name]
        text = parse_note(published.note).text
        size = published.size
        resyncs = 0
        attempt = 0
        while True:
            old = state.known_size
            if old > size:
                self._fail(endpoint, state, size, f"it holds size {old}, larger than the log's {size}")
                return
            try:
                proof = [] if old in (0, size) else await self.log.consistency_proof(old, size)
            except LogError as exc:
                self._fail(endpoint, state, size, f"no consistency proof from its size {old}: {exc}")
                return
            body = AddCheckpointRequest(old, tuple(proof), published.note).to_bytes()
            state.requests += 1
            try:
                status, content_type, data = await self._post(endpoint, body)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                status, content_type, data = None, "", b""
                problem = describe_exception(exc, self.timeout)
            else:
                problem = f"HTTP {status}: {summarise_body(data, content_type)}"
            if status == 200:
                try:
                    signatures = self._verify(endpoint, text, data)
                except (SignatureError, InvalidInput) as exc:
                    self._fail(endpoint, state, size, f"answered 200 with a bad cosignature: {exc}")
                    return
                try:
                    await self._store.add(size, endpoint.name, signatures)
                except LogError as exc:
                    self._fail(endpoint, state, size, f"its cosignature verified but could not be stored: {exc}")
                    return
                self._lines.setdefault(size, {})[endpoint.name] = [s.to_line() for s, _ in signatures]
                state.known_size = state.cosigned_size = size
                state.last_error = ""
                return
            if status == 409 and content_type == SIZE_CONTENT_TYPE:
                held = _parse_size(data)
                state.conflicts += 1
                if held is not None and held != old and resyncs < MAX_RESYNCS:
                    logger.info("witnessing: %s holds size %d, not %d: re-sending the checkpoint of size %d from "
                                "it", _named(endpoint), held, old, size)
                    state.known_size = held
                    resyncs += 1
                    continue
                if held is not None:
                    problem = (f"HTTP 409: it holds size {held}" + (f" after {resyncs} re-sends from the sizes it "
                                                                     "named" if resyncs else ""))
            if status is not None and 400 <= status < 500:
                state.refusals += 1
                self._fail(endpoint, state, size, f"refused it with {problem}")
                return
            attempt += 1
            if attempt >= self.attempts:
                self._fail(endpoint, state, size, f"gave up after {attempt} attempts: {problem}")
                return
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))

    async def _post(self, endpoint: WitnessEndpoint, body: bytes) -> tuple[int, str, bytes]:
        async with self._session.post(
            endpoint.add_checkpoint_url, data=body, headers={"Content-Type": "text/plain; charset=utf-8"}
        ) as response:
            data = await response.content.read(MAX_RESPONSE_SIZE)
            return response.status, response.content_type, data

    @staticmethod
    def _verify(endpoint: WitnessEndpoint, text: str, data: bytes) -> list[tuple[NoteSignature, int]]:
        """The verified cosignatures in a 200 body; lines from unknown keys are skipped, a bad known one fails."""
        try:
            body = data.decode()
        except UnicodeDecodeError as exc:
            raise SignatureError("response is not UTF-8") from exc
        if not body.endswith("\n"):
            raise SignatureError("response does not end with a newline")
        known = {(v.name, v.key_id): v for v in endpoint.verifiers}
        found: list[tuple[NoteSignature, int]] = []
        for line in body[:-1].split("\n"):
            sig = NoteSignature.from_line(line)
            verifier = known.get((sig.name, sig.key_id))
            if verifier is None:
                continue
            found.append((sig, verifier.verify(text, sig)))
        if not found:
            raise SignatureError(f"no cosignature from a key configured for {endpoint.name}")
        return found

    def _fail(self, endpoint: WitnessEndpoint, state: _WitnessState, size: int, reason: str) -> None:
        state.failures += 1
        state.last_error = reason
        logger.warning("witnessing: %s, checkpoint of size %d: %s", _named(endpoint), size, reason)

    async def _update_witnessed(self) -> None:
        """Find the latest size meeting the policy; keep its note; drop older sizes from memory."""
        sizes = [s for s, by in self._lines.items() if self.policy.satisfied(set(by))]
        if not sizes:
            return
        size = max(sizes)
        if self._witnessed is None or self._witnessed[0] != size:
            published = self.log.checkpoint
            if published.size == size:
                note = published.note
            else:
                stored = await asyncio.to_thread(self.log.store.checkpoint, size)
                if stored is None:
                    return
                note = stored.note
            self._witnessed = (size, note)
            self._witnessed_at = time.monotonic()
        for old in [s for s in self._lines if s < size]:
            del self._lines[old]

    # -- serving --------------------------------------------------------------------------------------------
    def _with_lines(self, size: int, note: bytes) -> bytes:
        by_witness = self._lines.get(size, {})
        return note + "".join(line for name in sorted(by_witness) for line in by_witness[name]).encode()

    async def cosigned_checkpoint(self) -> bytes:
        """The log's latest signed checkpoint, then every cosignature gathered for it (maybe none yet)."""
        return self.cosigned_note(self.log.checkpoint)

    def cosigned_note(self, published) -> bytes:
        """`published`'s signed note, then every cosignature gathered for its size: what /checkpoint serves while
        it is the latest (the static publisher writes it as DIR/checkpoint)."""
        return self._with_lines(published.size, published.note)

    async def witnessed_checkpoint(self) -> bytes | None:
        """The latest checkpoint cosigned by enough witnesses for the policy, with those cosignatures; or None."""
        if self._witnessed is None:
            return None
        size, note = self._witnessed
        return self._with_lines(size, note)

    def metrics(self) -> dict[str, float]:
        latest = self.log.committed_checkpoint.size  # not a read replica's: what the witnesses have yet to see
        witnessed = self._witnessed[0] if self._witnessed else None
        now = time.monotonic()
        if witnessed == latest:
            backlog_seconds = 0.0
        else:
            backlog_seconds = now - (self._witnessed_at if self._witnessed_at is not None else self._started_at)
        out = {
            "witness_rounds_total": float(self._rounds),
            "witness_latest_size": float(latest),
            "witness_witnessed_size": float(witnessed if witnessed is not None else -1),
            "witness_backlog_entries": float(latest - (witnessed or 0)),
            "witness_backlog_seconds": backlog_seconds,
        }
        for name, state in self._state.items():
            label = f'{{witness="{name}"}}'
            out[f"witness_requests_total{label}"] = float(state.requests)
            out[f"witness_failures_total{label}"] = float(state.failures)
            out[f"witness_conflicts_total{label}"] = float(state.conflicts)
            out[f"witness_refusals_total{label}"] = float(state.refusals)
            out[f"witness_cosigned_size{label}"] = float(
                state.cosigned_size if state.cosigned_size is not None else -1)
        return out


def _named(endpoint: WitnessEndpoint) -> str:
    """How every log line names a witness: its key name and its URL."""
    return f"witness {endpoint.name} at {endpoint.url}"


def _parse_size(data: bytes) -> int | None:
    """The body of a 409 text/x.tlog.size answer: a decimal and a newline."""
    if not data.endswith(b"\n"):
        return None
    digits = data[:-1]
    if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
        return None
    return int(digits)
