"""The log's relational schema, as SQLAlchemy Core tables. Alembic migrations create and upgrade it.

Integers that are indices or sizes are 64-bit; hashes are raw 32-byte values; times are Unix milliseconds.
"""

from sqlalchemy import BigInteger, Column, Index, LargeBinary, MetaData, SmallInteger, Table

metadata = MetaData()

# One row per logged entry. `idx` is the entry's position in the tree; the leaf hash is stored so that a proof can
# be asked for by hash and so that `verify` can compare entries against the level-0 tiles.
entries = Table(
    "entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Index("ix_entries_leaf_hash", "leaf_hash"),
)

# C2SP tlog-tiles hash tiles, height 8. One row per (level, index) holding the tile's current bytes: a partial
# tile at the right edge grows in place until it holds 256 hashes, after which it never changes again.
tiles = Table(
    "tiles",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# Every checkpoint the log has published, as the signed note that was served.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Idempotency keys: a submission that carries a key already stored gets the original index back instead of a new
# entry. `content_hash` tells a true retry (same content) from a conflicting reuse of the key.
entry_keys = Table(
    "entry_keys",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("idx", BigInteger, nullable=False),
    Column("content_hash", LargeBinary(32), nullable=False),
)
