"""The log's relational schema, as SQLAlchemy Core tables. Alembic migrations create and upgrade it.

Integers that are indices or sizes are 64-bit; hashes are raw 32-byte values; times are Unix milliseconds.

The core tables (entries to entry_keys) are the store's alone. The log's jobs keep theirs here too, in the log's
own database, written through `Log.write` and read through `Log.read`: `checkpoint_cosignatures` (migration 0002,
api/server/witnessing.py) and `timestamps` (0003, api/server/timestamping.py). The audit personality's tables are
in log/audit/tables.py, the witness server's in witness/schema.py; one migration chain (alembic/versions) creates
them all in every database, and tests/test_migrations.py holds each declaration to it.
"""

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, SmallInteger, String, Table, Text

metadata = MetaData()

# Entries per leaf-index chunk (see leaf_index below).
LEAF_INDEX_CHUNK = 1 << 16

# A 64-bit primary key that on SQLite is the table's rowid, so the table is one B-tree instead of a rowid B-tree plus
# an index over the key (SQLite makes only a column declared exactly INTEGER the rowid; its rowid is 64-bit).
ROWID_KEY = BigInteger().with_variant(Integer(), "sqlite")

# One row per logged entry. `idx` is the entry's position in the tree; the leaf hash is stored so that a proof can
# be asked for by hash.
entries = Table(
    "entries",
    metadata,
    Column("idx", ROWID_KEY, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("received_at", BigInteger, nullable=False),
)

# Finding an entry by leaf hash. A plain index on the hash would take every insert at a random place: about one
# page written per entry once the index outgrows memory, which caps ingest. Instead entries are indexed a chunk
# (LEAF_INDEX_CHUNK entries) at a time, when the chunk completes, in the batch transaction that completes it:
# (chunk, 8-byte hash prefix) keys append at the end of the tree. A lookup probes each chunk and scans the
# entries of the unfinished last chunk.
leaf_index = Table(
    "leaf_index",
    metadata,
    Column("chunk", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_prefix", LargeBinary(8), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

# C2SP tlog-tiles hash tiles, height 8. One row per (level, index) holding the tile's current bytes: a partial
# tile at the right edge grows in place until it holds 256 hashes, after which it never changes again.
tiles = Table(
    "tiles",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    # For a full tile: its 254 interior nodes (log.tile_nodes.interior_nodes), 32 bytes per entry, so that a proof
    # through an uncached tile reads one row and hashes nothing (hashing them was 30-40 % of a proof's CPU at
    # 10^7 entries). Not part of what tlog-tiles serves.
    Column("interior", LargeBinary, nullable=True),
)

# Every checkpoint the log has published, as the signed note that was served.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", ROWID_KEY, primary_key=True, autoincrement=False),
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

# Cosignatures the log gathered from its witnesses, verified before they are stored, one row per (checkpoint size,
# witness, key ID).
checkpoint_cosignatures = Table(
    "checkpoint_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", Text, primary_key=True),
    Column("key_id", BigInteger, primary_key=True, autoincrement=False),
    Column("signature_line", Text, nullable=False),  # "— <name> <base64>\n", verified before it was stored
    Column("timestamp", BigInteger, nullable=False),  # the cosignature's own POSIX seconds
    Column("created_at", BigInteger, nullable=False),
    Index("ix_checkpoint_cosignatures_witness", "witness", "size"),
)

# One row per verified RFC 3161 TimeStampResp, beside the checkpoint it covers (`size` is that checkpoint's tree size
# and `note` the exact note bytes that were stamped). Only responses that passed `verify_timestamp` are stored.
timestamps = Table(
    "timestamps",
    metadata,
    Column("id", ROWID_KEY, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("gen_time", BigInteger, nullable=False),  # Unix milliseconds, from the TSTInfo
    Column("serial", String(64), nullable=False),  # decimal: TSA serials run to 160 bits
    Column("tsa_name", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # Unix milliseconds
    Index("ix_timestamps_size", "size"),
)

# The access log (api/server/access_log.py): one row per read of contents (event contents, timelines, evidence,
# blobs, entry contents) made with a credential: who (the principal's credential and role), what kind of read and
# of what, when (Unix milliseconds), from where and with which HTTP status. Kept apart from the Merkle log: reads
# outnumber writes and are not what the log proves; rows are pruned after a retention period. Written in batches
# through `Log.write`, read through `Log.read`. Text columns: a long OIDC subject or target must never fail an
# insert (the recorder truncates targets to a bound anyway).
access_log = Table(
    "access_log",
    metadata,
    Column("id", ROWID_KEY, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("credential", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("what", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("remote", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Index("ix_access_log_at", "at"),
    Index("ix_access_log_credential", "credential", "id"),
)

# Who sequences the log now, for a log that several servers share (PostgreSQL): one row (id 1), rewritten by each
# server that takes the sequencer lock. `epoch` goes up by one at every takeover and is the fencing token: a batch
# commits only while the row still holds its writer's epoch (log/storage/writers.py). `url` is where the other
# servers send what they do not answer themselves; `holder` names the server (host and process) for operators;
# `since` is when it took over (Unix milliseconds). Per-server state, not part of the log: never copied with it.
sequencer_lease = Table(
    "sequencer_lease",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("url", Text, nullable=True),
    Column("holder", Text, nullable=False),
    Column("since", BigInteger, nullable=False),
)


# One row per pruned entry (migration 0013; log/prune.py): its contents are gone (entries.data is empty), its leaf
# hash and every tile stay. `deletion_idx` is the log entry that authorised it (a retention run).
pruned_entries = Table(
    "pruned_entries",
    metadata,
    Column("idx", ROWID_KEY, primary_key=True, autoincrement=False),
    Column("deletion_idx", BigInteger, nullable=False),
    Column("pruned_at", BigInteger, nullable=False),
)
