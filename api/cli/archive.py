"""`auditlog archive`: write an archive of a period of the log from its database, and verify one offline.

    auditlog archive --out DIR_OR_TAR [--from-size A] [--to-size B] [--database-url U] [--data-dir D]
                     [--blob-dir DIR] [--log-key VKEY] [--quiet] [--json]
    auditlog archive verify DIR_OR_TAR [--log-key VKEY] [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]
                     [--quiet] [--json]

Writing reads the database directly, read-only, in one committed state (as `db check` and `db copy` do): no server
is needed, and a live one is not disturbed. The archive is the tlog-tiles layout of log/archive.py, a directory or,
when --out ends in .tar, .tar.gz or .tgz, one tar file. Exit statuses (api/cli/exits.py): 0 written / VALID;
1 INVALID (or the database disagrees with itself: nothing is written); 2 a bad flag, range, path or key; 3 the
database unreachable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from api.cli import exits, inputs
from api.cli.options import ProgressBar, env, json_option, log_key_option, non_negative, positive, witness_options
from log import defaults


def add_archive_parser(commands) -> None:
    archive = commands.add_parser(
        "archive", help="write a self-verifying archive of entries [A, B) in the tlog-tiles layout, from the "
                        "database (read-only); `archive verify` checks one offline")
    archive.add_argument("--out", metavar="DIR_OR_TAR",
                         help="where to write it: a new directory, or a tar file when it ends in .tar (.tar.gz, .tgz: "
                              "gzipped); never overwritten")
    archive.add_argument("--from-size", type=non_negative, default=0, metavar="A",
                         help="the first entry archived (whole entry bundles: from A rounded down to a multiple of "
                              "256; default 0)")
    archive.add_argument("--to-size", type=positive, metavar="B",
                         help="the size of a checkpoint the log holds: entries below it are archived (default: the "
                              "latest checkpoint with a timestamp or a witness cosignature, else the latest)")
    archive.add_argument("--database-url", default=env("AUDITLOG_DATABASE_URL"),
                         help="the log's database (env AUDITLOG_DATABASE_URL; default the SQLite log in --data-dir)")
    archive.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR),
                         help="the log's data dir: its SQLite database, log.vkey and blobs (env AUDITLOG_DATA_DIR)")
    archive.add_argument("--blob-dir", default=env("AUDITLOG_BLOB_DIR"), metavar="DIR",
                         help="the log's blob store (env AUDITLOG_BLOB_DIR; default <data dir>/blobs)")
    archive.add_argument("--log-key", metavar="VKEY",
                         help="the log's verifier key, or a file holding it (default <data-dir>/log.vkey, or the one "
                              "of <data-dir>/log.key)")
    archive.add_argument("--quiet", action="store_true", help="no progress bar")
    json_option(archive)
    archive.set_defaults(func=cmd_archive)
    steps = archive.add_subparsers(dest="archive_command", metavar="[verify]")
    verify = steps.add_parser(
        "verify", help="verify an archive offline: manifest hashes, checkpoint signature, cosignatures, timestamps, "
                       "tiles and root, every entry, pruned entries, blobs (exit 0 VALID, 1 INVALID)",
        epilog=exits.HELP)
    verify.add_argument("archive", metavar="DIR_OR_TAR")
    log_key_option(verify)
    witness_options(verify)
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    json_option(verify)
    verify.set_defaults(func=cmd_archive_verify)


def cmd_archive(args) -> int:
    """Write the archive (log/archive.py write_archive) from the database, opened read-only."""
    from api.cli.server import _check_key
    from api.server.problems import problem_body  # the 410 a bundle with pruned entries is answered (and archived)
    from log.archive_writer import write_archive
    from log.audit.archive import AUDIT_RECORDS
    from log.blobs import FileBlobStore
    from log.errors import InvalidInput, LogError
    from log.note_keys import parse_verifier_key
    from log.service import LogConfig
    from log.storage.engine import shown_url
    from log.storage.store import SqlLogStore

    if not args.out:
        raise InvalidInput("--out is required (or `auditlog archive verify DIR_OR_TAR`)", field="out")
    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url)
    try:
        log_key = _check_key(args, config)
        parse_verifier_key(log_key)
    except (OSError, LogError) as exc:
        raise exits.CommandFailed(f"no usable log key: {exc}", exits.USAGE) from None
    url = config.resolved_database_url()
    try:
        store = SqlLogStore(url, read_only=True)
    except FileNotFoundError as exc:
        raise exits.CommandFailed(f"no log database: {exc}", exits.USAGE) from None
    blob_dir = Path(args.blob_dir) if args.blob_dir else config.data_dir / "blobs"
    try:
        summary = write_archive(store, args.out, log_key=log_key, from_size=args.from_size, to_size=args.to_size,
                                blobs=FileBlobStore(blob_dir), records=AUDIT_RECORDS, pruned_body=problem_body,
                                progress=None if args.quiet or args.json else ProgressBar())
    except LogError:
        raise
    except Exception as exc:  # noqa: BLE001 - the database: unreachable (3) or holding no log (2), in one line
        status = exits.database_status(exc) if "sqlalchemy" in type(exc).__module__ else None
        if status is None:
            raise
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise exits.CommandFailed(f"cannot read the log in {shown_url(url)}: {first}", status) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({"path": str(summary.path), "origin": summary.origin, "from_size": summary.from_size,
                          "to_size": summary.to_size, "entries_from": summary.entries_from,
                          "entries": summary.entries, "pruned": summary.pruned, "hash_tiles": summary.hash_tiles,
                          "entry_bundles": summary.entry_bundles, "cosignatures": summary.cosignatures,
                          "timestamps": summary.timestamps, "blobs": summary.blobs, "blobs_gone": summary.blobs_gone,
                          "files": summary.files, "bytes": summary.bytes, "manifest_sha256": summary.manifest_sha256,
                          "seconds": round(summary.seconds, 3)}))
        return exits.OK
    print(f"OK: archived entries [{summary.entries_from:,}, {summary.to_size:,}) of {summary.origin} to "
          f"{summary.path} in {summary.seconds:.1f} s: {summary.entry_bundles:,} entry bundles "
          f"({summary.pruned:,} pruned entries), {summary.hash_tiles:,} hash tiles, the checkpoint of size "
          f"{summary.to_size:,} with {summary.cosignatures} cosignature(s) and {summary.timestamps} timestamp "
          f"token(s), {summary.blobs:,} blobs ({summary.blobs_gone:,} cited blobs already gone); {summary.files:,} "
          f"files, {summary.bytes:,} bytes")
    print(f"manifest SHA-256: {summary.manifest_sha256}")
    return exits.OK


def cmd_archive_verify(args) -> int:
    """Verify an archive offline (api/client/archive.py): every check of log/archive.py's checklist, reported."""
    from api.client.archive import verify_archive
    from log.archive import CHECKS

    log_key = inputs.log_key(args)
    witnesses, tsa_trusted = inputs.witness_policy(args), inputs.tsa_certificate(args)
    report = verify_archive(args.archive, log_key, witnesses=witnesses, tsa_trusted=tsa_trusted,
                            progress=None if args.quiet or args.json else ProgressBar())
    not_asked = {5: witnesses is None}
    if args.json:
        print(json.dumps({
            "valid": report.ok, "archive": str(report.path), "origin": report.origin,
            "from_size": report.from_size, "to_size": report.to_size, "entries_from": report.entries_from,
            "entries": report.entries, "pruned": report.pruned, "blobs": report.blobs,
            "blobs_gone": report.blobs_gone, "timestamps": report.timestamps,
            "checks": [{"check": number, "name": name,
                        "result": ("failed" if report.failed(number) else "passed" if number in report.passed
                                   else "not asked" if not_asked.get(number) else "not reached"),
                        "detail": report.passed.get(number)} for number, name in CHECKS.items()],
            "failures": [{"check": f.check, "name": f.name, "detail": f.detail} for f in report.failures],
            "failure_counts": {CHECKS[n]: c for n, c in sorted(report.failure_counts.items())},
        }))
        return exits.OK if report.ok else exits.FAILED
    for number, name in CHECKS.items():
        if report.failed(number):
            shown = f"FAILED ({report.failure_counts[number]:,})"
        elif number in report.passed:
            shown = f"ok: {report.passed[number]}"
        else:
            shown = "not asked (no --witness-key)" if not_asked.get(number) else "not reached"
        print(f"{number:>2} {name:<13} {shown}")
    if report.ok:
        print(f"VALID: {report.path}: entries [{report.entries_from:,}, {report.to_size:,}) of {report.origin}")
        return exits.OK
    for failure in report.failures[1:]:
        print(f"   {failure}", file=sys.stdout)
    exits.say("archive verify", f"INVALID: {report.first}")
    return exits.FAILED
