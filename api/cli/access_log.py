"""`auditlog access-log`: who read which contents, from the log's access log (GET /api/v1/access-log, admin only).

    auditlog access-log [--credential C] [--what W] [--target T] [--since WHEN] [--until WHEN] [--limit N]
                        [--cursor C | --all] [--server URL] [--ca-cert PEM] [--token T] [--json]

Records are listed oldest first: a table, or with --json one JSON object per line (id, at, at_ms, credential, role,
what, target, remote, status). The access log is the server's record of reads, not part of the Merkle log: nothing
here is verified against the log key (there is nothing signed to verify it with). A credential that is not an
admin's is refused by the log (401/403: exit 2).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from api.cli import inputs
from api.cli.exits import FAILED, CommandFailed, say
from api.cli.options import env, json_option, server_option, token_option
from log import defaults

MAX_PAGE = 1000  # the log's largest page (log/defaults.py ACCESS_LOG_MAX_PAGE)
_FILTERS = (
    ("--credential", "credential", "the credential that read: token:<id>, oidc:<issuer>#<subject>, admin-token"),
    ("--what", "what", "the kind of read: events, timeline, evidence, blob, entry, entry-bundle, report"),
    ("--target", "target", "what was read: a run id, a sha256, an index, a tile path, an events query"),
)


def _table(records: list[dict]) -> str:
    rows = [("time (UTC)", "credential", "role", "what", "target", "remote", "status")]
    for r in records:
        rows.append((r["at"].replace("T", " ").rstrip("Z"), r["credential"], r["role"], r["what"], r["target"],
                     r["remote"] or "-", str(r["status"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_access_log(args) -> int:
    from api.cli.audit import _fail, _http

    params = {param: getattr(args, param) for _, param, _ in _FILTERS if getattr(args, param) is not None}
    for bound in ("since", "until"):
        if getattr(args, bound) is not None:
            params[bound] = getattr(args, bound)
    params["limit"] = str(args.limit)
    token = inputs.token(args)
    cursor, shown, seen = args.cursor, [], set()
    while True:
        query = urlencode({**params, **({"cursor": cursor} if cursor else {})})
        status, answer = _http(args, "GET", f"/api/v1/access-log?{query}", token=token)
        if status != 200:
            return _fail(status, answer)
        records = answer.get("records", [])
        if args.json:
            for record in records:
                print(json.dumps(record), flush=True)
        else:
            shown += records
        cursor = answer.get("next_cursor")
        if cursor is None or not args.all:
            break
        if cursor in seen:
            raise CommandFailed(f"the log answered the cursor {cursor!r} twice: its pages do not advance", FAILED)
        seen.add(cursor)
    if not args.json:
        if shown:
            print(_table(shown))
        else:
            asked = " ".join(f"{name}={value}" for name, value in params.items() if name != "limit")
            print(f"no reads recorded{(' with ' + asked) if asked else ''}")
    if cursor is not None and not args.all:
        say("access-log", f"note: more records follow: --cursor {cursor} for the next page, or --all for every page")
    return 0


def add_access_log_parser(commands) -> None:
    from api.cli.query import page_size, when

    p = commands.add_parser(
        "access-log", help="who read which contents (admin): the server's access log",
        description="List the reads of contents (events, timelines, evidence, blobs, entries) made with a "
                    "credential, oldest first, from GET /api/v1/access-log: when, which credential and role, what "
                    "kind of read, of what, from which address, and the HTTP status answered. Needs an admin "
                    "credential (--token, AUDITLOG_TOKEN, or the data dir's admin token on the server's machine). "
                    "The access log is kept apart from the Merkle log and is not verified against the log key.")
    for flag, param, text in _FILTERS:
        p.add_argument(flag, dest=param, metavar=param.upper(), help=f"only reads by/of {text}")
    p.add_argument("--since", type=when, metavar="WHEN",
                   help="only reads at or after WHEN: RFC 3339 (2026-12-07T18:00:00Z) or a duration ago (15m, 2h)")
    p.add_argument("--until", type=when, metavar="WHEN", help="only reads before WHEN (as --since)")
    p.add_argument("--limit", type=page_size, default=100, metavar="N",
                   help=f"records per page (1 to {MAX_PAGE}; default %(default)s); without --all only the first "
                        "page is listed and a note gives the cursor of the next")
    p.add_argument("--cursor", metavar="CURSOR", help="start after a page: the cursor a previous listing noted")
    p.add_argument("--all", action="store_true", help="follow the cursor through every page")
    p.add_argument("--data-dir", default=env("AUDITLOG_DATA_DIR", defaults.DATA_DIR),
                   help="where the admin token is found when the log runs on this machine and no --token is given "
                        f"(env AUDITLOG_DATA_DIR; default ./{defaults.DATA_DIR})")
    server_option(p)
    token_option(p)
    json_option(p)
    p.set_defaults(func=cmd_access_log)
