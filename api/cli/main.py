"""The `auditlog` command: serve the log, make keys, migrate the database, add entries, prove and monitor.

    auditlog serve [--host H] [--port P] [--data-dir D] [--database-url U] [--origin O] [--batch-size N]
                   [--batch-max-age-ms MS] [--batch-linger-ms MS]
                   [--witness "URL VKEY [VKEY...]" ...] [--witness-interval S] [--witness-k K]
                   [--tsa-url URL --tsa-ca PEM] [--timestamp-interval S]
    auditlog keygen --origin NAME [--out FILE]
    auditlog db upgrade [--database-url U] [--data-dir D]
    auditlog add [FILE|- ...] [--lines] [--server URL] [--key VKEY]
    auditlog proof (--index I | --leaf-hash H) [--tree-size S] [--server URL] [--key VKEY]
    auditlog proof --evidence I [--out FILE] [--server URL] [--key VKEY]
    auditlog verify [--server URL] --key VKEY [--state FILE] [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]
    auditlog verify-evidence FILE --log-key VKEY [--witness-key VKEY ... [--witness-k K]] [--tsa-ca PEM]

`serve` prints `listening on http://<host>:<port>` (flushed) once it accepts connections, so `--port 0` can be
used by scripts and tests. Commands that verify take the log's verifier key from --key (the key string, or a file
holding it), else $AUDITLOG_VERIFIER_KEY, else <data-dir>/log.vkey, which `serve` and `keygen` write.
Witness keys (`--witness-key`) and `--log-key` may also be given as files holding the key.
Exit status: 0 success, 1 a failed check or an error (said on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import re
import signal
import socket
import sys
from pathlib import Path

from log.errors import InvalidInput, LogError
from log.hashing import hash_leaf
from log.service import LogConfig

DEFAULT_SERVER = "http://127.0.0.1:8080"
VKEY_SUFFIX = ".vkey"


def _env(name: str, default=None):
    value = os.environ.get(name)
    return value if value else default


def default_origin() -> str:
    """auditlog.localhost/<hostname>, the hostname reduced to characters a key name and a URL path both allow."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()).strip("-.") or "localhost"
    return f"auditlog.localhost/{host}"


def _write_vkey(key_file: Path, verifier_key: str) -> Path:
    path = key_file.with_suffix(VKEY_SUFFIX)
    if not path.exists() or path.read_text().strip() != verifier_key:
        path.write_text(verifier_key + "\n")
    return path


def _read_key(args) -> str:
    value = args.key or _env("AUDITLOG_VERIFIER_KEY")
    if value is None:
        default = Path(_env("AUDITLOG_DATA_DIR", "data")) / f"log{VKEY_SUFFIX}"
        if default.is_file():
            return default.read_text().strip()
        raise InvalidInput("no verifier key: pass --key, set AUDITLOG_VERIFIER_KEY, or run next to data/log.vkey",
                           field="key")
    if os.path.isfile(value):
        return Path(value).read_text().strip()
    return value


def _out(document) -> None:
    print(json.dumps(document, indent=1), flush=True)


# --- serve -------------------------------------------------------------------------------------------------------


def _server_logging() -> None:
    """INFO lines with their time and source on stderr; alembic's per-step lines stay quiet (the storage layer logs
    an upgrade's revisions and duration)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_serve(args) -> int:
    _server_logging()
    config = LogConfig(
        data_dir=Path(args.data_dir),
        database_url=args.database_url,
        origin=args.origin,
        batch_size=args.batch_size,
        batch_max_age=args.batch_max_age_ms / 1000,
        batch_linger=args.batch_linger_ms / 1000,
    )
    if config.origin is None and not config.resolved_key_file().exists():
        config.origin = default_origin()
    witnessing = _witnessing(args)
    # Log.open migrates the SQLite database before it writes the key (which makes the directory): make it first.
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_serve(config, args.host, args.port, witnessing, read_workers=args.read_workers,
                              verify_processes=args.verify_processes))


def default_verify_processes() -> int:
    """One per core, up to 4 (more were never measured). On 2 cores two children beat one (an envelope costs them
    more CPU than it costs the server) and three add nothing (benchmarks/PROFILES.md)."""
    return max(1, min(4, os.cpu_count() or 1))


def cmd_serve_reads(args) -> int:
    """A read worker (api/server/readers.py), started by `serve --read-workers`; not meant to be run by hand."""
    from api.server.readers import serve_worker

    _server_logging()
    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url,
                       key_file=Path(args.key_file) if args.key_file else None, migrate=False)
    try:
        return asyncio.run(serve_worker(config, args.host, args.port))
    except LogError as exc:
        print(f"auditlog read worker: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1


def _witnessing(args):
    """The serve flags' Witnessing (checked: a bad witness line or k fails here, before anything starts)."""
    from api.server.app import Witnessing

    witnesses = args.witness
    if witnesses is None:  # no flag: the environment, one witness per line or ';'-separated
        witnesses = [w.strip() for w in re.split(r"[;\n]", _env("AUDITLOG_WITNESSES", "")) if w.strip()]
    witnessing = Witnessing.from_options(
        witnesses=witnesses, witness_interval=args.witness_interval, witness_k=args.witness_k,
        tsa_url=args.tsa_url, tsa_ca=args.tsa_ca, timestamp_interval=args.timestamp_interval,
    )
    witnessing.check()
    return witnessing


async def _serve(config: LogConfig, host: str, port: int, witnessing=None, read_workers: int = 0,
                 verify_processes: int = 0) -> int:
    from aiohttp import web

    from api.server.app import create_app, freeze_startup_heap
    from api.server.state import LOG

    app = create_app(config, witnessing, verify_processes=verify_processes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()  # opens the log: migrate, key, sequencer lock, reconcile
    except LogError as exc:
        print(f"auditlog: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened, a bad URL...: say it in one line
        logging.getLogger(__name__).debug("startup failed", exc_info=True)
        print(f"auditlog: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
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
        print(f"tree size: {log.size}")
        if verify_processes:
            print(f"verifier processes for signed audit events: {verify_processes}, started with the first event")
        if witnessing is not None and witnessing.witnesses:
            k = witnessing.witness_k or len(witnessing.witnesses)
            print(f"witnessing: {len(witnessing.witnesses)} witnesses, a checkpoint is witnessed with {k} "
                  f"cosignatures; every {witnessing.witness_interval:g} s")
        if witnessing is not None and witnessing.tsa_url:
            what = "witnessed" if witnessing.witnesses else "latest"
            print(f"timestamping: the {what} checkpoint at {witnessing.tsa_url} every "
                  f"{witnessing.timestamp_interval:g} s")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await web.TCPSite(runner, host, port, reuse_port=read_workers > 0).start()
        bound = runner.addresses[0]
        if read_workers:
            from api.server.readers import ReadWorkers, worker_command, writer_socket

            socket_path = writer_socket(config)
            socket_path.unlink(missing_ok=True)  # left by a writer that was killed
            await web.UnixSite(runner, str(socket_path)).start()
            workers = ReadWorkers(read_workers, worker_command(config, host, bound[1]))
            await workers.start()
            print(f"read workers: {read_workers} (proofs, tiles and entries on the same port)")
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"listening on http://{shown}:{bound[1]}", flush=True)
        await stop.wait()
        print("shutting down: finishing queued entries", flush=True)
    finally:
        if workers is not None:
            await workers.stop()  # first: they forward writes here
        await runner.cleanup()  # stops accepting, then closes the log (drains the sequencer, releases the lock)
    return 0


# --- keygen, db --------------------------------------------------------------------------------------------------


def cmd_keygen(args) -> int:
    from log.keys import write_signer_key

    out = Path(args.out) if args.out else Path(_env("AUDITLOG_DATA_DIR", "data")) / "log.key"
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
    from log.storage.engine import upgrade_schema

    _server_logging()
    config = LogConfig(data_dir=Path(args.data_dir), database_url=args.database_url)
    if args.database_url is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_schema(config.resolved_database_url())
    print("database schema is up to date")
    return 0


# --- client commands ---------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read_inputs(paths: list[str]) -> list[tuple[str, bytes]]:
    inputs = []
    for path in paths or ["-"]:
        if path == "-":
            inputs.append(("-", sys.stdin.buffer.read()))
        else:
            try:
                inputs.append((path, Path(path).read_bytes()))
            except OSError as exc:
                raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
    return inputs


def cmd_add(args) -> int:
    return asyncio.run(_add(args))


async def _add(args) -> int:
    from api.client.log_client import LogClient

    inputs = _read_inputs(args.files)
    if args.lines:
        entries = [(f"{name}:{n}", line) for name, data in inputs
                   for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    else:
        entries = inputs
    if not entries:
        raise InvalidInput("nothing to add", field="file")
    key = _read_key(args) if (args.key or _env("AUDITLOG_VERIFIER_KEY")) else None
    if key is None:
        return await _add_unverified(args.server, entries, batch=args.lines)
    async with LogClient(args.server, key) as client:
        data = [entry for _, entry in entries]
        receipts = await (client.add_many(data) if args.lines else _each(client.add, data))
        for (name, _), receipt in zip(entries, receipts):
            print(json.dumps({"source": name, "index": receipt.index, "leaf_hash": _b64(receipt.leaf_hash),
                              "tree_size": receipt.tree_size, "inclusion": "verified"}), flush=True)
    return 0


async def _each(fn, items):
    return [await fn(item) for item in items]


async def _add_unverified(server: str, entries: list[tuple[str, bytes]], *, batch: bool) -> int:
    """Without a verifier key: submit and report what the server answered (checking only the leaf hashes)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def post(**kwargs) -> dict:
            async with session.post(server.rstrip("/") + "/api/v1/entries", **kwargs) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise LogError(f"the server refused the entry: HTTP {resp.status}: {body.get('detail', body)}")
                return body

        results = []
        if batch:
            for start in range(0, len(entries), 4096):
                chunk = entries[start:start + 4096]
                body = await post(json={"entries": [_b64(e) for _, e in chunk]})
                results += [(name, entry, item, body["tree_size"]) for (name, entry), item in zip(chunk, body["entries"])]
        else:
            for name, entry in entries:
                body = await post(data=entry, headers={"Content-Type": "application/octet-stream"})
                results.append((name, entry, body, body["tree_size"]))
        for name, entry, item, tree_size in results:
            if item["leaf_hash"] != _b64(hash_leaf(entry)):
                raise LogError(f"{name}: the server's leaf hash is not the hash of the entry sent")
            print(json.dumps({"source": name, "index": item["index"], "leaf_hash": item["leaf_hash"],
                              "tree_size": tree_size, "inclusion": "not verified (no --key)"}), flush=True)
    return 0


def _parse_leaf_hash(text: str) -> bytes:
    normalized = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        value = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != 32:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            value = b""
    if len(value) != 32:
        raise InvalidInput(f"--leaf-hash {text!r} is not a 32-byte hash in base64, base64url or hex",
                           field="leaf_hash")
    return value


def cmd_proof(args) -> int:
    return asyncio.run(_proof(args))


async def _proof(args) -> int:
    from api.client.log_client import LogClient

    if args.evidence is not None:
        return await _proof_evidence(args)
    if args.out is not None:
        raise InvalidInput("--out goes with --evidence", field="out")
    leaf_hash = _parse_leaf_hash(args.leaf_hash) if args.leaf_hash is not None else None
    async with LogClient(args.server, _read_key(args)) as client:
        proof = await client.inclusion_proof(args.index, args.tree_size, leaf_hash=leaf_hash)
        checkpoint = client.latest
        _out({
            "index": proof.index,
            "tree_size": proof.tree_size,
            "leaf_hash": _b64(proof.leaf_hash),
            "root_hash": _b64(proof.root),
            "hashes": [_b64(h) for h in proof.hashes],
            "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size,
                           "root_hash": _b64(checkpoint.root_hash)},
            "verified": True,
        })
    return 0


async def _proof_evidence(args) -> int:
    """Write one entry's offline evidence bundle (api/client/evidence.py): the newest timestamped checkpoint that
    includes the entry, else the newest witnessed one, else the latest; with its cosignatures and token."""
    from api.client.log_client import LogClient
    from log.errors import NotFound
    from log.note import parse_note
    from api.client.evidence import build_entry_bundle, verify_entry_bundle

    index = args.evidence
    async with LogClient(args.server, _read_key(args)) as client:
        latest, note = await client.signed_checkpoint()
        if index >= latest.size:
            raise NotFound(f"entry {index} is not in the log: its latest checkpoint has size {latest.size}")
        token = None
        try:
            stamped, stamped_note, stamped_token = await client.latest_timestamp()
            if stamped.size > index:
                note, token = stamped_note, stamped_token
        except NotFound:
            pass
        if token is None:
            try:
                witnessed, witnessed_note = await client.witnessed_checkpoint()
                if witnessed.size > index:
                    note = witnessed_note
            except NotFound:
                pass
        checkpoint = client.believe(note)
        entry = await client.entry(index, verify=False)
        proof = await client.inclusion_proof(index, checkpoint.size, leaf_hash=hash_leaf(entry))
        log_key = client.verifier.verifier_key
    bundle = build_entry_bundle(origin=checkpoint.origin, log_key=log_key, index=index, entry=entry,
                                tree_size=checkpoint.size, inclusion_proof=proof.hashes, checkpoint_note=note,
                                timestamp=token)
    verify_entry_bundle(bundle, log_key)  # what we write holds, as far as the log's key can tell
    text = json.dumps(bundle, indent=1) + "\n"
    cosignatures = len(parse_note(note).signatures) - 1  # the lines after the log's own signature
    if args.out:
        Path(args.out).write_text(text)
        print(f"evidence for entry {index} in checkpoint {checkpoint.origin} size {checkpoint.size} "
              f"({cosignatures} cosignatures, {'a' if token else 'no'} timestamp) written to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _key_text(value: str) -> str:
    return Path(value).read_text().strip() if os.path.isfile(value) else value


def _witness_policy(args):
    from witness.cosignatures import WitnessPolicy

    if not args.witness_key:
        if args.witness_k is not None:
            raise InvalidInput("--witness-k needs --witness-key", field="witness_k")
        return None
    return WitnessPolicy(tuple(_key_text(k) for k in args.witness_key), args.witness_k)


def _tsa_ca(args) -> bytes | None:
    if args.tsa_ca is None:
        return None
    try:
        return Path(args.tsa_ca).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TSA certificate {args.tsa_ca}: {exc}", field="tsa_ca") from None


def cmd_verify(args) -> int:
    return asyncio.run(_verify(args))


class _ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal and at most every 1% of the work."""

    def __init__(self, stream=sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = done * 100 // total
        if percent == self.last:
            return
        self.last = percent
        filled = percent * 30 // 100
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {done:,}/{total:,} entries")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


async def _verify(args) -> int:
    from api.client.log_client import LogClient
    from api.client.monitor import verify_log

    state = Path(args.state) if args.state else None
    witnesses, tsa_trusted = _witness_policy(args), _tsa_ca(args)
    async with LogClient(args.server, _read_key(args)) as client:
        report = await verify_log(client, state, concurrency=args.concurrency,
                                  progress=None if args.quiet else _ProgressBar(),
                                  witnesses=witnesses, tsa_trusted=tsa_trusted)
    for failure in report.failures:
        print(f"FAILED: {failure}")
    if report.checkpoint is not None:
        print(f"checkpoint: {report.checkpoint.origin} size {report.checkpoint.size} root "
              f"{_b64(report.checkpoint.root_hash)}")
    if report.previous_size is not None:
        print(f"consistent with the saved checkpoint of size {report.previous_size}: "
              f"{'yes' if report.valid else 'not established'}")
    print(report.summary(), flush=True)
    return 0 if report.valid else 1


def cmd_verify_evidence(args) -> int:
    """Dispatch on the bundle's `format`: one entry's evidence (api/client/evidence.py) or a run's (api/cli/audit.py)."""
    from api.cli.audit import cmd_verify_evidence as verify_run_evidence
    from api.client.evidence import ENTRY_EVIDENCE_FORMAT, verify_entry_bundle
    from witness.rfc3161 import format_gen_time

    try:
        bundle = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    if not (isinstance(bundle, dict) and bundle.get("format") == ENTRY_EVIDENCE_FORMAT):
        if args.witness_key or args.tsa_ca:
            print("note: --witness-key and --tsa-ca apply to entry evidence bundles only", file=sys.stderr)
        return verify_run_evidence(args)
    witnesses, tsa_trusted = _witness_policy(args), _tsa_ca(args)
    try:
        report = verify_entry_bundle(bundle, _key_text(args.log_key), witnesses=witnesses, tsa_trusted=tsa_trusted)
    except LogError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    parts = [f"OK: entry {report.index} is included in checkpoint {report.checkpoint.origin} size "
             f"{report.checkpoint.size}, signed by the log"]
    if report.cosignatures is not None:
        parts.append(f"cosigned by {len(report.cosignatures.cosigned_by)} of {report.cosignatures.total} witnesses")
    if report.timestamp is not None:
        parts.append(f"timestamp VALID (genTime {format_gen_time(report.timestamp.gen_time)}, "
                     f"{report.timestamp.tsa_name})")
    elif report.has_timestamp:
        parts.append("timestamp present, not checked (no --tsa-ca)")
    print(" · ".join(parts))
    return 0


# --- parser ------------------------------------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative decimal integer")
    return int(text)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _witness_check_options(sub) -> None:
    sub.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                     help="a witness's cosigner verifier key, or a file holding it (repeatable; keys with one name "
                          "are one witness)")
    sub.add_argument("--witness-k", type=_positive, metavar="K",
                     help="cosignatures required (default: every witness given)")
    sub.add_argument("--tsa-ca", metavar="PEM", help="the TSA's CA (or own) certificate: require a valid timestamp")


def build_parser() -> argparse.ArgumentParser:
    from api.cli.audit import add_audit_parsers
    from witness.cli import add_witness_parser
    from witness.tsa_cli import add_tsa_parser

    parser = argparse.ArgumentParser(prog="auditlog", description="A verifiable transparency log for audit trails.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the log server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_non_negative, default=8080, help="0 picks a free port (see the output)")
    serve.add_argument("--data-dir", default=_env("AUDITLOG_DATA_DIR", "data"),
                       help="SQLite database and signing key (env AUDITLOG_DATA_DIR; default ./data)")
    serve.add_argument("--database-url", default=_env("AUDITLOG_DATABASE_URL"),
                       help="SQLAlchemy URL, e.g. postgresql+psycopg://... (env AUDITLOG_DATABASE_URL)")
    serve.add_argument("--origin", default=_env("AUDITLOG_ORIGIN"),
                       help="log origin: default the key's name; on first start auditlog.localhost/<hostname>")
    serve.add_argument("--batch-size", type=_positive, default=1024)
    serve.add_argument("--batch-max-age-ms", type=_non_negative, default=50)
    serve.add_argument("--batch-linger-ms", type=_non_negative, default=0)
    serve.add_argument("--witness", action="append", metavar='"URL VKEY [VKEY...]"',
                       help="a tlog-witness: its submission URL prefix and cosigner verifier key(s) (repeatable; env "
                            "AUDITLOG_WITNESSES, one per line or ';'-separated)")
    serve.add_argument("--witness-interval", type=_positive_seconds,
                       default=_env("AUDITLOG_WITNESS_INTERVAL", "10"),
                       help="seconds between witnessing rounds (env AUDITLOG_WITNESS_INTERVAL; default 10)")
    serve.add_argument("--witness-k", type=_positive, default=_env("AUDITLOG_WITNESS_K"), metavar="K",
                       help="cosignatures that make a checkpoint witnessed (env AUDITLOG_WITNESS_K; default all)")
    serve.add_argument("--tsa-url", default=_env("AUDITLOG_TSA_URL"),
                       help="an RFC 3161 TSA to timestamp checkpoints (env AUDITLOG_TSA_URL; needs --tsa-ca)")
    serve.add_argument("--tsa-ca", default=_env("AUDITLOG_TSA_CA"), metavar="PEM",
                       help="the certificate the TSA's tokens must chain to (env AUDITLOG_TSA_CA)")
    serve.add_argument("--timestamp-interval", type=_positive_seconds,
                       default=_env("AUDITLOG_TIMESTAMP_INTERVAL", "60"),
                       help="seconds between timestamping rounds (env AUDITLOG_TIMESTAMP_INTERVAL; default 60)")
    serve.add_argument("--read-workers", type=_non_negative, default=int(_env("AUDITLOG_READ_WORKERS", "0")),
                       metavar="N", help="extra processes serving proofs, tiles and entries on the same port, for "
                                         "reads beyond one core (env AUDITLOG_READ_WORKERS; default 0)")
    serve.add_argument("--verify-processes", type=_non_negative, metavar="N",
                       default=int(_env("AUDITLOG_VERIFY_PROCESSES", str(default_verify_processes()))),
                       help="processes that check signed audit events (schema, canonical form, signature) beside the "
                            "server (env AUDITLOG_VERIFY_PROCESSES; default one per core, at most 4; 0: in the server)")
    serve.set_defaults(func=cmd_serve)

    reads = commands.add_parser("serve-reads", help="(internal) a read worker; serve --read-workers starts them")
    reads.add_argument("--host", required=True)
    reads.add_argument("--port", type=_non_negative, required=True)
    reads.add_argument("--data-dir", required=True)
    reads.add_argument("--database-url")
    reads.add_argument("--key-file")
    reads.set_defaults(func=cmd_serve_reads)

    keygen = commands.add_parser("keygen", help="make a signing key (mode 0600); prints the verifier key")
    keygen.add_argument("--origin", required=True, help="the log's origin, which is the key's name")
    keygen.add_argument("--out", help="where to write the signer key (default <data-dir>/log.key)")
    keygen.set_defaults(func=cmd_keygen)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    upgrade = db_commands.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    upgrade.add_argument("--database-url", default=_env("AUDITLOG_DATABASE_URL"))
    upgrade.add_argument("--data-dir", default=_env("AUDITLOG_DATA_DIR", "data"))
    upgrade.set_defaults(func=cmd_db_upgrade)

    def client_options(sub, key_required: bool = False):
        sub.add_argument("--server", default=_env("AUDITLOG_SERVER", DEFAULT_SERVER),
                         help=f"log URL (env AUDITLOG_SERVER; default {DEFAULT_SERVER})")
        sub.add_argument("--key", required=key_required,
                         help="the log's verifier key, or a file holding it (env AUDITLOG_VERIFIER_KEY)")

    add = commands.add_parser("add", help="append entries: one per file (or stdin), or one per line with --lines")
    add.add_argument("files", nargs="*", metavar="FILE", help="files to add, '-' for stdin (the default)")
    add.add_argument("--lines", action="store_true", help="add each non-empty line as an entry (batch API)")
    client_options(add)
    add.set_defaults(func=cmd_add)

    proof = commands.add_parser("proof", help="fetch and verify an inclusion proof against a signed checkpoint")
    which = proof.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=_non_negative)
    which.add_argument("--leaf-hash", help="base64, base64url or hex")
    which.add_argument("--evidence", type=_non_negative, metavar="INDEX",
                       help="write entry INDEX's offline evidence bundle: entry, inclusion proof, witnessed "
                            "checkpoint with its cosignatures, timestamp token (check with verify-evidence)")
    proof.add_argument("--tree-size", type=_positive, help="default: the latest checkpoint's size")
    proof.add_argument("--out", metavar="FILE", help="with --evidence: where to write the bundle (default stdout)")
    client_options(proof)
    proof.set_defaults(func=cmd_proof)

    verify = commands.add_parser("verify", help="the monitor: re-verify the whole log from its tiles")
    client_options(verify, key_required=False)
    verify.add_argument("--state", help="JSON file keeping the last verified checkpoint (for consistency)")
    verify.add_argument("--concurrency", type=_positive, default=16, help="tile fetches in flight")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    _witness_check_options(verify)
    verify.set_defaults(func=cmd_verify)

    add_audit_parsers(commands)
    # verify-evidence checks run bundles (api/cli/audit.py) and entry bundles (api/client/evidence.py) alike.
    verify_evidence = commands.choices["verify-evidence"]
    _witness_check_options(verify_evidence)
    verify_evidence.set_defaults(func=cmd_verify_evidence)
    add_witness_parser(commands)
    add_tsa_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LogError as exc:
        print(f"auditlog {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
