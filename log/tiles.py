r"""C2SP tlog-tiles coordinates: tile paths, which tile holds which node, tile and entry-bundle bytes.

All tlog-tiles path and coordinate arithmetic of the project lives here (https://c2sp.org/tlog-tiles).

Tiles have height 8: a level-L tile N holds W consecutive hashes (1 <= W <= 256) of the nodes at tree height 8*L,
with node indices [N*256, N*256 + W). In the spec's words it is the sequence of

    MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])    for i in [0, W)

A full tile has W = 256 (8,192 bytes); a partial tile (W < 256) exists only at the right edge of a tree, and the
level-L right-edge tile of a tree of size s holds floor(s / 256**L) mod 256 hashes. Empty tiles do not exist.

Node IDs are `(height, index)`: the perfect subtree covering leaves [index * 2**height, (index+1) * 2**height).
A node of height 8*L + r (0 <= r < 8) is the root of 2**r consecutive hashes of one level-L tile:

    height 8*L+2          o                     node (8L+2, j)
                        /   \
    height 8*L+1       o     o                  rebuilt by hashing (not stored)
                      / \   / \
    level-L tile  ...[h][h][h][h]...            hashes j*4 .. j*4+3 of level L, at tile j*4 >> 8,
                                                positions [(j*4) & 255, (j*4) & 255 + 4)

Paths (spec, "Merkle Tree" and "Log entries"):

    tile/<L>/<N>[.p/<W>]        L: decimal 0..63, no leading zeroes; W: decimal 1..255, no leading zeroes
    tile/entries/<N>[.p/<W>]    N: groups of 3 digits, every group but the last prefixed with "x"

Entry bundles are the entries of one level-0 tile's range, each a big-endian uint16 length and then the entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING

from log.errors import InvalidInput, NotFound
from log.hashing import NODE_PREFIX

if TYPE_CHECKING:
    from log.compact import CompactRange

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
MAX_ENTRY_SIZE = 65535  # an entry's length is a big-endian uint16 in an entry bundle
MAX_TILE_LEVEL = 63  # tlog-tiles: <L> is between 0 and 63
MAX_TILE_INDEX = 2**64 - 1  # our bound: tree sizes are uint64, so no tile index reaches it

_HASH_SIZE = 32
_FULL_TILE_BYTES = TILE_WIDTH * _HASH_SIZE
_MAX_INDEX_GROUPS = len(str(MAX_TILE_INDEX)) // 3 + 1  # 7 groups of 3 digits cover 20-digit indices

# A hasher already fed the RFC 6962 node prefix (spelled in log/hashing.py only): a sibling pair lies contiguous in
# a tile, so each parent is one copy() and one update() of 64 bytes, with no concatenation (about 25% faster than
# hash_children per pair on a full tile: 150 us against 190 us in CPython 3.11).
_NODE_HASHER = sha256(NODE_PREFIX)

_GROUP = re.compile(r"[0-9]{3}")
_SMALL_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")  # no leading zeroes, at most 3 digits


# --- Tile index encoding -----------------------------------------------------------------------------------------


def encode_tile_index(n: int) -> str:
    """The <N> path element(s) of tile index `n`: zero-padded groups of 3 digits, all but the last prefixed "x".

    1234067 -> "x001/x234/067"; 5 -> "005"; 0 -> "000". Raises InvalidInput unless 0 <= n <= MAX_TILE_INDEX.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TILE_INDEX:
        raise InvalidInput(f"tile index {n!r} is not an integer in [0, {MAX_TILE_INDEX}]", field="index")
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def decode_tile_index(s: str) -> int:
    """The tile index encoded by `s`, accepting only the canonical encoding that encode_tile_index produces.

    Rejected with InvalidInput(field="index"): empty groups, groups not of exactly 3 ASCII digits, a missing or
    misplaced "x", a leading all-zero group ("x000/005" for 5), and indices above MAX_TILE_INDEX.
    """
    parts = s.split("/")
    if len(parts) > _MAX_INDEX_GROUPS:
        raise InvalidInput(f"tile index {s!r} has more than {_MAX_INDEX_GROUPS} groups", field="index")
    digits = []
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        group = part if last else part[1:]
        if (not last and not part.startswith("x")) or not _GROUP.fullmatch(group):
            expected = "3 digits" if last else '"x" and 3 digits'
            raise InvalidInput(f"tile index {s!r}: group {part!r} is not {expected}", field="index")
        digits.append(group)
    if len(digits) > 1 and digits[0] == "000":
        raise InvalidInput(f"tile index {s!r} has a leading all-zero group", field="index")
    n = int("".join(digits))
    if n > MAX_TILE_INDEX:
        raise InvalidInput(f"tile index {s!r} is above {MAX_TILE_INDEX}", field="index")
    return n


# --- Tile IDs and paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TileID:
    """One tile: `level` 0..63 for hash tiles or None for entry bundles, `index` N, `width` W in 1..256.

    Construction validates the fields (InvalidInput names the bad one), so every TileID has a valid path.
    """

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level is not None and (
            isinstance(self.level, bool) or not isinstance(self.level, int) or not 0 <= self.level <= MAX_TILE_LEVEL
        ):
            raise InvalidInput(f"tile level {self.level!r} is not in [0, {MAX_TILE_LEVEL}]", field="level")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index <= MAX_TILE_INDEX:
            raise InvalidInput(f"tile index {self.index!r} is not in [0, {MAX_TILE_INDEX}]", field="index")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 1 <= self.width <= TILE_WIDTH:
            raise InvalidInput(f"tile width {self.width!r} is not in [1, {TILE_WIDTH}]", field="width")

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """"tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]", without a leading slash."""
        level = "entries" if self.level is None else str(self.level)
        suffix = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/{level}/{encode_tile_index(self.index)}{suffix}"

    @classmethod
    def parse(cls, path: str) -> TileID:
        """The TileID of a tile or entry-bundle path, with or without one leading "/"; the inverse of path().

        Strict: <L> must be 0..63 without leading zeroes, <N> canonical (see decode_tile_index), <W> 1..255 without
        leading zeroes, nothing else before or after. Raises InvalidInput whose `field` names the bad part
        ("path", "level", "index" or "width").
        """
        if not isinstance(path, str):
            raise InvalidInput(f"tile path {path!r} is not a string", field="path")
        rest = path[1:] if path.startswith("/") else path
        if not rest.startswith("tile/"):
            raise InvalidInput(f"tile path {path!r} does not start with tile/", field="path")
        level_part, slash, rest = rest[len("tile/") :].partition("/")
        if not slash:
            raise InvalidInput(f"tile path {path!r} has no tile index", field="path")
        level: int | None
        if level_part == "entries":
            level = None
        elif _SMALL_DECIMAL.fullmatch(level_part) and int(level_part) <= MAX_TILE_LEVEL:
            level = int(level_part)
        else:
            raise InvalidInput(
                f"tile path {path!r}: level {level_part!r} is not a decimal in [0, {MAX_TILE_LEVEL}] "
                "without leading zeroes, nor entries",
                field="level",
            )
        index_part, partial, width_part = rest.partition(".p/")
        width = TILE_WIDTH
        if partial:
            if not _SMALL_DECIMAL.fullmatch(width_part) or not 1 <= int(width_part) < TILE_WIDTH:
                raise InvalidInput(
                    f"tile path {path!r}: partial width {width_part!r} is not a decimal in [1, {TILE_WIDTH - 1}] "
                    "without leading zeroes",
                    field="width",
                )
            width = int(width_part)
        return cls(level, decode_tile_index(index_part), width)


def _edge_tiles(level: int | None, count: int) -> list[TileID]:
    full, width = divmod(count, TILE_WIDTH)
    tiles = [TileID(level, n) for n in range(full)]
    if width:
        tiles.append(TileID(level, full, width))
    return tiles


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TILE_INDEX:
        raise InvalidInput(f"tree size {size!r} is not in [0, {MAX_TILE_INDEX}]", field="size")


def tiles_for_size(size: int) -> list[TileID]:
    """Every hash tile of a tree of `size` leaves, full and partial, level by level, in index order.

    Level L holds floor(size / 256**L) hashes: that many // 256 full tiles, then a partial one of the remainder if
    it is not zero. E.g. size 70,000: 273 full and a 112-wide level-0 tile, 1 full and a 17-wide level-1 tile, a
    1-wide level-2 tile. Size 0 has no tiles.
    """
    _check_size(size)
    tiles: list[TileID] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        tiles += _edge_tiles(level, size >> (TILE_HEIGHT * level))
        level += 1
    return tiles


def entry_bundles_for_size(size: int) -> list[TileID]:
    """Every entry bundle of a log of `size` entries in index order: one per level-0 tile, with the same widths."""
    _check_size(size)
    return _edge_tiles(None, size)


# --- Nodes in tiles ----------------------------------------------------------------------------------------------


def tile_for_node(height: int, index: int) -> tuple[TileID, int, int]:
    """Where perfect node (height, index) is computed from: (tile, start, count).

    The node is the root of the `count` = 2**(height % 8) hashes at positions [start, start + count) of the
    level-(height // 8) tile returned; the tile's width is the smallest that holds them (start + count), so
    any stored tile at least that wide will do. Raises InvalidInput for a negative height or index.
    """
    if height < 0 or index < 0:
        raise InvalidInput(f"node ({height}, {index}) has a negative height or index", field="node")
    level, r = divmod(height, TILE_HEIGHT)
    first = index << r
    start = first & (TILE_WIDTH - 1)
    count = 1 << r
    return TileID(level, first >> TILE_HEIGHT, start + count), start, count


def node_hash_from_tile(tile_data: bytes, start: int, count: int) -> bytes:
    """The perfect node whose leaves are hashes [start, start + count) of `tile_data`, hashed pairwise bottom-up
    as RFC 6962 interior nodes (SHA-256(0x01 || left || right), the same as log.hashing.hash_children).

    Preconditions (InvalidInput otherwise): `count` is a power of two <= 256, `start` is a multiple of `count`
    (the hashes form a perfect subtree of the tile), and `tile_data` holds at least start + count hashes.
    count == 1 returns that hash itself.
    """
    if count <= 0 or count > TILE_WIDTH or count & (count - 1):
        raise InvalidInput(f"count {count} is not a power of two in [1, {TILE_WIDTH}]", field="count")
    if start < 0 or start % count:
        raise InvalidInput(f"start {start} is not a non-negative multiple of count {count}", field="start")
    end = (start + count) * _HASH_SIZE
    if len(tile_data) < end:
        raise InvalidInput(
            f"tile of {len(tile_data)} bytes is too short for hashes [{start}, {start + count})", field="tile"
        )
    layer = bytes(tile_data[start * _HASH_SIZE : end])
    copy = _NODE_HASHER.copy
    while len(layer) > _HASH_SIZE:
        parents = []
        for i in range(0, len(layer), 2 * _HASH_SIZE):
            hasher = copy()
            hasher.update(layer[i : i + 2 * _HASH_SIZE])
            parents.append(hasher.digest())
        layer = b"".join(parents)
    return layer


def tile_node_layers(tile_data: bytes) -> list[bytes]:
    """Every perfect node inside one tile, bottom-up: `layers[r]` is the hashes of the height-r subtrees of the tile.

    `layers[0]` is `tile_data` itself (W hashes); `layers[r]` holds floor(W / 2**r) hashes, hash j being the RFC 6962
    interior node over tile hashes [j * 2**r, (j + 1) * 2**r), for r up to floor(log2(W)) (a full tile: r = 0..8,
    255 hashes computed, the last layer being the tile's root). So node_hash_from_tile(tile_data, start, count) is
    `layers[r][start // count * 32 :][:32]` with count = 2**r. Computing them all costs as much as the eight
    siblings an inclusion proof needs from one tile (247 hashes), and any later proof through the same tile then
    needs no hashing at all.

    Raises InvalidInput unless `tile_data` is 1 to 256 whole hashes.
    """
    if len(tile_data) % _HASH_SIZE or not _HASH_SIZE <= len(tile_data) <= _FULL_TILE_BYTES:
        raise InvalidInput(
            f"a tile of {len(tile_data)} bytes is not 1 to {TILE_WIDTH} hashes of {_HASH_SIZE} bytes", field="tile"
        )
    layer = bytes(tile_data)
    layers = [layer]
    copy = _NODE_HASHER.copy
    while len(layer) >= 2 * _HASH_SIZE:
        parents = []
        for i in range(0, len(layer) - _HASH_SIZE, 2 * _HASH_SIZE):  # an odd last hash has no sibling yet
            hasher = copy()
            hasher.update(layer[i : i + 2 * _HASH_SIZE])
            parents.append(hasher.digest())
        layer = b"".join(parents)
        layers.append(layer)
    return layers


INTERIOR_BYTES = (TILE_WIDTH - 2) * _HASH_SIZE  # layers 1..7 of a full tile: 128 + 64 + ... + 2 hashes
_INTERIOR_OFFSETS = [0, 0] + [(TILE_WIDTH - (TILE_WIDTH >> (r - 1))) * _HASH_SIZE for r in range(2, TILE_HEIGHT)]


def interior_nodes(tile_data: bytes) -> bytes:
    """A full tile's interior nodes, stored beside it so that proof serving hashes nothing inside full tiles:
    layers 1 to 7 of tile_node_layers concatenated (254 hashes, 8,128 bytes; layer r starts at hash 256 - 2**(9-r)).
    Layer 8, the tile's root, is a hash of the tile above and not repeated here."""
    if len(tile_data) != _FULL_TILE_BYTES:
        raise InvalidInput(f"interior nodes are kept for full tiles only, not {len(tile_data)} bytes", field="tile")
    return b"".join(tile_node_layers(tile_data)[1:TILE_HEIGHT])


class TileData(bytes):
    """A full tile's bytes as stored, carrying its stored interior nodes (`interior`, or None) to proof serving."""

    interior: bytes | None = None


class TileNodes:
    """Every perfect node inside one full tile (height r < 8 within it), sliced from the tile and its interior nodes
    (interior_nodes: stored with the tile; computed here, once, for a tile that comes without them)."""

    __slots__ = ("_data", "_interior")

    def __init__(self, tile_data: bytes, interior: bytes | None = None):
        if interior is None or len(interior) != INTERIOR_BYTES:
            interior = interior_nodes(tile_data)
        self._data = tile_data
        self._interior = interior

    def node(self, r: int, start: int) -> bytes:
        """The height-r node over tile hashes [start, start + 2**r); `start` a multiple of 2**r, 0 <= r <= 8."""
        if r == 0:
            return self._data[start * _HASH_SIZE:(start + 1) * _HASH_SIZE]
        if r == TILE_HEIGHT:  # the tile's root: a proof takes it from the tile above, so it is not stored
            hasher = _NODE_HASHER.copy()
            hasher.update(self._interior[-2 * _HASH_SIZE:])
            return hasher.digest()
        position = _INTERIOR_OFFSETS[r] + (start >> r) * _HASH_SIZE
        return self._interior[position:position + _HASH_SIZE]


class PartialTileNodes:
    """Every perfect node inside a partial tile (1 to 255 hashes), all computed up front: `layers[r]` as in
    tile_node_layers. A partial tile only ever grows, and its perfect nodes never change, so `extended(wider)`
    reuses this one's and hashes only the nodes the new hashes complete."""

    __slots__ = ("width", "_layers")

    def __init__(self, tile_data: bytes, layers: list[bytes] | None = None):
        self._layers = layers if layers is not None else tile_node_layers(tile_data)
        self.width = len(self._layers[0]) // _HASH_SIZE

    def extended(self, tile_data: bytes) -> "PartialTileNodes":
        """The view of `tile_data`, a wider version of this tile (or, if its first hashes differ, a new one)."""
        old = self._layers[0]
        if len(tile_data) % _HASH_SIZE or not len(old) <= len(tile_data) <= _FULL_TILE_BYTES \
                or tile_data[:len(old)] != old:
            return PartialTileNodes(tile_data)
        layers = [bytes(tile_data)]
        copy = _NODE_HASHER.copy
        r = 1
        while len(layers[-1]) >= 2 * _HASH_SIZE:
            below = layers[-1]
            kept = self._layers[r] if r < len(self._layers) else b""
            parents = [kept]
            for i in range(2 * len(kept), len(below) - _HASH_SIZE, 2 * _HASH_SIZE):
                hasher = copy()
                hasher.update(below[i : i + 2 * _HASH_SIZE])
                parents.append(hasher.digest())
            layers.append(b"".join(parents))
            r += 1
        return PartialTileNodes(tile_data, layers)

    def node(self, r: int, start: int) -> bytes:
        """The height-r node over tile hashes [start, start + 2**r); NotFound past the tile's width."""
        position = (start >> r) * _HASH_SIZE
        layer = self._layers[r] if r < len(self._layers) else b""
        if position + _HASH_SIZE > len(layer):
            raise NotFound(f"node of height {r} at tile hash {start} is past the tile's {self.width} hashes")
        return layer[position:position + _HASH_SIZE]


def tile_hashes(data: bytes) -> list[bytes]:
    """The hashes of a tile's bytes: a whole number of 32-byte hashes, 1 to 256 of them (InvalidInput otherwise)."""
    if len(data) % _HASH_SIZE or not _HASH_SIZE <= len(data) <= _FULL_TILE_BYTES:
        raise InvalidInput(
            f"a tile of {len(data)} bytes is not 1 to {TILE_WIDTH} hashes of {_HASH_SIZE} bytes", field="tile"
        )
    data = bytes(data)
    return [data[i : i + _HASH_SIZE] for i in range(0, len(data), _HASH_SIZE)]


# --- The sequencer's right edge ----------------------------------------------------------------------------------


class EdgeTiles:
    """The right-edge tile of every level of a growing tree, and which tiles changed since the last take_dirty().

    Fed by the compact range's on_node callback with every perfect node an append completes (leaves first, then
    parents bottom-up, so each level's nodes arrive in index order); nodes whose height is not a multiple of 8 are
    not stored in tiles and are ignored. For a tree of size n the level-L edge tile is number (n >> 8L) // 256 and
    holds (n >> 8L) % 256 hashes. A tile that reaches 256 hashes is full: it is kept (once) for take_dirty() and
    the level's next tile starts empty.

    Memory: one bytearray of at most 8 KiB per level, plus the full tiles completed since the last take_dirty().
    Not thread-safe: the sequencer is its only user.
    """

    __slots__ = ("_bufs", "_index", "_dirty", "_full")

    def __init__(self, size: int, partial: Mapping[int, bytes]):
        """Resume the edge of a tree of `size` leaves from its stored right-edge partial tiles.

        `partial` maps each level whose edge tile is partial ((size >> 8L) % 256 != 0) to that tile's bytes, exactly
        (size >> 8L) % 256 hashes; levels whose edge tile is empty must be absent. InvalidInput otherwise.
        """
        _check_size(size)
        self._bufs: list[bytearray] = []
        self._index: list[int] = []
        self._dirty: set[int] = set()
        self._full: list[tuple[TileID, bytes]] = []
        level = 0
        while size >> (TILE_HEIGHT * level):
            index, width = divmod(size >> (TILE_HEIGHT * level), TILE_WIDTH)
            data = partial.get(level, b"")
            if len(data) != width * _HASH_SIZE:
                raise InvalidInput(
                    f"the level-{level} edge tile of a tree of size {size} holds {width} hashes, not "
                    f"{len(data) / _HASH_SIZE:g}",
                    field="partial",
                )
            self._bufs.append(bytearray(data))
            self._index.append(index)
            level += 1
        extra = sorted(set(partial) - {lvl for lvl in range(level) if (size >> (TILE_HEIGHT * lvl)) % TILE_WIDTH})
        if extra:
            raise InvalidInput(f"a tree of size {size} has no partial tile at level(s) {extra}", field="partial")

    def add_node(self, height: int, index: int, node_hash: bytes) -> None:
        """Record perfect node (height, index); a no-op unless height is a multiple of 8.

        The node must be the next one of its level: index == 256 * (edge tile index) + (edge tile width), and the
        hash 32 bytes (InvalidInput otherwise: the caller skipped or repeated a node).
        """
        if height & (TILE_HEIGHT - 1):
            return
        level = height >> 3
        if level >= len(self._bufs):
            while len(self._bufs) <= level:
                self._bufs.append(bytearray())
                self._index.append(0)
        buf = self._bufs[level]
        expected = (self._index[level] << TILE_HEIGHT) + (len(buf) >> 5)
        if index != expected or len(node_hash) != _HASH_SIZE:
            raise InvalidInput(
                f"node ({height}, {index}) with a {len(node_hash)}-byte hash is not the next node of level {level}, "
                f"({height}, {expected}) with a 32-byte hash",
                field="node",
            )
        buf += node_hash
        if len(buf) == _FULL_TILE_BYTES:
            self._full.append((TileID(level, self._index[level]), bytes(buf)))
            self._bufs[level] = bytearray()
            self._index[level] += 1
            self._dirty.discard(level)
        else:
            self._dirty.add(level)

    def add_leaf_tile(self, index: int, data: bytes, interior: bytes) -> None:
        """Record level-0 tile `index`, all 256 leaf hashes at once, with its interior nodes (interior_nodes(data),
        which the caller hashed on the way to the tile's root): what add_node would collect from its 256 leaves.

        The level-0 edge tile must be empty and number `index` (InvalidInput otherwise). The tile's root still
        comes through add_node (height 8), as it does after the tile's last leaf.
        """
        if self._bufs:
            expected, buffered = self._index[0], len(self._bufs[0]) >> 5
        else:
            expected, buffered = 0, 0
        if index != expected or buffered or len(data) != _FULL_TILE_BYTES or len(interior) != INTERIOR_BYTES:
            raise InvalidInput(
                f"level-0 tile {index} of {len(data)} bytes is not the next whole tile: tile {expected} holds "
                f"{buffered} hashes",
                field="tile",
            )
        if not self._bufs:
            self._bufs.append(bytearray())
            self._index.append(0)
        tile = TileData(data)
        tile.interior = interior
        self._full.append((TileID(0, index), tile))
        self._index[0] = index + 1
        self._dirty.discard(0)

    def take_dirty(self) -> list[tuple[TileID, bytes]]:
        """Every tile whose contents changed since the last call, with its complete current bytes; then forget them.

        Full tiles come with width 256, edge tiles with their current width; sorted by level, then index. Each tile
        appears once. A full tile added by add_leaf_tile is a TileData carrying its interior nodes.
        """
        out = self._full
        self._full = []
        for level in self._dirty:
            buf = self._bufs[level]
            out.append((TileID(level, self._index[level], len(buf) >> 5), bytes(buf)))
        self._dirty.clear()
        out.sort(key=lambda item: (item[0].level, item[0].index))
        return out

    def tile(self, level: int) -> tuple[TileID, bytes] | None:
        """The current edge tile of `level` and its bytes, or None if it is empty."""
        if level >= len(self._bufs) or not self._bufs[level]:
            return None
        buf = self._bufs[level]
        return TileID(level, self._index[level], len(buf) >> 5), bytes(buf)

    def snapshot(self) -> dict[tuple[int, int], bytes]:
        """Every non-empty edge tile as {(level, index): its current bytes}: a copy the caller may share freely."""
        return {(level, self._index[level]): bytes(buf) for level, buf in enumerate(self._bufs) if buf}


def extend_tree(frontier: CompactRange, edge: EdgeTiles, leaf_hashes: Sequence[bytes]) -> None:
    """Append leaf hashes to a CompactRange and its EdgeTiles: the same tree, tiles and callbacks as
    `frontier.extend(leaf_hashes, edge.add_node)`, with half the hashing.

    Leaves that fill a whole level-0 tile within the batch are hashed as a block (tile_node_layers: 255 hashes
    give the tile's interior nodes and its root), and the root joins the frontier as one height-8 subtree. Leaf
    by leaf, the frontier would hash the same 255 nodes, call add_node twice per leaf, and the commit would hash
    254 of them again as the stored interior nodes.
    """
    count = len(leaf_hashes)
    position = min(count, -frontier.size % TILE_WIDTH)  # up to the next tile boundary, leaf by leaf
    if position:
        frontier.extend(leaf_hashes[:position], edge.add_node)
    while count - position >= TILE_WIDTH:
        data = b"".join(leaf_hashes[position:position + TILE_WIDTH])
        layers = tile_node_layers(data)
        edge.add_leaf_tile(frontier.size >> TILE_HEIGHT, data, b"".join(layers[1:TILE_HEIGHT]))
        frontier.append_subtree(TILE_HEIGHT, layers[TILE_HEIGHT], edge.add_node)
        position += TILE_WIDTH
    if position < count:
        frontier.extend(leaf_hashes[position:], edge.add_node)


# --- Entry bundles -----------------------------------------------------------------------------------------------


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: for each of 1 to 256 entries, its length as a big-endian uint16, then its bytes.

    Raises InvalidInput for no entries, more than 256, or an entry longer than MAX_ENTRY_SIZE (65,535) bytes.
    """
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise InvalidInput(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}", field="entries")
    out = bytearray()
    for position, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise InvalidInput(
                f"entry {position} of the bundle is {len(entry)} bytes; the limit is {MAX_ENTRY_SIZE}", field="entries"
            )
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; the inverse of encode_entry_bundle.

    Strict: InvalidInput for an empty bundle, a length prefix or entry cut short, or more than 256 entries
    (trailing bytes after the 256th entry count as a 257th).
    """
    data = bytes(data)
    if not data:
        raise InvalidInput("an entry bundle holds at least one entry; this one is empty", field="bundle")
    entries = []
    offset = 0
    end = len(data)
    while offset < end:
        if len(entries) == TILE_WIDTH:
            raise InvalidInput(
                f"entry bundle has {end - offset} bytes after its {TILE_WIDTH}th entry", field="bundle"
            )
        if offset + 2 > end:
            raise InvalidInput(f"entry bundle is cut short in the length of entry {len(entries)}", field="bundle")
        length = (data[offset] << 8) | data[offset + 1]
        offset += 2
        if offset + length > end:
            raise InvalidInput(
                f"entry {len(entries)} of the bundle claims {length} bytes but only {end - offset} remain",
                field="bundle",
            )
        entries.append(data[offset : offset + length])
        offset += length
    return entries
