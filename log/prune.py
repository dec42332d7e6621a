"""Pruned entries: log entries whose contents a retention run deleted, while their leaf hashes, the tiles and every
checkpoint stay (so every proof of every entry, and every checkpoint, still verifies).

The one rule, kept by `prune_entries` and relied on by every reader of entry contents: an entry is pruned exactly
when a `pruned_entries` row names it, and then its `entries.data` is empty; both change in ONE transaction. Readers
look for a row only where they read zero bytes, so they pay nothing for entries that still have contents. (The HTTP
API refuses empty entries, but the library does not: an empty entry without a row is an entry logged empty, and
its leaf hash says so.) A row beside an entry that still has bytes is damage (log/fsck.py names it).

`pruned_entries.deletion_idx` is the retention-run entry (`auditlog.retention-run/v1`) that authorised the prune:
its deletion list (`deletion_items`) names the entry, and the run's log entry commits to that list's hash.

Readers: `pruned_in_range` and `pruned_at` take any transaction with `execute(select)` (a `Log.read` or `Log.write`
transaction, a `LogStore.read` one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import BigInteger, LargeBinary, and_, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY

from log.errors import EntryPruned
from log.storage.schema import entries, pruned_entries

PRUNE_CHUNK = 5000  # indices per statement: under SQLite's 32,766 bound variables


def pruned_in_range(tx, start: int, end: int) -> dict[int, int]:
    """The pruned entries with index in [start, end): index -> the index of the log entry recording the deletion."""
    p = pruned_entries.c
    return {idx: deletion for idx, deletion in tx.execute(
        select(p.idx, p.deletion_idx).where(and_(p.idx >= start, p.idx < end)).order_by(p.idx))}


def pruned_at(tx, indices: Iterable[int]) -> dict[int, int]:
    """The pruned entries among `indices`: index -> the index of the log entry recording the deletion."""
    wanted = sorted(set(indices))
    found: dict[int, int] = {}
    p = pruned_entries.c
    for start in range(0, len(wanted), PRUNE_CHUNK):
        chunk = wanted[start:start + PRUNE_CHUNK]
        found.update(tx.execute(select(p.idx, p.deletion_idx).where(p.idx.in_(chunk))))
    return found


def pruned_since(tx, since_ms: int) -> list[tuple[int, int]]:
    """(index, pruned_at) of the entries pruned at or after `since_ms` (a static publisher's look for bundles to
    replace; a scan of the pruned rows, which the publisher makes once a round at most)."""
    p = pruned_entries.c
    return [(idx, at) for idx, at in tx.execute(select(p.idx, p.pruned_at).where(p.pruned_at >= since_ms))]


def prune_entries(tx, indices: Sequence[int], deletion_idx: int, now_ms: int, *,
                  postgresql: bool = False) -> list[int]:
    """Prune the entries `indices` in the writer's transaction `tx` (run it as `Log.write` work, so it commits
    whole or not at all): for each stored entry not already pruned, its data becomes empty and a pruned_entries row
    names `deletion_idx`. A personality removes its own rows that carry the contents in the same transaction
    (log/audit/retention.py). Idempotent (a resumed run re-prunes nothing). Returns the indices pruned by this call,
    ascending. `postgresql`: the statements take the indices as one array (`= ANY`), not an IN list of bound
    values (2,000 indices: 0.2 s a statement as IN lists there, against a few ms)."""
    wanted = sorted(set(indices))
    done: list[int] = []
    for start in range(0, len(wanted), PRUNE_CHUNK):
        chunk = wanted[start:start + PRUNE_CHUNK]
        if postgresql:
            already = {idx for idx, in tx.execute(_PG_PRUNED.bindparams(ids=chunk))}
            stored = {idx for idx, in tx.execute(_PG_STORED.bindparams(ids=chunk))}
        else:
            already = set(pruned_at(tx, chunk))
            stored = {idx for idx, in tx.execute(select(entries.c.idx).where(entries.c.idx.in_(chunk)))}
        todo = [idx for idx in chunk if idx in stored and idx not in already]
        if not todo:
            continue
        if postgresql:
            tx.execute(_PG_EMPTY.bindparams(ids=todo, empty=b""))
            tx.execute(_PG_ROWS.bindparams(ids=todo, deletion=deletion_idx, at=now_ms))
        else:
            tx.execute(update(entries).where(entries.c.idx.in_(todo)).values(data=b""))
            tx.execute_many(pruned_entries.insert(),
                            [{"idx": idx, "deletion_idx": deletion_idx, "pruned_at": now_ms} for idx in todo])
        done.extend(todo)
    return done


def delete_rows_of(tx, table, indices: Sequence[int], *, postgresql: bool = False) -> None:
    """Delete the rows of `table` (a personality's index table with an `idx` column) of the entries `indices`, in
    the writer's transaction `tx` (as `prune_entries`, one array on PostgreSQL)."""
    for start in range(0, len(indices), PRUNE_CHUNK):
        chunk = list(indices[start:start + PRUNE_CHUNK])
        if postgresql:
            tx.execute(text(f"DELETE FROM {table.name} WHERE idx = ANY(:ids)").bindparams(
                bindparam("ids", chunk, type_=_BIGINT_ARRAY)))
        else:
            tx.execute(delete(table).where(table.c.idx.in_(chunk)))


_BIGINT_ARRAY = ARRAY(BigInteger)
_PG_PRUNED = text("SELECT idx FROM pruned_entries WHERE idx = ANY(:ids)").bindparams(
    bindparam("ids", type_=_BIGINT_ARRAY))
_PG_STORED = text("SELECT idx FROM entries WHERE idx = ANY(:ids)").bindparams(bindparam("ids", type_=_BIGINT_ARRAY))
_PG_EMPTY = text("UPDATE entries SET data = :empty WHERE idx = ANY(:ids)").bindparams(
    bindparam("ids", type_=_BIGINT_ARRAY), bindparam("empty", type_=LargeBinary))
_PG_ROWS = text("INSERT INTO pruned_entries (idx, deletion_idx, pruned_at) "
                "SELECT i, :deletion, :at FROM unnest(:ids) AS i").bindparams(bindparam("ids", type_=_BIGINT_ARRAY))


def pruned_error(pruned: dict[int, int], what: str, present: bytes | None = None) -> EntryPruned:
    """The 410 for a read of `what` (an entry, a bundle) that touched the pruned entries `pruned`."""
    first, deletion = min(pruned.items())
    more = f" (and {len(pruned) - 1} more of its entries)" if len(pruned) > 1 else ""
    return EntryPruned(f"{what}: the contents of entry {first}{more} were deleted under a retention policy; log "
                       f"entry {deletion} records the deletion (GET /api/v1/deletions/{deletion} lists it)",
                       pruned, present)


__all__ = ["PRUNE_CHUNK", "delete_rows_of", "prune_entries", "pruned_at", "pruned_error", "pruned_in_range",
           "pruned_since"]
