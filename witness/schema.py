"""The witness server's tables (SQLAlchemy Core), in the `auditlog witness serve` database. Created by
alembic/versions/0002_witness.py; tests/test_migrations.py holds the two in step.

One migration chain serves both databases, so a witness database also holds the (empty) log tables and a log
database the (empty) witness tables. Sizes are 64-bit; hashes are raw 32 bytes; times are Unix milliseconds.

* `witness_logs`: one row per log origin, the latest checkpoint this witness cosigned for it. This row is the
  compare-and-swap cell of tlog-witness: an update names the (size, root) it read, and loses if they changed.
* `witness_checkpoints`: every signed checkpoint this witness cosigned, keyed by (origin, size), so one size can
  never hold two roots here and a log that forks can be shown its own signature on the branch it left.
* `witness_refusals`: validly signed checkpoints the witness refused (inconsistent proof, a second root for a
  cosigned size): tlog-witness lets a witness keep these, as they may prove the log misbehaved. One row per
  distinct (origin, size, root), so a log resending the same checkpoint does not grow the table.

The log's side of witnessing, the cosignatures it gathered (`checkpoint_cosignatures`, same migration), is a table of
the log's database: log/storage/schema.py.
"""

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table, Text

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
