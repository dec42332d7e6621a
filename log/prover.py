"""Proofs from stored tiles: which tiles a proof plan needs, and the caches that make most of them free.

A plan (log/proofs.py) names perfect subtrees (height, index); each lies inside one tile (log/tile_nodes.py): the
level-L tile N with L = height // 8, N = (index << r) // 256 and r = height % 8. The Prover answers a plan with as
few tile reads and hashes as it can, from three caches of values that never change once they exist:

- views of full tiles (`TileNodes`): every perfect node inside, each hashed at most once;
- views of partial tiles (`PartialTileNodes`), one per tile: a partial tile only grows, and the perfect nodes of a
  narrower version are those of the wider one, so the widest version seen serves every tree size up to it and a
  wider one extends it (hashing only the new nodes);
- folds: the hash of a proof element made of several perfect nodes (the right edge of an imperfect tree), by its
  first and last node; every proof for the same tree size shares them.

Thread-safe (the caches lock); the hashing runs on whichever thread calls.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from log.errors import InvalidInput, NotFound
from log.hashing import HASH_SIZE, hash_children
from log.proofs import NodeID
from log.storage import StoredTile
from log.tile_nodes import PartialTileNodes, TileNodes
from log.tiles import TILE_HEIGHT, TILE_WIDTH

TileKey = tuple[int, int]
"""(level, index) of a tile."""

ReadTiles = Callable[[set[TileKey]], Mapping[TileKey, StoredTile]]
"""Blocking read of stored tiles, as LogStore.read_tiles: {key: StoredTile} for the keys stored."""

_FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
# tiles.tile_for_node's arithmetic, inlined: it builds a TileID per node, which the proof path cannot afford.
_LEVEL_SHIFT = TILE_HEIGHT.bit_length() - 1  # height >> 3 is the tile level
_WITHIN = TILE_HEIGHT - 1  # height & 7 is the node's height inside its tile
_OFFSET = TILE_WIDTH - 1


class LRU:
    """A small thread-safe LRU map for immutable values."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._data: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def pop(self, key) -> None:
        """Forget `key` (a value that turned out to have changed: an entry bundle whose entries were pruned)."""
        with self._lock:
            self._data.pop(key, None)


class Prover:
    """Folds proof plans into proofs from tile views, reading only the tiles no cache holds."""

    def __init__(self, *, tile_views: int = 2048, edge_views: int = 256, folds: int = 4096):
        self._full = LRU(tile_views)
        self._edges = LRU(edge_views)
        self._folds = LRU(folds)

    def missing(self, plan: Iterable[Sequence[NodeID]], edge: Mapping[TileKey, bytes]) -> set[TileKey]:
        """The tiles `prove(plan, edge, ...)` would have to read now (an empty set: it reads nothing)."""
        missing: set[TileKey] = set()
        self._views(self._unfolded(plan), edge, missing)
        return missing

    def prove(self, plan: Sequence[Sequence[NodeID]], edge: Mapping[TileKey, bytes], read: ReadTiles) -> list[bytes]:
        """The proof for `plan`: each element the right fold of its nodes' hashes.

        `edge` holds the tree's partial tiles in memory ({key: bytes}, as Sequencer.edge_tiles); tiles found
        neither in a cache nor there are read with one `read` call. NotFound if a node is not in the stored tree.
        """
        proof: list[bytes | None] = [None] * len(plan)
        todo = self._unfolded(plan, proof)
        if not todo:
            return proof  # type: ignore[return-value]
        missing: set[TileKey] = set()
        views = self._views(todo, edge, missing)
        if missing:
            fetched = read(missing)
            for key in missing:
                stored = fetched.get(key)
                if stored is None:
                    raise NotFound(f"tile {key} is not stored")
                views[key] = self._remember(key, stored.data, stored.interior)
        for position, element in todo:
            value = None
            for height, index in reversed(element):
                r = height & _WITHIN
                first = index << r
                node = views[(height >> _LEVEL_SHIFT, first >> TILE_HEIGHT)].node(r, first & _OFFSET)
                value = node if value is None else hash_children(node, value)
            if len(element) > 1:
                self._folds.put((element[0], element[-1]), value)
            proof[position] = value
        return proof  # type: ignore[return-value]

    def node_hashes(self, nodes: Iterable[NodeID], edge: Mapping[TileKey, bytes], read: ReadTiles) -> dict:
        """{node: hash} for perfect nodes of the stored tree. InvalidInput for a negative height or index."""
        nodes = list(dict.fromkeys(nodes))
        for height, index in nodes:
            if height < 0 or index < 0:
                raise InvalidInput(f"node ({height}, {index}) has a negative height or index", field="node")
        return dict(zip(nodes, self.prove([[node] for node in nodes], edge, read)))

    def _unfolded(self, plan, proof: list | None = None) -> list[tuple[int, Sequence[NodeID]]]:
        """(position, element) of the elements whose fold is not cached; cached ones are written into `proof`."""
        todo = []
        for position, element in enumerate(plan):
            if len(element) > 1:
                value = self._folds.get((element[0], element[-1]))
                if value is not None:
                    if proof is not None:
                        proof[position] = value
                    continue
            todo.append((position, element))
        return todo

    def _views(self, todo, edge: Mapping[TileKey, bytes], missing: set[TileKey]) -> dict:
        """The cached or in-memory view of each tile `todo` touches; the keys of the others go to `missing`.

        A partial tile comes from `edge` when it is there; otherwise a cached view of it serves if it is wide enough
        for every node asked of it (a reader process has no edge in memory and reads partial tiles from the store).
        """
        needed: dict[TileKey, int] = {}  # tile -> how many of its hashes the nodes asked of it span
        for _, element in todo:
            for height, index in element:
                r = height & _WITHIN
                first = index << r
                key = (height >> _LEVEL_SHIFT, first >> TILE_HEIGHT)
                end = (first & _OFFSET) + (1 << r)
                if needed.get(key, 0) < end:
                    needed[key] = end
        views: dict[TileKey, TileNodes | PartialTileNodes] = {}
        for key, width in needed.items():
            view = self._full.get(key)
            if view is None:
                data = edge.get(key)
                if data is not None:
                    view = self._remember(key, data)
                else:
                    partial = self._edges.get(key)
                    if partial is not None and partial.width >= width:
                        view = partial
            if view is None:
                missing.add(key)
            else:
                views[key] = view
        return views

    def _remember(self, key: TileKey, data: bytes, interior: bytes | None = None) -> TileNodes | PartialTileNodes:
        if len(data) == _FULL_TILE_BYTES:
            view = TileNodes(data, interior)
            self._full.put(key, view)
            return view
        view = self._edges.get(key)
        if view is None or view.width < len(data) // HASH_SIZE:
            view = PartialTileNodes(data) if view is None else view.extended(data)
            self._edges.put(key, view)
        return view
