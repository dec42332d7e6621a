"""log/proofs.py: plans and rehashing against the naive RFC 6962 PATH/PROOF, verification per RFC 9162, and vectors.

Three sources of truth:
- tests/reference_tree.py, the recursive RFC 6962 definitions (every size 1..300, random sizes to 5000);
- tests/vectors/rfc6962/eight-leaf-tree.json, transparency-dev/merkle's eight-leaf tree;
- tests/vectors/reference-log, a 70,000-entry log built by Go's golang.org/x/mod/sumdb/tlog.

Every valid proof is also run through a table of mutations, each named, that the verifier must reject. Changing
only the tree size by one is the exception the RFC 9162 algorithms allow: they bind the size only through the
proof's shape, so a size with the same shape (same length, same left/right sides, see the *_shape helpers) gives
the same root and verifies. Those cases are expected to verify; every other size change must fail.
"""

import base64
import functools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log import proofs
from log.compact import CompactRange
from log.errors import InvalidInput, ProofError
from log.hashing import hash_leaf, hash_leaves
from tests import reference_tree

EIGHT_LEAF = json.loads((Path(__file__).parent / "vectors" / "rfc6962" / "eight-leaf-tree.json").read_text())
REFERENCE_LOG = Path(__file__).resolve().parent / "vectors" / "reference-log"

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def entries(n: int, seed: int = 0, begin: int = 0) -> list[bytes]:
    return [b"leaf %d:%d" % (seed, i) for i in range(begin, n)]


@functools.lru_cache(maxsize=None)
def naive_node(seed: int, height: int, index: int) -> bytes:
    """MTH of the perfect subtree (height, index) of entries(..., seed): naive, but computed once per test run."""
    return reference_tree.mth(entries((index + 1) << height, seed, begin=index << height))


@functools.lru_cache(maxsize=None)
def naive_root(seed: int, size: int) -> bytes:
    return reference_tree.mth(entries(size, seed))


def naive_get_nodes(seed: int, size: int) -> Callable:
    """A get_nodes over entries(size, seed) that checks it is called once, for distinct nodes inside the tree."""
    calls = []

    def get_nodes(ids):
        calls.append(list(ids))
        assert len(calls) == 1, "proofs must fetch all nodes in one batch"
        assert len(set(ids)) == len(ids)
        for height, index in ids:
            assert (index + 1) << height <= size, f"node {(height, index)} is not inside a tree of size {size}"
        return {(height, index): naive_node(seed, height, index) for height, index in ids}

    return get_nodes


def flip(data: bytes, bit: int = 3) -> bytes:
    return bytes([data[0] ^ (1 << bit)]) + data[1:]


def replaced(proof: list[bytes], i: int, value: bytes) -> list[bytes]:
    return [*proof[:i], value, *proof[i + 1 :]]


def inclusion_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) element sits on, leaf-most first (the RFC 6962 recursion, naively)."""
    if n == 1:
        return ()
    k = reference_tree._k(n)
    return inclusion_shape(m, k) + ("right",) if m < k else inclusion_shape(m - k, n - k) + ("left",)


def consistency_shape(m: int, n: int, whole: bool = True) -> tuple[str, ...]:
    """The SUBPROOF(m, D[n], b) recursion's shape: each element's side, and whether the old root leads it."""
    if m == n:
        return () if whole else ("old",)
    k = reference_tree._k(n)
    if m <= k:
        return consistency_shape(m, k, whole) + ("right",)
    return consistency_shape(m - k, n - k, False) + ("left",)


# --- mutation tables ---------------------------------------------------------------------------------------------


def inclusion_mutations(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes):
    """(name, args for verify_inclusion, must_reject) for every mutation of a valid inclusion proof."""
    table = [
        ("leaf hash bit flipped", (flip(leaf), index, size, proof, root)),
        ("root bit flipped", (leaf, index, size, proof, flip(root, 7))),
        ("root of another size", (leaf, index, size, proof, SOME_HASH)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("index = size", (leaf, size, size, proof, root)),
        ("size = 0", (leaf, index, 0, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("appended hash", (leaf, index, size, [*proof, SOME_HASH], root)),
        ("appended root", (leaf, index, size, [*proof, root], root)),
        ("prepended hash", (leaf, index, size, [SOME_HASH, *proof], root)),
        ("leaf hash 31 bytes", (leaf[:31], index, size, proof, root)),
        ("leaf hash 33 bytes", (leaf + b"\0", index, size, proof, root)),
        ("root 31 bytes", (leaf, index, size, proof, root[:31])),
        ("empty trailing element", (leaf, index, size, [*proof, b""], root)),
    ]
    for i in range(len(proof)):
        table.append((f"proof[{i}] bit flipped", (leaf, index, size, replaced(proof, i, flip(proof[i])), root)))
        table.append((f"proof[{i}] dropped", (leaf, index, size, proof[:i] + proof[i + 1 :], root)))
        table.append((f"proof[{i}] 31 bytes", (leaf, index, size, replaced(proof, i, proof[i][:31]), root)))
    if len(proof) > 1:
        table.append(("proof[0] and proof[1] swapped", (leaf, index, size, [proof[1], proof[0], *proof[2:]], root)))
    rows = [(name, args, True) for name, args in table]
    for name, other in (("size + 1", size + 1), ("size - 1", size - 1), ("size // 2", size // 2)):
        same_shape = index < other and inclusion_shape(index, other) == inclusion_shape(index, size)
        rows.append((name, (leaf, index, other, proof, root), not same_shape))
    return rows


def consistency_mutations(first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes):
    """(name, args for verify_consistency, must_reject) for every mutation of a valid consistency proof."""
    if first == second:
        return [
            ("non-empty proof", (first, second, [SOME_HASH], first_root, second_root), True),
            ("proof of the root itself", (first, second, [first_root], first_root, second_root), True),
            ("different roots", (first, second, [], first_root, flip(second_root)), True),
            ("first = 0", (0, second, [], first_root, second_root), True),
            ("first > second", (first + 1, second, [], first_root, second_root), True),
            ("root 31 bytes", (first, second, [], first_root[:31], second_root[:31]), True),
        ]
    table = [
        ("first root bit flipped", (first, second, proof, flip(first_root), second_root)),
        ("second root bit flipped", (first, second, proof, first_root, flip(second_root))),
        ("roots swapped", (first, second, proof, second_root, first_root)),
        ("first = 0", (0, second, proof, first_root, second_root)),
        ("first + 1", (first + 1, second, proof, first_root, second_root)),
        ("first - 1", (first - 1, second, proof, first_root, second_root)),
        ("first > second", (second + 1, second, proof, first_root, second_root)),
        ("sizes swapped", (second, first, proof, first_root, second_root)),
        ("second * 2", (first, second * 2, proof, first_root, second_root)),
        ("first = second", (second, second, proof, first_root, second_root)),
        ("empty proof", (first, second, [], first_root, second_root)),
        ("appended hash", (first, second, [*proof, SOME_HASH], first_root, second_root)),
        ("appended first root", (first, second, [*proof, first_root], first_root, second_root)),
        ("appended second root", (first, second, [*proof, second_root], first_root, second_root)),
        ("prepended first root", (first, second, [first_root, *proof], first_root, second_root)),
        ("prepended proof[0]", (first, second, [proof[0], *proof], first_root, second_root)),
        ("first root 33 bytes", (first, second, proof, first_root + b"\0", second_root)),
        ("empty trailing element", (first, second, [*proof, b""], first_root, second_root)),
    ]
    for i in range(len(proof)):
        flipped, short = replaced(proof, i, flip(proof[i], 4)), replaced(proof, i, proof[i][:31])
        table.append((f"proof[{i}] bit flipped", (first, second, flipped, first_root, second_root)))
        table.append((f"proof[{i}] dropped", (first, second, proof[:i] + proof[i + 1 :], first_root, second_root)))
        table.append((f"proof[{i}] 31 bytes", (first, second, short, first_root, second_root)))
    rows = [(name, args, True) for name, args in table]
    for name, other in (("second + 1", second + 1), ("second - 1", second - 1)):
        same_shape = first < other and consistency_shape(first, other) == consistency_shape(first, second)
        rows.append((name, (first, other, proof, first_root, second_root), not same_shape))
    return rows


def _check_mutations(verify, rows, label: str) -> None:
    """Each mutated case must be rejected by `verify` exactly when the RFC algorithm can tell it apart."""
    wrong = []
    for name, args, must_reject in rows:
        try:
            verify(*args)
        except ProofError:
            if not must_reject:
                wrong.append(f"{name}: rejected, but the RFC algorithm accepts a size of the same shape")
        else:
            if must_reject:
                wrong.append(f"{name}: accepted")
    assert not wrong, f"{label}: {wrong}"


def check_inclusion_mutations(leaf, index, size, proof, root):
    _check_mutations(proofs.verify_inclusion, inclusion_mutations(leaf, index, size, proof, root),
                     f"inclusion of {index} in {size}")


def check_consistency_mutations(first, second, proof, first_root, second_root):
    _check_mutations(proofs.verify_consistency,
                     consistency_mutations(first, second, proof, first_root, second_root),
                     f"consistency {first} -> {second}")


def check_inclusion(seed: int, index: int, size: int) -> None:
    tree = entries(size, seed)
    proof = proofs.inclusion_proof(index, size, naive_get_nodes(seed, size))
    assert proof == reference_tree.path(index, tree), (index, size)
    root = naive_root(seed, size)
    leaf = hash_leaf(tree[index])
    assert proofs.root_from_inclusion_proof(leaf, index, size, proof) == root
    proofs.verify_inclusion(leaf, index, size, proof, root)
    check_inclusion_mutations(leaf, index, size, proof, root)


def check_consistency(seed: int, first: int, second: int) -> None:
    tree = entries(second, seed)
    proof = proofs.consistency_proof(first, second, naive_get_nodes(seed, second))
    assert proof == reference_tree.proof(first, tree), (first, second)
    first_root, second_root = naive_root(seed, first), naive_root(seed, second)
    proofs.verify_consistency(first, second, proof, first_root, second_root)
    check_consistency_mutations(first, second, proof, first_root, second_root)


# --- plans -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index, size, plan",
    [
        (0, 1, []),
        (0, 2, [[(0, 1)]]),
        (2, 3, [[(1, 0)]]),
        (0, 7, [[(0, 1)], [(1, 1)], [(1, 2), (0, 6)]]),
        (6, 7, [[(1, 2)], [(2, 0)]]),
        (5, 8, [[(0, 4)], [(1, 3)], [(2, 0)]]),
        (0, 13, [[(0, 1)], [(1, 1)], [(2, 1)], [(2, 2), (0, 12)]]),
    ],
)
def test_inclusion_plan_examples(index, size, plan):
    assert proofs.inclusion_plan(index, size) == plan


@pytest.mark.parametrize(
    "first, second, plan",
    [
        (1, 1, []),
        (4, 4, []),
        (1, 2, [[(0, 1)]]),
        (4, 8, [[(2, 1)]]),
        (3, 7, [[(0, 2)], [(0, 3)], [(1, 0)], [(1, 2), (0, 6)]]),
        (6, 8, [[(1, 2)], [(1, 3)], [(2, 0)]]),
        (2, 13, [[(1, 1)], [(2, 1)], [(2, 2), (0, 12)]]),
    ],
)
def test_consistency_plan_examples(first, second, plan):
    assert proofs.consistency_plan(first, second) == plan


@pytest.mark.parametrize(
    "index, size, named",
    [(0, 0, "size=0"), (1, 1, "size=1"), (-1, 5, "-1"), (5, 5, "not 5"), (True, 5, "True")],
)
def test_inclusion_plan_rejects_out_of_range(index, size, named):
    with pytest.raises(InvalidInput, match=named):
        proofs.inclusion_plan(index, size)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 1 << 40), st.data(), st.integers(0, 10))
def test_an_inclusion_plan_splits_into_its_block_and_a_top_shared_by_the_block(size, data, log_width):
    width = 1 << log_width
    index = data.draw(st.integers(0, size - 1))
    plan = proofs.inclusion_plan(index, size)
    split, inside = proofs.inclusion_plan_in_block(index, size, width)
    assert split == plan and 0 <= inside <= len(plan)
    assert proofs.block_inclusion_plan(index, size, width) == plan[:inside]
    # Every leaf-most element lies inside the block; every other is the same for any index of the block.
    begin = index - index % width
    for element in plan[:inside]:
        for height, i in element:
            assert begin <= i << height and (i + 1) << height <= begin + width
    neighbour = data.draw(st.integers(begin, min(begin + width, size) - 1))
    other, other_inside = proofs.inclusion_plan_in_block(neighbour, size, width)
    assert other[other_inside:] == plan[inside:]


@pytest.mark.parametrize(
    "first, second, named", [(0, 0, "not 0"), (0, 5, "not 0"), (-1, 5, "not -1"), (6, 5, "second=5, not 6")]
)
def test_consistency_plan_rejects_out_of_range(first, second, named):
    with pytest.raises(InvalidInput, match=named):
        proofs.consistency_plan(first, second)


def test_nodes_of_lists_each_node_once_in_first_use_order():
    assert proofs.nodes_of([[(1, 2), (0, 6)], [(2, 0)], [(0, 6)]]) == [(1, 2), (0, 6), (2, 0)]
    assert proofs.nodes_of([]) == []


def test_rehash_folds_right_and_needs_every_node():
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    nodes = {(2, 0): a, (1, 2): b, (0, 6): c}
    assert proofs.rehash([[(2, 0)], [(2, 0), (1, 2), (0, 6)]], nodes) == [
        a,
        reference_tree.node_hash(a, reference_tree.node_hash(b, c)),
    ]
    with pytest.raises(KeyError):
        proofs.rehash([[(3, 0)]], nodes)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 255, 256, 257, 1000])
def test_plans_need_only_perfect_nodes_inside_the_tree(size):
    for index in {0, size // 3, size - 1}:
        for height, i in proofs.nodes_of(proofs.inclusion_plan(index, size)):
            assert (i + 1) << height <= size
    for first in {1, size // 2 or 1, size}:
        for height, i in proofs.nodes_of(proofs.consistency_plan(first, size)):
            assert (i + 1) << height <= size


# --- against the naive tree --------------------------------------------------------------------------------------


def test_every_proof_of_every_size_up_to_40_with_mutations():
    for size in range(1, 41):
        for index in range(size):
            check_inclusion(0, index, size)
        for first in range(1, size + 1):
            check_consistency(0, first, size)


def test_every_size_up_to_300():
    """All sizes 41..300: the edges, the powers of two around them and a few random points, with mutations."""
    rng = random.Random(6962)
    for size in range(41, 301):
        power = 1 << (size.bit_length() - 1)
        for index in {0, size - 1, power - 1, min(power, size - 1), rng.randrange(size)}:
            check_inclusion(0, index, size)
        for first in {1, size - 1, size, power, max(1, power - 1), rng.randrange(1, size + 1)}:
            check_consistency(0, first, size)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_random_large_trees(data):
    size = data.draw(st.integers(min_value=301, max_value=5000), label="size")
    check_inclusion(size, data.draw(st.integers(0, size - 1), label="index"), size)
    check_consistency(size, data.draw(st.integers(1, size), label="first"), size)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.data())
def test_verify_rejects_arbitrary_garbage(size, data):
    """Random hashes, sizes and lengths never verify against a real root (no crash, only ProofError)."""
    leaves = entries(size)
    root = reference_tree.mth(leaves)
    garbage = data.draw(st.lists(st.binary(min_size=0, max_size=33), max_size=8), label="proof")
    index = data.draw(st.integers(-2, size + 2), label="index")
    with pytest.raises(ProofError):
        proofs.verify_inclusion(hash_leaf(b"not in the tree"), index, size, garbage, root)
    first = data.draw(st.integers(-2, size + 2), label="first")
    with pytest.raises(ProofError):
        proofs.verify_consistency(first, size, garbage, SOME_HASH, root)


def test_verifier_edge_cases():
    leaf = hash_leaf(b"data")
    proofs.verify_inclusion(leaf, 0, 1, [], leaf)
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1)]:
        with pytest.raises(ProofError):
            proofs.verify_inclusion(leaf, index, size, [], leaf)
    with pytest.raises(ProofError):
        proofs.verify_inclusion(b"", 0, 1, [], leaf)
    with pytest.raises(ProofError):
        proofs.verify_inclusion(leaf, 0, 1, [], b"")
    proofs.verify_consistency(1, 1, [], leaf, leaf)
    proofs.verify_consistency(7, 7, [], SOME_HASH, SOME_HASH)
    for first, second, proof, root1, root2 in [
        (0, 0, [], leaf, leaf),  # consistency from the empty tree is not defined
        (0, 1, [], leaf, leaf),
        (1, 0, [], leaf, leaf),
        (1, 1, [], leaf, SOME_HASH),
        (1, 1, [leaf], leaf, leaf),
        (1, 2, [], leaf, SOME_HASH),
        (2, 1, [leaf], leaf, SOME_HASH),
        (-1, 1, [], leaf, leaf),
    ]:
        with pytest.raises(ProofError):
            proofs.verify_consistency(first, second, proof, root1, root2)


# --- transparency-dev/merkle eight-leaf vectors ------------------------------------------------------------------


def _eight_leaf_get_nodes(ids):
    return {(h, i): bytes.fromhex(EIGHT_LEAF["node_hashes"][h][i]) for h, i in ids}


@pytest.mark.parametrize("case", EIGHT_LEAF["inclusion"], ids=lambda c: f"{c['index']}-in-{c['size']}")
def test_eight_leaf_inclusion_vectors(case):
    index, size = case["index"], case["size"]
    expected = [bytes.fromhex(x) for x in case["proof"]]
    assert proofs.inclusion_proof(index, size, _eight_leaf_get_nodes) == expected
    leaf = hash_leaf(bytes.fromhex(EIGHT_LEAF["leaves"][index]))
    root = bytes.fromhex(EIGHT_LEAF["roots"][size])
    proofs.verify_inclusion(leaf, index, size, expected, root)
    check_inclusion_mutations(leaf, index, size, expected, root)


@pytest.mark.parametrize("case", EIGHT_LEAF["consistency"], ids=lambda c: f"{c['first']}-to-{c['second']}")
def test_eight_leaf_consistency_vectors(case):
    first, second = case["first"], case["second"]
    expected = [bytes.fromhex(x) for x in case["proof"]]
    assert proofs.consistency_proof(first, second, _eight_leaf_get_nodes) == expected
    roots = [bytes.fromhex(x) for x in EIGHT_LEAF["roots"]]
    proofs.verify_consistency(first, second, expected, roots[first], roots[second])
    check_consistency_mutations(first, second, expected, roots[first], roots[second])


# --- the 70,000-entry reference log (Go's golang.org/x/mod/sumdb/tlog) --------------------------------------------


def _read_bundles(directory: Path) -> list[bytes]:
    """Entries of every bundle under tile/entries, in order: full bundles NNN (or x001/NNN), then the partial one."""

    def bundle_index(path: Path) -> int:
        # tlog-tiles: N is written in 3-digit groups, all but the last prefixed "x"; a partial bundle is N.p/W.
        parts = list(path.relative_to(directory).parts)
        if len(parts) >= 2 and parts[-2].endswith(".p"):
            parts = [*parts[:-2], parts[-2].removesuffix(".p")]
        return int("".join(part.removeprefix("x") for part in parts))

    out = []
    for path in sorted((p for p in directory.rglob("*") if p.is_file()), key=bundle_index):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 2], "big")
            out.append(data[offset + 2 : offset + 2 + length])
            offset += 2 + length
        assert offset == len(data), path
    return out


@pytest.fixture(scope="module")
def reference_log():
    vectors = json.loads((REFERENCE_LOG / "vectors.json").read_text())
    leaves = _read_bundles(REFERENCE_LOG / "log" / "tile" / "entries")
    assert len(leaves) == vectors["tree_size"] == 70_000
    leaf_hashes = hash_leaves(leaves)
    sizes = sorted(
        {r["size"] for r in vectors["roots"]}
        | {c["first"] for c in vectors["consistency"]}
        | {c["second"] for c in vectors["consistency"]}
        | {c["tree_size"] for c in vectors["inclusion"]}
    )
    nodes: dict[tuple[int, int], bytes] = {}
    roots = {}
    cr = CompactRange()

    def on_node(height, index, node_hash):
        nodes[(height, index)] = node_hash

    for size in sizes:
        cr.extend(leaf_hashes[cr.size : size], on_node)
        roots[size] = cr.root()
    return vectors, leaves, leaf_hashes, nodes, roots


def _b64(values):
    return [base64.b64decode(v) for v in values]


def test_reference_log_sample_entries_and_leaf_hashes(reference_log):
    vectors, leaves, leaf_hashes, _, _ = reference_log
    assert len(leaves[12345]) == 65535
    for sample in vectors["entries"]:
        assert leaves[sample["index"]] == base64.b64decode(sample["entry_b64"])
        assert leaf_hashes[sample["index"]] == base64.b64decode(sample["leaf_hash"])


def test_reference_log_roots(reference_log):
    vectors, _, _, _, roots = reference_log
    assert len(vectors["roots"]) == 40
    for case in vectors["roots"]:
        assert roots[case["size"]] == base64.b64decode(case["root"]), case["size"]
    assert roots[70_000] == base64.b64decode(vectors["root"])


def test_reference_log_inclusion_proofs(reference_log):
    vectors, _, leaf_hashes, nodes, roots = reference_log
    assert len(vectors["inclusion"]) == 51
    for case in vectors["inclusion"]:
        index, size = case["index"], case["tree_size"]
        expected = _b64(case["hashes"])
        leaf = base64.b64decode(case["leaf_hash"])
        assert leaf == leaf_hashes[index]
        assert proofs.inclusion_proof(index, size, lambda ids: {n: nodes[n] for n in ids}) == expected, (index, size)
        proofs.verify_inclusion(leaf, index, size, expected, roots[size])
        check_inclusion_mutations(leaf, index, size, expected, roots[size])


def test_reference_log_consistency_proofs(reference_log):
    vectors, _, _, nodes, roots = reference_log
    assert len(vectors["consistency"]) == 51
    for case in vectors["consistency"]:
        first, second = case["first"], case["second"]
        expected = _b64(case["hashes"])
        got = proofs.consistency_proof(first, second, lambda ids: {n: nodes[n] for n in ids})
        assert got == expected, (first, second)
        proofs.verify_consistency(first, second, expected, roots[first], roots[second])
        check_consistency_mutations(first, second, expected, roots[first], roots[second])


def test_verifier_names_the_failed_check():
    """Each RFC 9162 step fails with its own reason (a too-long proof must fail on length, not only on the root)."""
    seed, size = 0, 13
    leaf = hash_leaf(entries(size)[5])
    proof = proofs.inclusion_proof(5, size, naive_get_nodes(seed, size))
    root = naive_root(seed, size)
    with pytest.raises(ProofError, match="too long"):
        proofs.root_from_inclusion_proof(leaf, 5, size, [*proof, SOME_HASH])
    with pytest.raises(ProofError, match="too short"):
        proofs.root_from_inclusion_proof(leaf, 5, size, proof[:-1])
    with pytest.raises(ProofError, match="different root"):
        proofs.verify_inclusion(leaf, 5, size, proof, flip(root))
    with pytest.raises(ProofError, match="must be 32 bytes, not 31"):
        proofs.verify_inclusion(leaf[:31], 5, size, proof, root)
    consistency = proofs.consistency_proof(3, size, naive_get_nodes(seed, size))
    first_root = naive_root(seed, 3)
    with pytest.raises(ProofError, match="too long"):
        proofs.verify_consistency(3, size, [*consistency, SOME_HASH], first_root, root)
    with pytest.raises(ProofError, match="too short"):
        proofs.verify_consistency(3, size, consistency[:-1], first_root, root)
    with pytest.raises(ProofError, match="first root"):
        proofs.verify_consistency(3, size, consistency, flip(first_root), root)
    with pytest.raises(ProofError, match="second root"):
        proofs.verify_consistency(3, size, consistency, first_root, flip(root))
