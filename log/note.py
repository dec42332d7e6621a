"""Signed notes (c2sp.org/signed-note): the format, key names and key IDs, signing and opening a note.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more signature lines:

    <text, ending in "\\n">
    "\\n"
    "— " <key name> " " base64(4-byte big-endian key ID || signature) "\\n"     (one per signature)

    key ID = SHA-256(name || 0x0A || type byte || public key)[:4], read as a big-endian uint32

This module owns every key-type constant and the key-ID function; it knows nothing of what a note says. The keys
themselves (their strings, Ed25519 and ML-DSA-44 material, what each type signs) are log/note_keys.py, and what a
cosignature type signs for a checkpoint is log/cosignature.py. sign_note and open_note take any key with a name,
a key ID and sign()/check() (NoteSigner, NoteVerifier). Three signature types are supported:

    0x01 ED25519               Ed25519 (RFC 8032) over the note text (signed-note).
    0x04 COSIGNATURE_ED25519   tlog-cosignature/v1: u64 timestamp || Ed25519 signature over a checkpoint's message.
    0x06 COSIGNATURE_MLDSA44   tlog-cosignature, ML-DSA-44: u64 timestamp || ML-DSA-44 signature over a
                               checkpoint's `cosigned_message`.

Everything that fails to parse or verify raises `SignatureError`; bad arguments raise `InvalidInput`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from log.errors import InvalidInput, SignatureError

# Signature type bytes (signed-note "Signature types"). 0x02 (ECDSA), 0x05 (RFC 6962 TreeHeadSignature) and the
# rest are recognised only to be reported by name; signatures of those types are ignored as unknown keys.
ED25519 = 0x01
COSIGNATURE_ED25519 = 0x04
COSIGNATURE_MLDSA44 = 0x06
SUPPORTED_KEY_TYPES = (ED25519, COSIGNATURE_ED25519, COSIGNATURE_MLDSA44)
COSIGNATURE_KEY_TYPES = (COSIGNATURE_ED25519, COSIGNATURE_MLDSA44)
_TYPE_NAMES = {
    0x01: "Ed25519",
    0x02: "ECDSA (transparency-dev/witness)",
    0x04: "Ed25519 cosignature/v1",
    0x05: "RFC 6962 TreeHeadSignature",
    0x06: "ML-DSA-44 subtree cosignature",
}

ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SEED_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
MLDSA44_PUBLIC_KEY_SIZE = 1312
MLDSA44_SEED_SIZE = 32
MLDSA44_SIGNATURE_SIZE = 2420
TIMESTAMP_SIZE = 8
KEY_ID_SIZE = 4
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1

# Limits on notes we parse. signed-note: verifiers SHOULD limit the number of signatures and MUST accept at least
# 16; x/mod note stops at 100, which we copy. An ML-DSA-44 cosignature line is about 3.3 kB, so 100 of them plus
# a checkpoint stay far below the byte limit.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20

_SIG_PREFIX = "\u2014 "  # em dash, space

# Unicode White_Space (the set Go's unicode.IsSpace uses): key names must not contain any of these.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def key_id(name: str, key_type: int, public_key: bytes) -> int:
    """SHA-256(name || "\\n" || type byte || public key)[:4] as a big-endian uint32 (signed-note, "Signatures")."""
    check_key_name(name)
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()
    return int.from_bytes(digest[:KEY_ID_SIZE], "big")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, valid UTF-8, no Unicode space, no '+', and no control character (those cannot be in a note)."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates are not valid UTF-8
        return False
    return not any(c in _WHITE_SPACE or c < " " or c == "\x7f" for c in name)


def check_key_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise InvalidInput(
            f"key name {name!r} is invalid: it must be non-empty UTF-8 without spaces, '+' or control characters",
            field="name",
        )


def b64encode(data: bytes) -> str:
    """Standard padded base64 (RFC 4648 section 4), as note lines and key strings write it."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 section 4): alphabet, padding and zero pad bits all checked."""
    if not _BASE64.fullmatch(text) or len(text) % 4:
        raise SignatureError(f"{what} is not standard padded base64: {text[:80]!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what} is not valid base64: {text[:80]!r}") from exc
    if b64encode(data) != text:
        raise SignatureError(f"{what} is not canonical base64 (non-zero pad bits): {text[:80]!r}")
    return data


def key_type_name(key_type: int) -> str:
    """The signature type's name (signed-note "Signature types"), or "unassigned"."""
    return _TYPE_NAMES.get(key_type, "unassigned")


# --- notes --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line. `signature` is what follows the 4-byte key ID (for cosignatures: timestamp || sig)."""

    name: str
    key_id: int
    signature: bytes

    def to_line(self) -> str:
        """`— <name> <base64(key ID || signature)>\\n`."""
        check_key_name(self.name)
        if not 0 <= self.key_id < 2**32:
            raise InvalidInput(f"key ID {self.key_id} does not fit in 32 bits", field="key_id")
        if not self.signature:
            raise InvalidInput(f"signature from {self.name} is empty", field="signature")
        return f"{_SIG_PREFIX}{self.name} {b64encode(self.key_id.to_bytes(KEY_ID_SIZE, 'big') + self.signature)}\n"

    @classmethod
    def from_line(cls, line: str) -> NoteSignature:
        """Parse one signature line without its final newline."""
        if not line.startswith(_SIG_PREFIX):
            raise SignatureError(f"signature line does not start with an em dash and a space: {line[:80]!r}")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not is_valid_key_name(name):
            raise SignatureError(f"signature line has no valid key name: {line[:80]!r}")
        raw = b64decode(b64, f"signature from {name}")
        if len(raw) <= KEY_ID_SIZE:  # x/mod note: at least a key ID and one byte
            raise SignatureError(f"signature from {name} is {len(raw)} bytes, too short for a key ID and a signature")
        return cls(name, int.from_bytes(raw[:KEY_ID_SIZE], "big"), raw[KEY_ID_SIZE:])

    @property
    def timestamp(self) -> int:
        """The cosignature timestamp (the first 8 bytes after the key ID); only meaningful for cosignatures."""
        if len(self.signature) < TIMESTAMP_SIZE:
            raise SignatureError(f"signature from {self.name} is too short to hold a timestamp")
        return int.from_bytes(self.signature[:TIMESTAMP_SIZE], "big")


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note: its text, ending in a newline, and its signature lines in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return format_note(self.text, self.signatures)


def _check_note_text(text: str, error: type[Exception]) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"note text must be str, not {type(text).__name__}", field="text")
    if not text.endswith("\n"):
        raise error(f"note text must end with a newline: {text[-40:]!r}")
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise error("note text is not valid UTF-8") from exc
    bad = next((c for c in text if c < " " and c != "\n"), None)
    if bad is not None:
        raise error(f"note text contains control character {bad!r}")


def format_note(text: str, signatures: Iterable[NoteSignature]) -> bytes:
    """text || "\\n" || one line per signature. The result parses back to the same text and signatures."""
    _check_note_text(text, InvalidInput)
    sigs = tuple(signatures)
    if not sigs:
        raise InvalidInput("a signed note needs at least one signature", field="signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise InvalidInput(f"{len(sigs)} signatures; at most {MAX_SIGNATURES}", field="signatures")
    data = (text + "\n" + "".join(s.to_line() for s in sigs)).encode()
    if len(data) > MAX_NOTE_SIZE:
        raise InvalidInput(f"note is {len(data)} bytes; at most {MAX_NOTE_SIZE}", field="text")
    return data


def parse_note(data: bytes) -> Note:
    """Parse a signed note, checking only its form (signed-note "Format"); no signature is verified.

    1. At most MAX_NOTE_SIZE bytes, valid UTF-8, no control character other than newline.
    2. The text ends at the last blank line; what follows is one or more lines, the last ending in a newline.
    3. Each line is `— <valid key name> <canonical base64 of at least 5 bytes>`; at most MAX_SIGNATURES lines.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"note must be bytes, not {type(data).__name__}", field="note")
    data = bytes(data)
    if len(data) > MAX_NOTE_SIZE:
        raise SignatureError(f"note is {len(data)} bytes; at most {MAX_NOTE_SIZE}")
    try:
        whole = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise SignatureError(f"note is not valid UTF-8 at byte {exc.start}") from exc
    bad = next((c for c in whole if c < " " and c != "\n"), None)
    if bad is not None:
        raise SignatureError(f"note contains control character {bad!r}")
    split = whole.rfind("\n\n")
    if split < 0:
        raise SignatureError("note has no blank line before its signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block or not block.endswith("\n"):
        raise SignatureError("note has no signature lines, or its last line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise SignatureError(f"note has {len(lines)} signatures; at most {MAX_SIGNATURES}")
    return Note(text, tuple(NoteSignature.from_line(line) for line in lines))


class NoteSigner(Protocol):
    """A key that signs notes (log.note_keys.Signer): `sign(text bytes)` returns the signature after the key ID."""

    name: str
    key_id: int

    def sign(self, message: bytes) -> bytes: ...


class NoteVerifier(Protocol):
    """A key that verifies note signatures (log.note_keys.Verifier, CosignatureVerifier): `check(text bytes, sig)`
    raises SignatureError unless `sig` (after the key ID) is its valid signature over the text."""

    name: str
    key_id: int

    def check(self, message: bytes, sig: bytes) -> int | None: ...


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Sign `text` with each signer, in order, and format the note."""
    _check_note_text(text, InvalidInput)
    if not signers:
        raise InvalidInput("sign_note needs at least one signer", field="signers")
    message = text.encode()
    return format_note(text, [NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers])


def open_note(data: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[Note, list[NoteSignature]]:
    """Parse `data` and verify it against `verifiers` (signed-note "Signatures").

    1. Parse the note (SignatureError if malformed).
    2. A signature whose (name, key ID) matches no verifier is ignored, even if the name or the ID alone matches.
    3. Every signature that matches a verifier is verified; one that fails rejects the whole note.
    4. At least one signature must have verified.
    Returns the note and the verified signatures, the first one per key, in note order.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known:
            raise InvalidInput(f"two verifiers share the name and key ID {v.name}+{v.key_id:08x}", field="verifiers")
        known[(v.name, v.key_id)] = v
    note = parse_note(data)
    message = note.text.encode()
    verified: dict[tuple[str, int], NoteSignature] = {}
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        verifier.check(message, sig.signature)  # raises SignatureError naming the key and the failed check
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        names = ", ".join(f"{n}+{i:08x}" for n, i in known) or "none given"
        raise SignatureError(f"no signature on the note is from a known key (known: {names})")
    return note, list(verified.values())
