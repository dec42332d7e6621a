"""log/hashing.py against the RFC 6962 definitions, the naive reference and the transparency-dev/merkle vectors."""

import hashlib
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests import reference_tree
from log.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    hash_children,
    hash_children_pairs,
    hash_leaf,
    hash_leaves,
)

EIGHT_LEAF = json.loads((Path(__file__).parent / "vectors" / "rfc6962" / "eight-leaf-tree.json").read_text())


def test_constants_are_rfc6962():
    assert LEAF_PREFIX == bytes([0]) and NODE_PREFIX == bytes([1])
    assert HASH_SIZE == 32
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == EIGHT_LEAF["roots"][0]


def test_leaf_hashes_match_the_eight_leaf_vectors():
    leaves = [bytes.fromhex(x) for x in EIGHT_LEAF["leaves"]]
    expected = EIGHT_LEAF["node_hashes"][0]
    assert [hash_leaf(leaf).hex() for leaf in leaves] == expected
    assert [h.hex() for h in hash_leaves(leaves)] == expected


def test_node_hashes_match_the_eight_leaf_vectors():
    levels = [[bytes.fromhex(x) for x in level] for level in EIGHT_LEAF["node_hashes"]]
    for height in range(1, len(levels)):
        below = levels[height - 1]
        assert [hash_children(below[2 * i], below[2 * i + 1]) for i in range(len(levels[height]))] == levels[height]


@given(st.binary(max_size=300))
def test_hash_leaf_is_sha256_of_zero_and_entry(entry):
    assert hash_leaf(entry) == hashlib.sha256(bytes([0]) + entry).digest() == reference_tree.leaf_hash(entry)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hash_children_is_sha256_of_one_left_right(left, right):
    assert hash_children(left, right) == reference_tree.node_hash(left, right)
    assert hash_children(left, right) != hash_children(right, left) or left == right


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300))
def test_hash_children_pairs_is_the_naive_node_hash_of_each_pair(hashes):
    # Every count of hashes up to a tile and beyond, odd ones included: an odd last hash has no parent.
    expected = [reference_tree.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
    assert hash_children_pairs(b"".join(hashes)) == b"".join(expected)
    assert hash_children_pairs(bytearray(b"".join(hashes))) == b"".join(expected)


def test_hash_children_pairs_folds_the_eight_leaf_vectors_to_their_root():
    levels = [bytes.fromhex("".join(level)) for level in EIGHT_LEAF["node_hashes"]]
    for height in range(1, len(levels)):
        assert hash_children_pairs(levels[height - 1]) == levels[height]
    assert hash_children_pairs(levels[-1]) == b""


@given(st.lists(st.binary(max_size=100), max_size=50))
def test_hash_leaves_is_hash_leaf_of_each(entries):
    assert hash_leaves(entries) == [hash_leaf(e) for e in entries]
    assert hash_leaves(iter(entries)) == [hash_leaf(e) for e in entries]


def test_hash_leaves_takes_large_and_memoryview_entries():
    big = bytes(range(256)) * 256
    assert hash_leaves([big, memoryview(big), bytearray(b"x")]) == [hash_leaf(big), hash_leaf(big), hash_leaf(b"x")]


def test_a_leaf_never_collides_with_a_node_of_the_same_bytes():
    left, right = hash_leaf(b"a"), hash_leaf(b"b")
    assert hash_leaf(left + right) != hash_children(left, right)
