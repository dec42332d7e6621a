"""The sequencer's right edge: the growing edge tile of every level, fed as the tree grows.

EdgeTiles collects the perfect nodes each append completes into the tiles of log/tiles.py; extend_tree appends a
batch of leaf hashes to the frontier (log/compact.py) and the edge together, hashing whole level-0 tiles as blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from log.errors import InvalidInput
from log.hashing import HASH_SIZE
from log.tile_nodes import INTERIOR_BYTES, tile_node_layers
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID, check_tree_size

if TYPE_CHECKING:
    from log.compact import CompactRange

_HASH_SIZE = HASH_SIZE
_FULL_TILE_BYTES = TILE_WIDTH * _HASH_SIZE


class ChangedTile(NamedTuple):
    """A tile whose contents changed, as `EdgeTiles.take_dirty` hands it to the sequencer to store: its complete
    current bytes and, for a full level-0 tile hashed as a block by extend_tree, its interior nodes
    (log.tile_nodes.interior_nodes), so that the commit stores them without hashing again; None otherwise."""

    tile_id: TileID
    data: bytes
    interior: bytes | None = None


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
        check_tree_size(size)
        self._bufs: list[bytearray] = []
        self._index: list[int] = []
        self._dirty: set[int] = set()
        self._full: list[ChangedTile] = []
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
            self._full.append(ChangedTile(TileID(level, self._index[level]), bytes(buf)))
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
        self._full.append(ChangedTile(TileID(0, index), data, interior))
        self._index[0] = index + 1
        self._dirty.discard(0)

    def take_dirty(self) -> list[ChangedTile]:
        """Every tile whose contents changed since the last call, with its complete current bytes; then forget them.

        Full tiles come with width 256, edge tiles with their current width; sorted by level, then index. Each tile
        appears once. A full tile added by add_leaf_tile carries its interior nodes.
        """
        out = self._full
        self._full = []
        for level in self._dirty:
            buf = self._bufs[level]
            out.append(ChangedTile(TileID(level, self._index[level], len(buf) >> 5), bytes(buf)))
        self._dirty.clear()
        out.sort(key=lambda tile: (tile.tile_id.level, tile.tile_id.index))
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
