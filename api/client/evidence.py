"""Evidence bundles, verified offline with the log's key, the witnesses' keys and the TSA's certificate. No HTTP here.

Two kinds, one entry point each, with the same arguments (`witnesses=`, `tsa_trusted=`), and `verify_evidence`
to dispatch on the bundle's `format`:

    verify_entry_bundle   one entry (`"format": "auditlog.entry-evidence/v1"`, built here by the CLI)
    verify_run_bundle     one run's timeline or one data subject's events (`"format": "auditlog.evidence/v3"`, or v2
                          for a run that lost nothing; log/audit/evidence.py, built by the server): checks 1-8, 11
                          and 12 there, with the log's key (12: what was deleted, against the entries recording it);
                          checks 9 and 10 here

Evidence never fails open: a check asked for (witness keys given, a TSA certificate given) that the bundle cannot
satisfy (no or too few cosignatures, no token) fails; every field a bundle carries is checked, and a field the
format does not have fails check 1. Failures are `log.audit.errors.EvidenceError` (a VerificationError) whose
message starts with the check's number and name; an entry bundle's are its subclass `EntryEvidenceError`.

An entry evidence bundle carries everything needed to show that one entry is in the log:

    format, origin, log_key   the log; `log_key` is informational, the verifier is told the key
    index, entry              the entry's index and its bytes (base64)
    tree_size                 the size of the checkpoint below
    inclusion_proof           RFC 9162 2.1.3 audit path (base64 hashes, leaf-most first) to that checkpoint's root
    checkpoint                the signed checkpoint note (text): the log's signature, then witness cosignatures
    timestamp                 base64 DER RFC 3161 TimeStampResp whose imprint is SHA-256 of the checkpoint note's
                              exact bytes (as the log's TimestampJob stamped them), or null

`verify_entry_bundle` follows this checklist and stops at the first check that does not hold:

    1 format        the format string, exactly the format's fields, and every field has its type
    2 log key       the log key parses; the bundle's `log_key`, if any, is that key
    3 checkpoint    the note carries a valid signature of the log key; its origin is the key's name and the
                    bundle's `origin`; its size is `tree_size`
    4 inclusion     the leaf hash of `entry` at `index` leads to the checkpoint's root through `inclusion_proof`
    5 cosignatures  (when witness keys are given) every line from a given key verifies, and at least k of the
                    witnesses cosigned (default: all); a checkpoint without enough cosignatures fails
    6 timestamp     (when a TSA certificate is given) the token is present and verifies over the note's bytes
                    (witness/rfc3161.py's checklist, chaining to the given certificate); no token fails

A run bundle's checks 9 (cosignatures) and 10 (timestamp) are checks 5 and 6 over its checkpoint and token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from log.audit.errors import EvidenceError
from log.audit.evidence import FIELDS as RUN_EVIDENCE_FIELDS
from log.audit.evidence import FORMAT as RUN_EVIDENCE_FORMAT
from log.audit.evidence import FORMAT_V1 as RUN_EVIDENCE_FORMAT_V1
from log.audit.evidence import EvidenceReport, verify_bundle
from log.checkpoint import Checkpoint, open_checkpoint
from log.errors import LogError
from log.note import Note
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion
from witness.cosignatures import CosignatureReport, WitnessPolicy, check_cosignatures
from witness.rfc3161 import TimestampInfo, verify_timestamp

ENTRY_EVIDENCE_FORMAT = "auditlog.entry-evidence/v1"


class EntryEvidenceError(EvidenceError):
    """An entry evidence bundle does not hold. The message starts with the number and name of the check."""

    code = "invalid-entry-evidence"


_ENTRY_FIELDS = {"format", "origin", "index", "entry", "tree_size", "inclusion_proof", "checkpoint"}
_ENTRY_OPTIONAL = {"log_key", "timestamp"}


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
        raise EntryEvidenceError(1, "format", f"format is {str(found)[:80]!r}, not {ENTRY_EVIDENCE_FORMAT!r}")
    missing, unknown = _ENTRY_FIELDS - set(bundle), set(bundle) - _ENTRY_FIELDS - _ENTRY_OPTIONAL
    if missing:
        raise EntryEvidenceError(1, "format", f"the bundle needs {', '.join(sorted(missing))}")
    if unknown:
        raise EntryEvidenceError(1, "format", f"the bundle has no field "
                                              f"{', '.join(repr(u[:40]) for u in sorted(unknown))}: nothing would "
                                              f"check it")
    if not isinstance(bundle["origin"], str):
        raise EntryEvidenceError(1, "format", "origin is not a string")
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
    if bundle["origin"] != checkpoint.origin:
        raise EntryEvidenceError(3, "checkpoint", f"the bundle says origin {bundle['origin'][:80]!r}, its "
                                                  f"checkpoint is of {checkpoint.origin!r}")
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

    cosignatures = _cosignatures(note, witnesses, lambda detail: EntryEvidenceError(5, "cosignatures", detail))
    info = _timestamp(token_bytes, note_bytes, tsa_trusted, lambda detail: EntryEvidenceError(6, "timestamp", detail))
    return EntryEvidenceReport(index, entry, checkpoint, cosignatures, info, token_bytes is not None)


# -- the checks that need witness/, shared by both kinds -------------------------------------------------------------
def _cosignatures(note: Note, witnesses: WitnessPolicy | None, fail) -> CosignatureReport | None:
    """Check 5 (entry) / 9 (run): with witness keys, enough of those witnesses cosigned the note, and every line
    from a given key verifies. `fail(detail)` makes the error."""
    if witnesses is None:
        return None
    try:
        report = check_cosignatures(note, witnesses)
    except LogError as exc:
        raise fail(f"a witness cosignature does not verify: {exc}") from None
    if not report.satisfied:
        carried = len(note.signatures) - 1  # the lines after the log's own signature
        raise fail(f"{report.describe()}; the checkpoint carries {carried or 'no'} cosignature line"
                   f"{'' if carried == 1 else 's'}")
    return report


def _timestamp(token: bytes | None, note_bytes: bytes, tsa_trusted: bytes | None, fail) -> TimestampInfo | None:
    """Check 6 (entry) / 10 (run): with a TSA certificate, the bundle's token verifies over the note's bytes."""
    if tsa_trusted is None:
        return None
    if token is None:
        raise fail("the bundle carries no timestamp token")
    try:
        return verify_timestamp(token, note_bytes, tsa_trusted)
    except LogError as exc:
        raise fail(f"the timestamp token does not verify: {exc}") from None


# -- run evidence bundles --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunEvidenceReport:
    evidence: EvidenceReport  # checks 1-8: the run, its events, producers and warnings
    cosignatures: CosignatureReport | None  # None: no witness keys were given
    timestamp: TimestampInfo | None  # None: no TSA certificate was given
    has_timestamp: bool

    @property
    def checkpoint(self) -> Checkpoint:
        return self.evidence.checkpoint


def verify_run_bundle(
    bundle: dict,
    log_key: str,
    *,
    witnesses: WitnessPolicy | None = None,
    tsa_trusted: bytes | None = None,
) -> RunEvidenceReport:
    """Checks 1-8, 11 and 12 of a run or subject bundle (log/audit/evidence.py, the log's key), then 9
    (cosignatures, when witness keys are given) and 10 (the timestamp, when a TSA certificate is given). Raises
    EvidenceError at the first failure."""
    evidence = verify_bundle(bundle, log_key)
    cosignatures = _cosignatures(evidence.note, witnesses, lambda detail: EvidenceError(9, "cosignatures", detail))
    token = evidence.timestamp
    if token is None and tsa_trusted is not None and evidence.format == RUN_EVIDENCE_FORMAT_V1:
        raise EvidenceError(10, "timestamp", f"the bundle carries no timestamp token (a {RUN_EVIDENCE_FORMAT_V1} "
                                             f"bundle never does: export it again)")
    info = _timestamp(token, evidence.note_bytes, tsa_trusted, lambda detail: EvidenceError(10, "timestamp", detail))
    return RunEvidenceReport(evidence, cosignatures, info, token is not None)


def verify_evidence(
    bundle: dict,
    log_key: str,
    *,
    witnesses: WitnessPolicy | None = None,
    tsa_trusted: bytes | None = None,
) -> EntryEvidenceReport | RunEvidenceReport:
    """Either kind of bundle, by its `format`; anything else fails check 1 of a run bundle."""
    if isinstance(bundle, dict) and bundle.get("format") == ENTRY_EVIDENCE_FORMAT:
        return verify_entry_bundle(bundle, log_key, witnesses=witnesses, tsa_trusted=tsa_trusted)
    if isinstance(bundle, dict) and bundle.get("format") not in RUN_EVIDENCE_FIELDS:
        raise EvidenceError(1, "format", f"format is {str(bundle.get('format'))[:80]!r}: neither "
                                         f"{ENTRY_EVIDENCE_FORMAT!r} nor {RUN_EVIDENCE_FORMAT!r}")
    return verify_run_bundle(bundle, log_key, witnesses=witnesses, tsa_trusted=tsa_trusted)
