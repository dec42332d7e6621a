"""Checking a stored log against itself and its signed checkpoints: the offline check (`auditlog db check`) and the
start-up check of the newest entries.

`check_log` reads ONE committed state of the database (`LogStore.read`, so it runs beside a live writer and never
waits for it) and, in index order and in chunks of `CHUNK` entries (memory stays bounded at any size):

1. re-hashes every stored entry and compares the hash with the entry's stored leaf hash;
2. rebuilds the tree from those re-hashed entries (CompactRange + EdgeTiles, as the sequencer does) and compares
   every tile it completes with the stored tile, bytes and interior nodes, and at the end the right-edge partial
   tiles (and that no other tile is stored);
3. compares every stored checkpoint with the rebuilt tree at its size: its signature verifies with the log's key,
   its note's size and root equal the row's, and the root equals the rebuilt root;
4. the latest checkpoint's size equals the number of stored entries.

A pruned entry (log/prune.py: a pruned_entries row, its data empty) has no contents to re-hash: its stored leaf hash
is taken as it is (the level-0 tile and every checkpoint above still check it), its data must be empty, and, with
`deletions` (log/audit/retention.py `entries_listed`, which `auditlog db check` passes), the deletion entry its row
names must be a retention run that lists it. A pruned entry that still has contents, or one its deletion entry does
not list, is a "pruned" disagreement.

The entry data is taken as the truth, because it is what the log serves: a changed entry row is named at its index
(and the tiles and checkpoints above it disagree too); a changed leaf hash, tile, interior node or checkpoint
is named alone. The check goes on after a disagreement: the report names the first one and counts all by kind.

`check_newest_entries` is the start-up part: the entries of the last full level-0 tile and of the partial edge
tile against their stored leaf hashes and those tiles' hashes (a few hundred rows, whatever the size).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select

from log.checkpoint import open_checkpoint
from log.compact import CompactRange
from log.edge import EdgeTiles, extend_tree
from log.errors import LogError, StorageError
from log.hashing import EMPTY_ROOT, HASH_SIZE, hash_leaves
from log.note import NoteVerifier
from log.storage import LogStore, ReadTransaction
from log.prune import pruned_in_range
from log.storage.schema import checkpoints, entries, tiles
from log.tile_nodes import interior_nodes
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID

CHUNK = 16 * TILE_WIDTH  # entries read, hashed and integrated at a time
KEPT = 20  # disagreements kept in full in a report (all are counted)

Progress = Callable[[int, int], None]
"""progress(entries done, entries in all), called after each chunk."""

Deletions = Callable[[ReadTransaction, dict[int, int]], set[int]]
"""deletions(tx, {pruned index: deletion entry index}) -> the pruned indices whose deletion entry lists them."""


@dataclass(frozen=True)
class Disagreement:
    """One place where the stored log disagrees with itself: `kind` is "entry", "leaf hash", "tile", "interior",
    "checkpoint", "count" or "pruned"; `where` names the place (an entry index, a tile, a checkpoint size)."""

    kind: str
    where: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.where}: expected {self.expected}, found {self.found}"


@dataclass
class CheckReport:
    origin: str | None = None  # of the latest checkpoint's signed note
    size: int = 0  # the latest checkpoint's size (0 without one)
    entries: int = 0  # entries re-hashed, or taken as pruned
    pruned: int = 0  # pruned entries among them (their stored leaf hash taken as it is)
    tiles: int = 0  # stored tiles compared
    checkpoints: int = 0  # stored checkpoints compared
    disagreements: list[Disagreement] = field(default_factory=list)  # the first KEPT
    counts: Counter = field(default_factory=Counter)  # every disagreement, by kind

    @property
    def ok(self) -> bool:
        return not self.counts

    @property
    def first(self) -> Disagreement | None:
        return self.disagreements[0] if self.disagreements else None

    def add(self, kind: str, where: str, expected: str, found: str) -> None:
        self.counts[kind] += 1
        if len(self.disagreements) < KEPT:
            self.disagreements.append(Disagreement(kind, where, expected, found))


def _b64(data: bytes | None) -> str:
    return "nothing" if data is None else base64.b64encode(data).decode()


def _tile_name(level: int, index: int, width: int = TILE_WIDTH) -> str:
    return f"tile {TileID(level, index, width).path()} (level {level}, index {index})"


def _differing_hash(expected: bytes, found: bytes) -> str:
    """Where two runs of hashes first differ: ' at hash N' (or a length difference)."""
    if len(expected) != len(found):
        return f" ({len(found) // HASH_SIZE} hashes instead of {len(expected) // HASH_SIZE})"
    for position in range(0, len(expected), HASH_SIZE):
        if expected[position:position + HASH_SIZE] != found[position:position + HASH_SIZE]:
            return f" at hash {position // HASH_SIZE}"
    return ""


def check_log(store: LogStore, verifier: NoteVerifier, progress: Progress | None = None,
              deletions: Deletions | None = None) -> CheckReport:
    """Check every stored entry, tile and checkpoint of the log whose key is `verifier` (see the module docstring).
    Raises StorageError only when the database cannot be read at all; every disagreement is in the report."""
    return store.read(lambda tx: check_snapshot(tx, verifier, progress, deletions))


def check_snapshot(tx: ReadTransaction, verifier: NoteVerifier, progress: Progress | None = None,
                   deletions: Deletions | None = None) -> CheckReport:
    """`check_log` on the state of the database `tx` reads, lent by the caller: `auditlog db copy` checks its copy
    this way inside the transaction that writes it, before that commits."""
    return _Check(tx, verifier, progress, deletions).run()


class _Check:
    def __init__(self, tx: ReadTransaction, verifier: NoteVerifier, progress: Progress | None,
                 deletions: Deletions | None = None):
        self.tx = tx
        self.verifier = verifier
        self.progress = progress
        self.deletions = deletions
        self.report = CheckReport()
        self.frontier = CompactRange()
        self.edge = EdgeTiles(0, {})

    def run(self) -> CheckReport:
        report = self.report
        tx = self.tx
        latest = tx.execute(select(checkpoints.c.size).order_by(checkpoints.c.size.desc()).limit(1))
        stored_count = tx.execute(select(func.max(entries.c.idx)))[0][0]
        stored_count = 0 if stored_count is None else stored_count + 1
        size = latest[0][0] if latest else 0
        report.size = size
        if not latest and stored_count:
            report.add("count", "the log", "a checkpoint for its entries", f"{stored_count} entries and no checkpoint")
        if stored_count > size:
            report.add("count", f"entries from index {size}", f"{size} entries (the latest checkpoint's size)",
                       f"{stored_count} entries")
        for row in self.tx.execute(select(checkpoints).where(checkpoints.c.size == 0)):
            self._compare_checkpoint(row, EMPTY_ROOT)
        done = 0
        try:
            while done < size:
                end = min(size, done + CHUNK)
                self._entries(done, end)
                done = end
                if self.progress is not None:
                    self.progress(done, size)
        except _MissingEntry:
            return report
        self._edge_tiles(size)
        return report

    # -- entries ------------------------------------------------------------------------------------------------
    def _entries(self, start: int, end: int) -> None:
        rows = self.tx.execute(
            select(entries.c.idx, entries.c.data, entries.c.leaf_hash)
            .where(and_(entries.c.idx >= start, entries.c.idx < end)).order_by(entries.c.idx)
        )
        report = self.report
        if len(rows) != end - start:
            present = {row[0] for row in rows}
            for missing in (i for i in range(start, end) if i not in present):
                report.add("entry", f"entry {missing}", "a stored entry", "no entry")
            # A missing entry leaves nothing to hash: the tree cannot be rebuilt past it, and the tiles and
            # checkpoints above would all disagree for that one reason. Stop here (the first place is named).
            raise _MissingEntry
        hashes = hash_leaves([_blob(row[1]) for row in rows])
        report.entries += len(rows)
        pruned = pruned_in_range(self.tx, start, end)
        if pruned:
            self._pruned(rows, hashes, pruned, start)
        for position, row in enumerate(rows):
            if row[0] not in pruned and hashes[position] != row[2]:
                self._leaf_mismatch(row[0], hashes[position], _blob(row[2]))
        # Integrate up to each checkpoint's size inside the chunk and compare its root there.
        rows = self.tx.execute(
            select(checkpoints).where(and_(checkpoints.c.size > start, checkpoints.c.size <= end))
            .order_by(checkpoints.c.size)
        )
        position = 0
        for row in rows:
            extend_tree(self.frontier, self.edge, hashes[position:row.size - start])
            position = row.size - start
            self._compare_checkpoint(row, self.frontier.root())
        if position < len(hashes):
            extend_tree(self.frontier, self.edge, hashes[position:])
        self._full_tiles()

    def _pruned(self, rows, hashes: list[bytes], pruned: dict[int, int], start: int) -> None:
        """Pruned entries of a chunk: their stored leaf hash stands in for the hash of contents that are gone (in
        `hashes`, which the tree is rebuilt from); their data must be empty, and their deletion entry list them."""
        report = self.report
        for index, deletion in pruned.items():
            row = rows[index - start]
            hashes[index - start] = _blob(row[2])
            report.pruned += 1
            if _blob(row[1]):
                report.add("pruned", f"entry {index}", f"no contents (pruned by entry {deletion})",
                           f"{len(_blob(row[1]))} bytes of contents")
        if self.deletions is not None:
            listed = self.deletions(self.tx, pruned)
            for index, deletion in pruned.items():
                if index not in listed:
                    report.add("pruned", f"entry {index}", f"a retention run at entry {deletion} that lists it",
                               "a deletion entry that does not (the prune is not accounted for)")

    def _leaf_mismatch(self, index: int, rehashed: bytes, stored: bytes) -> None:
        """Tell a changed entry (the stored leaf hash and the level-0 tile agree with each other, not with the
        entry) from a changed leaf hash (the tile agrees with the entry)."""
        tile = self._stored_tiles(0, index >> TILE_HEIGHT, (index >> TILE_HEIGHT) + 1).get(index >> TILE_HEIGHT)
        position = (index & (TILE_WIDTH - 1)) * HASH_SIZE
        in_tile = tile[0][position:position + HASH_SIZE] if tile is not None else None
        if in_tile == rehashed:
            self.report.add("leaf hash", f"the stored leaf hash of entry {index}",
                            f"the entry's hash {_b64(rehashed)} (which its level-0 tile holds)", _b64(stored))
        else:
            self.report.add("entry", f"entry {index}", f"an entry that hashes to {_b64(stored)}, its stored leaf "
                            "hash", f"one that hashes to {_b64(rehashed)}: the entry was changed after it was "
                            "logged")

    # -- tiles --------------------------------------------------------------------------------------------------
    def _full_tiles(self) -> None:
        full = [tile for tile in self.edge.take_dirty() if tile.tile_id.width == TILE_WIDTH]
        if not full:
            return
        by_level: dict[int, list] = {}
        for tile in full:
            by_level.setdefault(tile.tile_id.level, []).append(tile)
        for level, built in by_level.items():
            stored = self._stored_tiles(level, built[0].tile_id.index, built[-1].tile_id.index + 1)
            for tile in built:
                index = tile.tile_id.index
                self._compare_tile(level, index, tile.data, stored.get(index), full=True, interior=tile.interior)

    def _stored_tiles(self, level: int, first: int, end: int) -> dict[int, tuple[bytes, bytes | None]]:
        rows = self.tx.execute(
            select(tiles.c.idx, tiles.c.data, tiles.c.interior)
            .where(and_(tiles.c.level == level, tiles.c.idx >= first, tiles.c.idx < end))
        )
        return {row[0]: (_blob(row[1]), None if row[2] is None else _blob(row[2])) for row in rows}

    def _compare_tile(self, level: int, index: int, data: bytes, stored, *, full: bool,
                      interior: bytes | None = None) -> None:
        report = self.report
        width = len(data) // HASH_SIZE
        name = _tile_name(level, index, width)
        if stored is None:
            report.add("tile", name, f"a stored tile of {width} hashes", "no tile")
            return
        report.tiles += 1
        stored_data, stored_interior = stored
        if stored_data != data:
            report.add("tile", name + _differing_hash(data, stored_data),
                       f"the tile rebuilt from the entries ({_short(data)})", f"the stored tile ({_short(stored_data)})")
            return
        if full:
            expected = interior if interior is not None else interior_nodes(data)
            if stored_interior != expected:
                where = name + (_differing_hash(expected, stored_interior) if stored_interior is not None else "")
                report.add("interior", f"the interior nodes of {where}", "the nodes hashed from the tile",
                           "no interior nodes" if stored_interior is None else "other hashes")
        elif stored_interior is not None:
            report.add("interior", f"the interior nodes of {name}", "none for a partial tile", "interior nodes")

    def _edge_tiles(self, size: int) -> None:
        report = self.report
        edge = self.edge.snapshot()
        for (level, index), data in sorted(edge.items()):
            stored = self._stored_tiles(level, index, index + 1).get(index)
            self._compare_tile(level, index, data, stored, full=False)
        # No other tile: every level's stored tiles end at its edge.
        level = 0
        while True:
            count = size >> (TILE_HEIGHT * level)
            end = count // TILE_WIDTH + (1 if count % TILE_WIDTH else 0)
            if not count:
                extra = self.tx.execute(select(tiles.c.level, tiles.c.idx).where(tiles.c.level >= level)
                                        .order_by(tiles.c.level, tiles.c.idx).limit(1))
            else:
                extra = self.tx.execute(select(tiles.c.level, tiles.c.idx)
                                        .where(and_(tiles.c.level == level, tiles.c.idx >= end))
                                        .order_by(tiles.c.idx).limit(1))
            if extra:
                found_level, found_index = extra[0]
                report.add("tile", _tile_name(found_level, found_index), f"no tile past the tree of size {size}",
                           "a stored tile")
            if not count:
                break
            level += 1

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _compare_checkpoint(self, row, root: bytes) -> None:
        report = self.report
        report.checkpoints += 1
        where = f"checkpoint of size {row.size}"
        note = bytes(row.note)
        try:
            checkpoint, _ = open_checkpoint(note, self.verifier)
        except LogError as exc:
            report.add("checkpoint", where, f"a note signed by {self.verifier.name}", f"one that does not verify "
                       f"({exc})")
            return
        if row.size == self.report.size:
            report.origin = checkpoint.origin
        if checkpoint.size != row.size or checkpoint.root_hash != bytes(row.root_hash):
            report.add("checkpoint", where, f"a note of size {row.size} and root {_b64(bytes(row.root_hash))} "
                       "(the row's)", f"size {checkpoint.size} and root {_b64(checkpoint.root_hash)}")
            return
        if checkpoint.root_hash != root:
            report.add("checkpoint", where, f"the root rebuilt from the entries, {_b64(root)}",
                       f"root {_b64(checkpoint.root_hash)}")


class _MissingEntry(Exception):
    """An index in [0, size) has no entry: nothing past it can be rebuilt."""


def _blob(value) -> bytes:
    """A stored binary column's bytes. SQLite keeps whatever type was written: a value that was changed into text
    (e.g. by concatenation in SQL) is checked as its UTF-8 bytes rather than break the check."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


def _short(data: bytes) -> str:
    return f"{len(data) // HASH_SIZE} hashes, first {_b64(data[:HASH_SIZE])}"


def check_newest_entries(store: LogStore, size: int) -> None:
    """The start-up check: re-hash the entries of the last full level-0 tile and of the partial edge tile (at most
    511 entries, whatever the size) and compare each hash with the entry's stored leaf hash and with its place in
    the stored level-0 tile. Raises StorageError naming the first entry that disagrees."""
    if size <= 0:
        return
    last = (size - 1) >> TILE_HEIGHT  # the level-0 tile holding the newest entry
    first = max(0, last - 1 if size % TILE_WIDTH else last)
    start = first << TILE_HEIGHT

    def read(tx: ReadTransaction):
        rows = tx.execute(select(entries.c.idx, entries.c.data, entries.c.leaf_hash)
                          .where(and_(entries.c.idx >= start, entries.c.idx < size)).order_by(entries.c.idx))
        stored = tx.execute(select(tiles.c.idx, tiles.c.data)
                            .where(and_(tiles.c.level == 0, tiles.c.idx >= first, tiles.c.idx <= last)))
        return rows, {row[0]: _blob(row[1]) for row in stored}, pruned_in_range(tx, start, size)

    rows, level0, pruned = store.read(read)
    hashes = hash_leaves([_blob(row[1]) for row in rows])
    for position, row in enumerate(rows):  # a pruned entry: its stored leaf hash, checked against the tile below
        if row[0] in pruned:
            hashes[position] = _blob(row[2])
    advice = "the log will not serve it; `auditlog db check` checks the whole database"
    for expected_index, (row, leaf_hash) in enumerate(zip(rows, hashes), start=start):
        index = row[0]
        if index != expected_index:
            raise StorageError(f"entry {expected_index} is missing from the store ({advice})")
        tile = level0.get(index >> TILE_HEIGHT, b"")
        position = (index & (TILE_WIDTH - 1)) * HASH_SIZE
        in_tile = tile[position:position + HASH_SIZE]
        if leaf_hash != in_tile:
            if _blob(row[2]) == in_tile:
                raise StorageError(f"entry {index} was changed after it was logged: it hashes to {_b64(leaf_hash)}, "
                                   f"its stored leaf hash and level-0 tile {index >> TILE_HEIGHT} say "
                                   f"{_b64(in_tile)} ({advice})")
            raise StorageError(f"entry {index} hashes to {_b64(leaf_hash)} but level-0 tile "
                               f"{index >> TILE_HEIGHT} holds {_b64(in_tile or None)} at its "
                               f"place ({advice})")
        if _blob(row[2]) != leaf_hash:
            raise StorageError(f"the stored leaf hash of entry {index} is {_b64(_blob(row[2]))}, but the entry "
                               f"hashes to {_b64(leaf_hash)} ({advice})")
    if len(rows) != size - start:
        raise StorageError(f"entry {start + len(rows)} is missing from the store ({advice})")
