"""C2SP tlog-tiles entry bundles (tile/entries/<N>): the entries of one level-0 tile's range, each a big-endian
uint16 length and then the entry."""

from __future__ import annotations

from collections.abc import Sequence

from log.errors import InvalidInput
from log.tiles import MAX_ENTRY_SIZE, TILE_WIDTH


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
