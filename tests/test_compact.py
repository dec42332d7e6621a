"""log/compact.py against the naive RFC 6962 tree: every size 1..300, random larger ones, and the eight-leaf vectors."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log.compact import CompactRange, frontier_node_ids
from log.errors import InvalidInput
from log.hashing import EMPTY_ROOT, hash_leaf, hash_leaves
from tests import reference_tree

EIGHT_LEAF = json.loads((Path(__file__).parent / "vectors" / "rfc6962" / "eight-leaf-tree.json").read_text())


def entries(n: int, seed: int = 0) -> list[bytes]:
    return [b"entry %d/%d" % (seed, i) for i in range(n)]


def perfect_nodes(size: int) -> set[tuple[int, int]]:
    """Every perfect subtree (height, index) inside [0, size)."""
    return {(h, i) for h in range(size.bit_length()) for i in range(size >> h)}


def naive_node(leaves: list[bytes], height: int, index: int) -> bytes:
    return reference_tree.mth(leaves[index << height : (index + 1) << height])


class Recorder:
    def __init__(self):
        self.calls: list[tuple[int, int, bytes]] = []

    def __call__(self, height: int, index: int, node_hash: bytes) -> None:
        self.calls.append((height, index, node_hash))


# --- frontier_node_ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [(0, []), (1, [(0, 0)]), (2, [(1, 0)]), (3, [(1, 0), (0, 2)]), (6, [(2, 0), (1, 2)]), (7, [(2, 0), (1, 2), (0, 6)]),
     (8, [(3, 0)]), (13, [(3, 0), (2, 2), (0, 12)])],
)
def test_frontier_node_ids_examples(size, expected):
    assert frontier_node_ids(size) == expected


@given(st.integers(min_value=0, max_value=2**64))
def test_frontier_node_ids_tile_the_range_left_to_right_biggest_first(size):
    ids = frontier_node_ids(size)
    assert len(ids) == size.bit_count()
    begin = 0
    for height, index in ids:
        assert index << height == begin
        begin += 1 << height
    assert begin == size
    assert [h for h, _ in ids] == sorted((h for h, _ in ids), reverse=True)


def test_frontier_node_ids_rejects_a_negative_size():
    with pytest.raises(InvalidInput, match="-1"):
        frontier_node_ids(-1)


# --- root and on_node against the naive tree ---------------------------------------------------------------------


def test_empty_range():
    cr = CompactRange()
    assert cr.size == 0 and cr.hashes == () and cr.root() == EMPTY_ROOT


def test_every_size_up_to_300_appending_one_by_one():
    """Root == MTH at every size; on_node reports each perfect node exactly once, leaf first then bottom-up."""
    leaves = entries(300)
    cr = CompactRange()
    seen: dict[tuple[int, int], bytes] = {}
    for size in range(1, 301):
        rec = Recorder()
        cr.append(hash_leaf(leaves[size - 1]), rec)
        assert cr.size == size
        assert cr.root() == reference_tree.mth(leaves[:size]), size
        # This append completes the leaf and one parent per trailing set bit of the old size, bottom-up.
        old = size - 1
        assert [(h, i) for h, i, _ in rec.calls] == [(h, old >> h) for h in range((~old & (old + 1)).bit_length())]
        for height, index, node_hash in rec.calls:
            assert (height, index) not in seen
            seen[(height, index)] = node_hash
        assert set(seen) == perfect_nodes(size)
        assert list(cr.hashes) == [seen[node] for node in frontier_node_ids(size)]
    for (height, index), node_hash in seen.items():
        assert node_hash == naive_node(leaves, height, index)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=301, max_value=5000), st.integers(min_value=0, max_value=3))
def test_random_larger_sizes(size, seed):
    leaves = entries(size, seed)
    cr = CompactRange()
    rec = Recorder()
    cr.extend(hash_leaves(leaves), rec)
    assert cr.root() == reference_tree.mth(leaves)
    nodes = {(h, i): x for h, i, x in rec.calls}
    assert len(nodes) == len(rec.calls) and set(nodes) == perfect_nodes(size)
    for height, index in [(0, size - 1), (1, 0), *frontier_node_ids(size)]:
        assert nodes[(height, index)] == naive_node(leaves, height, index)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12), st.booleans())
def test_extend_equals_appending_one_by_one(batches, with_callback):
    leaves = hash_leaves(entries(sum(batches)))
    one, many = CompactRange(), CompactRange()
    rec_one, rec_many = Recorder(), Recorder()
    for leaf in leaves:
        one.append(leaf, rec_one)
    at = 0
    for count in batches:
        many.extend(iter(leaves[at : at + count]), rec_many if with_callback else None)
        at += count
        assert many.size == at
    assert (many.size, many.hashes, many.root()) == (one.size, one.hashes, one.root())
    assert rec_many.calls == (rec_one.calls if with_callback else [])


def test_extend_leaves_the_range_consistent_when_on_node_raises():
    leaves = hash_leaves(entries(8))
    cr = CompactRange()
    cr.extend(leaves[:3])

    def fail_on_parent(height, index, node_hash):
        if height == 2:
            raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        cr.extend(leaves[3:], fail_on_parent)
    assert cr.size == 3 and cr.root() == reference_tree.mth(entries(3))
    cr.extend(leaves[3:])
    assert cr.root() == reference_tree.mth(entries(8))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=20), st.integers(0, 3))
def test_append_subtree_equals_appending_its_leaves(height, whole, extra):
    """Any size that is a multiple of 2**height, then one subtree: the same range, and the callbacks append()
    makes for the subtree's last leaf from `height` up."""
    size = whole << height
    leaves = hash_leaves(entries(size + (1 << height) + extra))
    one, block = CompactRange(), CompactRange()
    one.extend(leaves[:size])
    block.extend(leaves[:size])
    rec_one, rec_block = Recorder(), Recorder()
    for leaf in leaves[size:size + (1 << height)]:
        rec_one.calls.clear()
        one.append(leaf, rec_one)
    subtree = reference_tree.mth(entries(size + (1 << height))[size:])
    block.append_subtree(height, subtree, rec_block)
    assert (block.size, block.hashes) == (one.size, one.hashes)
    assert rec_block.calls == [call for call in rec_one.calls if call[0] >= height]
    one.extend(leaves[size + (1 << height):])
    block.extend(leaves[size + (1 << height):])
    assert block.root() == one.root() == reference_tree.mth(entries(len(leaves)))


def test_append_subtree_refuses_a_misaligned_subtree_and_survives_a_failing_callback():
    leaves = hash_leaves(entries(12))
    cr = CompactRange()
    cr.extend(leaves[:4])
    for height, node in [(3, bytes(32)), (2, bytes(31)), (-1, bytes(32))]:
        with pytest.raises(InvalidInput):
            cr.append_subtree(height, node)
    four_to_eight = reference_tree.mth(entries(8)[4:])

    def fail_above(height, index, node_hash):
        if height > 2:
            raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        cr.append_subtree(2, four_to_eight, fail_above)
    assert cr.size == 4 and cr.root() == reference_tree.mth(entries(4))
    cr.append_subtree(2, four_to_eight)
    assert cr.root() == reference_tree.mth(entries(8))


# --- resuming, copying, validation -------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=60))
def test_resume_from_frontier_hashes(size, more):
    leaves = hash_leaves(entries(size + more))
    full = CompactRange()
    full.extend(leaves[:size])
    resumed = CompactRange(size, full.hashes)
    assert resumed.size == size and resumed.root() == full.root()
    full.extend(leaves[size:])
    resumed.extend(leaves[size:])
    assert resumed.hashes == full.hashes


def test_copy_is_independent():
    cr = CompactRange()
    cr.extend(hash_leaves(entries(5)))
    clone = cr.copy()
    clone.append(hash_leaf(b"more"))
    assert cr.size == 5 and clone.size == 6
    assert cr.root() == reference_tree.mth(entries(5))


@pytest.mark.parametrize(
    "size, hashes, names",
    [
        (1, [], "1 hashes, not 0"),
        (3, [bytes(32)], "2 hashes, not 1"),
        (4, [bytes(32)] * 2, "1 hashes, not 2"),
        (0, [bytes(32)], "0 hashes, not 1"),
        (2, [bytes(31)], "31 bytes, not 32"),
        (-1, [], "-1"),
    ],
)
def test_constructor_rejects_a_wrong_frontier(size, hashes, names):
    with pytest.raises(InvalidInput, match=names):
        CompactRange(size, hashes)


def test_append_rejects_a_short_leaf_hash():
    with pytest.raises(InvalidInput, match="31 bytes, not 32"):
        CompactRange().append(bytes(31))


# --- known answers -----------------------------------------------------------------------------------------------


def test_eight_leaf_vectors_roots_and_frontiers():
    """transparency-dev/merkle testonly: RootHashes and CompactTrees, sizes 0..8."""
    nodes = EIGHT_LEAF["node_hashes"]
    cr = CompactRange()
    for size, leaf in enumerate([bytes.fromhex(x) for x in EIGHT_LEAF["leaves"]], start=1):
        cr.append(hash_leaf(leaf))
        assert cr.root().hex() == EIGHT_LEAF["roots"][size]
        assert [h.hex() for h in cr.hashes] == [nodes[h][i] for h, i in frontier_node_ids(size)]
