"""The records lifecycle: the token vault, the index of vault tokens in events, retention policies and runs, the
lists of what deletions removed, pruned entries, legal holds; and the media type of each blob reference.

New tables only, plus one nullable column on audit_event_blobs (`media_type`, for blob retention by media type):
rows of events logged before this revision keep NULL there, so a media-type policy does not reach them (an
event-type or "*" policy does). Nothing to back-fill: no vault token existed before. The downgrade drops what the
upgrade made, and with it the vault: an operator who downgrades loses every mapping (as an erasure would). Must
match log/audit/tables.py.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROWID_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_event_blobs") as batch:
        batch.add_column(sa.Column("media_type", sa.String(255), nullable=True))
    op.create_table(
        "vault_tenant_keys",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "vault_subject_keys",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("erased_at", sa.BigInteger, nullable=True),
        sa.Column("erasure_idx", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "vault_tokens",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_vault_tokens_subject", "vault_tokens", ["tenant", "subject"])
    op.create_table(
        "audit_event_tokens",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_audit_event_tokens_token", "audit_event_tokens", ["token", "tenant", "idx"])
    op.create_table(
        "retention_policies",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("record_class", sa.String(16), nullable=False),
        sa.Column("selector", sa.String(300), nullable=False),
        sa.Column("retain_days", sa.Integer, nullable=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_retention_policies_scope", "retention_policies",
                    ["tenant", "record_class", "selector", "idx"])
    op.create_table(
        "retention_runs",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("list_sha256", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "deletion_items",
        sa.Column("deletion_idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("item", sa.String(200), primary_key=True),
    )
    op.create_table(
        "pruned_entries",
        sa.Column("idx", ROWID_KEY, primary_key=True, autoincrement=False),
        sa.Column("deletion_idx", sa.BigInteger, nullable=False),
        sa.Column("pruned_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "legal_holds",
        sa.Column("hold_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("placed_idx", sa.BigInteger, nullable=False),
        sa.Column("placed_at", sa.BigInteger, nullable=False),
        sa.Column("released_idx", sa.BigInteger, nullable=True),
        sa.Column("released_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_legal_holds_tenant", "legal_holds", ["tenant", "released_idx"])


def downgrade() -> None:
    for table in ("legal_holds", "pruned_entries", "deletion_items", "retention_runs", "retention_policies",
                  "audit_event_tokens", "vault_tokens", "vault_subject_keys", "vault_tenant_keys"):
        op.drop_table(table)
    with op.batch_alter_table("audit_event_blobs") as batch:
        batch.drop_column("media_type")
