"""Restoring an archive of an audit log (log/archive.py) into a database with the log's schema, so that the log's
own readers serve it (`auditlog serve --archive`, api/server/archive.py): `restore_archive`.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

from log.archive import (BLOBS_DIR, CHECKPOINT_FILE, DELETIONS_DIR, MANIFEST_FILE, PRUNED_ROWS_FILE, PRUNED_SUFFIX,
                         ArchiveFiles, verify_archive)
from log.audit.archive import AUDIT_RECORDS
from log.audit.canonical import parse_json
from log.audit.drills import drill_row
from log.audit.errors import InvalidEvent
from log.audit.intake import check_envelope
from log.audit.records import parse_entry
from log.audit.service import index_rows
from log.audit.tables import audit_events, audit_registry, deletion_items
from log.audit.tables import metadata as audit_metadata
from log.blobs import BlobStore
from log.bundles import decode_entry_bundle
from log.errors import InvalidInput, VerificationError
from log.hashing import HASH_SIZE
from log.storage.fill import fill_new_database
from log.storage.schema import checkpoints, entries, pruned_entries, tiles
from log.storage.schema import metadata as schema_metadata
from log.tile_nodes import interior_nodes
from log.tiles import TILE_WIDTH, TileID

RESTORE_CHUNK = 4096  # rows inserted at a time


@dataclass(frozen=True)
class RestoredArchive:
    """What `restore_archive` loaded: the archive's range and origin, and its report (every check passed)."""

    origin: str
    log_key: str
    from_size: int
    to_size: int
    entries_from: int
    events: int
    report: object


def restore_archive(path: str | os.PathLike, url: str, blobs: BlobStore, log_key: str | None = None,
                    progress=None) -> RestoredArchive:
    """Verify the archive at `path` (log/archive.py's checklist, with `log_key`, else the key its manifest names: an
    archive is served only when it agrees with itself), then load it into the new database at `url` (a SQLite file
    that does not exist yet) with the log's schema, so that the log's own readers serve it: its entries
    [entries_from, to_size) (pruned ones as the retention job leaves them: empty, with their `pruned_entries` rows
    and deletion lists), every hash tile of its tree (full tiles with their interior nodes), its checkpoint (the
    note with its cosignatures, as /checkpoint served it), and the audit index rebuilt from its entries (events with
    their context and blob citations, registry changes), and its blobs into `blobs`. API token entries are not
    loaded: an archive server takes the operator's credentials, never the archived period's (a token revoked after
    the period would live again).

    Raises VerificationError (the first failure) for an archive that does not verify; InvalidInput for a path that
    is no archive or a key that does not parse."""
    with ArchiveFiles.open(path) as files:
        if MANIFEST_FILE not in files.names:
            raise VerificationError(f"{path} has no manifest.json: not an archive")
        try:
            manifest = json.loads(files.read(MANIFEST_FILE))
            key = log_key or manifest["log_key"]
        except (ValueError, KeyError, TypeError):
            raise VerificationError(f"{path}: manifest.json does not parse") from None
        report = verify_archive(path, key, records=AUDIT_RECORDS, progress=progress)
        if not report.ok:
            raise VerificationError(f"the archive {path} does not verify: {report.first}")
        def fill(put) -> int:
            events = 0
            level0: dict[int, bytes] = {}
            names = [n for n in files.names if n.startswith("tile/") and not n.startswith("tile/entries/")]
            for name in names:
                tile_id = TileID.parse(name)
                data = files.read(name)
                if tile_id.level == 0:
                    level0[tile_id.index] = data
                put(tiles, [{"level": tile_id.level, "idx": tile_id.index, "data": data,
                             "interior": interior_nodes(data) if not tile_id.is_partial else None}])
            gone: dict[int, int] = {}
            for name in files.names:
                if name.startswith(DELETIONS_DIR + "/"):
                    document = json.loads(files.read(name))
                    put(deletion_items, [{"deletion_idx": document["index"], "kind": kind, "item": item}
                                         for kind, item in document["items"]])
            if PRUNED_ROWS_FILE in files.names:  # what the log still said of its pruned events (verified: pruned ones)
                columns = set(audit_events.c.keys())
                put(audit_events, [{k: v for k, v in row.items() if k in columns}
                                   for row in json.loads(files.read(PRUNED_ROWS_FILE))["rows"]])
            bundles = sorted(((TileID.parse(n.removesuffix(PRUNED_SUFFIX)), n) for n in files.names
                              if n.startswith("tile/entries/")), key=lambda bundle: bundle[0].index)
            rows: list[dict] = []
            rows_by_table: dict[str, list[dict]] = {}
            for tile_id, name in bundles:
                first, leaves = tile_id.index * TILE_WIDTH, level0[tile_id.index]
                bundle = files.read(name)
                if name.endswith(PRUNED_SUFFIX):  # verified above: the 410 problem, its bundle with zero bytes
                    problem = json.loads(bundle)
                    pruned = {item["index"]: item["deletion_index"] for item in problem["pruned"]}
                    put(pruned_entries, [{"idx": i, "deletion_idx": d, "pruned_at": 0} for i, d in pruned.items()])
                    gone.update(pruned)
                    bundle = base64.b64decode(problem["bundle"])
                for position, data in enumerate(decode_entry_bundle(bundle)):
                    index = first + position
                    rows.append({"idx": index, "data": data, "received_at": 0,
                                 "leaf_hash": leaves[position * HASH_SIZE:(position + 1) * HASH_SIZE]})
                    if data and index not in gone:
                        events += _index_entry(index, data, rows_by_table)
                if len(rows) >= RESTORE_CHUNK:
                    put(entries, rows)
                    rows = []
            put(entries, rows)
            for table_name, table_rows in rows_by_table.items():
                put(audit_metadata.tables[table_name], table_rows)
            for name in files.names:
                if name.startswith(BLOBS_DIR + "/"):
                    blobs.put(name.removeprefix(BLOBS_DIR + "/"), files.read(name))
            note = files.read(CHECKPOINT_FILE)
            put(checkpoints, [{"size": manifest["to_size"], "root_hash": report.root_hash, "note": note,
                               "created_at": 0}])
            return events

        events = fill_new_database(url, (schema_metadata, audit_metadata), fill)
    if not isinstance(key, str):
        raise InvalidInput("the archive's log key is not a string", field="log_key")
    return RestoredArchive(manifest["origin"], key, manifest["from_size"], manifest["to_size"],
                           manifest["entries_from"], events, report)


_FAR_FUTURE_MS = 2**62  # an archived event is never "ahead of the clock": it was accepted when it was logged


def _index_entry(index: int, data: bytes, table_rows: dict[str, list[dict]]) -> int:
    """Add the audit index rows of one archived entry to `table_rows` (table -> rows); 1 for an event, else 0."""
    if not data.startswith(b"{"):
        return 0
    try:
        kind, value = parse_entry(data)
    except InvalidEvent:
        return 0  # a plain entry: nothing to index
    if kind == "envelope":
        parsed = parse_json(data)
        checked = check_envelope(parsed.value, parsed.exact, _FAR_FUTURE_MS)
        for row in index_rows(checked):
            values = dict(zip(row.columns, row.values))
            table_rows.setdefault(row.table, []).append({row.index_column: index, **values})
        return 1
    if kind == "registry-change":
        table_rows.setdefault(audit_registry.name, []).append({
            "idx": index, "producer": value["producer"], "key_id": value.get("key_id"), "change": value["change"],
            "record": data.decode()})
    if kind == "audit-drill":  # the period's drills, listed by GET /api/v1/drills as on the live log
        row = drill_row(value, data)
        table_rows.setdefault(row.table, []).append({row.index_column: index, **dict(zip(row.columns, row.values))})
    return 0
