"""Witness state and gathered cosignatures; must match witness/schema.py and, for checkpoint_cosignatures,
log/storage/schema.py (tests/test_migrations.py checks both).

witness_logs (latest cosigned checkpoint per origin, the compare-and-swap cell), witness_checkpoints (every
checkpoint cosigned), witness_refusals (validly signed checkpoints refused), checkpoint_cosignatures (the log's
verified cosignatures from its witnesses). Times are Unix milliseconds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witness_logs",
        sa.Column("origin", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "witness_checkpoints",
        sa.Column("origin", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("cosigned_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "witness_refusals",
        sa.Column("origin", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "checkpoint_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("key_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("signature_line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_checkpoint_cosignatures_witness", "checkpoint_cosignatures", ["witness", "size"])


def downgrade() -> None:
    op.drop_index("ix_checkpoint_cosignatures_witness", table_name="checkpoint_cosignatures")
    op.drop_table("checkpoint_cosignatures")
    op.drop_table("witness_refusals")
    op.drop_table("witness_checkpoints")
    op.drop_table("witness_logs")
