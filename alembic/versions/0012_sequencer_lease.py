"""The sequencer lease: which of the servers sharing a PostgreSQL log sequences it now, and its fencing epoch.

One row at most (id 1), written by a server when it takes the sequencer lock; every batch checks, inside its own
transaction, that the row still holds its epoch. A SQLite log has one server and never writes it. The downgrade
drops the table. Must match log/storage/schema.py.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sequencer_lease",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sequencer_lease")
