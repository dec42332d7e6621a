"""log/prover.py: proofs folded from tile views equal the naive reference tree's, whatever the caches hold.

The tiles come from EdgeTiles fed by a CompactRange (as the sequencer builds them), full tiles as the store returns
them (StoredTile with or without interior nodes), the right edge in memory. The checks count tile reads, because
what the Prover promises beyond correct answers is to read only what no cache or edge tile holds.
"""

from __future__ import annotations

import random

import pytest

from log.compact import CompactRange
from log.errors import InvalidInput, NotFound
from log.hashing import hash_leaf
from log.proofs import consistency_plan, inclusion_plan
from log.prover import Prover
from log.edge import EdgeTiles
from log.storage import StoredTile
from log.tile_nodes import interior_nodes
from log.tiles import TILE_WIDTH
from tests import reference_tree as ref


class Store:
    """Full tiles by key, as read_tiles returns them; counts every read."""

    def __init__(self, with_interior: bool = True):
        self.tiles: dict = {}
        self.reads: list[set] = []
        self.with_interior = with_interior

    def put(self, key, data):
        if len(data) == TILE_WIDTH * 32 and self.with_interior:
            self.tiles[key] = StoredTile(data, interior_nodes(data))
        else:
            self.tiles[key] = StoredTile(data)

    def read(self, keys):
        self.reads.append(set(keys))
        return {key: self.tiles[key] for key in keys if key in self.tiles}


def grow(size: int, store: Store, seed: int = 0):
    """A tree of `size` entries; full tiles go to `store`; returns (entries, edge tiles)."""
    leaves = [f"{seed}/{i}".encode() for i in range(size)]
    edge = EdgeTiles(0, {})
    frontier = CompactRange()
    frontier.extend([hash_leaf(leaf) for leaf in leaves], edge.add_node)
    for tile_id, data, _ in edge.take_dirty():
        if tile_id.width == TILE_WIDTH:
            store.put((tile_id.level, tile_id.index), data)
    return leaves, edge.snapshot()


@pytest.mark.parametrize("with_interior", [True, False])
@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 65_536, 70_001])
def test_inclusion_and_consistency_proofs_equal_the_reference_tree(size, with_interior):
    store = Store(with_interior)
    leaves, edge = grow(size, store)
    prover = Prover(tile_views=4, edge_views=2, folds=8)  # tiny caches: evictions on every other call
    rng = random.Random(size)
    for _ in range(40 if size < 1000 else 5):  # the reference hashes the whole tree for each proof
        index, tree_size = rng.randrange(size), size
        if rng.random() < 0.3:
            tree_size = rng.randrange(index + 1, size + 1)
        expected = ref.path(index, leaves[:tree_size])
        assert prover.prove(inclusion_plan(index, tree_size), edge, store.read) == expected, (index, tree_size)
        first = rng.randrange(1, size + 1)
        expected = ref.subproof(first, leaves, True) if first < size else []
        assert prover.prove(consistency_plan(first, size), edge, store.read) == expected, first


def test_a_second_proof_through_the_same_tiles_reads_nothing_and_missing_says_so():
    store = Store()
    leaves, edge = grow(70_001, store)
    prover = Prover()
    plan = inclusion_plan(1234, 70_001)
    assert prover.missing(plan, edge) == {(0, 1234 // 256), (1, 0)}
    assert prover.prove(plan, edge, store.read) == ref.path(1234, leaves)
    assert store.reads == [{(0, 1234 // 256), (1, 0)}]  # the edge tiles (level 0 and 1 partial, level 2) in memory
    assert prover.missing(plan, edge) == set()
    assert prover.prove(plan, edge, store.read) == ref.path(1234, leaves)
    assert len(store.reads) == 1


def test_the_edge_view_grows_with_the_tree_and_still_answers_older_sizes():
    store = Store()
    prover = Prover()
    leaves, edge = grow(300, store)
    small = prover.prove(inclusion_plan(260, 300), edge, store.read)
    leaves, edge = grow(400, store)  # the same leaves, 100 more: the level-0 edge tile is wider
    assert small == ref.path(260, leaves[:300])
    assert prover.prove(inclusion_plan(260, 300), edge, store.read) == small
    assert prover.prove(inclusion_plan(399, 400), edge, store.read) == ref.path(399, leaves)


def test_a_node_not_in_the_stored_tree_is_not_found():
    store = Store()
    _, edge = grow(300, store)
    prover = Prover()
    with pytest.raises(NotFound):
        prover.prove(inclusion_plan(5, 600), edge, store.read)  # size past the tree: tile (0, 2) is nowhere
    with pytest.raises(NotFound):
        prover.node_hashes([(3, 40)], edge, store.read)  # leaves [320, 328): past the 300 stored
    with pytest.raises(InvalidInput):
        prover.node_hashes([(-1, 0)], edge, store.read)


def test_node_hashes_equal_the_reference_subtree_hashes():
    store = Store()
    leaves, edge = grow(70_001, store)
    prover = Prover()
    nodes = [(0, 7), (3, 1), (8, 5), (12, 16), (16, 0), (4, 4374)]
    hashes = prover.node_hashes(nodes, edge, store.read)
    for height, index in nodes:
        assert hashes[(height, index)] == ref.mth(leaves[index << height:(index + 1) << height]), (height, index)


def test_without_the_edge_in_memory_a_cached_partial_view_serves_only_what_it_covers():
    # A read worker has no edge tiles: it reads partial tiles from the store, and reuses a view while wide enough.
    store = Store()
    leaves, edge = grow(300, store)
    for key, data in edge.items():  # the store holds the partial tiles too, as the sequencer commits them
        store.put(key, data)
    prover = Prover()
    assert prover.prove(inclusion_plan(260, 300), {}, store.read) == ref.path(260, leaves[:300])
    reads = len(store.reads)
    assert prover.prove(inclusion_plan(270, 290), {}, store.read) == ref.path(270, leaves[:290])
    assert len(store.reads) == reads  # (0, 1) at width 44 covers a tree of 290
    leaves, edge = grow(400, store)
    for key, data in edge.items():
        store.put(key, data)
    assert prover.prove(inclusion_plan(399, 400), {}, store.read) == ref.path(399, leaves)
    assert store.reads[-1] == {(0, 1)}  # wider than the cached view: read again
