"""Witness tables (SQLAlchemy Core). Created by alembic/versions/0002_witness.py; keep the two in step.

One migration chain serves both databases, so a witness database also holds the (empty) log tables and a log
database the (empty) witness tables. Sizes are 64-bit; hashes are raw 32 bytes; times are Unix milliseconds.

Witness side (the `auditlog witness serve` database):

* `witness_logs`: one row per log origin, the latest checkpoint this witness cosigned for it. This row is the
  compare-and-swap cell of tlog-witness: an update names the (size, root) it read, and loses if they changed.
* `witness_checkpoints`: every signed checkpoint this witness cosigned, keyed by (origin, size), so one size can
  never hold two roots here and a log that forks can be shown its own signature on the branch it left.
* `witness_refusals`: validly signed checkpoints the witness refused (inconsistent proof, a second root for a
  cosigned size): tlog-witness lets a witness keep these, as they may prove the log misbehaved. One row per
  distinct (origin, size, root), so a log resending the same checkpoint does not grow the table.

Log side (the log's database, or on SQLite a sidecar beside it; see api/server/witnessing.py):

* `checkpoint_cosignatures`: cosignatures the log gathered from its witnesses, verified before they are stored,
  one row per (checkpoint size, witness, key ID).
"""

from sqlalchemy import BigInteger, Column, Index, LargeBinary, MetaData, Table, Text

metadata = MetaData()

witness_logs = Table(
    "witness_logs",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", LargeBinary, nullable=False),  # the full signed checkpoint as submitted
    Column("updated_at", BigInteger, nullable=False),
)

witness_checkpoints = Table(
    "witness_checkpoints",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("cosigned_at", BigInteger, nullable=False),
)

witness_refusals = Table(
    "witness_refusals",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), primary_key=True),
    Column("note", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)

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
