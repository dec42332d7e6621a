"""API tokens: one row per token change (created, revoked), each committed with the log entry that records it.

The secret is never stored: `sha256` is the SHA-256 of the whole token. Must match log/audit/tables.py
(`access_tokens`). Times are Unix milliseconds.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("tenants", sa.Text),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_access_tokens_token", "access_tokens", ["token_id", "idx"])


def downgrade() -> None:
    op.drop_index("ix_access_tokens_token", table_name="access_tokens")
    op.drop_table("access_tokens")
