"""A deliberately naive RFC 6962 §2.1 Merkle tree: the definitions written out recursively, for tests to compare with.

Self-contained on purpose (its own SHA-256 calls and prefixes, the one allowed second copy): nothing here imports
from `log`, so a bug in log/hashing.py cannot hide in both. Slow (it rehashes everything on every call); use it
for small trees. All functions take the raw entries, D[0:n] in the RFC's notation.

    mth(D[n])      MTH, §2.1:    the Merkle tree hash
    path(m, D[n])  PATH, §2.1.1: the audit path of leaf m, leaf-most first
    proof(m, D[n]) PROOF, §2.1.2: the consistency proof from the first m leaves to all n
"""

import hashlib

__all__ = ["leaf_hash", "mth", "node_hash", "path", "proof", "subproof"]


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    """The largest power of two strictly less than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH({}) = SHA-256(); MTH({d0}) = leaf hash; MTH(D[n]) = node hash of MTH(D[0:k]) and MTH(D[k:n])."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = _k(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for 0 <= m < n."""
    n = len(leaves)
    assert 0 <= m < n
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) for 0 < m <= n."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m <= n."""
    assert 0 < m <= len(leaves)
    return subproof(m, leaves, True)
