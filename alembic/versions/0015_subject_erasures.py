"""Data-subject erasures: one row per `auditlog.subject-erasure/v1` entry, so that an erasure interrupted between its
entry and the end of its destruction is found and finished at start (log/audit/subjects.py). A new table only;
nothing to back-fill (no erasure existed before). Must match log/audit/tables.py.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_erasures",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_subject_erasures_subject", "subject_erasures", ["tenant", "subject", "idx"])


def downgrade() -> None:
    op.drop_table("subject_erasures")
