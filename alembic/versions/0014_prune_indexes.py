"""Retention: an index on the entry index of each audit index table whose rows go when an event is pruned
(audit_event_context, audit_event_blobs, audit_event_tokens). A retention run deletes them by entry index, chunk by
chunk (log/audit/retention.py `prune_entries`); without these, each chunk's delete scanned the whole table (a run
over 10^5 events of a 10^6-event log: hundreds of full scans). Must match log/audit/tables.py.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_audit_event_context_idx", "audit_event_context"),
    ("ix_audit_event_blobs_idx", "audit_event_blobs"),
    ("ix_audit_event_tokens_idx", "audit_event_tokens"),
)


def upgrade() -> None:
    for name, table in INDEXES:
        op.create_index(name, table, ["idx"])


def downgrade() -> None:
    for name, table in INDEXES:
        op.drop_index(name, table_name=table)
