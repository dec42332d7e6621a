"""log/tiles.py, log/tile_nodes.py, log/edge.py and log/bundles.py against the independent reference log (Go's
golang.org/x/mod/sumdb/tlog, see its README.md).

Vectors: tests/vectors/reference-log, a 70,000-entry static tlog-tiles log with its tiles, entry bundles and
vectors.json (roots for 40 sizes, sample entries with leaf hashes), used byte for byte.
"""

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from log.bundles import decode_entry_bundle, encode_entry_bundle
from log.compact import CompactRange
from log.edge import EdgeTiles, extend_tree
from log.errors import InvalidInput, NotFound
from log.hashing import hash_children, hash_leaf
from log.tile_nodes import (
    PartialTileNodes,
    TileNodes,
    interior_nodes,
    node_hash_from_tile,
    tile_for_node,
    tile_hashes,
    tile_node_layers,
)
from log.tiles import (
    MAX_ENTRY_SIZE,
    MAX_TILE_INDEX,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileID,
    decode_tile_index,
    encode_tile_index,
    entry_bundles_for_size,
    entry_bundles_grown,
    tiles_for_size,
    tiles_grown,
)

REFERENCE = Path(__file__).resolve().parent / "vectors" / "reference-log"
TILE_DIR = REFERENCE / "log" / "tile"
SIZE = 70000


# --- The reference log, loaded once ------------------------------------------------------------------------------


def _tile_files() -> dict[str, bytes]:
    """Every file under log/tile/, keyed by its path relative to log/ ("tile/0/x001/023", "tile/1/001.p/17")."""
    found = {}
    for root, _, files in os.walk(TILE_DIR):
        for name in files:
            path = Path(root, name)
            found[path.relative_to(TILE_DIR.parent).as_posix()] = path.read_bytes()
    return found


@dataclass(repr=False)
class Reference:
    files: dict[str, bytes]  # every file under log/tile/, by path
    vectors: dict
    entries: list[bytes]
    leaves: list[bytes]  # RFC 6962 leaf hashes of the entries
    widest: dict[tuple[int, int], bytes]  # (level, index) -> the widest stored copy of that hash tile

    def __repr__(self) -> str:
        return f"<reference log of {len(self.entries)} entries>"


@pytest.fixture(scope="module")
def reference():
    files = _tile_files()
    vectors = json.loads((REFERENCE / "vectors.json").read_text())
    entries = []
    for tid in entry_bundles_for_size(SIZE):
        entries += decode_entry_bundle(files[tid.path()])
    # The widest stored copy of each hash tile: full tiles, or the size-70000 right-edge partial tiles.
    widest: dict[tuple[int, int], bytes] = {}
    for path, data in files.items():
        tid = TileID.parse(path)
        if tid.level is not None and len(data) > len(widest.get((tid.level, tid.index), b"")):
            widest[(tid.level, tid.index)] = data
    return Reference(files, vectors, entries, [hash_leaf(e) for e in entries], widest)


class Frontier:
    """A naive compact range for the tests: the perfect-subtree roots of [0, size), left to right.

    extend() calls on_node(height, index, hash) for the leaf and then each parent that the append completes,
    bottom-up, as log/compact.py's CompactRange does.
    """

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None):
        self.size = size
        self.hashes = list(hashes or [])

    def extend(self, leaf_hashes, on_node) -> None:
        for leaf in leaf_hashes:
            index, height, node = self.size, 0, leaf
            on_node(0, index, node)
            while index & 1:
                node = hash_children(self.hashes.pop(), node)
                height += 1
                index >>= 1
                on_node(height, index, node)
            self.hashes.append(node)
            self.size += 1


RANGES = [Frontier, CompactRange]
range_kinds = pytest.mark.parametrize("make_range", RANGES, ids=[r.__name__ for r in RANGES])


def _perfect_nodes(size: int) -> list[tuple[int, int]]:
    """The (height, index) of the perfect subtrees that make up [0, size), left to right."""
    nodes, begin = [], 0
    for height in reversed(range(size.bit_length())):
        if size >> height & 1:
            nodes.append((height, begin >> height))
            begin += 1 << height
    return nodes


def _node_from_tiles(tiles: dict[tuple[int, int], bytes], height: int, index: int) -> bytes:
    tid, start, count = tile_for_node(height, index)
    data = tiles[(tid.level, tid.index)]
    assert len(data) >= tid.width * 32
    return node_hash_from_tile(data, start, count)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 Merkle Tree Hash of a non-empty list of leaf hashes, by the definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hash_children(_mth(leaves[:k]), _mth(leaves[k:]))


# --- The reference log, byte for byte ----------------------------------------------------------------------------


def test_the_reference_layout_is_tiles_for_size(reference):
    expected = {tid.path() for tid in tiles_for_size(SIZE) + entry_bundles_for_size(SIZE)}
    assert set(reference.files) == expected
    for path in reference.files:
        assert TileID.parse(path).path() == path
        assert TileID.parse("/" + path).path() == path


def test_the_spec_example_of_size_70000():
    """tlog-tiles: 273 full and a 112-wide level-0 tile, one full and a 17-wide level-1 tile, a 1-wide level 2."""
    tiles = tiles_for_size(SIZE)
    by_level = {level: [t for t in tiles if t.level == level] for level in (0, 1, 2)}
    assert len(tiles) == sum(len(v) for v in by_level.values())
    assert [t.width for t in by_level[0]] == [256] * 273 + [112]
    assert by_level[1] == [TileID(1, 0, 256), TileID(1, 1, 17)]
    assert by_level[2] == [TileID(2, 0, 1)]
    assert tiles_for_size(256) == [TileID(0, 0), TileID(1, 0, 1)]
    assert tiles_for_size(0) == [] and entry_bundles_for_size(0) == []
    assert entry_bundles_for_size(257) == [TileID(None, 0), TileID(None, 1, 1)]


@given(st.integers(0, 70_000), st.integers(0, 70_000))
@example(0, 0)
@example(300, 600)
@example(255, 256)
@example(256, 65_536)
@example(65_535, 65_536)
@example(65_536, 65_537)
@settings(deadline=None, max_examples=50)
def test_tiles_grown_are_the_new_trees_tiles_the_old_tree_lacks(a, b):
    old, new = min(a, b), max(a, b)
    had, had_bundles = set(tiles_for_size(old)), set(entry_bundles_for_size(old))
    assert tiles_grown(old, new) == [t for t in tiles_for_size(new) if t not in had]
    assert entry_bundles_grown(old, new) == [t for t in entry_bundles_for_size(new) if t not in had_bundles]


def test_tiles_grown_examples_and_refusals():
    assert [t.path() for t in tiles_grown(300, 600)] == ["tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2"]
    assert tiles_grown(600, 600) == [] and tiles_grown(0, 1) == [TileID(0, 0, 1)]
    assert entry_bundles_grown(255, 257) == [TileID(None, 0), TileID(None, 1, 1)]
    with pytest.raises(InvalidInput, match="smaller"):
        tiles_grown(2, 1)
    with pytest.raises(InvalidInput):
        entry_bundles_grown(-1, 1)


def test_the_entry_bundles_decode_to_every_entry(reference):
    assert len(reference.entries) == SIZE
    assert len(reference.entries[12345]) == MAX_ENTRY_SIZE
    for sample in reference.vectors["entries"]:
        assert reference.entries[sample["index"]] == base64.b64decode(sample["entry_b64"])
        assert reference.leaves[sample["index"]] == base64.b64decode(sample["leaf_hash"])
    for tid in entry_bundles_for_size(SIZE):
        start = tid.index * TILE_WIDTH
        assert encode_entry_bundle(reference.entries[start : start + tid.width]) == reference.files[tid.path()]


@range_kinds
def test_edge_tiles_built_in_one_go_equal_every_reference_tile(reference, make_range):
    edge = EdgeTiles(0, {})
    make_range().extend(reference.leaves, edge.add_node)
    dirty = edge.take_dirty()
    assert [tid for tid, _, _ in dirty] == sorted(tiles_for_size(SIZE), key=lambda t: (t.level, t.index))
    for tid, data, _ in dirty:
        assert data == reference.files[tid.path()], tid.path()
        assert len(tile_hashes(data)) == tid.width
    assert edge.take_dirty() == []


@range_kinds
def test_edge_tiles_in_batches_report_each_changed_tile_once(reference, make_range):
    edge = EdgeTiles(0, {})
    frontier = make_range()
    latest: dict[tuple[int, int], tuple[TileID, bytes]] = {}
    for begin, end in [(0, 1), (1, 255), (255, 256), (256, 300), (300, 65536), (65536, 65537), (65537, SIZE)]:
        before = set(tiles_for_size(begin))
        frontier.extend(reference.leaves[begin:end], edge.add_node)
        dirty = edge.take_dirty()
        assert {tid for tid, _, _ in dirty} == set(tiles_for_size(end)) - before
        assert len(dirty) == len({tid for tid, _, _ in dirty})
        for tid, data, _ in dirty:
            assert data == reference.widest[(tid.level, tid.index)][: tid.width * 32]
            latest[(tid.level, tid.index)] = (tid, data)
    assert {tid.path(): data for tid, data in latest.values()} == {
        path: data for path, data in reference.files.items() if not path.startswith("tile/entries/")
    }


def test_extend_tree_in_batches_gives_every_reference_tile_and_its_interior_nodes(reference):
    """The sequencer's path: whole level-0 tiles hashed as blocks, the rest leaf by leaf, across tile and
    level-1 boundaries; tiles byte for byte as Go's x/mod, interior nodes as RFC 6962 defines them."""
    edge = EdgeTiles(0, {})
    frontier = CompactRange()
    latest: dict[tuple[int, int], bytes] = {}
    blocks = 0
    for begin, end in [(0, 1), (1, 255), (255, 300), (300, 1024), (1024, 1500), (1500, 65536 + 700),
                       (65536 + 700, SIZE)]:
        before = set(tiles_for_size(begin))
        extend_tree(frontier, edge, reference.leaves[begin:end])
        assert frontier.size == end
        if end <= 1500:
            assert frontier.root() == _mth(reference.leaves[:end])
        dirty = edge.take_dirty()
        assert {tid for tid, _, _ in dirty} == set(tiles_for_size(end)) - before
        for tid, data, interior in dirty:
            latest[(tid.level, tid.index)] = data
            if interior is not None:
                blocks += 1
                assert tid.level == 0 and tid.width == TILE_WIDTH
                assert interior == interior_nodes(data)
                first = tid.index * TILE_WIDTH
                # layer 1 first (128 hashes) ... layer 7 last (2 hashes), against the leaves by the definition
                assert interior[:32] == _mth(reference.leaves[first:first + 2])
                assert interior[127 * 32:128 * 32] == _mth(reference.leaves[first + 254:first + 256])
                assert interior[-32:] == _mth(reference.leaves[first + 128:first + 256])
    assert blocks > 250  # most level-0 tiles went the block way
    assert frontier.root() == base64.b64decode(reference.vectors["root"])
    assert {TileID(level, index, len(data) // 32).path(): data for (level, index), data in latest.items()} == {
        path: data for path, data in reference.files.items() if not path.startswith("tile/entries/")
    }


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 2000), batches=st.lists(st.integers(0, 900), min_size=1, max_size=6))
@example(start=0, batches=[256, 256])
@example(start=255, batches=[513])
@example(start=65280, batches=[512])
def test_extend_tree_equals_extending_leaf_by_leaf(start, batches):
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(start + sum(batches))]
    old_way, old_edge = CompactRange(), EdgeTiles(0, {})
    new_way, new_edge = CompactRange(), EdgeTiles(0, {})
    old_way.extend(leaves[:start], old_edge.add_node)
    new_way.extend(leaves[:start], new_edge.add_node)
    assert old_edge.take_dirty() == new_edge.take_dirty()
    at = start
    for count in batches:
        old_way.extend(leaves[at:at + count], old_edge.add_node)
        extend_tree(new_way, new_edge, leaves[at:at + count])
        at += count
        assert (new_way.size, new_way.hashes) == (old_way.size, old_way.hashes)
        new_tiles, old_tiles = new_edge.take_dirty(), old_edge.take_dirty()
        assert [(tid, data) for tid, data, _ in new_tiles] == [(tid, data) for tid, data, _ in old_tiles]
        # the interior nodes kept by the block path are the tile's own; the leaf-by-leaf path keeps none
        assert all(interior is None or interior == interior_nodes(data) for _, data, interior in new_tiles)
        assert new_edge.snapshot() == old_edge.snapshot()


def test_edge_tiles_take_a_whole_leaf_tile_only_at_a_tile_boundary():
    tile = b"".join(hash_leaf(bytes([i])) for i in range(TILE_WIDTH))
    interior = interior_nodes(tile)
    edge = EdgeTiles(0, {})
    with pytest.raises(InvalidInput):
        edge.add_leaf_tile(1, tile, interior)  # tile 0 comes first
    with pytest.raises(InvalidInput):
        edge.add_leaf_tile(0, tile[:-32], interior)
    with pytest.raises(InvalidInput):
        edge.add_leaf_tile(0, tile, interior[:-32])
    edge.add_node(0, 0, tile[:32])
    with pytest.raises(InvalidInput):
        edge.add_leaf_tile(0, tile, interior)  # tile 0 already holds a hash
    edge = EdgeTiles(0, {})
    edge.add_leaf_tile(0, tile, interior)
    [(tid, data, kept)] = edge.take_dirty()
    assert (tid, data, kept) == (TileID(0, 0), tile, interior)
    edge.add_leaf_tile(1, tile, interior)  # the next one follows
    with pytest.raises(InvalidInput):
        edge.add_node(0, 0, tile[:32])  # and leaves continue after it, at 512
    edge.add_node(0, 512, tile[:32])


def test_roots_from_tiles_match_the_reference_roots(reference):
    roots = reference.vectors["roots"]
    assert len(roots) == 40
    for item in roots:
        size, root = item["size"], base64.b64decode(item["root"])
        if size == 0:
            continue  # the empty tree is in no tile
        nodes = [_node_from_tiles(reference.widest, *node) for node in _perfect_nodes(size)]
        if size & (size - 1) == 0:  # a power of two: the root is one perfect node of the tiles
            assert nodes == [root], size
        folded = nodes[-1]
        for node in reversed(nodes[:-1]):
            folded = hash_children(node, folded)
        assert folded == root, size
    assert base64.b64decode(reference.vectors["root"]) == base64.b64decode(roots[-1]["root"])


perfect_nodes = st.integers(0, 10).flatmap(lambda h: st.tuples(st.just(h), st.integers(0, (SIZE >> h) - 1)))


@settings(max_examples=60, deadline=None)
@given(perfect_nodes)
@example((0, 0))
@example((10, (SIZE >> 10) - 1))
@example((8, 272))
def test_node_hash_from_tile_is_the_merkle_tree_hash(reference, node):
    """Perfect nodes up to height 10, from the tiles, against RFC 6962's definition over the leaves."""
    height, index = node
    expected = _mth(reference.leaves[index << height : (index + 1) << height])
    assert _node_from_tiles(reference.widest, height, index) == expected


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, SIZE - 1), k=st.integers(1, 1200))
@example(n=0, k=300)
@example(n=255, k=2)
@example(n=256, k=1)
@example(n=65535, k=1)
@example(n=65536, k=300)
@example(n=SIZE - 1200, k=1200)
def test_edge_tiles_resumed_from_stored_partial_tiles(reference, n, k):
    """Resume at size n from the stored edge tiles and frontier, append k leaves: the same tiles as in one go."""
    end = min(n + k, SIZE)
    partial = {}
    for tid in tiles_for_size(n):
        if tid.is_partial:
            partial[tid.level] = reference.widest[(tid.level, tid.index)][: tid.width * 32]
    edge = EdgeTiles(n, partial)
    assert edge.take_dirty() == []
    frontier = RANGES[-1](n, [_node_from_tiles(reference.widest, *node) for node in _perfect_nodes(n)])
    frontier.extend(reference.leaves[n:end], edge.add_node)
    dirty = edge.take_dirty()
    assert {tid for tid, _, _ in dirty} == set(tiles_for_size(end)) - set(tiles_for_size(n))
    for tid, data, _ in dirty:
        assert data == reference.widest[(tid.level, tid.index)][: tid.width * 32]
    for tid in tiles_for_size(end):
        if tid.is_partial:
            assert edge.tile(tid.level) == (tid, reference.widest[(tid.level, tid.index)][: tid.width * 32])


# --- Coordinates -------------------------------------------------------------------------------------------------


def test_tile_for_node():
    assert tile_for_node(0, 0) == (TileID(0, 0, 1), 0, 1)
    assert tile_for_node(0, 256) == (TileID(0, 1, 1), 0, 1)
    assert tile_for_node(3, 5) == (TileID(0, 0, 48), 40, 8)
    assert tile_for_node(7, 1) == (TileID(0, 0, 256), 128, 128)
    assert tile_for_node(8, 0) == (TileID(1, 0, 1), 0, 1)
    assert tile_for_node(9, 300) == (TileID(1, 2, 90), 88, 2)
    assert tile_for_node(16, 1) == (TileID(2, 0, 2), 1, 1)
    assert tile_for_node(16 + 3, 1) == (TileID(2, 0, 16), 8, 8)
    for bad in [(-1, 0), (0, -1)]:
        with pytest.raises(InvalidInput):
            tile_for_node(*bad)


@given(height=st.integers(0, 8 * 63 + 7), index=st.integers(0, 2**40))
def test_tile_for_node_covers_the_node(height, index):
    tid, start, count = tile_for_node(height, index)
    assert tid.level == height // TILE_HEIGHT and count == 1 << (height % TILE_HEIGHT)
    first = tid.index * TILE_WIDTH + start  # the node's first hash at height 8L
    assert first << (TILE_HEIGHT * tid.level) == index << height
    assert start % count == 0 and tid.width == start + count <= TILE_WIDTH


# --- Round trips -------------------------------------------------------------------------------------------------


@example(0)
@example(5)
@example(999)
@example(1000)
@example(1234067)
@example(MAX_TILE_INDEX)
@given(st.integers(0, MAX_TILE_INDEX))
def test_tile_index_round_trip(n):
    encoded = encode_tile_index(n)
    assert decode_tile_index(encoded) == n
    groups = encoded.split("/")
    assert all(len(g) == 4 and g[0] == "x" for g in groups[:-1]) and len(groups[-1]) == 3


def test_tile_index_examples():
    assert encode_tile_index(1234067) == "x001/x234/067"
    assert encode_tile_index(5) == "005"
    assert encode_tile_index(1000) == "x001/000"
    for bad in [-1, MAX_TILE_INDEX + 1, True, 1.0]:
        with pytest.raises(InvalidInput):
            encode_tile_index(bad)


@given(st.text(alphabet="x0159/", max_size=16))
def test_decode_tile_index_accepts_only_canonical_encodings(s):
    try:
        n = decode_tile_index(s)
    except InvalidInput:
        return
    assert encode_tile_index(n) == s


tile_ids = st.builds(
    TileID,
    level=st.none() | st.integers(0, 63),
    index=st.integers(0, MAX_TILE_INDEX),
    width=st.integers(1, TILE_WIDTH),
)


@example(TileID(63, 0, 255))
@example(TileID(None, 0, 1))
@given(tile_ids)
def test_tile_path_round_trip(tid):
    path = tid.path()
    assert TileID.parse(path) == tid
    assert TileID.parse("/" + path) == tid
    assert path.endswith(f".p/{tid.width}") == (tid.width < TILE_WIDTH)


@given(st.text(alphabet="tile/entris0159x.p", max_size=24))
def test_tile_parse_accepts_only_canonical_paths(path):
    try:
        tid = TileID.parse(path)
    except InvalidInput:
        return
    assert tid.path() == path.removeprefix("/")


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=TILE_WIDTH))
def test_entry_bundle_round_trip(entries):
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries


def test_entry_bundle_edges():
    assert encode_entry_bundle([b""]) == b"\x00\x00"
    assert encode_entry_bundle([b"ab", b"c"]) == b"\x00\x02ab\x00\x01c"
    big = [b"\xff" * MAX_ENTRY_SIZE, b""] + [b"x"] * 254
    assert decode_entry_bundle(encode_entry_bundle(big)) == big


# --- Rejections --------------------------------------------------------------------------------------------------

BAD_PATHS = [
    ("", "path"),
    ("tile", "path"),
    ("tile/", "path"),
    ("tile/0", "path"),
    ("tiles/0/000", "path"),
    ("//tile/0/000", "path"),
    (" tile/0/000", "path"),
    ("tile/00/000", "level"),
    ("tile/01/000", "level"),
    ("tile/64/000", "level"),
    ("tile/100/000", "level"),
    ("tile/-1/000", "level"),
    ("tile/+1/000", "level"),
    ("tile/1e1/000", "level"),
    ("tile/\u0661/000", "level"),  # an Arabic-Indic digit one
    ("tile/entry/000", "level"),
    ("tile//000", "level"),
    ("tile/0/", "index"),
    ("tile/0/5", "index"),
    ("tile/0/05", "index"),
    ("tile/0/0005", "index"),
    ("tile/0/x000/005", "index"),
    ("tile/0/001/002", "index"),
    ("tile/0/x001", "index"),
    ("tile/0/x1/000", "index"),
    ("tile/0/X001/000", "index"),
    ("tile/0/x/000", "index"),
    ("tile/0/x001//000", "index"),
    ("tile/0/000/", "index"),
    ("tile/0/000 ", "index"),
    ("tile/0/\u0660\u0660\u0660", "index"),
    ("tile/0/x018/x446/x744/x073/x709/x551/616", "index"),  # 2**64
    ("tile/0/x001/x002/x003/x004/x005/x006/x007/000", "index"),
    ("tile/0/000.p", "index"),
    ("tile/0/000.P/5", "index"),
    ("tile/0/000.p/0", "width"),
    ("tile/0/000.p/00", "width"),
    ("tile/0/000.p/05", "width"),
    ("tile/0/000.p/256", "width"),
    ("tile/0/000.p/300", "width"),
    ("tile/0/000.p/", "width"),
    ("tile/0/000.p/5/", "width"),
    ("tile/0/000.p/1.p/2", "width"),
    ("tile/0/000.p/-1", "width"),
    ("tile/entries/000.p/256", "width"),
    ("tile/entries/0/000", "index"),
    ("tile/0/entries/000", "index"),
    ("tile/entries", "path"),
    ("tile/entries/", "index"),
]


@pytest.mark.parametrize("path, field", BAD_PATHS)
def test_malformed_tile_paths_are_rejected(path, field):
    with pytest.raises(InvalidInput) as caught:
        TileID.parse(path)
    assert caught.value.field == field, str(caught.value)


@pytest.mark.parametrize(
    "level, index, width, field",
    [(64, 0, 1, "level"), (-1, 0, 1, "level"), (0, -1, 1, "index"), (0, 2**64, 1, "index"), (0, 0, 0, "width"),
     (0, 0, 257, "width"), (None, 0, 0, "width")],
)
def test_invalid_tile_ids_are_rejected(level, index, width, field):
    with pytest.raises(InvalidInput) as caught:
        TileID(level, index, width)
    assert caught.value.field == field


BAD_BUNDLES = [
    (b"", "empty"),
    (b"\x00", "length cut short"),
    (b"\x00\x05abc", "entry cut short"),
    (b"\x00\x01a\x00", "trailing byte"),
    (b"\x00\x01a\x00\x02b", "second entry cut short"),
    (b"\xff\xff" + b"\x00" * 65534, "a 65535-byte entry missing a byte"),
    (b"\x00\x00" * 257, "257 entries"),
    (b"\x00\x00" * 256 + b"\x00", "trailing byte after 256 entries"),
]


@pytest.mark.parametrize("data, why", BAD_BUNDLES, ids=[why for _, why in BAD_BUNDLES])
def test_malformed_entry_bundles_are_rejected(data, why):
    with pytest.raises(InvalidInput):
        decode_entry_bundle(data)


@pytest.mark.parametrize(
    "entries", [[], [b""] * 257, [b"x" * (MAX_ENTRY_SIZE + 1)], [b"ok", b"x" * (MAX_ENTRY_SIZE + 1)]]
)
def test_unencodable_entry_bundles_are_rejected(entries):
    with pytest.raises(InvalidInput):
        encode_entry_bundle(entries)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 8191, 8193, 257 * 32])
def test_tile_hashes_rejects_bad_lengths(length):
    with pytest.raises(InvalidInput):
        tile_hashes(bytes(length))


def test_tile_hashes_splits():
    data = bytes(range(64))
    assert tile_hashes(data) == [data[:32], data[32:]]
    assert len(tile_hashes(bytes(8192))) == 256


@pytest.mark.parametrize(
    "length, start, count, field",
    [(256, 0, 3, "count"), (256, 0, 0, "count"), (256, 0, 512, "count"), (256, 2, 4, "start"),
     (256, -2, 2, "start"), (7, 4, 4, "tile")],
)
def test_node_hash_from_tile_rejects_bad_slices(length, start, count, field):
    with pytest.raises(InvalidInput) as caught:
        node_hash_from_tile(bytes(length * 32), start, count)
    assert caught.value.field == field


def test_edge_tiles_rejects_inconsistent_state():
    with pytest.raises(InvalidInput):
        EdgeTiles(300, {})  # the level-0 edge tile holds 44 hashes
    with pytest.raises(InvalidInput):
        EdgeTiles(300, {0: bytes(43 * 32)})
    with pytest.raises(InvalidInput):
        EdgeTiles(300, {0: bytes(44 * 32)})  # level 1 holds one hash too
    EdgeTiles(300, {0: bytes(44 * 32), 1: bytes(32)})
    with pytest.raises(InvalidInput):
        EdgeTiles(300, {0: bytes(44 * 32), 1: bytes(32), 2: bytes(32)})  # no level 2 yet
    with pytest.raises(InvalidInput):
        EdgeTiles(256, {0: bytes(32)})  # level 0 is full at 256: no partial tile there
    with pytest.raises(InvalidInput):
        EdgeTiles(-1, {})
    edge = EdgeTiles(0, {})
    edge.add_node(0, 0, bytes(32))
    edge.add_node(3, 0, bytes(32))  # not a tile height: ignored
    for bad in [(0, 0, bytes(32)), (0, 2, bytes(32)), (0, 1, bytes(31)), (8, 1, bytes(32))]:
        with pytest.raises(InvalidInput):
            edge.add_node(*bad)
    assert edge.take_dirty() == [(TileID(0, 0, 1), bytes(32), None)]
    assert edge.take_dirty() == []


@given(width=st.integers(1, TILE_WIDTH), seed=st.binary(min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_tile_node_layers_hold_every_perfect_node_of_the_tile(width, seed):
    hashes = [hash_leaf(seed + i.to_bytes(2, "big")) for i in range(width)]
    layers = tile_node_layers(b"".join(hashes))
    assert layers[0] == b"".join(hashes)
    level = hashes
    for r, layer in enumerate(layers[1:], start=1):
        level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        assert layer == b"".join(level), f"layer {r}"
        for j in range(len(level)):  # and the same nodes as node_hash_from_tile gives one by one
            assert layer[32 * j:32 * (j + 1)] == node_hash_from_tile(layers[0], j << r, 1 << r)
    assert len(layers) == width.bit_length()


@pytest.mark.parametrize("size", [0, 33, 257])
def test_tile_node_layers_refuse_what_is_not_a_tile(size):
    with pytest.raises(InvalidInput):
        tile_node_layers(bytes(size))


@given(seed=st.binary(min_size=1, max_size=8), stored=st.booleans())
@settings(max_examples=10, deadline=None)
def test_tile_nodes_from_the_interior_nodes_equal_the_tile_folded_directly(seed, stored):
    tile = b"".join(hash_leaf(seed + i.to_bytes(2, "big")) for i in range(TILE_WIDTH))
    interior = interior_nodes(tile)
    assert interior == b"".join(tile_node_layers(tile)[1:TILE_HEIGHT]) and len(interior) == 254 * 32
    nodes = TileNodes(tile, interior if stored else None)
    for r in range(TILE_HEIGHT + 1):
        for start in range(0, TILE_WIDTH, 1 << r):
            assert nodes.node(r, start) == node_hash_from_tile(tile, start, 1 << r), (r, start)


def test_interior_nodes_are_kept_for_full_tiles_only():
    with pytest.raises(InvalidInput):
        interior_nodes(bytes(32 * 255))


@given(seed=st.binary(min_size=1, max_size=8), widths=st.lists(st.integers(1, 255), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None)
def test_a_partial_tile_view_extended_step_by_step_equals_one_built_at_once(seed, widths):
    tile = b"".join(hash_leaf(seed + i.to_bytes(2, "big")) for i in range(TILE_WIDTH))
    view = None
    for width in sorted(widths):
        data = tile[:width * 32]
        view = PartialTileNodes(data) if view is None else view.extended(data)
        assert view.width == width
        for r in range(TILE_HEIGHT):
            for start in range(0, TILE_WIDTH, 1 << r):
                if start + (1 << r) <= width:
                    assert view.node(r, start) == node_hash_from_tile(tile, start, 1 << r), (width, r, start)
                else:  # not a perfect node of this tile yet
                    with pytest.raises(NotFound):
                        view.node(r, start)


def test_a_partial_tile_view_is_rebuilt_for_a_tile_that_is_not_its_extension():
    first = b"".join(hash_leaf(bytes([i])) for i in range(8))
    other = b"".join(hash_leaf(bytes([i, 1])) for i in range(12))
    view = PartialTileNodes(first).extended(other)
    assert view.width == 12 and view.node(2, 0) == node_hash_from_tile(other, 0, 4)
