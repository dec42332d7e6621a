"""RFC 6962 / RFC 9162 §2.1.1 Merkle tree hashing: the only module that spells the domain-separation prefixes.

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    empty root = SHA-256("")

Every other module hashes through these functions; the only other copy of the prefixes is the deliberately naive
reference tree in tests/reference_tree.py.
"""

from collections.abc import Iterable
from hashlib import sha256

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "LEAF_PREFIX", "NODE_PREFIX", "hash_children", "hash_leaf", "hash_leaves"]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

# Hashers already fed a prefix: copying one is cheaper than concatenating the prefix onto the input (which copies
# the input) and than a fresh constructor call. Measured in CPython 3.11 (AMD EPYC): for hash_leaves over 256-byte
# entries, copy 1.66M/s, `sha256(prefix + entry)` 1.51M/s, `b"\x00%s" % entry` 1.38M/s, `hashlib.new` 0.99M/s;
# for one node hash, copy 1.87M/s against concatenation 1.63M/s.
_LEAF_HASHER = sha256(LEAF_PREFIX)
_NODE_HASHER = sha256(NODE_PREFIX)


def hash_leaf(entry: bytes) -> bytes:
    """The RFC 6962 leaf hash of one entry: SHA-256(0x00 || entry)."""
    hasher = _LEAF_HASHER.copy()
    hasher.update(entry)
    return hasher.digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    hasher = _NODE_HASHER.copy()
    hasher.update(left)
    hasher.update(right)
    return hasher.digest()


def hash_leaves(entries: Iterable[bytes]) -> list[bytes]:
    """The leaf hashes of `entries`, in order; the batch fast path of hash_leaf."""
    copy = _LEAF_HASHER.copy
    out: list[bytes] = []
    append = out.append
    for entry in entries:
        hasher = copy()
        hasher.update(entry)
        append(hasher.digest())
    return out
