"""Which tenants' events refer to each blob: audit_event_blobs (sha256, tenant, idx), looked up by sha256.

An auditor may read a blob that an event of one of its tenants refers to (issue 18); the blob store knows only
hashes. From this revision on the sequencer writes a row per (event entry, blob it refers to) in the entry's own
transaction (log/audit/tables.py). The upgrade back-fills the rows of the events already logged: it reads
audit_events joined with their entries, a chunk of CHUNK events at a time in index order, and takes the references
from each stored event where the event schema admits them (log.audit.schema.content_references, the function the
ingest path uses). The downgrade drops the table: it holds nothing the log does not.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import json
import logging

import sqlalchemy as sa

from alembic import op
from log.audit.schema import content_references

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHUNK = 2000
_logger = logging.getLogger("log.storage.engine")

_blobs = sa.table("audit_event_blobs", sa.column("sha256"), sa.column("tenant"), sa.column("idx"))
_events = sa.table("audit_events", sa.column("idx"), sa.column("tenant"))
_entries = sa.table("entries", sa.column("idx"), sa.column("data"))


def _back_fill() -> None:
    bind = op.get_bind()
    after = -1
    unreadable: list[int] = []
    while True:
        chunk = bind.execute(
            sa.select(_events.c.idx, _events.c.tenant, _entries.c.data)
            .select_from(_events.join(_entries, _entries.c.idx == _events.c.idx))
            .where(_events.c.idx > after).order_by(_events.c.idx).limit(CHUNK)
        ).all()
        if not chunk:
            break
        rows = []
        for idx, tenant, data in chunk:
            # An audit_events row indexes an accepted envelope: {"event": {...}, ..., "type": "auditlog.envelope/v1"}.
            event = _event(bytes(data))
            if event is None:
                unreadable.append(idx)
                continue
            rows += [{"sha256": digest, "tenant": tenant, "idx": idx} for digest in content_references(event)]
        if rows:
            bind.execute(_blobs.insert(), rows)
        after = chunk[-1][0]
    if unreadable:
        # Not the log's doing (the sequencer indexes only envelopes it accepted): an index row that points at
        # something else. Its event refers to no blob here, so no auditor gains a blob by it; `auditlog db check`
        # is the place to look at the entries.
        _logger.warning("audit_event_blobs: %d audit_events row(s) index an entry that is not an audit envelope "
                        "(first at index %d); no blob indexed for them", len(unreadable), unreadable[0])


def _event(data: bytes) -> dict | None:
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    event = envelope.get("event") if isinstance(envelope, dict) else None
    return event if isinstance(event, dict) else None


def upgrade() -> None:
    op.create_table(
        "audit_event_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
    )
    _back_fill()
    op.create_index("ix_audit_event_blobs_sha256", "audit_event_blobs", ["sha256", "tenant"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_blobs_sha256", table_name="audit_event_blobs")
    op.drop_table("audit_event_blobs")
