"""The `auditlog` command: serve the log, make keys, migrate the database, add entries, prove and monitor.

    auditlog serve [--host H] [--port P] [--data-dir D] [--database-url U [--read-database-url U]] [--origin O]
                   [--batch-size N]
                   [--batch-max-age-ms MS] [--batch-linger-ms MS]
                   [--witness "URL VKEY [VKEY...]" ...] [--witness-interval S] [--witness-k K]
                   [--tsa-url URL --tsa-ca PEM] [--timestamp-interval S] [--tls-cert PEM --tls-key PEM]
                   [--oidc-issuer URL --oidc-audience AUD (--oidc-jwks-file PATH | --oidc-jwks-url URL)
                    [--oidc-role-claim C] [--oidc-tenants-claim C] [--oidc-role-map GROUP=ROLE ...]]
    auditlog serve --archive DIR_OR_TAR [--host H] [--port P] [--data-dir D] [--public] [--oidc-... ]
    auditlog keygen --origin NAME [--out FILE]
    auditlog db upgrade [--database-url U] [--data-dir D]
    auditlog db check [--database-url U] [--data-dir D] [--log-key VKEY] [--quiet]
    auditlog db copy --from URL --to URL [--data-dir D] [--log-key VKEY] [--quiet]
    auditlog add [FILE|- ...] [--lines] [--server URL] [--log-key VKEY]
    auditlog proof (--index I | --leaf-hash H) [--tree-size S] [--server URL] [--log-key VKEY]
    auditlog proof --evidence I [--out FILE] [--wait [--timeout DURATION]] [--server URL] [--log-key VKEY]
    auditlog verify [--server URL] [--log-key VKEY] [--state FILE] [--witness-key VKEY ... [--witness-k K]]
                    [--tsa-ca PEM] [--max-witness-lag N|DURATION] [--max-timestamp-age DURATION]
                    [--watch INTERVAL] [--json]
    auditlog verify-evidence FILE [--log-key VKEY] [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]
    auditlog events [--run R] [--type T] [--case-id C] [--since WHEN] ... [--limit N] [--all] [--json]
    auditlog get INDEX [--out FILE] [--json]
    auditlog access-log [--credential C] [--what W] [--target T] [--since WHEN] [--until WHEN] [--all] [--json]
    auditlog token create --role ROLE [--tenant T ...] [--expires 90d] [--reason R] | list | revoke TOKEN_OR_ID
    auditlog archive --out DIR_OR_TAR [--from-size A] [--to-size B] [--database-url U] [--data-dir D] [--blob-dir D]
    auditlog archive verify DIR_OR_TAR [--log-key VKEY] [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]
    auditlog hold place --tenant T [--run R]... [--context NAME=VALUE]... [--subject TOKEN]... [--actor A]
                        [--from WHEN] [--to WHEN] --reason R --reference REF | release HOLD_ID --reason R | list
    auditlog subject access --tenant T --subject REF --out FILE | erase --tenant T --subject REF --reason R
    auditlog drill --tenant T --runs N [--seed S] [--scenario random|denied-action|approval-trace|incident-replay|
                   scope|retention] [--log-key VKEY] [--json]
    auditlog report --tenant T --from DATE --to DATE [--framework F] [--format html|pdf|json] --out FILE

`serve` prints `listening on http://<host>:<port>` (https:// with --tls-cert; flushed) once it accepts connections, so `--port 0` can be
used by scripts and tests. The client commands share one flag vocabulary (api/cli/options.py): --server (env
AUDITLOG_SERVER), --log-key (alias --key; the key string or a file holding it, else $AUDITLOG_VERIFIER_KEY, else
<data-dir>/log.vkey, which `serve` and `keygen` write), --witness-key, --witness-k, --tsa-ca, --token, --json.
Local inputs are read and checked before anything is downloaded (api/cli/inputs.py).
Exit status, the same for every command (api/cli/exits.py): 0 done or verified, 1 verification failed, 2 usage or
local input error, 3 the log or a dependency unreachable or not ready, 70 a bug. Every failure is one line on
stderr, `auditlog <command>: ...`; `--debug` adds the traceback.

This module is the parser and main(); the commands live in api/cli/server.py (serve, serve-reads, keygen, db),
api/cli/client.py (add, proof, verify, verify-evidence), api/cli/audit.py (timeline, producer) and api/cli/query.py
(events, get), their value parsers in api/cli/options.py, and every default in log/defaults.py.
"""

from __future__ import annotations

import argparse
import sys

from api.cli import client, exits, server
from api.cli.options import (Parser, count_or_auto, duration, duration_or_off, entries_or_duration, env, json_option, log_key_option,
                             non_negative, positive, positive_seconds, server_option, server_url, token_option,
                             wait_options, witness_options)
from log import defaults


def _connection_flags(sub) -> None:
    """The bounds on what a client may hold (api/server/connections.py); AUDITLOG_* read when the command runs."""
    sub.add_argument("--header-timeout", type=positive_seconds, metavar="SECONDS",
                     help="a request head must be complete this long after its first byte or the connect; else 408 "
                          f"and closed (env AUDITLOG_HEADER_TIMEOUT; default {defaults.HEADER_TIMEOUT:g})")
    sub.add_argument("--body-idle-timeout", type=positive_seconds, metavar="SECONDS",
                     help="a request body that sends nothing this long is cut, nothing of it stored "
                          f"(env AUDITLOG_BODY_IDLE_TIMEOUT; default {defaults.BODY_IDLE_TIMEOUT:g})")
    sub.add_argument("--keepalive-timeout", type=positive_seconds, metavar="SECONDS",
                     help="an idle connection between requests is closed after this long "
                          f"(env AUDITLOG_KEEPALIVE_TIMEOUT; default {defaults.KEEPALIVE_TIMEOUT:g})")
    sub.add_argument("--max-connections", type=positive, metavar="N",
                     help="connections open at once per server process; more are answered 503 and closed "
                          f"(env AUDITLOG_MAX_CONNECTIONS; default {defaults.MAX_CONNECTIONS})")


def _access_flags(sub) -> None:
    """Who may read and append without a credential (api/server/auth.py; README "Security model")."""
    sub.add_argument("--public", action="store_true",
                     help="a public transparency log: entry contents readable and plain entries appendable without "
                          "a credential (events, blobs, the registry and tokens stay private)")
    sub.add_argument("--metrics-public", action="store_true",
                     help="serve /metrics without a credential (default: an admin or monitor credential)")


def _oidc_flags(sub) -> None:
    """Bearer JWTs from an OIDC identity provider (api/server/oidc.py); the AUDITLOG_OIDC_* variables and the
    checks are read when `serve` runs (server._oidc), so a bad one stops serve alone, in one line."""
    group = sub.add_argument_group("OIDC", "accept bearer JWTs from an identity provider (README, Plugging in OIDC)")
    group.add_argument("--oidc-issuer", metavar="URL",
                       help="the IdP's issuer, the exact `iss` of its tokens (env AUDITLOG_OIDC_ISSUER)")
    group.add_argument("--oidc-audience", metavar="AUD",
                       help="the `aud` tokens for this log must contain (env AUDITLOG_OIDC_AUDIENCE)")
    group.add_argument("--oidc-jwks-file", metavar="PATH",
                       help="the IdP's JWKS, read at start and again for a kid it lacks (env AUDITLOG_OIDC_JWKS_FILE)")
    group.add_argument("--oidc-jwks-url", metavar="URL",
                       help="the IdP's JWKS URL (https), fetched when needed and every "
                            f"{defaults.OIDC_JWKS_REFRESH:g} s, at most once per {defaults.OIDC_JWKS_REFETCH_MIN:g} s "
                            "(env AUDITLOG_OIDC_JWKS_URL)")
    group.add_argument("--oidc-role-claim", metavar="CLAIM",
                       help="the claim naming the role, a string or a list; a.b looks into claim a "
                            f"(env AUDITLOG_OIDC_ROLE_CLAIM; default {defaults.OIDC_ROLE_CLAIM})")
    group.add_argument("--oidc-tenants-claim", metavar="CLAIM",
                       help="the claim naming the tenants, a list or a space-separated string "
                            f"(env AUDITLOG_OIDC_TENANTS_CLAIM; default {defaults.OIDC_TENANTS_CLAIM})")
    group.add_argument("--oidc-role-map", action="append", metavar="GROUP=ROLE",
                       help="a role-claim value (an IdP group or role) that grants an auditlog role; repeatable; "
                            "when given, only mapped values count (env AUDITLOG_OIDC_ROLE_MAP, ';'-separated)")
    group.add_argument("--oidc-algorithms", metavar="ALG,ALG",
                       help="JWS algorithms accepted, asymmetric only (env AUDITLOG_OIDC_ALGORITHMS; default "
                            f"{','.join(defaults.OIDC_ALGORITHMS)})")


def build_parser() -> argparse.ArgumentParser:
    from api.cli.access_log import add_access_log_parser
    from api.cli.archive import add_archive_parser
    from api.cli.audit import add_audit_parsers
    from api.cli.drill import add_drill_parser
    from api.cli.lifecycle import add_lifecycle_parsers
    from api.cli.query import add_query_parsers
    from api.cli.report import add_report_parser
    from api.cli.retention import add_retention_parser
    from api.cli.tokens import add_token_parser
    from api.cli.vault import add_vault_parser
    from witness.cli import add_witness_parser
    from witness.tsa_cli import add_tsa_parser

    parser = Parser(prog="auditlog", description="A verifiable transparency log for audit trails.",
                                     epilog=exits.HELP)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (anywhere on the line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = commands.add_parser

    def add_command(name: str, **kwargs):
        kwargs.setdefault("epilog", exits.HELP)
        return add_parser(name, **kwargs)

    commands.add_parser = add_command  # every command's --help ends with the exit statuses

    serve = commands.add_parser("serve", help="run the log server")
    serve.add_argument("--host", default=defaults.HOST)
    serve.add_argument("--port", type=non_negative, default=defaults.PORT, help="0 picks a free port (see the output)")
    serve.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR),
                       help=f"SQLite database and signing key (env AUDITLOG_DATA_DIR; default ./{defaults.DATA_DIR})")
    serve.add_argument("--database-url", default=env("AUDITLOG_DATABASE_URL"),
                       help="SQLAlchemy URL, e.g. postgresql+psycopg://... (env AUDITLOG_DATABASE_URL)")
    serve.add_argument("--read-database-url", default=env("AUDITLOG_READ_DATABASE_URL"), metavar="URL",
                       help="a PostgreSQL hot standby of --database-url that answers every read (checkpoint, proofs, "
                            "tiles, entries, events); writes stay on the primary (env AUDITLOG_READ_DATABASE_URL)")
    serve.add_argument("--origin", default=env("AUDITLOG_ORIGIN"),
                       help="log origin: default the key's name; on first start auditlog.localhost/<hostname>")
    serve.add_argument("--advertise-url", default=env("AUDITLOG_ADVERTISE_URL"), type=server_url, metavar="URL",
                       help="where the other servers on the same PostgreSQL log reach this one while it sequences "
                            "(env AUDITLOG_ADVERTISE_URL; default http(s)://<host>:<port>, the host's name when "
                            "listening on every address; none with --port 0)")
    serve.add_argument("--blob-dir", default=env("AUDITLOG_BLOB_DIR"), metavar="DIR",
                       help="where blobs are stored (env AUDITLOG_BLOB_DIR; default <data dir>/blobs); servers "
                            "sharing a log need one they all reach")
    serve.add_argument("--batch-size", type=positive, default=defaults.BATCH_SIZE)
    serve.add_argument("--batch-max-age-ms", type=non_negative, default=defaults.BATCH_MAX_AGE_MS)
    serve.add_argument("--batch-linger-ms", type=non_negative, default=defaults.BATCH_LINGER_MS)
    serve.add_argument("--witness", action="append", metavar='"URL VKEY [VKEY...]"',
                       help="a tlog-witness: its submission URL prefix and cosigner verifier key(s) (repeatable; env "
                            "AUDITLOG_WITNESSES, one per line or ';'-separated)")
    # The numeric AUDITLOG_* variables are read when `serve` runs (server.cmd_serve), not here: a bad one must not
    # break every other command. Their flags default to None, meaning "the variable, else log/defaults.py".
    serve.add_argument("--witness-interval", type=positive_seconds,
                       help=f"seconds between witnessing rounds (env AUDITLOG_WITNESS_INTERVAL; default "
                            f"{defaults.WITNESS_INTERVAL:g})")
    serve.add_argument("--witness-k", type=positive, metavar="K",
                       help="cosignatures that make a checkpoint witnessed (env AUDITLOG_WITNESS_K; default all)")
    serve.add_argument("--tsa-url", default=env("AUDITLOG_TSA_URL"),
                       help="an RFC 3161 TSA to timestamp checkpoints (env AUDITLOG_TSA_URL; needs --tsa-ca)")
    serve.add_argument("--tsa-ca", default=env("AUDITLOG_TSA_CA"), metavar="PEM",
                       help="the certificate the TSA's tokens must chain to (env AUDITLOG_TSA_CA)")
    serve.add_argument("--timestamp-interval", type=positive_seconds,
                       help=f"seconds between timestamping rounds (env AUDITLOG_TIMESTAMP_INTERVAL; default "
                            f"{defaults.TIMESTAMP_INTERVAL:g})")
    serve.add_argument("--read-workers", type=count_or_auto, metavar="auto|N",
                       help="extra processes serving proofs, tiles and entries on the same port, for reads beyond "
                            "one core; auto: one per usable core beyond the first, at most "
                            f"{defaults.MAX_AUTO_READ_WORKERS}, none on one core (env AUDITLOG_READ_WORKERS; "
                            f"default {defaults.READ_WORKERS})")
    serve.add_argument("--verify-processes", type=non_negative, metavar="N",
                       help="processes that check signed audit events (schema, canonical form, signature) beside the "
                            "server (env AUDITLOG_VERIFY_PROCESSES; default one per core, at most 4; 0: in the server)")
    serve.add_argument("--blob-uploads", type=positive, metavar="N",
                       help="blob PUTs streamed to disk at once; more are answered 503 with Retry-After "
                            f"(env AUDITLOG_BLOB_UPLOADS; default {defaults.BLOB_UPLOADS})")
    serve.add_argument("--tls-cert", default=env("AUDITLOG_TLS_CERT"), metavar="PEM",
                       help="serve HTTPS with this certificate chain (env AUDITLOG_TLS_CERT; needs --tls-key; TLS 1.2 "
                            "or newer, the read workers too)")
    serve.add_argument("--tls-key", default=env("AUDITLOG_TLS_KEY"), metavar="PEM",
                       help="the certificate's private key, unencrypted PEM (env AUDITLOG_TLS_KEY)")
    serve.add_argument("--access-log-retention", type=duration, metavar="DURATION",
                       help="how long the access log keeps a record of a read of contents; older ones are pruned "
                            f"(env AUDITLOG_ACCESS_LOG_RETENTION; default {defaults.ACCESS_LOG_RETENTION_DAYS}d)")
    serve.add_argument("--retention-interval", type=duration_or_off, metavar="DURATION",
                       help="how often the sequencer applies the retention policies (`auditlog retention`); 0: only "
                            "when asked (env AUDITLOG_RETENTION_INTERVAL; default "
                            f"{defaults.RETENTION_INTERVAL / 3600:g}h)")
    serve.add_argument("--publish-dir", default=env("AUDITLOG_PUBLISH_DIR"), metavar="DIR",
                       help="also write the tlog-tiles read API into DIR as files, as batches commit, for a static web "
                            "server, CDN or object store to serve: the checkpoint and the hash tiles, and with --public "
                            "the entry bundles too (they hold the entries' contents, so never without it) (env "
                            "AUDITLOG_PUBLISH_DIR)")
    serve.add_argument("--archive", metavar="DIR_OR_TAR",
                       help="serve an archive (auditlog archive) read-only instead of a live log: verified, then "
                            "loaded into a temporary database; every write is refused (405); the database, "
                            "witnessing, timestamping, publishing and read-worker options do not apply. The admin "
                            "token is the one of --data-dir (or AUDITLOG_ADMIN_TOKEN)")
    serve.add_argument("--vault-key-file", default=env("AUDITLOG_VAULT_KEY_FILE"), metavar="PATH",
                       help="the token vault's master key: base64 of 32 random bytes on one line (env "
                            "AUDITLOG_VAULT_KEY_FILE; else AUDITLOG_VAULT_MASTER_KEY holds the key itself; else "
                            "<data dir>/vault-master.key, created on first start; keep it apart from the database in "
                            "production)")
    _connection_flags(serve)
    _access_flags(serve)
    _oidc_flags(serve)
    serve.set_defaults(func=server.cmd_serve)

    reads = commands.add_parser("serve-reads", help="(internal) a read worker; serve --read-workers starts them")
    reads.add_argument("--host", required=True)
    reads.add_argument("--port", type=non_negative, required=True)
    reads.add_argument("--data-dir", required=True)
    reads.add_argument("--database-url")
    reads.add_argument("--read-database-url")
    reads.add_argument("--key-file")
    reads.add_argument("--tls-cert")
    reads.add_argument("--tls-key")
    _connection_flags(reads)
    _access_flags(reads)
    _oidc_flags(reads)
    reads.set_defaults(func=server.cmd_serve_reads)

    keygen = commands.add_parser("keygen", help="make a signing key (mode 0600); prints the verifier key")
    keygen.add_argument("--origin", required=True, help="the log's origin, which is the key's name")
    keygen.add_argument("--out", help="where to write the signer key (default <data-dir>/log.key)")
    keygen.set_defaults(func=server.cmd_keygen)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    upgrade = db_commands.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    upgrade.add_argument("--database-url", default=env("AUDITLOG_DATABASE_URL"))
    upgrade.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR))
    upgrade.set_defaults(func=server.cmd_db_upgrade)
    check = db_commands.add_parser(
        "check", help="re-hash every entry, rebuild every tile and root, compare with the signed checkpoints "
                      "(offline, read-only; exit 0 agree, 1 a disagreement, 2 no database or key, 3 unreachable)")
    check.add_argument("--database-url", default=env("AUDITLOG_DATABASE_URL"))
    check.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR))
    check.add_argument("--log-key", metavar="VKEY",
                       help="the log's verifier key, or a file holding it (default <data-dir>/log.vkey, or the one "
                            "of <data-dir>/log.key)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=server.cmd_db_check)
    copy = db_commands.add_parser(
        "copy", help="copy a log into an empty database (SQLite to PostgreSQL or back) and verify the copy against "
                     "the signed checkpoint before it commits (exit 0 verified, 1 it does not verify, 2 a missing or "
                     "non-empty database or no key, 3 unreachable)")
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the log's database")
    copy.add_argument("--to", dest="destination", required=True, metavar="URL",
                      help="an empty database (migrated to the newest schema first; a SQLite file is created)")
    copy.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR))
    copy.add_argument("--log-key", metavar="VKEY",
                      help="the log's verifier key, or a file holding it (default <data-dir>/log.vkey, or the one "
                           "of <data-dir>/log.key)")
    copy.add_argument("--quiet", action="store_true", help="no progress bars")
    copy.set_defaults(func=server.cmd_db_copy)

    def client_options(sub):
        server_option(sub)
        log_key_option(sub)
        token_option(sub)

    add = commands.add_parser("add", help="append entries: one per file (or stdin), or one per line with --lines")
    add.add_argument("files", nargs="*", metavar="FILE", help="files to add, '-' for stdin (the default)")
    add.add_argument("--lines", action="store_true", help="add each non-empty line as an entry (batch API)")
    client_options(add)
    add.set_defaults(func=client.cmd_add)

    proof = commands.add_parser("proof", help="fetch and verify an inclusion proof against a signed checkpoint")
    which = proof.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=non_negative, help="the entry's index in the log")
    which.add_argument("--leaf-hash", help="the entry's RFC 9162 leaf hash: base64, base64url or hex")
    which.add_argument("--evidence", type=non_negative, metavar="INDEX",
                       help="write entry INDEX's offline evidence bundle: entry, inclusion proof, witnessed "
                            "checkpoint with its cosignatures, timestamp token (check with verify-evidence)")
    proof.add_argument("--tree-size", type=positive, help="default: the latest checkpoint's size")
    proof.add_argument("--out", metavar="FILE", help="with --evidence: where to write the bundle (default stdout)")
    wait_options(proof, "the entry")
    client_options(proof)
    json_option(proof)
    proof.set_defaults(func=client.cmd_proof)

    verify = commands.add_parser("verify", help="the monitor: re-verify the whole log from its tiles")
    client_options(verify)
    verify.add_argument("--state", help="JSON file keeping the last verified checkpoint (for consistency)")
    verify.add_argument("--concurrency", type=positive, default=16, help="tile fetches in flight")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    witness_options(verify)
    verify.add_argument("--max-witness-lag", type=entries_or_duration, metavar="N|DURATION",
                        help="fail (exit 1) when the witnessed checkpoint is more than N entries behind the log's "
                             "latest, or when entries beyond it have waited longer than DURATION (90s, 15m, 2h, 1d) "
                             "for cosignatures, as far as this monitor can prove (needs --witness-key)")
    verify.add_argument("--max-timestamp-age", type=duration, metavar="DURATION",
                        help="fail (exit 1) when the newest valid timestamp's genTime is older than DURATION "
                             "(needs --tsa-ca)")
    verify.add_argument("--watch", type=duration, metavar="INTERVAL",
                        help="keep monitoring: a round every INTERVAL (90s, 15m, ...), one line (or JSON object) per "
                             "round, exit with the status of the first round that fails; SIGTERM or Ctrl-C exits 0")
    json_option(verify)
    verify.set_defaults(func=client.cmd_verify)

    add_audit_parsers(commands, exits.HELP)
    # verify-evidence checks entry and run bundles alike (api/client/evidence.py verify_evidence): the log key, and
    # the witnesses and the TSA for both kinds when asked.
    verify_evidence = commands.choices["verify-evidence"]
    witness_options(verify_evidence)
    verify_evidence.set_defaults(func=client.cmd_verify_evidence)
    add_query_parsers(commands)
    add_access_log_parser(commands)
    add_archive_parser(commands)
    add_token_parser(commands, exits.HELP)
    add_retention_parser(commands, exits.HELP)
    add_vault_parser(commands, exits.HELP)
    add_lifecycle_parsers(commands, exits.HELP)
    add_drill_parser(commands, exits.HELP)
    add_report_parser(commands, exits.HELP)
    add_witness_parser(commands)
    add_tsa_parser(commands)
    _name_each_parser(parser)
    return parser


def _name_each_parser(parser: argparse.ArgumentParser) -> None:
    """Every parser records itself as `cli_parser`; the innermost one a command line reaches wins, so main() can
    have the command's own parser say an unrecognized argument (`auditlog add: unrecognized arguments: ...`)."""
    parser.set_defaults(cli_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _name_each_parser(sub)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug may come anywhere before a `--` (it belongs to no one command); argparse wants it first.
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    if debug:
        argv = ["--debug"] + [a for a in argv[:end] if a != "--debug"] + argv[end:]
    args, unrecognized = build_parser().parse_known_args(argv)
    if unrecognized:
        args.cli_parser.error(f"unrecognized arguments: {' '.join(unrecognized)}")
    command = " ".join(filter(None, (args.command, getattr(args, "db_command", None),
                                     getattr(args, "archive_command", None))))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line and an exit status (api/cli/exits.py)
        return exits.report(command, exc, debug)


if __name__ == "__main__":
    sys.exit(main())
