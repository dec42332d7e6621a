"""`auditlog witness serve`: a c2sp.org/tlog-witness witness over HTTP.

Wire into the main CLI with `add_witness_parser(subparsers)`; the parsed args carry `func=run_witness_serve`.
Standalone:

    python -m witness.cli serve --port 0 --data-dir D --name witness.example/w1 --log "<log verifier key>"

prints one `cosigner key: <vkey>` line per key and then `listening on http://<host>:<port>` (flushed), last, once
the socket is bound. The data dir holds the state database (`witness.db`, unless --database-url) and the cosigner keys,
made on first start with mode 0600: `witness-ed25519.key` (type 0x04) and, if asked for, `witness-mldsa44.key`
(type 0x06); their verifier keys are written beside them as `.vkey` files.

Trusted logs come from `--log` flags and/or a `--logs-file`, each a verifier key (the origin is the key's name) or
`<origin> <verifier key>`; an origin may have several keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


from typing import TYPE_CHECKING

from log.errors import InvalidInput
from log.note import COSIGNATURE_ED25519, COSIGNATURE_MLDSA44
from log.note_keys import CosignatureSigner, generate_signer_key
from log.secret_files import write_secret_file

if TYPE_CHECKING:
    from witness.cosigner import Cosigner

DEFAULT_PORT = 8319
DATABASE_FILE = "witness.db"
KEY_FILES = {
    "ed25519": ("witness-ed25519.key", COSIGNATURE_ED25519),
    "mldsa44": ("witness-mldsa44.key", COSIGNATURE_MLDSA44),
}


def add_witness_parser(subparsers) -> argparse.ArgumentParser:
    """Add `witness serve` to an argparse subparsers object; returns the `witness` parser."""
    witness = subparsers.add_parser("witness", help="a tlog-witness cosigner for transparency logs")
    commands = witness.add_subparsers(dest="witness_command", required=True)
    _add_serve_arguments(commands.add_parser("serve", help="serve POST /add-checkpoint (keys made on first start)"))
    return witness


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    serve.add_argument("--data-dir", type=Path,
                       default=Path(os.environ.get("AUDITLOG_WITNESS_DATA_DIR", "data/witness")),
                       help="keys and the SQLite state (env AUDITLOG_WITNESS_DATA_DIR; default ./data/witness)")
    serve.add_argument("--database-url", default=os.environ.get("AUDITLOG_WITNESS_DATABASE_URL"),
                       help=f"state database (env AUDITLOG_WITNESS_DATABASE_URL; default SQLite "
                            f"<data-dir>/{DATABASE_FILE})")
    serve.add_argument("--name", help="the witness's key name, e.g. witness.example/w1 (needed to make keys)")
    serve.add_argument("--key-types", default="ed25519",
                       help="cosignature keys to sign with: ed25519, mldsa44 or ed25519,mldsa44 (default ed25519)")
    serve.add_argument("--log", action="append", default=[], metavar="[ORIGIN=]VKEY",
                       help="a trusted log verifier key (repeatable); its origin is the key name unless given")
    serve.add_argument("--logs-file", type=Path,
                       help="trusted log keys, one per line: '<vkey>' or '<origin> <vkey>'; '#' comments")
    serve.set_defaults(func=run_witness_serve)


def load_or_create_cosigner_key(path: Path, name: str | None, key_type: int) -> CosignatureSigner:
    """The cosigner key in `path`, or a new one named `name` written there (0600, never overwriting)."""
    if path.exists():
        signer = CosignatureSigner(path.read_text().strip())
        if name is not None and name != signer.name:
            raise InvalidInput(f"--name {name!r} does not match the key in {path}, named {signer.name!r}",
                               field="name")
        return signer
    if name is None:
        raise InvalidInput(f"no key in {path} yet: give --name to make one", field="name")
    signer_key, verifier_key = generate_signer_key(name, key_type)
    write_secret_file(path, signer_key + "\n", make_parents=True)
    path.with_suffix(".vkey").write_text(verifier_key + "\n")
    return CosignatureSigner(signer_key)


def _log_keys(args: argparse.Namespace):
    from witness.cosigner import parse_log_keys  # the cosigner (and its store) load only to serve

    lines = [item.replace("=", " ", 1) if "=" in item.split("+", 1)[0] else item for item in args.log]
    if args.logs_file is not None:
        lines += args.logs_file.read_text().splitlines()
    logs = parse_log_keys(lines)
    if not logs:
        raise InvalidInput("no trusted logs: give --log or --logs-file", field="log")
    return logs


def build_cosigner(args: argparse.Namespace) -> Cosigner:
    """Keys (made if missing), migrated state database and trusted logs, from the `serve` arguments."""
    from log.storage.engine import sqlite_url_for, upgrade_schema  # storage loads only to serve, not to parse
    from witness.cosigner import Cosigner
    from witness.store import WitnessStore

    data_dir = Path(args.data_dir)
    logs = _log_keys(args)
    signers = []
    for kind in [k.strip() for k in args.key_types.split(",") if k.strip()]:
        if kind not in KEY_FILES:
            raise InvalidInput(f"unknown key type {kind!r}; use ed25519 and/or mldsa44", field="key_types")
        file_name, key_type = KEY_FILES[kind]
        signers.append(load_or_create_cosigner_key(data_dir / file_name, args.name, key_type))
    url = args.database_url or sqlite_url_for(data_dir / DATABASE_FILE)
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_schema(url)
    return Cosigner(WitnessStore(url), signers, logs)


def run_witness_serve(args: argparse.Namespace) -> int:
    """Run the witness until SIGINT or SIGTERM; returns the exit status."""
    try:
        cosigner = build_cosigner(args)
    except InvalidInput as exc:
        print(f"auditlog witness: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(cosigner, args.host, args.port))


async def _serve(cosigner: Cosigner, host: str, port: int) -> int:
    from witness.server import create_witness_app
    from witness.serving import serve_until_signalled

    banner = [f"cosigner key: {key}" for key in cosigner.verifier_keys]
    return await serve_until_signalled(create_witness_app(cosigner, close_store=True), host, port, banner)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m witness.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="witness_command", required=True)
    _add_serve_arguments(commands.add_parser("serve", help="serve POST /add-checkpoint"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
