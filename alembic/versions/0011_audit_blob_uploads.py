"""Who uploaded each blob: audit_blob_uploads (sha256, tenant), one row per tenant scope of an uploading credential.

An auditor of T reads a blob only when an event of T names it and a credential covering T uploaded it ("*": one
covering every tenant). Blobs stored before this revision have no rows, and for them the citation rule alone holds
(as before), so existing logs keep working; uploads from this revision on are scoped. Nothing to back-fill: who
uploaded a blob was never recorded. The downgrade drops the table. Must match log/audit/tables.py.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_blob_uploads",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("audit_blob_uploads")
