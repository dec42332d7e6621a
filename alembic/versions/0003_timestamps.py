"""RFC 3161 timestamps of checkpoints: one row per verified TimeStampResp, beside the checkpoint it covers.

`size` is the tree size of the checkpoint stamped and `note` its exact note bytes (the message imprint is SHA-256
of them); `response` is the DER TimeStampResp, stored only after witness/rfc3161.py's verify_timestamp passed.
Times are Unix milliseconds. Must match log/storage/schema.py's `timestamps` table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timestamps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("gen_time", sa.BigInteger, nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("tsa_name", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_timestamps_size", "timestamps", ["size"])


def downgrade() -> None:
    op.drop_index("ix_timestamps_size", table_name="timestamps")
    op.drop_table("timestamps")
