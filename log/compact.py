"""The frontier (compact range) of the Merkle tree [0, size): append leaves, compute the root, report new nodes.

Node IDs throughout auditlog are (height, index): the perfect subtree over leaves [index * 2**height,
(index + 1) * 2**height). Height 0 is a leaf hash; ranges are half-open.

    height 3                       (3,0)
                           /                  \\
    height 2           (2,0)                  (2,1)
                     /       \\              /       \\
    height 1     (1,0)       (1,1)       (1,2)       (1,3)
                 /   \\       /   \\       /   \\       /   \\
    height 0  (0,0) (0,1) (0,2) (0,3) (0,4) (0,5) (0,6) (0,7)
    leaves    [0,1) [1,2) [2,3) [3,4) [4,5) [5,6) [6,7) [7,8)

For size 6 = 0b110 the frontier is (2,0) over [0, 4) and (1,2) over [4, 6): one perfect subtree per set bit of the
size, biggest (leftmost) first. The RFC 6962 root of [0, size) is their right fold,
hash_children(h0, hash_children(h1, ... hash_children(h_{k-2}, h_{k-1}))).
"""

from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256

from log.errors import InvalidInput
from log.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX, hash_children

__all__ = ["CompactRange", "NodeCallback", "frontier_node_ids"]

NodeCallback = Callable[[int, int, bytes], None]
"""on_node(height, index, hash): called once for every perfect node an append completes."""

# A hasher already fed the node prefix: extend() copies it rather than call hash_children (no concatenation, no
# call), which keeps the prefix spelled only in log/hashing.py.
_NODE_HASHER = sha256(NODE_PREFIX)


def frontier_node_ids(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees that decompose [0, size), left (biggest) to right: one per set bit of `size`.

    A bit at height h contributes (h, begin >> h), where begin is the sum of the higher set bits.
    """
    if size < 0:
        raise InvalidInput(f"size must be at least 0, not {size}", field="size")
    ids = []
    begin = 0
    for height in range(size.bit_length() - 1, -1, -1):
        if size >> height & 1:
            ids.append((height, begin >> height))
            begin += 1 << height
    return ids


class CompactRange:
    """The frontier of the tree [0, size): the hashes of frontier_node_ids(size), left to right.

    Invariant: `_hashes[i]` is the hash of the i-th node of frontier_node_ids(self._size), so len(_hashes) is the
    number of set bits of the size. Appending leaf `size` pushes its hash and then, for every trailing set bit of
    the old size, merges the last two hashes into their parent: O(log size) hashes per append, and old subtrees
    are never rehashed. Not thread-safe.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        """Resume from `hashes`, the hashes of frontier_node_ids(size) in that order (InvalidInput otherwise)."""
        if not isinstance(size, int) or size < 0:
            raise InvalidInput(f"size must be an integer of at least 0, not {size!r}", field="size")
        hashes = [bytes(h) for h in hashes]
        expected = size.bit_count()
        if len(hashes) != expected:
            raise InvalidInput(
                f"a compact range of size {size} holds {expected} hashes, not {len(hashes)}", field="hashes"
            )
        for position, node_hash in enumerate(hashes):
            if len(node_hash) != HASH_SIZE:
                raise InvalidInput(
                    f"frontier hash {position} is {len(node_hash)} bytes, not {HASH_SIZE}", field="hashes"
                )
        self._size = size
        self._hashes = hashes

    @property
    def size(self) -> int:
        """The number of leaves in [0, size)."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The hashes of frontier_node_ids(size), left to right."""
        return tuple(self._hashes)

    def copy(self) -> "CompactRange":
        """An independent copy (the hashes are immutable bytes, so a shallow list copy suffices)."""
        clone = CompactRange.__new__(CompactRange)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def append(self, leaf_hash: bytes, on_node: NodeCallback | None = None) -> None:
        """Add leaf `size`; call on_node for the leaf (height 0) and then each parent it completes, bottom-up."""
        if len(leaf_hash) != HASH_SIZE:
            raise InvalidInput(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}", field="leaf_hash")
        size = self._size
        hashes = self._hashes
        node = leaf_hash
        if on_node is not None:
            on_node(0, size, node)
        height = 0
        while size >> height & 1:
            node = hash_children(hashes.pop(), node)
            height += 1
            if on_node is not None:
                on_node(height, size >> height, node)
        hashes.append(node)
        self._size = size + 1

    def extend(self, leaf_hashes: Iterable[bytes], on_node: NodeCallback | None = None) -> None:
        """append() each of `leaf_hashes` in order; the batch fast path (same callbacks, same order).

        The leaf hashes are trusted to be 32 bytes each (they come from hash_leaves); append() checks.
        On an exception from on_node the range is left as it was before the leaf being appended.
        """
        size = self._size
        hashes = self._hashes
        pop = hashes.pop
        push = hashes.append
        copy = _NODE_HASHER.copy
        try:
            if on_node is None:
                for node in leaf_hashes:
                    bits = size
                    while bits & 1:
                        hasher = copy()
                        hasher.update(pop())
                        hasher.update(node)
                        node = hasher.digest()
                        bits >>= 1
                    push(node)
                    size += 1
            else:
                for node in leaf_hashes:
                    on_node(0, size, node)
                    bits = size
                    height = 0
                    while bits & 1:
                        hasher = copy()
                        hasher.update(hashes[-1 - height])
                        hasher.update(node)
                        node = hasher.digest()
                        bits >>= 1
                        height += 1
                        on_node(height, bits, node)
                    if height:
                        del hashes[-height:]
                    push(node)
                    size += 1
        finally:
            self._size = size

    def append_subtree(self, height: int, node_hash: bytes, on_node: NodeCallback | None = None) -> None:
        """Add leaves [size, size + 2**height) at once, given the hash of the perfect subtree over them.

        The size must be a multiple of 2**height (InvalidInput otherwise). on_node gets the subtree's root and then
        each parent it completes, bottom-up: what append() would report for the subtree's last leaf from `height`
        upwards (the nodes below are the caller's, who hashed the subtree).
        """
        if height < 0 or self._size & ((1 << height) - 1) or len(node_hash) != HASH_SIZE:
            raise InvalidInput(
                f"a subtree of height {height} with a {len(node_hash)}-byte hash cannot follow {self._size} leaves",
                field="height",
            )
        hashes = self._hashes
        bits = self._size >> height
        node = node_hash
        if on_node is not None:
            on_node(height, bits, node)
        merged = 0
        while bits & 1:  # read, not popped, so an exception from on_node leaves the range as it was
            merged += 1
            node = hash_children(hashes[-merged], node)
            bits >>= 1
            if on_node is not None:
                on_node(height + merged, bits, node)
        if merged:
            del hashes[-merged:]
        hashes.append(node)
        self._size += 1 << height

    def root(self) -> bytes:
        """The RFC 6962 Merkle tree hash of [0, size): the right fold of the frontier; EMPTY_ROOT for size 0."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        node = hashes[-1]
        for left in reversed(hashes[:-1]):
            node = hash_children(left, node)
        return node

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"
