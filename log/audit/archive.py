"""What an archive of the log (log/archive.py) needs to know of the audit personality's entries: the blobs an
audit event cites (archived beside it), and the lists of the deletions that pruned entries (design20:
`deletion_items`, `list_sha256`; which entries are pruned is the core's, log/prune.py).

`AUDIT_RECORDS` is the `ArchivedRecords` that `auditlog archive` writes and verifies with. The database reads
import SQLAlchemy when called, so the verifying side (the client) never loads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from log.archive import ArchivedRecords
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


def deletion_list_sha256(items: Iterable[tuple[str, str]]) -> str:
    """design20's `list_sha256` of a deletion: SHA-256 hex of the UTF-8 lines `<kind> <item>\\n`, sorted bytewise."""
    lines = sorted(f"{kind} {item}\n".encode() for kind, item in items)
    return hashlib.sha256(b"".join(lines)).hexdigest()


def deletion_list(tx: ReadTransaction, deletion: int) -> list[tuple[str, str]]:
    """The (kind, item) list of the deletion whose log entry is `deletion`."""
    from sqlalchemy import select

    from log.audit.tables import deletion_items

    return [(kind, item) for kind, item in tx.execute(
        select(deletion_items.c.kind, deletion_items.c.item).where(deletion_items.c.deletion_idx == deletion))]


AUDIT_RECORDS = ArchivedRecords(cited_blobs=cited_blobs, list_sha256=deletion_list_sha256,
                                deletion_items=deletion_list)
