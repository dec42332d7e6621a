"""(1) The hashing path in memory: leaf hashing plus integration into the tree, as the sequencer does it.

Ours: per batch of 1024, `hash_leaves`, `extend_tree` into a `CompactRange` and its `EdgeTiles` (whole level-0
tiles hashed as blocks, their interior nodes kept), and `EdgeTiles.take_dirty` (the tile bytes a commit would
store). Beside it, in the same process and run, pymerkle 7's
`InmemoryTree` appending the same entries. pymerkle's default hasher (sha256, "security" on) prefixes leaves with
0x00 and nodes with 0x01 and folds the perfect subtrees right to left, which is RFC 6962's tree hash, so both sides
do equal work and the test checks that the roots, and the tile hashes against pymerkle's subtree roots, agree.
"""

from __future__ import annotations

import gc

import pytest

from benchmarks.workloads import random_entries, timed

pymerkle = pytest.importorskip("pymerkle")


def _ours(entries):
    from log.compact import CompactRange
    from log.hashing import hash_leaves
    from log.edge import EdgeTiles, extend_tree

    frontier = CompactRange()
    edge = EdgeTiles(0, {})
    tiles = {}
    for start in range(0, len(entries), 1024):
        extend_tree(frontier, edge, hash_leaves(entries[start:start + 1024]))
        for tid, data, _ in edge.take_dirty():
            tiles[(tid.level, tid.index)] = data
    return frontier, tiles


def _pymerkle(entries):
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    tree.append_entries(entries)
    return tree


@pytest.mark.parametrize("which", ["smaller", "larger"])
def test_hashing_in_memory(benchmark, bench_mode, results, which):
    count = bench_mode.hash_sizes[0 if which == "smaller" else 1]
    entries = random_entries(count)
    ours_seconds, theirs_seconds = [], []
    theirs = None
    _ours(entries[:4096])  # warm both paths up (imports, first calls) outside the clock
    _pymerkle(entries[:4096])
    rounds = bench_mode.rounds if count >= 100_000 else max(3, bench_mode.rounds)

    def one_round():
        nonlocal theirs
        gc.collect()
        seconds, out = timed(_ours, entries)
        ours_seconds.append(seconds)
        # pymerkle interleaved with ours, so both see the same machine noise.
        theirs = None
        gc.collect()
        seconds, theirs = timed(_pymerkle, entries)
        theirs_seconds.append(seconds)
        return out

    frontier, tiles = benchmark.pedantic(one_round, rounds=rounds, iterations=1)

    # Correctness of the timed work: same size, same root as pymerkle's, and the tiles hold its subtree roots.
    assert frontier.size == count
    assert frontier.root() == theirs.get_root()
    assert tiles[(0, 0)][:32] == theirs.get_leaf(1)
    assert tiles[(0, 0)][-32:] == theirs.get_leaf(256)
    last = count // 256 - 1  # the last full level-0 tile
    assert tiles[(0, last)][:32] == theirs.get_leaf(last * 256 + 1)
    assert tiles[(1, last // 256)][(last % 256) * 32:][:32] == theirs._get_subroot(last * 256, 256)
    assert tiles[(1, 0)][:32] == theirs._get_subroot(0, 256)
    if count >= 65536:
        assert tiles[(2, 0)][:32] == theirs._get_subroot(0, 65536)

    ours_best = sorted(ours_seconds)[len(ours_seconds) // 2]
    theirs_best = sorted(theirs_seconds)[len(theirs_seconds) // 2]
    ours_rate, theirs_rate = count / ours_best, count / theirs_best
    common = dict(entries=count, entry_bytes=256, rounds=len(ours_seconds), statistic="median of rounds")
    results.record(f"hash.ours@{count}", ours_rate, "entries/s", seconds=ours_seconds,
                   tiles_taken=len(tiles), **common)
    results.record(f"hash.pymerkle@{count}", theirs_rate, "entries/s", seconds=theirs_seconds,
                   config="InmemoryTree(algorithm='sha256'), default security=True (RFC 6962 prefixes)",
                   **common)
    results.record(f"hash.ratio@{count}", ours_rate / theirs_rate, "×", **common)
    benchmark.extra_info.update(entries_per_second=ours_rate, pymerkle_entries_per_second=theirs_rate)
