"""`auditlog report`: a compliance report from the log's GET /api/v1/reports, written to a file.

    auditlog report --tenant T --from DATE --to DATE [--framework soc2|hipaa|sox|iso27001|eu-ai-act|all]
                    [--format html|pdf|json] --out FILE [--server URL] [--ca-cert PEM] [--token T] [--data-dir D]

DATE is an RFC 3339 time (`2026-01-01T00:00:00Z`, an offset) or a date `YYYY-MM-DD` (its midnight UTC); the period
is [from, to), checked here before anything is sent. The server builds the report (it reads every event of the
period: an auditor's credential of the tenant, or an admin's) and verifies it against its witnessed checkpoint; this
command writes what it answered to FILE (atomically) and prints the verification summary line. Exit 0 when the
report's chain integrity is VALID, 1 when it is INVALID (the file is written either way: it says what failed),
2 for bad input or a refused credential, 3 when the log is unreachable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from api.cli import inputs
from api.cli.exits import FAILED, OK, USAGE, CommandFailed
from api.cli.options import env, server_option, token_option
from log import defaults

TIMEOUT = 900.0  # seconds: a report over 10^6 events takes up to a minute on the server, more on a busy one


def _bound(text: str, name: str) -> int:
    """`--from`/`--to` in Unix ms, checked here before anything is sent (exit 2); the route reads the same text."""
    from log.audit.periods import parse_day_or_time
    from log.errors import InvalidInput

    try:
        return parse_day_or_time(text, name)
    except InvalidInput as exc:
        raise CommandFailed(f"--{name}: {exc}", USAGE) from None


def cmd_report(args) -> int:
    from api.cli.audit import _fail
    from api.client.tls import client_context

    since, until = _bound(args.since, "from"), _bound(args.until, "to")
    if until <= since:
        raise CommandFailed(f"--to ({args.until}) must be later than --from ({args.since})", USAGE)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandFailed(f"--out {args.out}: no directory {out.parent}", USAGE)
    query = urlencode({"tenant": args.tenant, "from": args.since, "to": args.until, "framework": args.framework,
                       "format": args.format})
    headers = {}
    token = inputs.token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = inputs.servers(args).request("GET", f"/api/v1/reports?{query}", idempotent=True, headers=headers,
                                          timeout=TIMEOUT, ssl_context=client_context(getattr(args, "ca_cert", None)))
    if answer.status != 200:
        try:
            problem = json.loads(answer.body)
        except ValueError:
            problem = {"detail": f"HTTP {answer.status}"}
        return _fail(answer.status, problem if isinstance(problem, dict) else {"detail": str(problem)})
    _write(out, answer.body)
    # The verdict: the JSON's own, or for HTML and PDF the headers that come with them.
    if args.format == "json":
        summary = json.loads(answer.body)["summary"]
        line, integrity = summary["line"], summary["integrity"]
    else:
        headers = answer.headers or {}
        line = json.loads(headers.get("Auditlog-Summary") or '""')
        integrity = headers.get("Auditlog-Chain-Integrity", "")
    if line:
        print(line)
    print(f"wrote {out} ({len(answer.body):,} bytes, {args.format})")
    return FAILED if integrity == "INVALID" else OK


def _write(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def add_report_parser(commands, epilog: str) -> None:
    from log.audit.frameworks import FRAMEWORK_CHOICES

    p = commands.add_parser(
        "report", help="a compliance report (SOC 2, HIPAA, SOX, ISO 27001, EU AI Act) over a tenant and period",
        description="Ask the log for a compliance report over one tenant's events in [--from, --to): verified "
                    "against its signed (witnessed) checkpoint, mapped to the framework's controls, with the "
                    "completeness findings, per-producer gaps, human-review statistics, cost and tokens, and charts. "
                    "Needs a credential that reads the tenant's events (an auditor of the tenant, or an admin). "
                    "Prints the verification summary; exits 1 when the chain integrity is INVALID.",
        epilog=epilog)
    p.add_argument("--tenant", required=True, help="the tenant")
    p.add_argument("--from", dest="since", required=True, metavar="DATE",
                   help="start of the period, included: RFC 3339 (2026-01-01T00:00:00Z) or YYYY-MM-DD (midnight UTC)")
    p.add_argument("--to", dest="until", required=True, metavar="DATE",
                   help="end of the period, excluded (as --from): --to 2026-04-01 for all of March")
    p.add_argument("--framework", choices=FRAMEWORK_CHOICES, default="all", help="which controls (default all)")
    p.add_argument("--format", choices=("html", "pdf", "json"), default="html",
                   help="html (one self-contained file), pdf or json (default html)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the report")
    p.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR),
                   help="where the admin token is found when the log runs on this machine and no --token is given "
                        f"(env AUDITLOG_DATA_DIR; default ./{defaults.DATA_DIR})")
    server_option(p)
    token_option(p)
    p.set_defaults(func=cmd_report)
