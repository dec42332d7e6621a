"""Checkpoint cosignatures (c2sp.org/tlog-cosignature): the message a cosigner key signs for a checkpoint body.

    0x04 COSIGNATURE_ED25519   "cosignature/v1\\n" "time <timestamp>\\n" || checkpoint text  (cosignature_v1_message)
    0x06 COSIGNATURE_MLDSA44   the binary `cosigned_message` ("subtree/v1\\n\\0", cosigner name<1..255>, u64
                               timestamp, origin<1..255>, u64 start = 0, u64 end = tree size, 32-byte root)
                               (subtree_v1_message). Extension lines are not signed, so checkpoints with extension
                               lines are refused for this type, both ways.

The signature of either type is u64 timestamp || the signature over that message (log/note_keys.py signs and
verifies; log/note.py carries it in a note line). Both refuse text that is not a checkpoint body (InvalidInput).
"""

from __future__ import annotations

import struct

from log.checkpoint import Checkpoint
from log.errors import InvalidInput, SignatureError
from log.hashing import EMPTY_ROOT
from log.note import COSIGNATURE_ED25519, COSIGNATURE_MLDSA44, MAX_TIMESTAMP, key_type_name

COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
SUBTREE_V1_LABEL = b"subtree/v1\n\x00"  # 12 bytes, tlog-cosignature `cosigned_message.label`


def cosigned_message(key_type: int, cosigner_name: str, timestamp: int, checkpoint_text: str) -> bytes:
    """What a cosigner key of `key_type` named `cosigner_name` signs to cosign `checkpoint_text` at `timestamp`.

    InvalidInput for a key type that is not a cosignature type, a timestamp outside [0, 2^63 - 1], text that is not
    a checkpoint body, or (ML-DSA-44) a checkpoint with extension lines.
    """
    if key_type == COSIGNATURE_ED25519:
        return cosignature_v1_message(checkpoint_text, timestamp)
    if key_type == COSIGNATURE_MLDSA44:
        return _mldsa_checkpoint_message(cosigner_name, timestamp, checkpoint_text)
    raise InvalidInput(
        f"key type 0x{key_type:02x} ({key_type_name(key_type)}) is not a cosignature type", field="key_type"
    )


def _checkpoint_fields(text: str):
    """`text` parsed as a checkpoint body (log.checkpoint); InvalidInput if it is not one.

    Both cosignature types sign checkpoints only, so the message builders refuse any other text.
    """
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
    if start == end and root != EMPTY_ROOT:
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
