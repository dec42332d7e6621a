"""What of a set of audit events was deleted, read from the lifecycle tables (log/audit/tables.py, migration 0013):
the reads behind an evidence bundle that survives deletion (log/audit/evidence.py, v3).

Each function takes the `tx` that `Log.read` lends (one committed state) and answers for the entries below a tree
size, so that everything it names is in the checkpoint the bundle is proven against:

* `split_pruned`       which of the indices are still present (their bytes) and which retention pruned (the
                       retention run's index, from pruned_entries)
* `blob_deletions`     for blobs no longer stored: the latest deletion entry whose list names them (deletion_items
                       kind "blob": retention runs, subject erasures, blob erasures)
* `erased_subjects`    for vault tokens the events carry: the subjects they belong to whose key was destroyed, and
                       the entry that recorded it (vault_subject_keys.erasure_idx)
* `deletion_records`   the deletion entries themselves, their lists (when short enough to carry) and the policy
                       entries the retention runs among them applied

Nothing here decides what is true: the bundle's verifier checks every statement against the proven entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, func, select

from log.audit.canonical import parse_json
from log.audit.evidence import MAX_CARRIED_ITEMS, RETENTION_RUN_TYPE
from log.audit.records import BLOB_ERASURE_TYPE
from log.audit.tables import deletion_items, vault_subject_keys, vault_tokens
from log import prune
from log.errors import StorageError

_CHUNK = 500  # indices or values per IN (...): far below SQLite's bound variables, a short statement on PostgreSQL


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield list(values[start:start + size])


def split_pruned(tx, indices: Sequence[int]) -> tuple[dict[int, bytes], dict[int, int]]:
    """(present: index -> entry bytes, pruned: index -> the retention run's index) for `indices`. A pruned entry's
    bytes are empty and its pruned_entries row is written in the same transaction (log/prune.py), so one state read
    never sees one without the other; a row is looked for only where there are no bytes, and an empty entry without
    one is StorageError. Indices not stored here (before an archive's first entry) are in neither."""
    data = tx.entries_at(indices)
    pruned = prune.pruned_at(tx, [index for index, entry in data.items() if not entry])
    damaged = sorted(index for index, entry in data.items() if not entry and index not in pruned)
    if damaged:  # emptied without the record that authorised it: never shown as if nothing were missing
        raise StorageError(f"entry {damaged[0]} is empty but no retention run pruned it: the database is damaged "
                           f"(auditlog db check names what else)")
    present = {index: entry for index, entry in data.items() if entry}
    return present, pruned


def blob_deletions(tx, sha256s: Sequence[str], size: int) -> dict[str, int]:
    """sha256 -> the latest deletion entry (below `size`) that lists the blob, for those any deletion lists.
    Call it for blobs found missing from the store, after looking: a deletion's entry and list are committed before
    its unlink, so a blob gone when looked for is listed by then."""
    d = deletion_items.c
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(sha256s))):
        rows = tx.execute(select(d.item, func.max(d.deletion_idx))
                          .where(d.kind == "blob", d.item.in_(chunk), d.deletion_idx < size).group_by(d.item))
        found.update((sha, index) for sha, index in rows)
    return found


def erased_subjects(tx, tokens_by_tenant: dict[str, set[str]], size: int) \
        -> list[tuple[str, str, tuple[str, ...], int]]:
    """(tenant, subject, its tokens among those given, the erasure's entry index) for every erased subject (its key
    destroyed by an entry below `size`) that one of the given tokens belongs to."""
    t, k = vault_tokens.c, vault_subject_keys.c
    found: dict[tuple[str, str], tuple[set[str], int]] = {}
    for tenant, tokens in sorted(tokens_by_tenant.items()):
        for chunk in _chunks(sorted(tokens)):
            rows = tx.execute(
                select(t.subject, t.token, k.erasure_idx)
                .select_from(vault_tokens.join(vault_subject_keys, and_(k.tenant == t.tenant, k.subject == t.subject)))
                .where(t.tenant == tenant, t.token.in_(chunk), k.erasure_idx.is_not(None), k.erasure_idx < size))
            for subject, token, erasure_idx in rows:
                found.setdefault((tenant, subject), (set(), erasure_idx))[0].add(token)
    return [(tenant, subject, tuple(sorted(tokens)), erasure_idx)
            for (tenant, subject), (tokens, erasure_idx) in sorted(found.items())]


def deletion_records(tx, indices: Iterable[int]) \
        -> tuple[dict[int, bytes], dict[int, list[tuple[str, str]]], dict[int, bytes]]:
    """(deletion entries by index, their lists by index for those carried, the policy entries the retention runs
    among them applied, by index). A list is carried when it has at most MAX_CARRIED_ITEMS items; a blob erasure's
    (its one deletion_items row) never is: its entry names the blob itself."""
    wanted = sorted(set(indices))
    entries = tx.entries_at(wanted)
    d = deletion_items.c
    items: dict[int, list[tuple[str, str]]] = {}
    policy_indices: set[int] = set()
    for index in wanted:
        record = parse_json(entries[index]).value if entries.get(index) else None
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == RETENTION_RUN_TYPE and isinstance(record.get("policies"), list):
            policy_indices.update(p for p in record["policies"] if isinstance(p, int) and 0 <= p < index)
        if kind == BLOB_ERASURE_TYPE:
            continue
        (count,) = tx.execute(select(func.count()).select_from(deletion_items).where(d.deletion_idx == index))[0]
        if count <= MAX_CARRIED_ITEMS:
            items[index] = sorted(tx.execute(select(d.kind, d.item).where(d.deletion_idx == index)))
    policies = tx.entries_at(sorted(policy_indices))
    return entries, items, policies
