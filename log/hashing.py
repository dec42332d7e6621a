"""RFC 6962 / RFC 9162 §2.1.1 Merkle tree hashing: the only module that spells the domain-separation prefixes.

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    empty root = SHA-256("")

Every other module hashes through these functions; the only other copy of the prefixes is the deliberately naive
reference tree in tests/reference_tree.py.
"""

from collections.abc import Iterable
from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "hash_children",
    "hash_children_pairs",
    "hash_leaf",
    "hash_leaves",
]

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


def hash_children_pairs(level: bytes) -> bytes:
    """The parents of adjacent pairs: `level` is n concatenated 32-byte hashes h[0] .. h[n-1]; the result is the
    floor(n / 2) concatenated node hashes hash_children(h[2i], h[2i+1]). An odd last hash has no sibling and no
    parent here (a tree's right edge). Applied to a perfect layer, it gives the layer above.

    The batch fast path of hash_children, for hashes that already lie contiguous (a tile, a layer of one): each
    parent is one copy() of the prefixed hasher and one update() of a 64-byte slice, with no concatenation. Measured
    in CPython 3.11 on 128 pairs, best of 40 interleaved runs: this loop 51.6 us; memoryview slices 54.7 us, a
    bytearray accumulator 54.9 us, `sha256(prefix + pair)` 57.5 us, map() over a closure 60.0 us.
    `level` is trusted to be a whole number of hashes (its callers hold tiles whose lengths are checked).
    """
    copy = _NODE_HASHER.copy
    pair = 2 * HASH_SIZE
    parents = []
    for i in range(0, len(level) - HASH_SIZE, pair):
        hasher = copy()
        hasher.update(level[i : i + pair])
        parents.append(hasher.digest())
    return b"".join(parents)


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
