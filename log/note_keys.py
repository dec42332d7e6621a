"""Signed-note keys (c2sp.org/signed-note): signer and verifier keys of the three supported types, from and to the
strings golang.org/x/mod/sumdb/note writes, and the cosigner keys of c2sp.org/tlog-cosignature.

    verifier key:  <name>+<8 lowercase hex key ID>+base64(type byte || public key)
    signer key:    PRIVATE+KEY+<name>+<8 lowercase hex key ID>+base64(type byte || private seed)

    0x01 ED25519               Ed25519 (RFC 8032) over the note text (signed-note).
    0x04 COSIGNATURE_ED25519   u64 timestamp || Ed25519 signature over the cosignature/v1 message (log/cosignature.py).
    0x06 COSIGNATURE_MLDSA44   u64 timestamp || ML-DSA-44 (FIPS 204, pure, empty context) signature over the
                               subtree/v1 `cosigned_message` (log/cosignature.py).

For 0x01 and 0x04 the private key material is the 32-byte Ed25519 seed (as in x/mod). For 0x06 it is the 32-byte
FIPS 204 key-generation seed xi; no spec defines a 0x06 signer-key string, this mirrors the Ed25519 one.

A Verifier or a Signer of any type opens or signs notes through log/note.py (open_note, sign_note): a cosignature
key there reads the note text as a checkpoint body. Key strings that fail to parse and bad arguments raise
`InvalidInput`; signatures that do not verify raise `SignatureError`.
"""

from __future__ import annotations

import re
import struct
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from log.cosignature import cosigned_message
from log.errors import InvalidInput, SignatureError
from log.note import (
    COSIGNATURE_ED25519,
    COSIGNATURE_KEY_TYPES,
    COSIGNATURE_MLDSA44,
    ED25519,
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SEED_SIZE,
    ED25519_SIGNATURE_SIZE,
    MAX_TIMESTAMP,
    MLDSA44_PUBLIC_KEY_SIZE,
    MLDSA44_SEED_SIZE,
    MLDSA44_SIGNATURE_SIZE,
    TIMESTAMP_SIZE,
    NoteSignature,
    b64decode,
    b64encode,
    check_key_name,
    is_valid_key_name,
    key_id,
    key_type_name,
)

try:  # ML-DSA arrived in cryptography 47; older builds still handle the Ed25519 types.
    from cryptography.hazmat.primitives.asymmetric import mldsa as _mldsa
except ImportError:  # pragma: no cover - depends on the installed cryptography
    _mldsa = None

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX_ID = re.compile(r"[0-9a-f]{8}")


def _require_mldsa() -> None:
    if _mldsa is None:  # pragma: no cover - depends on the installed cryptography
        raise InvalidInput("ML-DSA-44 keys need cryptography >= 47 with ML-DSA support", field="key_type")


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
                f"key type 0x{key_type:02x} ({key_type_name(key_type)}) is not supported", field="key_type"
            )
        self.key_id = key_id(name, key_type, self.public_key)
        self.verifier_key = f"{name}+{self.key_id:08x}+{b64encode(bytes([key_type]) + self.public_key)}"

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
            signed = cosigned_message(self.key_type, self.name, timestamp, text)
        except InvalidInput as exc:
            raise SignatureError(f"cannot check cosignature from {self.name}: {exc}") from exc
        self._verify_raw(sig[TIMESTAMP_SIZE:], signed)
        return timestamp

    def _verify_raw(self, raw: bytes, signed: bytes) -> None:
        size = MLDSA44_SIGNATURE_SIZE if self.key_type == COSIGNATURE_MLDSA44 else ED25519_SIGNATURE_SIZE
        if len(raw) != size:
            raise SignatureError(
                f"signature from {self.name} is {len(raw)} bytes; {key_type_name(self.key_type)} has {size}"
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
                f"key type 0x{key_type:02x} ({key_type_name(key_type)}) is not supported", field="key_type"
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
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{b64encode(bytes([self.key_type]) + self._seed)}"

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
        if self.key_type not in COSIGNATURE_KEY_TYPES:
            raise InvalidInput(f"key {self.name} is a plain Ed25519 key, not a cosignature key", field="key_type")
        signed = cosigned_message(self.key_type, self.name, timestamp, checkpoint_text)
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
        material = b64decode(b64, f"{what} key material")
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
        raise InvalidInput(f"key type 0x{key_type:02x} ({key_type_name(key_type)}) is not supported", field="key_type")
    signer = Signer(name, key_type, seed)
    return signer.signer_key, signer.verifier_key


# --- cosigner keys (c2sp.org/tlog-cosignature) ----------------------------------------------------------------


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

    def check(self, message: bytes, sig: bytes) -> int | None:
        """As Verifier.check, so that open_note takes a CosignatureVerifier as it is."""
        return self.verifier.check(message, sig)
