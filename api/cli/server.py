"""The server's side of `auditlog`: serve, serve-reads (a read worker), keygen, db upgrade, check and copy, and the logging they
set up. The server itself (aiohttp's web, the Log, SQLAlchemy) is imported when one of these commands runs, so the
client commands never load it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from api.cli import exits
from api.cli.options import (AUTO, VKEY_SUFFIX, ProgressBar, count_or_auto, duration, duration_or_off, env, flag_or_env, non_negative,
                             positive, positive_seconds)
from log import defaults
from log.errors import InvalidInput, LogError

if TYPE_CHECKING:
    from log.service import LogConfig

def default_origin() -> str:
    """auditlog.localhost/<hostname>, the hostname reduced to characters a key name and a URL path both allow."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()).strip("-.") or "localhost"
    return f"auditlog.localhost/{host}"


def _write_vkey(key_file: Path, verifier_key: str) -> Path:
    path = key_file.with_suffix(VKEY_SUFFIX)
    if not path.exists() or path.read_text().strip() != verifier_key:
        path.write_text(verifier_key + "\n")
    return path


# --- serve -------------------------------------------------------------------------------------------------------


def _server_logging() -> None:
    """INFO lines with their time and source on stderr; alembic's per-step lines stay quiet (the storage layer logs
    an upgrade's revisions and duration)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_serve(args) -> int:
    from log.service import LogConfig

    if args.archive:
        return _serve_archive(args)
    # Options first, the AUDITLOG_* numbers among them: a bad one is one line on stderr, before anything starts.
    read_workers = flag_or_env(args.read_workers, "AUDITLOG_READ_WORKERS", count_or_auto, defaults.READ_WORKERS)
    verify_processes = flag_or_env(args.verify_processes, "AUDITLOG_VERIFY_PROCESSES", non_negative,
                                   defaults.verify_processes())
    witnessing = _witnessing(args)
    limits = _connection_limits(args)
    blob_uploads = flag_or_env(args.blob_uploads, "AUDITLOG_BLOB_UPLOADS", positive, defaults.BLOB_UPLOADS)
    tls = _tls(args)
    retention = flag_or_env(args.access_log_retention, "AUDITLOG_ACCESS_LOG_RETENTION", duration,
                            defaults.ACCESS_LOG_RETENTION_DAYS * 86400.0)
    retention_interval = flag_or_env(args.retention_interval, "AUDITLOG_RETENTION_INTERVAL", duration_or_off,
                                     defaults.RETENTION_INTERVAL)
    oidc = _oidc(args)
    _check_read_database(args)
    publish_dir = _publish_dir(args)

    _server_logging()
    config = LogConfig(
        data_dir=Path(args.data_dir),
        database_url=args.database_url,
        read_database_url=args.read_database_url,
        origin=args.origin,
        batch_size=args.batch_size,
        batch_max_age=args.batch_max_age_ms / 1000,
        batch_linger=args.batch_linger_ms / 1000,
        advertise_url=args.advertise_url or advertised_url(args.host, args.port, tls is not None),
    )
    if config.origin is None and not config.resolved_key_file().exists():
        config.origin = default_origin()
    # Log.open makes the data dir once it knows the start is safe: a refused start leaves nothing behind.
    return asyncio.run(_serve(config, args.host, args.port, witnessing, read_workers=read_workers,
                              verify_processes=verify_processes, limits=limits, blob_uploads=blob_uploads,
                              tls=tls, access_log_retention_days=retention / 86400, access=_access(args),
                              oidc=oidc, blob_dir=args.blob_dir, publish_dir=publish_dir,
                              retention_interval=retention_interval,
                              vault_key_file=args.vault_key_file))


def _serve_archive(args) -> int:
    """`serve --archive`: verify the archive, load it into a temporary SQLite database, serve it read-only
    (api/server/archive.py) until SIGTERM or SIGINT; the temporary database goes with the server."""
    import tempfile

    from log.audit.archive_restore import restore_archive
    from log.blobs import FileBlobStore
    from log.service import LogConfig
    from log.storage.engine import sqlite_url_for

    limits = _connection_limits(args)
    tls = _tls(args)
    oidc = _oidc(args)
    _server_logging()
    data_dir = Path(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="auditlog-archive-") as work:
        url = sqlite_url_for(Path(work) / "archive.db")
        print(f"verifying and loading the archive {args.archive}", flush=True)
        restored = restore_archive(args.archive, url, FileBlobStore(Path(work) / "blobs"))
        data_dir.mkdir(parents=True, exist_ok=True)  # the operator's admin token
        config = LogConfig(data_dir=Path(work), database_url=url, migrate=False)
        return asyncio.run(_serve_archive_app(config, restored, args.host, args.port, limits=limits, tls=tls,
                                              access=_access(args), oidc=oidc, admin_dir=data_dir,
                                              blob_dir=Path(work) / "blobs"))


async def _serve_archive_app(config, restored, host: str, port: int, *, limits, tls, access, oidc, admin_dir: Path,
                             blob_dir: Path) -> int:
    from aiohttp import web

    from api.server.archive import create_archive_app
    from api.server.connections import GuardedRunner
    from api.server.oidc import OidcAuthenticator

    app = create_archive_app(config, verifier_key=restored.log_key, origin=restored.origin,
                             entries_from=restored.entries_from, to_size=restored.to_size, blob_dir=blob_dir,
                             access=access, authenticators=[OidcAuthenticator(oidc)] if oidc is not None else [],
                             admin_dir=admin_dir)
    runner = GuardedRunner(app, limits, access_log=None, handle_signals=False, shutdown_timeout=defaults.SHUTDOWN_GRACE)
    await runner.setup()
    try:
        print(f"origin: {restored.origin}")
        print(f"verifier key: {restored.log_key} (the archive's: check it is the log's)")
        print(f"archive: entries [{restored.entries_from:,}, {restored.to_size:,}), {restored.events:,} audit events; "
              "read-only, every write refused")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await web.TCPSite(runner, host, port, ssl_context=tls[2] if tls else None).start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"listening on {'https' if tls else 'http'}://{shown}:{bound[1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def advertised_url(host: str, port: int, tls: bool) -> str | None:
    """Where other servers reach this one by default: the address it listens on, or its host name when it listens
    on every address; None for --port 0 (the port is known only once bound, after the lease is written)."""
    if port == 0:
        return None
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _check_read_database(args) -> None:
    """`--read-database-url` only beside a PostgreSQL primary, and only a PostgreSQL URL (InvalidInput: exit 2),
    refused before anything starts."""
    if args.read_database_url:
        from log.replica import check_read_database_url
        from log.storage.engine import sqlite_url_for

        check_read_database_url(args.database_url or sqlite_url_for(Path(args.data_dir) / "auditlog.db"),
                                args.read_database_url)


def _publish_dir(args) -> Path | None:
    """--publish-dir, refused now (one line, exit 2) when it names something that is not a directory."""
    if not args.publish_dir:
        return None
    path = Path(args.publish_dir)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"--publish-dir {path} exists and is not a directory", field="publish_dir")
    return path


def _access(args):
    """`--public`, `--metrics-public` (api/server/auth.py AccessSettings)."""
    from api.server.auth import AccessSettings

    return AccessSettings(public=args.public, metrics_public=args.metrics_public)


def cmd_serve_reads(args) -> int:
    """A read worker (api/server/readers.py), started by `serve --read-workers`; not meant to be run by hand."""
    from api.server.oidc import OidcAuthenticator
    from api.server.readers import serve_worker
    from log.service import LogConfig

    limits = _connection_limits(args)
    _server_logging()
    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url,
                       read_database_url=args.read_database_url,
                       key_file=Path(args.key_file) if args.key_file else None, migrate=False)
    try:
        tls = _tls(args)
        oidc = _oidc(args)
        authenticators = [OidcAuthenticator(oidc)] if oidc is not None else []
        return asyncio.run(serve_worker(config, args.host, args.port, limits, tls=tls, access=_access(args),
                                        authenticators=authenticators))
    except LogError as exc:
        exits.say("serve-reads", f"cannot start: {exc}")
        return exits.describe(exc)[0]


def _tls(args):
    """(cert, key, its SSLContext) for --tls-cert/--tls-key, checked now (one line, exit 2); None for plain HTTP."""
    from api.server.tls import check_pair, server_context

    pair = check_pair(args.tls_cert, args.tls_key)
    return None if pair is None else (*pair, server_context(*pair))


def _connection_limits(args):
    """The flags' (else the environment's, else log/defaults.py's) bounds on connections (api/server/connections.py)."""
    from api.server.connections import ConnectionLimits

    return ConnectionLimits(
        header_timeout=flag_or_env(args.header_timeout, "AUDITLOG_HEADER_TIMEOUT", positive_seconds,
                                   defaults.HEADER_TIMEOUT),
        body_idle_timeout=flag_or_env(args.body_idle_timeout, "AUDITLOG_BODY_IDLE_TIMEOUT", positive_seconds,
                                      defaults.BODY_IDLE_TIMEOUT),
        keepalive_timeout=flag_or_env(args.keepalive_timeout, "AUDITLOG_KEEPALIVE_TIMEOUT", positive_seconds,
                                      defaults.KEEPALIVE_TIMEOUT),
        max_connections=flag_or_env(args.max_connections, "AUDITLOG_MAX_CONNECTIONS", positive,
                                    defaults.MAX_CONNECTIONS),
    )


def _oidc(args):
    """The serve flags' (else AUDITLOG_OIDC_*'s) OidcConfig, checked (the JWKS file read): None without an issuer."""
    from api.server.oidc import OidcConfig

    def value(flag, name):
        return flag if flag else env(name)

    role_map = args.oidc_role_map
    if role_map is None:
        role_map = [m.strip() for m in re.split(r"[;\n]", env("AUDITLOG_OIDC_ROLE_MAP", "")) if m.strip()]
    return OidcConfig.from_options(
        issuer=value(args.oidc_issuer, "AUDITLOG_OIDC_ISSUER"),
        audience=value(args.oidc_audience, "AUDITLOG_OIDC_AUDIENCE"),
        jwks_file=value(args.oidc_jwks_file, "AUDITLOG_OIDC_JWKS_FILE"),
        jwks_url=value(args.oidc_jwks_url, "AUDITLOG_OIDC_JWKS_URL"),
        role_claim=value(args.oidc_role_claim, "AUDITLOG_OIDC_ROLE_CLAIM"),
        tenants_claim=value(args.oidc_tenants_claim, "AUDITLOG_OIDC_TENANTS_CLAIM"),
        role_map=role_map,
        algorithms=value(args.oidc_algorithms, "AUDITLOG_OIDC_ALGORITHMS"),
    )


def _witnessing(args):
    """The serve flags' Witnessing (checked: a bad witness line or k fails here, before anything starts)."""
    from api.server.app import Witnessing

    witnesses = args.witness
    if witnesses is None:  # no flag: the environment, one witness per line or ';'-separated
        witnesses = [w.strip() for w in re.split(r"[;\n]", env("AUDITLOG_WITNESSES", "")) if w.strip()]
    witnessing = Witnessing.from_options(
        witnesses=witnesses,
        witness_interval=flag_or_env(args.witness_interval, "AUDITLOG_WITNESS_INTERVAL", positive_seconds,
                                     defaults.WITNESS_INTERVAL),
        witness_k=flag_or_env(args.witness_k, "AUDITLOG_WITNESS_K", positive, None),
        tsa_url=args.tsa_url, tsa_ca=args.tsa_ca,
        timestamp_interval=flag_or_env(args.timestamp_interval, "AUDITLOG_TIMESTAMP_INTERVAL", positive_seconds,
                                       defaults.TIMESTAMP_INTERVAL),
    )
    witnessing.check()
    return witnessing


def _read_workers(value: int | str) -> tuple[int, str]:
    """How many read workers `--read-workers` means (AUTO: defaults.auto_read_workers of the usable cores), and why,
    for the startup line ("" when the operator gave the number)."""
    if value != AUTO:
        return value, ""
    cores = defaults.usable_cores()
    count = defaults.auto_read_workers(cores)
    if count == 0:
        return 0, f"auto: {cores} usable core"
    return count, (f"auto: {cores} usable cores, one per core beyond the first, at most "
                   f"{defaults.MAX_AUTO_READ_WORKERS}")


async def _serve(config: LogConfig, host: str, port: int, witnessing=None, read_workers: int | str = 0,
                 verify_processes: int = 0, limits=None, blob_uploads: int = defaults.BLOB_UPLOADS, tls=None,
                 access_log_retention_days: float = defaults.ACCESS_LOG_RETENTION_DAYS, access=None,
                 oidc=None, blob_dir: str | None = None, publish_dir: Path | None = None,
                 retention_interval: float = defaults.RETENTION_INTERVAL,
                 vault_key_file: str | None = None) -> int:
    from aiohttp import web

    from api.server.app import create_app, freeze_startup_heap
    from api.server.connections import GuardedRunner
    from api.server.oidc import OidcAuthenticator
    from api.server.state import LOG

    read_workers, read_workers_why = _read_workers(read_workers)
    authenticators = [OidcAuthenticator(oidc)] if oidc is not None else []
    app = create_app(config, witnessing, verify_processes=verify_processes, blob_uploads=blob_uploads,
                     access_log_retention_days=access_log_retention_days, access=access,
                     authenticators=authenticators, blob_dir=Path(blob_dir) if blob_dir else None,
                     publish_dir=publish_dir, publish_entry_bundles=access is not None and access.public,
                     retention_interval=retention_interval,
                     vault_key_file=vault_key_file)
    runner = GuardedRunner(app, limits, access_log=None, handle_signals=False,
                           shutdown_timeout=defaults.SHUTDOWN_GRACE)
    try:
        await runner.setup()  # opens the log: migrate, key, sequencer lock, reconcile
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened, a bad URL...: say it in one line
        logging.getLogger(__name__).debug("startup failed", exc_info=True)
        status, message = exits.describe(exc) or (exits.FAILED, f"{type(exc).__name__}: {exc}")
        exits.say("serve", f"cannot start: {message}")
        return status
    freeze_startup_heap()
    workers = None
    try:
        log = app[LOG]
        key_file = config.resolved_key_file()
        vkey_file = _write_vkey(key_file, log.verifier_key)
        if log.key_created:
            print(f"created a new signing key for origin {log.origin} in {key_file}")
        print(f"origin: {log.origin}")
        print(f"verifier key: {log.verifier_key} (also in {vkey_file})")
        print(f"tree size: {log.committed_checkpoint.size}")
        replica = log.replica_status()
        if replica is not None:
            state = (f"replayed up to size {replica.replayed_size}" if replica.error is None
                     else f"not readable yet ({replica.error}): reads answer 503 until it is")
            print(f"reads from the replica {_shown_url(config.read_database_url)}: {state}")
        if log.role == "standby":
            lease = await log.sequencer_lease()
            print(f"standing by: another server sequences this log ({lease.url if lease else 'unknown'}); this one "
                  "answers reads, passes writes on, and takes over when it stops")
        elif config.database_url and log.store.dialect == "postgresql":
            print(f"sequencing this log; other servers reach it at {config.advertise_url or '(no URL: --port 0)'}")
        if access is not None and access.public:
            print("public log: entries readable and plain entries appendable without a credential")
        if verify_processes:
            print(f"verifier processes for signed audit events: {verify_processes}, started with the first event")
        if witnessing is not None and witnessing.witnesses:
            k = witnessing.witness_k or len(witnessing.witnesses)
            print(f"witnessing: {len(witnessing.witnesses)} witnesses, a checkpoint is witnessed with {k} "
                  f"cosignatures; every {witnessing.witness_interval:g} s")
        if publish_dir is not None:
            bundles = ("and entry bundles" if access is not None and access.public
                       else "(no entry bundles: they hold contents, and the log is not --public)")
            print(f"publishing: the checkpoint, hash tiles {bundles} as files in {publish_dir}")
        if oidc is not None:
            print(f"OIDC: bearer JWTs of {oidc.issuer} for audience {oidc.audience}, keys from "
                  f"{oidc.jwks_url or oidc.jwks_file}")
        if witnessing is not None and witnessing.tsa_url:
            what = "witnessed" if witnessing.witnesses else "latest"
            print(f"timestamping: the {what} checkpoint at {witnessing.tsa_url} every "
                  f"{witnessing.timestamp_interval:g} s")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if read_workers:
            from api.server.readers import refuse_a_served_port

            refuse_a_served_port(host, port)  # SO_REUSEPORT would let this server share it with another log
        await web.TCPSite(runner, host, port, reuse_port=read_workers > 0,
                          ssl_context=tls[2] if tls else None).start()
        bound = runner.addresses[0]
        if read_workers:
            from api.server.readers import ReadWorkers, worker_command, writer_socket

            socket_path = writer_socket(config)
            socket_path.unlink(missing_ok=True)  # left by a writer that was killed
            await web.UnixSite(runner, str(socket_path)).start()
            from api.server.access_log import ACCESS_LOG

            workers = ReadWorkers(read_workers, worker_command(config, host, bound[1], runner.limits,
                                                               tls=tls[:2] if tls else None, access=access,
                                                               oidc=oidc),
                                  on_access=app[ACCESS_LOG].extend)
            await workers.start()
            why = f"{read_workers_why}; " if read_workers_why else ""
            print(f"read workers: {read_workers} ({why}proofs, tiles and entries on the same port)")
        elif read_workers_why:
            print(f"read workers: 0 ({read_workers_why}; one process serves everything)")
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        if tls:
            print("TLS: 1.2 or newer, Python's default server ciphers; the read workers too", flush=True)
        print(f"listening on {'https' if tls else 'http'}://{shown}:{bound[1]}", flush=True)
        await stop.wait()
        # Stop accepting, give requests in progress SHUTDOWN_GRACE seconds, cancel what still runs (a body still
        # arriving), then close the log: what is queued is committed and answered, nothing is answered unstored.
        print(f"shutting down: finishing queued entries, requests in progress get {defaults.SHUTDOWN_GRACE:g} s",
              flush=True)
    finally:
        if workers is not None:
            await workers.stop()  # first: they forward writes here
        await runner.cleanup()  # stops accepting, then closes the log (drains the sequencer, releases the lock)
    return 0


# --- keygen, db --------------------------------------------------------------------------------------------------


def cmd_keygen(args) -> int:
    from log.keys import write_signer_key

    out = Path(args.out) if args.out else Path(env("AUDITLOG_DATA_DIR", defaults.DATA_DIR)) / "log.key"
    try:
        signer = write_signer_key(out, args.origin)
    except FileExistsError:
        raise InvalidInput(f"{out} already exists; refusing to overwrite a signing key", field="out") from None
    vkey_file = _write_vkey(out, signer.verifier_key)
    print(f"wrote the signing key for {args.origin} to {out} (mode 0600); verifier key also in {vkey_file}",
          file=sys.stderr)
    print(signer.verifier_key)
    return 0


def cmd_db_upgrade(args) -> int:
    from log.service import LogConfig
    from log.storage.engine import upgrade_schema

    _server_logging()
    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url)
    if args.database_url is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_schema(config.resolved_database_url())
    print("database schema is up to date")
    return 0




# --- db check ----------------------------------------------------------------------------------------------------

# Exit statuses of `db check` (api/cli/exits.py): 0 every entry, tile and checkpoint agrees; 1 a disagreement (the
# first one named); 2 no database, no log schema in it, or no usable key; 3 the database server could not be reached.
CHECK_UNUSABLE = exits.USAGE
CHECK_UNREACHABLE = exits.UNREACHABLE


def cmd_db_check(args) -> int:
    """`auditlog db check`: the offline fsck (log/fsck.py). Opens the database read-only and takes no lock, so it
    runs beside a live server; the key comes from --log-key, else <data-dir>/log.vkey, else <data-dir>/log.key."""
    from log.audit.retention import entries_listed
    from log.fsck import check_log
    from log.note_keys import parse_verifier_key
    from log.service import LogConfig
    from log.storage.store import SqlLogStore

    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url)
    try:
        verifier = parse_verifier_key(_check_key(args, config))
    except (OSError, LogError) as exc:
        return _check_failed(f"no usable log key: {exc}", CHECK_UNUSABLE)
    url = config.resolved_database_url()
    try:
        store = SqlLogStore(url, read_only=True)
    except FileNotFoundError as exc:
        return _check_failed(f"{exc}", CHECK_UNUSABLE)
    except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver: one line
        return _check_failed(f"cannot open {_shown_url(url)}: {type(exc).__name__}: {exc}", CHECK_UNUSABLE)
    progress = None if args.quiet else ProgressBar()
    try:
        report = check_log(store, verifier, progress=progress, deletions=entries_listed)
    except Exception as exc:  # noqa: BLE001 - sorted into unreachable and unusable below, said in one line
        status = exits.database_status(exc)
        what = "cannot reach" if status == CHECK_UNREACHABLE else "cannot read the log in"
        first_line = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0:1] or [type(exc).__name__]
        return _check_failed(f"{what} {_shown_url(url)}: {first_line[0]}", status)
    finally:
        store.close()
    if report.ok:
        if report.size == 0 and report.origin is None:
            print("OK: the log is empty and has published no checkpoint")
        else:
            pruned = f" ({report.pruned:,} pruned by retention runs that list them)" if report.pruned else ""
            print(f"OK: {report.entries:,} entries{pruned}, {report.tiles:,} tiles, {report.checkpoints:,} checkpoints "
                  f"agree with the checkpoint signed by {report.origin}")
        return 0
    first = report.first
    exits.say("db check", f"FAILED: {first}")
    counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(report.counts.items()))
    print(f"{sum(report.counts.values()):,} disagreement(s) by kind: {counts} (after the first, some may follow "
          f"from it); checked {report.entries:,} entries, {report.tiles:,} tiles, {report.checkpoints:,} checkpoints")
    return 1


def _check_key(args, config) -> str:
    from log.keys import read_signer_key

    value = args.log_key
    if value:
        path = Path(value)
        return path.read_text().strip() if path.is_file() else value
    key_file = config.resolved_key_file()
    vkey_file = key_file.with_suffix(VKEY_SUFFIX)
    if vkey_file.is_file():
        return vkey_file.read_text().strip()
    if key_file.is_file():
        return read_signer_key(key_file).verifier_key
    raise InvalidInput(f"neither {vkey_file} nor {key_file} exists: pass --log-key", field="log_key")


def _check_failed(message: str, status: int) -> int:
    exits.say("db check", message)
    return status


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- db copy -----------------------------------------------------------------------------------------------------


class _CopyRejected(Exception):
    """The copy did not verify; raised inside its transaction so that nothing of it is committed."""

    def __init__(self, report):
        super().__init__(str(report.first))
        self.report = report


def cmd_db_copy(args) -> int:
    """`auditlog db copy --from URL --to URL`: the log copied into an empty database (log/storage/copy.py), checked
    by `db check`'s fsck with the log's key inside the copy's transaction, which commits only if every entry, tile
    and checkpoint agrees; then the copy is opened as a log store and its newest entries checked again."""
    import time

    from log.audit.retention import entries_listed
    from log.fsck import check_newest_entries, check_snapshot
    from log.note_keys import parse_verifier_key
    from log.service import LogConfig
    from log.storage.copy import copy_database
    from log.storage.engine import shown_url
    from log.storage.store import SqlLogStore

    started = time.monotonic()
    config = LogConfig(data_dir=Path(args.data_dir))
    try:
        verifier = parse_verifier_key(_check_key(args, config))
    except (OSError, LogError) as exc:
        raise exits.CommandFailed(f"no usable log key: {exc}", exits.USAGE) from None
    destination = shown_url(args.destination)

    def check(tx):
        report = check_snapshot(tx, verifier, progress=None if args.quiet else ProgressBar(),
                                deletions=entries_listed)
        if not report.ok:
            raise _CopyRejected(report)
        return report

    try:
        copied = copy_database(args.source, args.destination, check=check,
                               progress=None if args.quiet else ProgressBar())
    except _CopyRejected as rejected:
        counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(rejected.report.counts.items()))
        exits.say("db copy", f"FAILED: the copy does not verify, {destination} is left empty: {rejected} "
                             f"(disagreements by kind: {counts})")
        return exits.FAILED
    checked = copied.checked
    store = SqlLogStore(args.destination, read_only=True)
    try:
        latest = store.latest_checkpoint()
        stored_size = latest.size if latest is not None else 0
        check_newest_entries(store, stored_size)
    finally:
        store.close()
    if stored_size != checked.size:
        raise exits.CommandFailed(f"the copy in {destination} ends at size {stored_size:,}, the copy checked at "
                                  f"{checked.size:,}", exits.FAILED)
    signed = f"the checkpoint signed by {checked.origin}" if checked.origin else "no checkpoint (an empty log)"
    print(f"OK: copied {copied.entries:,} entries, {copied.total_rows:,} rows in {len(copied.rows)} tables, in "
          f"{time.monotonic() - started:.1f} s; the copy's root at size {checked.size:,} is the one in {signed}")
    return exits.OK
