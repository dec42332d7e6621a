"""Checking witness cosignatures on a signed checkpoint offline (c2sp.org/tlog-cosignature). No HTTP here.

`check_cosignatures(note, policy)` counts the witnesses whose cosignature on a signed checkpoint verifies. Witnesses
are named by their keys: keys sharing a key name are one witness (an Ed25519 and an ML-DSA-44 key of the same
cosigner), as `api.server.witnessing.WitnessEndpoint` groups them. Lines from keys not given are ignored, as
signed-note asks; a line from a given key that does not verify fails the whole note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from log.errors import InvalidInput
from log.note import Note, parse_note
from log.note_keys import CosignatureVerifier


@dataclass(frozen=True)
class WitnessPolicy:
    """The witnesses a verifier trusts (by cosigner verifier key) and how many must have cosigned (default all)."""

    keys: tuple[str, ...]
    k: int | None = None
    verifiers: dict[str, tuple[CosignatureVerifier, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[CosignatureVerifier]] = {}
        for key in self.keys:
            verifier = CosignatureVerifier(key)  # InvalidInput for a key that is not a cosigner key
            by_name.setdefault(verifier.name, []).append(verifier)
        if not by_name:
            raise InvalidInput("no witness keys given", field="witness_key")
        if self.k is not None and not 1 <= self.k <= len(by_name):
            raise InvalidInput(f"witness k must be in [1, {len(by_name)}] (the witnesses given), not {self.k}",
                               field="witness_k")
        object.__setattr__(self, "verifiers", {name: tuple(v) for name, v in by_name.items()})

    @property
    def required(self) -> int:
        return self.k if self.k is not None else len(self.verifiers)

    @property
    def total(self) -> int:
        return len(self.verifiers)


@dataclass(frozen=True)
class CosignatureReport:
    cosigned_by: tuple[str, ...]  # witness names whose cosignature verified, sorted
    timestamps: dict[str, int]  # witness name -> cosignature timestamp (POSIX seconds), the latest of its keys
    required: int
    total: int

    @property
    def satisfied(self) -> bool:
        return len(self.cosigned_by) >= self.required

    def describe(self) -> str:
        return f"cosigned by {len(self.cosigned_by)} of {self.total} witnesses (at least {self.required} required)"


def check_cosignatures(note: bytes | Note, policy: WitnessPolicy) -> CosignatureReport:
    """Verify the cosignatures on a signed checkpoint note from the policy's witnesses.

    Raises SignatureError when a line from one of the given keys does not verify (or the note is malformed);
    otherwise returns who cosigned. Whether that is enough is `report.satisfied`: the caller decides to fail.
    """
    parsed = note if isinstance(note, Note) else parse_note(note)
    known = {(v.name, v.key_id): v for verifiers in policy.verifiers.values() for v in verifiers}
    timestamps: dict[str, int] = {}
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        timestamp = verifier.verify(parsed.text, sig)  # SignatureError naming the key
        timestamps[verifier.name] = max(timestamp, timestamps.get(verifier.name, 0))
    return CosignatureReport(tuple(sorted(timestamps)), timestamps, policy.required, policy.total)
