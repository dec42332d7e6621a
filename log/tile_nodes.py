r"""Perfect nodes inside tlog-tiles tiles: which tile holds a node, and every node inside one tile.

Node IDs are `(height, index)`: the perfect subtree covering leaves [index * 2**height, (index+1) * 2**height).
A node of height 8*L + r (0 <= r < 8) is the root of 2**r consecutive hashes of one level-L tile (log/tiles.py):

    height 8*L+2          o                     node (8L+2, j)
                        /   \
    height 8*L+1       o     o                  rebuilt by hashing (not stored)
                      / \   / \
    level-L tile  ...[h][h][h][h]...            hashes j*4 .. j*4+3 of level L, at tile j*4 >> 8,
                                                positions [(j*4) & 255, (j*4) & 255 + 4)

A full tile's interior nodes (the heights 1 to 7 inside it) are stored beside it, so that proof serving slices them
(TileNodes); a partial tile's are computed once per width (PartialTileNodes).
"""

from __future__ import annotations

from log.errors import InvalidInput, NotFound
from log.hashing import HASH_SIZE, hash_children_pairs
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID

_HASH_SIZE = HASH_SIZE
_FULL_TILE_BYTES = TILE_WIDTH * _HASH_SIZE


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
    while len(layer) > _HASH_SIZE:
        layer = hash_children_pairs(layer)
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
    while len(layer) >= 2 * _HASH_SIZE:
        layer = hash_children_pairs(layer)  # an odd last hash has no sibling yet
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
            return hash_children_pairs(self._interior[-2 * _HASH_SIZE:])
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
        r = 1
        while len(layers[-1]) >= 2 * _HASH_SIZE:
            below = layers[-1]
            kept = self._layers[r] if r < len(self._layers) else b""
            layers.append(kept + hash_children_pairs(below[2 * len(kept):]))  # only the pairs the new hashes complete
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
