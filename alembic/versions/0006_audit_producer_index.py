"""Audit events by producer through an index on (producer, idx) instead of (producer, event_id).

Queries filter by producer and page by index: with (producer, event_id) SQLite read all of a producer's events and
sorted them by index for every page (17 ms at 200,000 events, growing with the log), and each new event with a
random event_id went into the index at a random place. Nothing looks events up by (producer, event_id): retries
find their event through the idempotency key (entry_keys), which is derived from exactly that pair.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_producer", "audit_events", ["producer", "idx"])
    op.drop_index("ix_audit_events_producer_event", table_name="audit_events")


def downgrade() -> None:
    op.create_index("ix_audit_events_producer_event", "audit_events", ["producer", "event_id"])
    op.drop_index("ix_audit_events_producer", table_name="audit_events")
