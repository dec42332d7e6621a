"""Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4; RFC 6962 §2.1.1 and §2.1.2): plan, rehash, verify.

The server stores only hashes of perfect subtrees, addressed (height, index) as in log/compact.py. A proof element
is the Merkle tree hash of some range [begin, end); when end is the right edge of the tree that range need not be
perfect, and its hash is the right fold of its decomposition into perfect subtrees (biggest first). So building a
proof takes two steps:

- a *plan*: for each proof element, the perfect node IDs, left to right, whose right fold is the element;
- a *rehash*: given the hashes of those nodes (fetched in one batch, see nodes_of), fold each element.

Verification follows the numbered steps of RFC 9162 §2.1.3.2 and §2.1.4.2 and raises ProofError on any failure,
including every malformed input (sizes out of range, a proof too long or too short, hashes not 32 bytes).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence

from log.errors import InvalidInput, ProofError
from log.hashing import HASH_SIZE, hash_children

__all__ = [
    "NodeID",
    "Plan",
    "consistency_plan",
    "consistency_proof",
    "inclusion_plan",
    "inclusion_plan_in_block",
    "block_inclusion_plan",
    "inclusion_proof",
    "nodes_of",
    "rehash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

NodeID = tuple[int, int]
"""(height, index): the perfect subtree over leaves [index * 2**height, (index + 1) * 2**height)."""

Plan = list[list[NodeID]]
"""One list of perfect node IDs per proof element, in proof order; each list is right-folded into its element."""

GetNodes = Callable[[list[NodeID]], Mapping[NodeID, bytes]]


# --- Planning ----------------------------------------------------------------------------------------------------


def _split(size: int) -> int:
    """The largest power of two strictly less than `size` (size >= 2): where RFC 6962 splits a tree of `size`."""
    return 1 << ((size - 1).bit_length() - 1)


def _range_nodes(begin: int, end: int) -> list[NodeID]:
    """The perfect subtrees, biggest first, whose right fold is MTH of leaves [begin, end).

    Valid for the ranges RFC 6962's recursion produces: `begin` is a multiple of the largest power of two not
    exceeding end - begin, so each piece taken is aligned.
    """
    width = end - begin
    if width & (width - 1) == 0:  # the common case: one perfect subtree
        height = width.bit_length() - 1
        return [(height, begin >> height)]
    nodes = []
    while begin < end:
        height = (end - begin).bit_length() - 1
        nodes.append((height, begin >> height))
        begin += 1 << height
    return nodes


def inclusion_plan(index: int, size: int) -> Plan:
    """The plan of PATH(index, D[0:size]) (RFC 6962 §2.1.1), leaf-most element first. Needs 0 <= index < size."""
    _check_leaf(index, size)
    return _inclusion_walk(index, 0, size, 1)[0]


def inclusion_plan_in_block(index: int, size: int, block_width: int) -> tuple[Plan, int]:
    """`inclusion_plan(index, size)`, and how many of its elements (the leaf-most ones) lie inside index's aligned
    block of `block_width` leaves (a power of two). The others are the same for every index of that block in a tree
    of this size, so proofs of neighbouring leaves can share them: `block_inclusion_plan` gives the rest alone.
    """
    _check_leaf(index, size)
    return _inclusion_walk(index, 0, size, block_width)


def block_inclusion_plan(index: int, size: int, block_width: int) -> Plan:
    """The leaf-most elements of `inclusion_plan(index, size)` that lie inside index's aligned block of
    `block_width` leaves (a power of two), planned within the block alone."""
    _check_leaf(index, size)
    begin = index - index % block_width
    return _inclusion_walk(index, begin, min(begin + block_width, size), 1)[0]


def _check_leaf(index: int, size: int) -> None:
    _check_int(index, "index")
    _check_int(size, "size")
    if not 0 <= index < size:
        raise InvalidInput(f"index must be in [0, size={size}), not {index}", field="index")


def _inclusion_walk(index: int, begin: int, end: int, block_width: int) -> tuple[Plan, int]:
    """Walks the RFC's recursion top-down from the window [begin, end), keeping the half that holds the leaf: at each
    split the sibling half is a proof element, then the order is reversed to the RFC's bottom-up order. Also counts
    the elements split off windows no wider than `block_width`: while a window is wider than a block it splits at a
    multiple of the block width (the largest power of two below its width), so every index of an aligned block
    takes the same way down until the window is the block itself."""
    plan: Plan = []
    inside = 0
    while end - begin > 1:
        if end - begin <= block_width:
            inside += 1
        mid = begin + _split(end - begin)
        if index < mid:
            plan.append(_range_nodes(mid, end))
            end = mid
        else:
            plan.append(_range_nodes(begin, mid))
            begin = mid
    plan.reverse()
    return plan, inside


def consistency_plan(first: int, second: int) -> Plan:
    """The plan of PROOF(first, D[0:second]) (RFC 6962 §2.1.2). Needs 0 < first <= second; first == second gives [].

    SUBPROOF(m, D[begin:end], b) walked top-down: while m is not the window's end, split at k; if m <= k recurse
    left (the right half is an element), else recurse right with b = false (the left half is an element). At the
    end, when b is false, MTH(D[begin:end]) (the old tree's rightmost subtree) is the first element.
    """
    _check_int(first, "first")
    _check_int(second, "second")
    if first <= 0:
        raise InvalidInput(f"first must be at least 1 (RFC 9162 defines no proof from 0), not {first}", field="first")
    if first > second:
        raise InvalidInput(f"first must not exceed second={second}, not {first}", field="first")
    plan: Plan = []
    begin, end = 0, second
    whole = True  # the RFC's b: the window is still a prefix of the new tree starting at leaf 0
    while first != end:
        mid = begin + _split(end - begin)
        if first <= mid:
            plan.append(_range_nodes(mid, end))
            end = mid
        else:
            plan.append(_range_nodes(begin, mid))
            begin = mid
            whole = False
    if not whole:
        plan.append(_range_nodes(begin, end))
    plan.reverse()
    return plan


def nodes_of(plan: Iterable[Sequence[NodeID]]) -> list[NodeID]:
    """The distinct node IDs `plan` needs, in first-use order, for one batched fetch."""
    return list(dict.fromkeys(node for element in plan for node in element))


def rehash(plan: Iterable[Sequence[NodeID]], hashes_by_node: Mapping[NodeID, bytes]) -> list[bytes]:
    """Fold each element's node hashes (right fold: h = last; h = hash_children(earlier, h)) into the proof.

    A node missing from `hashes_by_node` raises KeyError: the caller fetched less than nodes_of(plan).
    """
    proof = []
    for element in plan:
        node = hashes_by_node[element[-1]]
        for position in range(len(element) - 2, -1, -1):
            node = hash_children(hashes_by_node[element[position]], node)
        proof.append(node)
    return proof


def inclusion_proof(index: int, size: int, get_nodes: GetNodes) -> list[bytes]:
    """PATH(index, D[0:size]) from stored perfect-node hashes: plan, fetch every node in one get_nodes call, rehash."""
    plan = inclusion_plan(index, size)
    return rehash(plan, get_nodes(nodes_of(plan)))


def consistency_proof(first: int, second: int, get_nodes: GetNodes) -> list[bytes]:
    """PROOF(first, D[0:second]) from stored perfect-node hashes: plan, fetch in one get_nodes call, rehash."""
    plan = consistency_plan(first, second)
    return rehash(plan, get_nodes(nodes_of(plan)))


# --- Verification ------------------------------------------------------------------------------------------------


def _check_int(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be an integer, not {value!r}", field=name)


def _check_hash(value: bytes, name: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, not {size}")


def _check_proof_int(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{name} must be a non-negative integer, not {value!r}")


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` proves leaf_hash at `index` in a tree of `size` into (RFC 9162 §2.1.3.2 steps 1-5).

    Raises ProofError if the proof is malformed: index >= size (so also size 0), a hash not 32 bytes, or a proof
    of the wrong length for (index, size).
    """
    _check_proof_int(index, "index")
    _check_proof_int(size, "size")
    _check_hash(leaf_hash, "leaf hash")
    for position, element in enumerate(proof):
        _check_hash(element, f"proof hash {position}")
    # 1. leaf_index must be below tree_size.
    if index >= size:
        raise ProofError(f"index must be in [0, size={size}), not {index}")
    # 2. fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # 3. r = the leaf hash.
    r = bytes(leaf_hash)
    # 4. Fold in each proof element.
    for p in proof:
        # 4a. A hash left over once sn reaches 0 means the proof is too long.
        if sn == 0:
            raise ProofError(f"inclusion proof for index {index} in size {size} is too long ({len(proof)} hashes)")
        # 4b. p is a left sibling when fn is a right child or the last node of its level.
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0: otherwise the proof is too short.
    if sn != 0:
        raise ProofError(f"inclusion proof for index {index} in size {size} is too short ({len(proof)} hashes)")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `proof` proves leaf_hash at `index` in the tree of `size` with `root` (RFC 9162 §2.1.3.2).

    Returns None on success and raises ProofError on any failure.
    """
    _check_hash(root, "root")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    # 5 (continued). The computed root must equal the expected one.
    if computed != root:
        raise ProofError(f"inclusion proof for index {index} in size {size} leads to a different root")


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that `proof` shows the tree (second, second_root) extends (first, first_root) (RFC 9162 §2.1.4.2).

    Needs 0 < first <= second; first == second needs an empty proof and equal roots. Returns None on success and
    raises ProofError on any failure, malformed input included.
    """
    _check_proof_int(first, "first")
    _check_proof_int(second, "second")
    _check_hash(first_root, "first root")
    _check_hash(second_root, "second root")
    for position, element in enumerate(proof):
        _check_hash(element, f"proof hash {position}")
    if first == 0:
        raise ProofError("first must be at least 1: RFC 9162 defines no consistency proof from the empty tree")
    if first > second:
        raise ProofError(f"first must not exceed second={second}, not {first}")
    if first == second:
        if proof:
            raise ProofError(f"consistency proof between equal sizes {first} must be empty, not {len(proof)} hashes")
        if first_root != second_root:
            raise ProofError(f"trees of equal size {first} have different roots")
        return
    # 1. An empty proof proves nothing between different sizes.
    if not proof:
        raise ProofError(f"consistency proof from {first} to {second} is empty")
    path = list(proof)
    # 2. If first is an exact power of two, the old root is the proof's implicit first element.
    if first & (first - 1) == 0:
        path.insert(0, bytes(first_root))
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. Shift both right while fn's low bit is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first path element.
    fr = sr = path[0]
    # 6. Fold in the rest.
    for c in path[1:]:
        # 6a. A hash left over once sn reaches 0 means the proof is too long.
        if sn == 0:
            raise ProofError(f"consistency proof from {first} to {second} is too long ({len(proof)} hashes)")
        # 6b.
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        # 6c.
        fn >>= 1
        sn >>= 1
    # 7. Both roots must match and sn must be 0.
    if sn != 0:
        raise ProofError(f"consistency proof from {first} to {second} is too short ({len(proof)} hashes)")
    if fr != first_root:
        raise ProofError(f"consistency proof from {first} to {second} does not lead to the first root")
    if sr != second_root:
        raise ProofError(f"consistency proof from {first} to {second} does not lead to the second root")
