"""What an archive of the log (log/archive.py) needs to know of the audit personality's entries: the blobs an
audit event cites (archived beside it), and the deletions that pruned entries (design20: their lists and
`list_sha256`, as GET /api/v1/deletions/{index} answers; which entries are pruned is the core's, log/prune.py).

`AUDIT_RECORDS` is the `ArchivedRecords` that `auditlog archive` writes and verifies with. The database reads
import SQLAlchemy when called, so the verifying side (the client) never loads it.
"""

from __future__ import annotations

import json

from log.archive import ArchivedRecords
from log.audit.lifecycle_names import deletion_list_sha256
from log.audit.schema import content_references
from log.storage import ReadTransaction

ENVELOPE_TYPE = "auditlog.envelope/v1"
_ENVELOPE_TYPE_BYTES = json.dumps(ENVELOPE_TYPE).encode()


def cited_blobs(entry: bytes) -> tuple[str, ...]:
    """The SHA-256 (hex) of every blob an audit envelope entry cites (schema.CONTENT_REF_PATHS); () for any other
    entry. Only what can be an envelope is parsed (a JSON object naming the type), so other entries cost a search."""
    if not entry.startswith(b"{") or _ENVELOPE_TYPE_BYTES not in entry:
        return ()
    try:
        obj = json.loads(entry)
    except ValueError:
        return ()
    if not isinstance(obj, dict) or obj.get("type") != ENVELOPE_TYPE or not isinstance(obj.get("event"), dict):
        return ()
    return content_references(obj["event"])


def deletion_document(tx: ReadTransaction, deletion: int) -> dict | None:
    """What GET /api/v1/deletions/{deletion} answers (log/audit/retention.py; loaded when called: it loads
    SQLAlchemy, which the verifying side must not)."""
    from log.audit.retention import deletion_document as document

    return document(tx, deletion)


def pruned_event_rows(tx: ReadTransaction, indices: list[int]) -> list[dict]:
    """The audit_events rows of pruned event entries (a prune keeps them: the run still shows the event existed),
    as JSON objects of their columns."""
    from sqlalchemy import select

    from log.audit.tables import audit_events

    rows: list[dict] = []
    for start in range(0, len(indices), 500):
        chunk = indices[start:start + 500]
        result = tx.execute(select(*audit_events.c).where(audit_events.c.idx.in_(chunk)).order_by(audit_events.c.idx))
        rows += [dict(zip(audit_events.c.keys(), row)) for row in result]
    return rows


AUDIT_RECORDS = ArchivedRecords(cited_blobs=cited_blobs, list_sha256=deletion_list_sha256,
                                deletion_document=deletion_document, pruned_rows=pruned_event_rows)
