"""The audit personality's query indexes: audit events, their context ids, producer-registry changes.

Every row is committed with the log entry it indexes (`idx` is that entry's index) and can be rebuilt from it.
Must match log/audit/tables.py. Times are Unix milliseconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("producer", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("parent_event_id", sa.String(128)),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_audit_events_run", "audit_events", ["run_id", "idx"])
    op.create_index("ix_audit_events_trace", "audit_events", ["trace_id", "idx"])
    op.create_index("ix_audit_events_tenant_ts", "audit_events", ["tenant", "ts", "idx"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor_id", "idx"])
    op.create_index("ix_audit_events_type", "audit_events", ["event_type", "idx"])
    op.create_index("ix_audit_events_producer_event", "audit_events", ["producer", "event_id"])
    op.create_table(
        "audit_event_context",
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
    )
    op.create_index("ix_audit_event_context_lookup", "audit_event_context", ["name", "value", "idx"])
    op.create_table(
        "audit_registry",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("producer", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(16)),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_registry_producer_key", "audit_registry", ["producer", "key_id", "idx"])


def downgrade() -> None:
    op.drop_index("ix_audit_registry_producer_key", table_name="audit_registry")
    op.drop_table("audit_registry")
    op.drop_index("ix_audit_event_context_lookup", table_name="audit_event_context")
    op.drop_table("audit_event_context")
    for name in ("producer_event", "type", "actor", "tenant_ts", "trace", "run"):
        op.drop_index(f"ix_audit_events_{name}", table_name="audit_events")
    op.drop_table("audit_events")
