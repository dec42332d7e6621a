"""The witness itself (c2sp.org/tlog-witness `add-checkpoint`), without HTTP: verify, check, swap state, cosign.

A request is the spec's body, parsed by `AddCheckpointRequest.from_bytes`:

    "old " <size, ASCII decimal, no leading zeroes> "\\n"
    <base64 of one 32-byte hash> "\\n"          (0..63 consistency proof lines)
    "\\n"
    <signed checkpoint note>                   (tlog-checkpoint in a signed note; may carry several signatures)

`Cosigner.add_checkpoint` either returns the witness's cosignature lines, after the new state is durably stored,
or raises one of the `WitnessError` subclasses of witness/errors.py. Each carries a stable code; witness/server.py holds the one
table turning codes into the statuses tlog-witness prescribes (400, 403, 404, 409, 422).

State per origin is a single compare-and-swap cell (witness/store.py, `WitnessStore.compare_and_swap`): the check of `old` against
the stored size and the write of the new checkpoint happen atomically, first under a per-origin asyncio lock (one
process) and then in one database transaction guarded by the (size, root) that was read (several processes on one
database). A lost swap re-reads and re-checks, so it ends in a 409 rather than a rollback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from log.checkpoint import Checkpoint
from log.errors import InvalidInput, ProofError, SignatureError
from log.hashing import EMPTY_ROOT
from log.note import NoteSignature, open_note, parse_note
from log.note_keys import CosignatureSigner, Verifier, parse_verifier_key
from log.proofs import verify_consistency
from witness.errors import (
    BadLogSignature, InconsistentProof, MalformedRequest, OldSizeConflict, RootConflict, UnknownLog, WitnessError,
)
from witness.store import WitnessState, WitnessStore

logger = logging.getLogger(__name__)

HASH_SIZE = 32
MAX_PROOF_LINES = 63  # tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_SIZE = 2**63 - 1
EMPTY_TREE_ROOT = EMPTY_ROOT  # RFC 6962 MTH({}): the root a size-0 checkpoint must carry
_DECIMAL = re.compile(rb"0|[1-9][0-9]*")


# --- the request ----------------------------------------------------------------------------------------------


def _b64_hash(line: bytes, number: int) -> bytes:
    """Canonical standard base64 of exactly 32 bytes, or MalformedRequest naming the line."""
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"proof line {number} is not base64: {line[:80]!r}") from exc
    if len(raw) != HASH_SIZE or base64.b64encode(raw) != line:
        raise MalformedRequest(f"proof line {number} is not the canonical base64 of a 32-byte hash: {line[:80]!r}")
    return raw


@dataclass(frozen=True)
class AddCheckpointRequest:
    """One add-checkpoint body: the old size, the consistency proof from it, and the signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes

    @classmethod
    def from_bytes(cls, body: bytes) -> AddCheckpointRequest:
        """Parse a body strictly (tlog-witness "add-checkpoint"); MalformedRequest says what is wrong.

        1. The first line is `old <decimal>`: one space, no leading zeroes, at most 2^63 - 1.
        2. Then up to 63 lines, each the base64 of one 32-byte hash, then an empty line.
        3. Everything after the empty line is the signed checkpoint (checked later, by the cosigner).
        """
        if not isinstance(body, (bytes, bytearray)):
            raise MalformedRequest(f"body must be bytes, not {type(body).__name__}")
        body = bytes(body)
        end = body.find(b"\n")
        if end < 0:
            raise MalformedRequest("body has no old size line")
        first = body[:end]
        if not first.startswith(b"old ") or not _DECIMAL.fullmatch(first[4:]):
            raise MalformedRequest(f"first line must be 'old <decimal without leading zeroes>', not {first[:80]!r}")
        old_size = int(first[4:])
        if old_size > MAX_SIZE:
            raise MalformedRequest(f"old size {old_size} exceeds 2^63 - 1")
        proof: list[bytes] = []
        pos = end + 1
        while True:
            end = body.find(b"\n", pos)
            if end < 0:
                raise MalformedRequest("body has no empty line between the proof and the checkpoint")
            line = body[pos:end]
            pos = end + 1
            if not line:
                break
            if len(proof) == MAX_PROOF_LINES:
                raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
            proof.append(_b64_hash(line, len(proof) + 1))
        return cls(old_size, tuple(proof), body[pos:])

    def to_bytes(self) -> bytes:
        """The body, as a client sends it; `from_bytes(r.to_bytes()) == r`."""
        lines = [b"old %d\n" % self.old_size] + [base64.b64encode(h) + b"\n" for h in self.proof]
        return b"".join(lines) + b"\n" + self.checkpoint


# --- configuration ------------------------------------------------------------------------------------------


def parse_log_keys(lines: Iterable[str]) -> dict[str, list[Verifier]]:
    """Trusted log keys from text lines: `<verifier key>` (origin = key name) or `<origin> <verifier key>`.

    Blank lines and lines starting with '#' are skipped; an origin may have several keys. Raises InvalidInput.
    """
    logs: dict[str, list[Verifier]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise InvalidInput(f"log key line {number} has {len(parts)} fields; want [origin] vkey", field="logs")
        verifier = parse_verifier_key(parts[-1])
        origin = parts[0] if len(parts) == 2 else verifier.name
        logs.setdefault(origin, []).append(verifier)
    return logs


# --- the cosigner -------------------------------------------------------------------------------------------


class Cosigner:
    """Cosigns checkpoints of the logs in `logs` (origin -> trusted verifiers) with every key in `signers`.

    `clock()` gives the cosignature timestamp in POSIX seconds (injectable for tests).
    """

    def __init__(
        self,
        store: WitnessStore,
        signers: Sequence[CosignatureSigner],
        logs: Mapping[str, Sequence[Verifier]],
        *,
        clock: Callable[[], float] = time.time,
    ):
        if not signers:
            raise InvalidInput("a witness needs at least one cosigner key", field="signers")
        self.store = store
        self.signers = list(signers)
        self.logs = {origin: list(verifiers) for origin, verifiers in logs.items()}
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self.stats: dict[str, int] = {}

    @property
    def verifier_keys(self) -> list[str]:
        return [s.verifier_key for s in self.signers]

    def _count(self, code: str) -> None:
        self.stats[code] = self.stats.get(code, 0) + 1

    async def add_checkpoint(self, request: AddCheckpointRequest) -> list[NoteSignature]:
        """Check `request` against the stored state, store the new state durably, then cosign.

        1. Parse the note and its checkpoint body (MalformedRequest).
        2. The origin must be configured (UnknownLog).
        3. A signature from a configured key must verify, and none from a configured key may fail
           (BadLogSignature); signatures from other keys are ignored.
        4. `old` must not exceed the checkpoint size (MalformedRequest).
        5. Under the origin's lock, read the stored state; `old` must equal its size, or 0 if none
           (OldSizeConflict carrying the stored size).
        6. Same size: the roots must be equal (RootConflict) and the proof empty. Otherwise, from 0: the proof
           must be empty; from old > 0: it must prove the stored root consistent with the new one
           (InconsistentProof). A size-0 checkpoint must carry the empty tree's root.
        7. Cosign with every key at the current time, before anything is stored, so that nothing can fail after
           the commit. A key that cannot sign this checkpoint (ML-DSA-44 over extension lines) is skipped; if
           none can, MalformedRequest.
        8. Compare-and-swap the new state in; if another process moved it meanwhile, go back to 5. The
           cosignatures are returned only after this commit.
        """
        try:
            result = await self._add_checkpoint(request)
        except WitnessError as exc:
            self._count(exc.code)
            raise
        self._count("cosigned")
        return result

    async def _add_checkpoint(self, request: AddCheckpointRequest) -> list[NoteSignature]:
        # 1.
        try:
            note = parse_note(request.checkpoint)
            checkpoint = Checkpoint.from_text(note.text)
        except (SignatureError, InvalidInput) as exc:
            raise MalformedRequest(f"not a signed checkpoint: {exc}") from exc
        # 2.
        verifiers = self.logs.get(checkpoint.origin)
        if not verifiers:
            raise UnknownLog(f"unknown log origin {checkpoint.origin!r}")
        # 3.
        try:
            open_note(request.checkpoint, verifiers)
        except SignatureError as exc:
            raise BadLogSignature(f"checkpoint of {checkpoint.origin!r} is not signed by a trusted key: {exc}") from exc
        # 4.
        old = request.old_size
        if old > checkpoint.size:
            raise MalformedRequest(f"old size {old} exceeds the checkpoint size {checkpoint.size}")
        origin = checkpoint.origin
        new = WitnessState(checkpoint.size, checkpoint.root_hash, request.checkpoint)
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            while True:
                # 5.
                state = await asyncio.to_thread(self.store.latest, origin)
                latest = 0 if state is None else state.size
                if old != latest:
                    raise OldSizeConflict(f"old size {old} is not the latest cosigned size {latest}", latest)
                # 6.
                await self._check_consistency(origin, state, new, request.proof)
                # 7.
                signatures = self._cosign(note.text)
                # 8.
                try:
                    swapped = await asyncio.to_thread(self.store.compare_and_swap, origin, state, new)
                except RootConflict as exc:
                    await self._keep_refusal(origin, new, str(exc))
                    raise
                if swapped:
                    break
        return signatures

    def _cosign(self, text: str) -> list[NoteSignature]:
        timestamp = int(self._clock())
        signatures = []
        for signer in self.signers:
            try:
                signatures.append(signer.cosign(text, timestamp))
            except InvalidInput as exc:
                logger.info("cosigner %s skipped a checkpoint: %s", signer.verifier_key[:60], exc)
        if not signatures:
            raise MalformedRequest("none of this witness's keys can cosign this checkpoint (extension lines?)")
        return signatures

    async def _check_consistency(
        self, origin: str, state: WitnessState | None, new: WitnessState, proof: Sequence[bytes]
    ) -> None:
        old = 0 if state is None else state.size
        if new.size == 0 and new.root_hash != EMPTY_TREE_ROOT:
            raise InconsistentProof("a checkpoint of size 0 must carry the empty tree's root")
        if state is not None and old == new.size:
            if state.root_hash != new.root_hash:
                reason = f"size {old} was cosigned with another root"
                await self._keep_refusal(origin, new, reason)
                raise RootConflict(reason)
            if proof:
                raise InconsistentProof(f"the proof from size {old} to itself must be empty, got {len(proof)} lines")
            return
        if old == 0:
            if proof:
                raise InconsistentProof(f"the proof must be empty when old is 0, got {len(proof)} lines")
            return
        try:
            verify_consistency(old, new.size, list(proof), state.root_hash, new.root_hash)
        except (ProofError, InvalidInput) as exc:
            reason = f"consistency proof from {old} to {new.size} does not verify: {exc}"
            await self._keep_refusal(origin, new, reason)
            raise InconsistentProof(reason) from exc

    async def _keep_refusal(self, origin: str, new: WitnessState, reason: str) -> None:
        """Keep the refused (validly signed) checkpoint as evidence; failing to keep it never changes the answer."""
        try:
            await asyncio.to_thread(self.store.record_refusal, origin, new.size, new.root_hash, new.note, reason)
        except Exception:  # noqa: BLE001 - evidence is best effort; the refusal itself stands
            logger.exception("could not store a refused checkpoint of %s at size %d", origin, new.size)


def format_signature_lines(signatures: Iterable[NoteSignature]) -> bytes:
    """The 200 body: one note signature line per cosignature, each ending in a newline."""
    return "".join(sig.to_line() for sig in signatures).encode()
