"""Evidence bundles for one entry: built by the CLI from a log's answers, verified offline. No HTTP here.

An entry evidence bundle (JSON, `"format": "auditlog.entry-evidence/v1"`) carries everything needed to show, with
nothing but the log's key, the witnesses' keys and the TSA's certificate, that one entry is in the log:

    format, origin, log_key   the log; `log_key` is informational, the verifier is told the key
    index, entry              the entry's index and its bytes (base64)
    tree_size                 the size of the checkpoint below
    inclusion_proof           RFC 9162 2.1.3 audit path (base64 hashes, leaf-most first) to that checkpoint's root
    checkpoint                the signed checkpoint note (text): the log's signature, then witness cosignatures
    timestamp                 base64 DER RFC 3161 TimeStampResp whose imprint is SHA-256 of the checkpoint note's
                              exact bytes (as the log's TimestampJob stamped them), or null

`verify_entry_bundle` follows this checklist and stops at the first check that does not hold, raising
`EntryEvidenceError` whose message starts with the check's number and name:

    1 format        the format string and every field has its type
    2 log key       the log key parses; the bundle's `log_key`, if any, is that key
    3 checkpoint    the note carries a valid signature of the log key; its origin is the key's name; its size is
                    `tree_size`
    4 inclusion     the leaf hash of `entry` at `index` leads to the checkpoint's root through `inclusion_proof`
    5 cosignatures  (when witness keys are given) every line from a given key verifies, and at least k of the
                    witnesses cosigned (default: all)
    6 timestamp     (when a TSA certificate is given) the token is present and verifies over the note's bytes
                    (witness/rfc3161.py's checklist, chaining to the given certificate)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import LogError, VerificationError
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion
from witness.cosignatures import CosignatureReport, WitnessPolicy, check_cosignatures
from witness.rfc3161 import TimestampInfo, verify_timestamp

ENTRY_EVIDENCE_FORMAT = "auditlog.entry-evidence/v1"


class EntryEvidenceError(VerificationError):
    """An entry evidence bundle does not hold. The message starts with the number and name of the check."""

    code = "invalid-entry-evidence"

    def __init__(self, check: int, name: str, detail: str):
        super().__init__(f"check {check} ({name}) failed: {detail}")
        self.check = check
        self.check_name = name


# -- entry evidence bundles ------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_entry_bundle(*, origin: str, log_key: str, index: int, entry: bytes, tree_size: int,
                       inclusion_proof: Sequence[bytes], checkpoint_note: bytes,
                       timestamp: bytes | None) -> dict:
    """The bundle's JSON object (see the module docstring). Nothing is checked here: verify it before trusting it."""
    return {
        "format": ENTRY_EVIDENCE_FORMAT, "origin": origin, "log_key": log_key,
        "index": index, "entry": _b64(entry), "tree_size": tree_size,
        "inclusion_proof": [_b64(h) for h in inclusion_proof],
        "checkpoint": checkpoint_note.decode(),
        "timestamp": None if timestamp is None else _b64(timestamp),
    }


@dataclass(frozen=True)
class EntryEvidenceReport:
    index: int
    entry: bytes
    checkpoint: Checkpoint
    cosignatures: CosignatureReport | None  # None: no witness keys were given
    timestamp: TimestampInfo | None  # None: no TSA certificate was given
    has_timestamp: bool


def _decode(value, what: str, check: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise EntryEvidenceError(check, name, f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EntryEvidenceError(check, name, f"{what} is not valid base64") from None


def _uint(bundle: dict, name: str) -> int:
    value = bundle.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EntryEvidenceError(1, "format", f"{name} is not a non-negative integer: {value!r}")
    return value


def verify_entry_bundle(
    bundle: dict,
    log_key: str,
    *,
    witnesses: WitnessPolicy | None = None,
    tsa_trusted: bytes | None = None,
) -> EntryEvidenceReport:
    """Run the module docstring's checklist over `bundle`; raise EntryEvidenceError at the first failed check."""
    # 1. format
    if not isinstance(bundle, dict) or bundle.get("format") != ENTRY_EVIDENCE_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise EntryEvidenceError(1, "format", f"format is {found!r}, not {ENTRY_EVIDENCE_FORMAT!r}")
    index, tree_size = _uint(bundle, "index"), _uint(bundle, "tree_size")
    entry = _decode(bundle.get("entry"), "entry", 1, "format")
    proof_items = bundle.get("inclusion_proof")
    if not isinstance(proof_items, list):
        raise EntryEvidenceError(1, "format", "inclusion_proof is not a list")
    proof = [_decode(h, f"inclusion_proof[{i}]", 1, "format") for i, h in enumerate(proof_items)]
    note_text = bundle.get("checkpoint")
    if not isinstance(note_text, str):
        raise EntryEvidenceError(1, "format", "checkpoint is not the signed note's text")
    note_bytes = note_text.encode()
    token = bundle.get("timestamp")
    token_bytes = None if token is None else _decode(token, "timestamp", 1, "format")

    # 2. log key
    try:
        verifier = parse_verifier_key(log_key)
    except LogError as exc:
        raise EntryEvidenceError(2, "log key", f"the log key does not parse: {exc}") from None
    named = bundle.get("log_key")
    if named is not None and named != verifier.verifier_key:
        raise EntryEvidenceError(2, "log key", f"the bundle names another log key: {str(named)[:80]!r}")

    # 3. checkpoint
    try:
        checkpoint, note = open_checkpoint(note_bytes, verifier)
    except LogError as exc:
        raise EntryEvidenceError(3, "checkpoint", f"the checkpoint does not verify with the log key: {exc}") from None
    if checkpoint.size != tree_size:
        raise EntryEvidenceError(3, "checkpoint", f"the checkpoint has size {checkpoint.size}, the bundle says "
                                                  f"tree_size {tree_size}")

    # 4. inclusion
    if index >= tree_size:
        raise EntryEvidenceError(4, "inclusion", f"index {index} is not below tree_size {tree_size}")
    try:
        verify_inclusion(hash_leaf(entry), index, tree_size, proof, checkpoint.root_hash)
    except LogError as exc:
        raise EntryEvidenceError(4, "inclusion", f"entry {index} is not included in the checkpoint of size "
                                                 f"{tree_size}: {exc}") from None

    # 5. cosignatures
    cosignatures = None
    if witnesses is not None:
        try:
            cosignatures = check_cosignatures(note, witnesses)
        except LogError as exc:
            raise EntryEvidenceError(5, "cosignatures", f"a witness cosignature does not verify: {exc}") from None
        if not cosignatures.satisfied:
            raise EntryEvidenceError(5, "cosignatures", cosignatures.describe())

    # 6. timestamp
    info = None
    if tsa_trusted is not None:
        if token_bytes is None:
            raise EntryEvidenceError(6, "timestamp", "the bundle carries no timestamp token")
        try:
            info = verify_timestamp(token_bytes, note_bytes, tsa_trusted)
        except LogError as exc:
            raise EntryEvidenceError(6, "timestamp", f"the timestamp token does not verify: {exc}") from None
    return EntryEvidenceReport(index, entry, checkpoint, cosignatures, info, token_bytes is not None)
