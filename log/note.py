"""Signed notes (c2sp.org/signed-note) and checkpoint cosignatures (c2sp.org/tlog-cosignature).

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more signature lines:

    <text, ending in "\\n">
    "\\n"
    "— " <key name> " " base64(4-byte big-endian key ID || signature) "\\n"     (one per signature)

Keys are written as strings, exactly as golang.org/x/mod/sumdb/note writes them:

    verifier key:  <name>+<8 lowercase hex key ID>+base64(type byte || public key)
    signer key:    PRIVATE+KEY+<name>+<8 lowercase hex key ID>+base64(type byte || private seed)

    key ID = SHA-256(name || 0x0A || type byte || public key)[:4], read as a big-endian uint32

This module owns every key-type constant and the key-ID function. Three signature types are supported:

    0x01 ED25519               Ed25519 (RFC 8032) over the note text (signed-note).
    0x04 COSIGNATURE_ED25519   tlog-cosignature/v1: the signature is u64 timestamp || Ed25519 signature over
                               "cosignature/v1\\n" "time <timestamp>\\n" || checkpoint text.
    0x06 COSIGNATURE_MLDSA44   tlog-cosignature, ML-DSA-44 (FIPS 204, pure, empty context): the signature is
                               u64 timestamp || ML-DSA-44 signature over the binary `cosigned_message`
                               ("subtree/v1\\n\\0", cosigner name<1..255>, u64 timestamp, origin<1..255>,
                               u64 start = 0, u64 end = tree size, 32-byte root). Extension lines are not signed,
                               so checkpoints with extension lines are refused for this type, both ways.

For 0x01 and 0x04 the private key material is the 32-byte Ed25519 seed (as in x/mod). For 0x06 it is the 32-byte
FIPS 204 key-generation seed xi; no spec defines a 0x06 signer-key string, this mirrors the Ed25519 one.

Everything that fails to parse or verify raises `SignatureError`; bad arguments raise `InvalidInput`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from log.errors import InvalidInput, SignatureError

try:  # ML-DSA arrived in cryptography 47; older builds still handle the Ed25519 types.
    from cryptography.hazmat.primitives.asymmetric import mldsa as _mldsa
except ImportError:  # pragma: no cover - depends on the installed cryptography
    _mldsa = None

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

COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
SUBTREE_V1_LABEL = b"subtree/v1\n\x00"  # 12 bytes, tlog-cosignature `cosigned_message.label`

_SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_EMPTY_TREE_ROOT = hashlib.sha256(b"").digest()

# Unicode White_Space (the set Go's unicode.IsSpace uses): key names must not contain any of these.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_HEX_ID = re.compile(r"[0-9a-f]{8}")
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


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 section 4): alphabet, padding and zero pad bits all checked."""
    if not _BASE64.fullmatch(text) or len(text) % 4:
        raise SignatureError(f"{what} is not standard padded base64: {text[:80]!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what} is not valid base64: {text[:80]!r}") from exc
    if _b64encode(data) != text:
        raise SignatureError(f"{what} is not canonical base64 (non-zero pad bits): {text[:80]!r}")
    return data


def _type_name(key_type: int) -> str:
    return _TYPE_NAMES.get(key_type, "unassigned")


def _require_mldsa() -> None:
    if _mldsa is None:  # pragma: no cover - depends on the installed cryptography
        raise InvalidInput("ML-DSA-44 keys need cryptography >= 47 with ML-DSA support", field="key_type")


# --- checkpoint text, as the cosignature types need it --------------------------------------------------------


def _checkpoint_fields(text: str):
    """`text` parsed by log.checkpoint (imported here, as that module builds on this one); InvalidInput if bad.

    Both cosignature types sign checkpoints only, so the message builders refuse any other text.
    """
    from log.checkpoint import Checkpoint

    try:
        return Checkpoint.from_text(text)
    except SignatureError as exc:
        raise InvalidInput(f"cosigned text is not a checkpoint body: {exc}", field="checkpoint") from exc


def cosignature_v1_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The message an Ed25519 cosignature (0x04) signs: "cosignature/v1\\ntime <t>\\n" || checkpoint text."""
    _check_timestamp(timestamp)
    _checkpoint_fields(checkpoint_text)  # raises InvalidInput unless it is a well-formed checkpoint body
    return COSIGNATURE_V1_HEADER + b"time %d\n" % timestamp + checkpoint_text.encode()


def subtree_v1_message(cosigner_name: str, timestamp: int, origin: str, start: int, end: int, root: bytes) -> bytes:
    """The `cosigned_message` an ML-DSA-44 cosignature (0x06) signs (tlog-cosignature, "ML-DSA-44 signed message").

    Checks the struct's own bounds: name and origin 1..255 bytes, timestamp <= 2^63 - 1 and zero unless start is
    zero, 0 <= start <= end < 2^64, a 32-byte root, and (as RFC 6962 defines it) the empty tree's root being
    SHA-256 of the empty string. Whether [start, end) is a valid subtree in the sense of the Merkle Tree
    Certificates draft is not checked: this module only cosigns checkpoints, where start is 0.
    """
    _check_timestamp(timestamp)
    name_bytes, origin_bytes = cosigner_name.encode(), origin.encode()
    if not 1 <= len(name_bytes) <= 255:
        raise InvalidInput(f"cosigner name is {len(name_bytes)} bytes; must be 1..255", field="name")
    if not 1 <= len(origin_bytes) <= 255:
        raise InvalidInput(f"log origin is {len(origin_bytes)} bytes; must be 1..255", field="origin")
    if not 0 <= start <= end < 2**64:
        raise InvalidInput(f"subtree [{start}, {end}) is not a range of uint64 indices", field="start")
    if start != 0 and timestamp != 0:
        raise InvalidInput(f"timestamp {timestamp} must be 0 for a subtree starting at {start}", field="timestamp")
    if len(root) != 32:
        raise InvalidInput(f"root hash is {len(root)} bytes; must be 32", field="root")
    if start == end and root != _EMPTY_TREE_ROOT:
        raise InvalidInput("an empty subtree's root must be SHA-256 of the empty string", field="root")
    return b"".join(
        (
            SUBTREE_V1_LABEL,
            bytes([len(name_bytes)]),
            name_bytes,
            struct.pack(">Q", timestamp),
            bytes([len(origin_bytes)]),
            origin_bytes,
            struct.pack(">QQ", start, end),
            root,
        )
    )


def _mldsa_checkpoint_message(cosigner_name: str, timestamp: int, checkpoint_text: str) -> bytes:
    checkpoint = _checkpoint_fields(checkpoint_text)
    if checkpoint.extensions:
        raise InvalidInput(
            "ML-DSA-44 cosignatures do not cover extension lines; refusing a checkpoint that has them",
            field="checkpoint",
        )
    return subtree_v1_message(cosigner_name, timestamp, checkpoint.origin, 0, checkpoint.size, checkpoint.root_hash)


def _check_timestamp(timestamp: int) -> None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput(f"timestamp {timestamp!r} must be an integer in [0, 2^63 - 1]", field="timestamp")


def _load(loader, material: bytes, what: str):
    try:
        return loader(material)
    except ValueError as exc:
        raise InvalidInput(f"{what} is malformed: {exc}", field="key") from exc


# --- keys ---------------------------------------------------------------------------------------------------


class Verifier:
    """A verifier key: checks signatures made by one (name, key ID) over a note's text.

    `verify(message, sig)` takes the note text and the signature bytes after the 4-byte key ID. For the
    cosignature types it checks the timestamped cosignature over `message` read as a checkpoint body.
    """

    def __init__(self, name: str, key_type: int, public_key: bytes):
        check_key_name(name)
        self.name = name
        self.key_type = key_type
        self.public_key = bytes(public_key)
        if key_type in (ED25519, COSIGNATURE_ED25519):
            if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
                raise InvalidInput(f"Ed25519 public key is {len(public_key)} bytes; must be 32", field="key")
            self._key = _load(ed25519.Ed25519PublicKey.from_public_bytes, self.public_key, "Ed25519 public key")
        elif key_type == COSIGNATURE_MLDSA44:
            _require_mldsa()
            if len(public_key) != MLDSA44_PUBLIC_KEY_SIZE:
                raise InvalidInput(f"ML-DSA-44 public key is {len(public_key)} bytes; must be 1312", field="key")
            self._key = _load(_mldsa.MLDSA44PublicKey.from_public_bytes, self.public_key, "ML-DSA-44 public key")
        else:
            raise InvalidInput(
                f"key type 0x{key_type:02x} ({_type_name(key_type)}) is not supported", field="key_type"
            )
        self.key_id = key_id(name, key_type, self.public_key)
        self.verifier_key = f"{name}+{self.key_id:08x}+{_b64encode(bytes([key_type]) + self.public_key)}"

    def __repr__(self) -> str:
        return f"Verifier({self.verifier_key[:80]!r})"

    def verify(self, message: bytes, sig: bytes) -> bool:
        """True if `sig` (without the key ID) is this key's valid signature over the note text `message`."""
        try:
            self.check(message, sig)
        except SignatureError:
            return False
        return True

    def check(self, message: bytes, sig: bytes) -> int | None:
        """Like `verify` but raises SignatureError saying why; returns the timestamp for cosignature types."""
        if self.key_type == ED25519:
            self._verify_raw(sig, message)
            return None
        if len(sig) < TIMESTAMP_SIZE:
            raise SignatureError(f"cosignature from {self.name} is {len(sig)} bytes, too short for a timestamp")
        timestamp = int.from_bytes(sig[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise SignatureError(f"cosignature timestamp {timestamp} from {self.name} exceeds 2^63 - 1")
        try:
            text = message.decode()
        except UnicodeDecodeError as exc:
            raise SignatureError("cosigned text is not UTF-8") from exc
        try:
            if self.key_type == COSIGNATURE_ED25519:
                signed = cosignature_v1_message(text, timestamp)
            else:
                signed = _mldsa_checkpoint_message(self.name, timestamp, text)
        except InvalidInput as exc:
            raise SignatureError(f"cannot check cosignature from {self.name}: {exc}") from exc
        self._verify_raw(sig[TIMESTAMP_SIZE:], signed)
        return timestamp

    def _verify_raw(self, raw: bytes, signed: bytes) -> None:
        size = MLDSA44_SIGNATURE_SIZE if self.key_type == COSIGNATURE_MLDSA44 else ED25519_SIGNATURE_SIZE
        if len(raw) != size:
            raise SignatureError(
                f"signature from {self.name} is {len(raw)} bytes; {_type_name(self.key_type)} has {size}"
            )
        try:
            # ML-DSA-44 per tlog-cosignature: pure ML-DSA with the empty context string.
            self._key.verify(raw, signed)
        except InvalidSignature as exc:
            raise SignatureError(f"signature from {self.name}+{self.key_id:08x} does not verify") from exc


class Signer:
    """A signer key. `sign(message)` returns the signature bytes (without key ID) over the note text.

    For the cosignature types, `sign` cosigns `message` (a checkpoint body) at the current time; use
    `CosignatureSigner.cosign` to choose the timestamp.
    """

    def __init__(self, name: str, key_type: int, seed: bytes):
        check_key_name(name)
        self.name = name
        self.key_type = key_type
        if key_type in (ED25519, COSIGNATURE_ED25519):
            if len(seed) != ED25519_SEED_SIZE:
                raise InvalidInput(f"Ed25519 seed is {len(seed)} bytes; must be 32", field="key")
            self._key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(seed))
        elif key_type == COSIGNATURE_MLDSA44:
            _require_mldsa()
            if len(seed) != MLDSA44_SEED_SIZE:
                raise InvalidInput(f"ML-DSA-44 seed is {len(seed)} bytes; must be 32", field="key")
            self._key = _mldsa.MLDSA44PrivateKey.from_seed_bytes(bytes(seed))
        else:
            raise InvalidInput(
                f"key type 0x{key_type:02x} ({_type_name(key_type)}) is not supported", field="key_type"
            )
        self._seed = bytes(seed)
        self.verifier = Verifier(name, key_type, self._key.public_key().public_bytes_raw())
        self.key_id = self.verifier.key_id
        self.verifier_key = self.verifier.verifier_key

    def __repr__(self) -> str:  # never print the seed
        return f"Signer({self.verifier_key[:80]!r})"

    @property
    def signer_key(self) -> str:
        """The `PRIVATE+KEY+...` string for this key (secret: write it only to a 0600 file)."""
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{_b64encode(bytes([self.key_type]) + self._seed)}"

    def sign(self, message: bytes) -> bytes:
        if self.key_type == ED25519:
            return self._key.sign(message)
        try:
            text = message.decode()
        except UnicodeDecodeError as exc:
            raise InvalidInput("a cosigned message must be a UTF-8 checkpoint body", field="message") from exc
        return self.cosign_bytes(text, int(time.time()))

    def cosign_bytes(self, checkpoint_text: str, timestamp: int) -> bytes:
        """u64 timestamp || signature over the cosigned message, for the cosignature types."""
        if self.key_type == COSIGNATURE_ED25519:
            signed = cosignature_v1_message(checkpoint_text, timestamp)
        elif self.key_type == COSIGNATURE_MLDSA44:
            signed = _mldsa_checkpoint_message(self.name, timestamp, checkpoint_text)
        else:
            raise InvalidInput(f"key {self.name} is a plain Ed25519 key, not a cosignature key", field="key_type")
        return struct.pack(">Q", timestamp) + self._key.sign(signed)


def _split_key(text: str, parts: int, what: str) -> list[str]:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string, not {type(text).__name__}", field="key")
    fields = text.split("+", parts - 1)  # the last field is base64, which may itself contain '+'
    if len(fields) != parts:
        raise InvalidInput(f"{what} must have {parts} '+'-separated fields, has {len(fields)}", field="key")
    return fields


def _decode_key_fields(name: str, hex_id: str, b64: str, what: str) -> tuple[int, int, bytes]:
    if not is_valid_key_name(name):
        raise InvalidInput(f"{what} has an invalid key name {name!r}", field="key")
    if not _HEX_ID.fullmatch(hex_id):
        raise InvalidInput(f"{what} key ID {hex_id!r} is not 8 lowercase hex digits", field="key")
    try:
        material = _b64decode(b64, f"{what} key material")
    except SignatureError as exc:
        raise InvalidInput(str(exc), field="key") from exc
    if len(material) < 2:
        raise InvalidInput(f"{what} key material is {len(material)} bytes; too short", field="key")
    return int(hex_id, 16), material[0], material[1:]


def parse_verifier_key(text: str) -> Verifier:
    """Parse `<name>+<hex key ID>+<base64(type || public key)>`; the key ID must match the key."""
    name, hex_id, b64 = _split_key(text, 3, "verifier key")
    claimed, key_type, public_key = _decode_key_fields(name, hex_id, b64, "verifier key")
    verifier = Verifier(name, key_type, public_key)
    if verifier.key_id != claimed:
        raise InvalidInput(
            f"verifier key ID {claimed:08x} does not match its key, which hashes to {verifier.key_id:08x}", field="key"
        )
    return verifier


def parse_signer_key(text: str) -> Signer:
    """Parse `PRIVATE+KEY+<name>+<hex key ID>+<base64(type || seed)>`; the key ID must match the derived key."""
    private, key, name, hex_id, b64 = _split_key(text, 5, "signer key")
    if private != "PRIVATE" or key != "KEY":
        raise InvalidInput("signer key must start with PRIVATE+KEY+", field="key")
    claimed, key_type, seed = _decode_key_fields(name, hex_id, b64, "signer key")
    signer = Signer(name, key_type, seed)
    if signer.key_id != claimed:
        raise InvalidInput(
            f"signer key ID {claimed:08x} does not match its key, which hashes to {signer.key_id:08x}", field="key"
        )
    return signer


def generate_signer_key(name: str, key_type: int = ED25519) -> tuple[str, str]:
    """A new random key named `name`: (signer key string, verifier key string)."""
    check_key_name(name)
    if key_type in (ED25519, COSIGNATURE_ED25519):
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes_raw()
    elif key_type == COSIGNATURE_MLDSA44:
        _require_mldsa()
        seed = _mldsa.MLDSA44PrivateKey.generate().private_bytes_raw()
    else:
        raise InvalidInput(f"key type 0x{key_type:02x} ({_type_name(key_type)}) is not supported", field="key_type")
    signer = Signer(name, key_type, seed)
    return signer.signer_key, signer.verifier_key


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
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id.to_bytes(KEY_ID_SIZE, 'big') + self.signature)}\n"

    @classmethod
    def from_line(cls, line: str) -> NoteSignature:
        """Parse one signature line without its final newline."""
        if not line.startswith(_SIG_PREFIX):
            raise SignatureError(f"signature line does not start with an em dash and a space: {line[:80]!r}")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not is_valid_key_name(name):
            raise SignatureError(f"signature line has no valid key name: {line[:80]!r}")
        raw = _b64decode(b64, f"signature from {name}")
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


def sign_note(text: str, signers: Sequence[Signer]) -> bytes:
    """Sign `text` with each signer, in order, and format the note."""
    _check_note_text(text, InvalidInput)
    if not signers:
        raise InvalidInput("sign_note needs at least one signer", field="signers")
    message = text.encode()
    return format_note(text, [NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers])


def open_note(
    data: bytes, verifiers: Iterable[Verifier | CosignatureVerifier]
) -> tuple[Note, list[NoteSignature]]:
    """Parse `data` and verify it against `verifiers` (signed-note "Signatures").

    1. Parse the note (SignatureError if malformed).
    2. A signature whose (name, key ID) matches no verifier is ignored, even if the name or the ID alone matches.
    3. Every signature that matches a verifier is verified; one that fails rejects the whole note.
    4. At least one signature must have verified.
    Returns the note and the verified signatures, the first one per key, in note order.
    """
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        if isinstance(v, CosignatureVerifier):
            v = v.verifier
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


# --- cosignatures (c2sp.org/tlog-cosignature) -----------------------------------------------------------------


class CosignatureSigner:
    """A cosigner key (type 0x04 Ed25519 or 0x06 ML-DSA-44), from a `PRIVATE+KEY+...` string."""

    def __init__(self, signer_key: str):
        self.signer = parse_signer_key(signer_key)
        if self.signer.key_type not in COSIGNATURE_KEY_TYPES:
            raise InvalidInput(
                f"key {self.signer.name} has type 0x{self.signer.key_type:02x}; a cosigner key has type 0x04 or 0x06",
                field="key_type",
            )
        self.name = self.signer.name
        self.key_id = self.signer.key_id
        self.key_type = self.signer.key_type
        self.verifier_key = self.signer.verifier_key

    def cosign(self, checkpoint_text: str, timestamp: int) -> NoteSignature:
        """Cosign a checkpoint body at `timestamp` (POSIX seconds). Ed25519 signatures are deterministic."""
        return NoteSignature(self.name, self.key_id, self.signer.cosign_bytes(checkpoint_text, timestamp))


class CosignatureVerifier:
    """A cosigner's verifier key (type 0x04 or 0x06)."""

    def __init__(self, verifier_key: str):
        self.verifier = parse_verifier_key(verifier_key)
        if self.verifier.key_type not in COSIGNATURE_KEY_TYPES:
            raise InvalidInput(
                f"key {self.verifier.name} has type 0x{self.verifier.key_type:02x}; a cosigner key has type 0x04 "
                "or 0x06",
                field="key_type",
            )
        self.name = self.verifier.name
        self.key_id = self.verifier.key_id
        self.key_type = self.verifier.key_type
        self.verifier_key = self.verifier.verifier_key

    def verify(self, checkpoint_text: str, note_signature: NoteSignature) -> int:
        """Check `note_signature` is this cosigner's cosignature on the checkpoint body; return its timestamp.

        Raises SignatureError if the name or key ID differ, or the signature is malformed or does not verify.
        Future timestamps are not rejected here (the spec allows, not requires, it); callers with a clock may.
        """
        if (note_signature.name, note_signature.key_id) != (self.name, self.key_id):
            raise SignatureError(
                f"signature is from {note_signature.name}+{note_signature.key_id:08x}, "
                f"not from cosigner {self.name}+{self.key_id:08x}"
            )
        timestamp = self.verifier.check(checkpoint_text.encode(), note_signature.signature)
        assert timestamp is not None
        return timestamp
