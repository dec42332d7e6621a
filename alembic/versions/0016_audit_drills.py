"""Audit drills: one row per `auditlog.audit-drill/v1` entry (log/audit/drills.py), so that a tenant's drills are
listed newest first from the index. A new table only; nothing to back-fill (no drill existed before). Must match
log/audit/tables.py.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_drills",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("drilled_at", sa.BigInteger, nullable=False),
        sa.Column("drilled_by", sa.Text, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("findings", sa.Integer, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_drills_tenant", "audit_drills", ["tenant", "idx"])


def downgrade() -> None:
    op.drop_table("audit_drills")
