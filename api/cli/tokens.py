"""`auditlog token create|list|revoke`: API tokens, an admin's business (api/server/auth.py, log/audit/tokens.py).

    auditlog token create --role ROLE [--tenant T ...] [--expires 90d] [--reason R] [--server URL]
                          [--data-dir D | --token ADMIN]
    auditlog token list [--server URL] [--data-dir D | --token ADMIN] [--json]
    auditlog token revoke TOKEN_OR_ID [--reason R] [--server URL] [--data-dir D | --token ADMIN]

`create` prints the token as its last line: it is shown once, and the log keeps only its SHA-256. Creation and
revocation are log entries (their index is printed). The admin credential is --token (env AUDITLOG_TOKEN),
AUDITLOG_ADMIN_TOKEN, or the admin.token of --data-dir (as for `producer register`).
"""

from __future__ import annotations

import json
import sys
import time

from api.cli.audit import _admin_token, _fail, _http
from api.cli.options import duration, json_option, server_option, token_option
from log.access import ROLES
from log.errors import InvalidInput


def _when(ms) -> str:
    from log.audit.schema import format_timestamp_ms

    return "-" if ms is None else format_timestamp_ms(ms)


def _describe(token: dict) -> str:
    tenants = ",".join(token["tenants"]) if token.get("tenants") else "all tenants"
    state = ("revoked " + _when(token["revoked_at"]) if token.get("revoked_at") is not None
             else "expired" if token.get("expires_at") is not None and token["expires_at"] <= time.time() * 1000
             else "valid")
    return (f"{token['token_id']}  {token['role']:<8} {tenants}  created {_when(token['created_at'])}  "
            f"expires {_when(token.get('expires_at'))}  {state}" + (f"  ({token['reason']})" if token.get("reason")
                                                                   else ""))


def cmd_token(args) -> int:
    token = _admin_token(args)
    if args.action == "list":
        status, answer = _http(args, "GET", "/api/v1/tokens", token=token)
        if status != 200:
            return _fail(status, answer)
        for item in answer["tokens"]:
            print(json.dumps(item) if args.json else _describe(item))
        if not answer["tokens"] and not args.json:
            print("no API tokens")
        return 0
    if args.action == "create":
        from log.audit.schema import format_timestamp_ms

        body = {"role": args.role, "reason": args.reason or ""}
        if args.tenant:
            body["tenants"] = args.tenant
        if args.expires is not None:
            body["expires_at"] = format_timestamp_ms(int((time.time() + args.expires) * 1000))
        status, answer = _http(args, "POST", "/api/v1/tokens", body, token)
        if status != 201:
            return _fail(status, answer)
        print(_describe(answer["token"]))
        print(f"logged at index {answer['index']}")
        print("the token follows; it is shown this once (the log keeps only its SHA-256):", file=sys.stderr)
        sys.stderr.flush()
        print(answer["secret"], flush=True)
        return 0
    from log.audit.tokens import token_id_of

    token_id = token_id_of(args.token_or_id.strip())
    if token_id is None:
        raise InvalidInput("give a token (alog_...) or its id (16 hex digits)", field="token_or_id")
    status, answer = _http(args, "POST", f"/api/v1/tokens/{token_id}/revoke", {"reason": args.reason or ""},
                           token)
    if status != 200:
        return _fail(status, answer)
    print(_describe(answer["token"]))
    print(f"logged at index {answer['index']}")
    return 0


def add_token_parser(subparsers, epilog: str = "") -> None:
    """`token create|list|revoke` on the `auditlog` command's subparsers."""
    p = subparsers.add_parser("token", help="API tokens for roles and tenants (admin)", epilog=epilog)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str):
        sub = actions.add_parser(name, help=help, epilog=epilog)
        server_option(sub)
        token_option(sub)
        sub.add_argument("--data-dir", help="read the admin token from this server data dir (default "
                                            "AUDITLOG_DATA_DIR or ./data, for a server on this machine)")
        sub.set_defaults(func=cmd_token)
        return sub

    create = action("create", "create a token; it is printed as the last line, once")
    create.add_argument("--role", required=True, choices=ROLES, help="what the token may do (README, "
                                                                     "\"Security model\")")
    create.add_argument("--tenant", action="append", metavar="T",
                        help="a tenant the token covers (repeatable; an auditor needs at least one)")
    create.add_argument("--expires", type=duration, metavar="DURATION",
                        help="valid for this long (90s, 15m, 2h, 90d); default: until revoked")
    create.add_argument("--reason", help="why (kept in the log entry)")
    lister = action("list", "list the tokens (never their secrets)")
    json_option(lister)
    revoke = action("revoke", "revoke a token at once")
    revoke.add_argument("token_or_id", metavar="TOKEN_OR_ID", help="the token, or its id")
    revoke.add_argument("--reason", help="why (kept in the log entry)")
