"""`auditlog tsa serve`: run the small RFC 3161 TSA of witness/tsa.py over HTTP.

Wire into the main CLI with `add_tsa_parser(subparsers)`; the parsed args carry `func=run_tsa_serve`. Standalone:

    python -m witness.tsa_cli serve --port 0 --data-dir D

prints `listening on http://127.0.0.1:<port>` (flushed) once the socket is bound, and `D/tsa-ca.pem` holds the
trust anchor to give verifiers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEFAULT_PORT = 8318
# witness/tsa.py CA_CERT_FILE, named here without importing the TSA: its ASN.1 modules take a second to load, and
# every `auditlog` command builds this parser (tests/test_tsa.py holds the two names together).
TRUST_ANCHOR_FILE = "tsa-ca.pem"


def add_tsa_parser(subparsers) -> argparse.ArgumentParser:
    """Add `tsa serve` to an argparse subparsers object; returns the `tsa` parser."""
    tsa = subparsers.add_parser("tsa", help="the built-in RFC 3161 time-stamping authority")
    commands = tsa.add_subparsers(dest="tsa_command", required=True)
    serve = commands.add_parser("serve", help="serve RFC 3161 timestamps over HTTP (key and chain made on first "
                                              "start)")
    _add_serve_arguments(serve)
    return tsa


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    serve.add_argument("--data-dir", type=Path,
                       default=Path(os.environ.get("AUDITLOG_TSA_DATA_DIR", "data/tsa")),
                       help=f"key and certificates (env AUDITLOG_TSA_DATA_DIR; default ./data/tsa); the trust "
                            f"anchor is written to <data-dir>/{TRUST_ANCHOR_FILE}")
    serve.set_defaults(func=run_tsa_serve)


def run_tsa_serve(args: argparse.Namespace) -> int:
    """Run the TSA until SIGINT or SIGTERM; returns the exit status."""
    return asyncio.run(_serve(args.host, args.port, Path(args.data_dir)))


async def _serve(host: str, port: int, data_dir: Path) -> int:
    from witness.serving import serve_until_signalled  # the TSA's parts load only to serve
    from witness.tsa import CA_CERT_FILE, TimestampAuthority, TsaIdentity
    from witness.tsa_server import make_tsa_app

    identity = await asyncio.to_thread(TsaIdentity.load_or_create, data_dir)
    app = make_tsa_app(TimestampAuthority(identity))
    return await serve_until_signalled(app, host, port, [f"trust anchor: {data_dir / CA_CERT_FILE}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m witness.tsa_cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="tsa_command", required=True)
    _add_serve_arguments(commands.add_parser("serve", help="serve RFC 3161 timestamps over HTTP"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
