"""The access log: access_log, one row per read of contents made with a credential (api/server/access_log.py).

Kept apart from the Merkle log's tables (log/storage/schema.py says why). A new, empty table: the upgrade creates
it with its two indexes (by time, for queries and pruning; by credential, for "what did this token read"), the
downgrade drops it and what it recorded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("what", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("remote", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])
    op.create_index("ix_access_log_credential", "access_log", ["credential", "id"])


def downgrade() -> None:
    op.drop_index("ix_access_log_credential", table_name="access_log")
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.drop_table("access_log")
