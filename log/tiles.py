r"""C2SP tlog-tiles coordinates: tile IDs, tile paths and their index encoding, the tiles of a tree size.

All tlog-tiles path and coordinate arithmetic of the project lives here (https://c2sp.org/tlog-tiles); which
tile holds which node and the nodes inside a tile are log/tile_nodes.py, the sequencer's growing right edge is
log/edge.py, and entry-bundle bytes are log/bundles.py.

Tiles have height 8: a level-L tile N holds W consecutive hashes (1 <= W <= 256) of the nodes at tree height 8*L,
with node indices [N*256, N*256 + W). In the spec's words it is the sequence of

    MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])    for i in [0, W)

A full tile has W = 256 (8,192 bytes); a partial tile (W < 256) exists only at the right edge of a tree, and the
level-L right-edge tile of a tree of size s holds floor(s / 256**L) mod 256 hashes. Empty tiles do not exist.

Paths (spec, "Merkle Tree" and "Log entries"):

    tile/<L>/<N>[.p/<W>]        L: decimal 0..63, no leading zeroes; W: decimal 1..255, no leading zeroes
    tile/entries/<N>[.p/<W>]    N: groups of 3 digits, every group but the last prefixed with "x"

An entry bundle holds the entries of one level-0 tile's range: tile/entries/<N> matches tile/0/<N> in width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from log.errors import InvalidInput

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
MAX_ENTRY_SIZE = 65535  # an entry's length is a big-endian uint16 in an entry bundle
MAX_TILE_LEVEL = 63  # tlog-tiles: <L> is between 0 and 63
MAX_TILE_INDEX = 2**64 - 1  # our bound: tree sizes are uint64, so no tile index reaches it

_MAX_INDEX_GROUPS = len(str(MAX_TILE_INDEX)) // 3 + 1  # 7 groups of 3 digits cover 20-digit indices

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


def check_tree_size(size: int) -> None:
    """InvalidInput(field="size") unless `size` is a tree size: an integer in [0, MAX_TILE_INDEX]."""
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TILE_INDEX:
        raise InvalidInput(f"tree size {size!r} is not in [0, {MAX_TILE_INDEX}]", field="size")


def tiles_for_size(size: int) -> list[TileID]:
    """Every hash tile of a tree of `size` leaves, full and partial, level by level, in index order.

    Level L holds floor(size / 256**L) hashes: that many // 256 full tiles, then a partial one of the remainder if
    it is not zero. E.g. size 70,000: 273 full and a 112-wide level-0 tile, 1 full and a 17-wide level-1 tile, a
    1-wide level-2 tile. Size 0 has no tiles.
    """
    check_tree_size(size)
    tiles: list[TileID] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        tiles += _edge_tiles(level, size >> (TILE_HEIGHT * level))
        level += 1
    return tiles


def entry_bundles_for_size(size: int) -> list[TileID]:
    """Every entry bundle of a log of `size` entries in index order: one per level-0 tile, with the same widths."""
    check_tree_size(size)
    return _edge_tiles(None, size)


def _grown_tiles(level: int | None, old_count: int, new_count: int) -> list[TileID]:
    """The tiles of one level holding `new_count` hashes (or entries) that a level of `old_count` lacks: from the
    one `old_count` left partial (or the next, if it left none) to the new right edge."""
    if new_count <= old_count:
        return []
    return [TileID(level, n, min(TILE_WIDTH, new_count - n * TILE_WIDTH))
            for n in range(old_count // TILE_WIDTH, (new_count - 1) // TILE_WIDTH + 1)]


def _check_growth(old_size: int, new_size: int) -> None:
    check_tree_size(old_size)
    check_tree_size(new_size)
    if old_size > new_size:
        raise InvalidInput(f"tree size {new_size} is smaller than {old_size}", field="size")


def tiles_grown(old_size: int, new_size: int) -> list[TileID]:
    """The hash tiles of a tree of `new_size` that a tree of `old_size` does not have (a tile ID names its width),
    level by level, in index order: `tiles_for_size(new_size)` less `tiles_for_size(old_size)`, without listing
    either. E.g. 300 -> 600: tile/0/001 (44 wide at 300), tile/0/002.p/88 and tile/1/000.p/2.

    What a publisher writes when the tree grows: every other tile of the new tree is a file it has already.
    InvalidInput when `old_size` > `new_size`."""
    _check_growth(old_size, new_size)
    tiles: list[TileID] = []
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        tiles += _grown_tiles(level, old_size >> (TILE_HEIGHT * level), new_size >> (TILE_HEIGHT * level))
        level += 1
    return tiles


def entry_bundles_grown(old_size: int, new_size: int) -> list[TileID]:
    """The entry bundles of a log of `new_size` entries that one of `old_size` does not have, in index order."""
    _check_growth(old_size, new_size)
    return _grown_tiles(None, old_size, new_size)
