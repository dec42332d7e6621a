"""`auditlog vault tokenize|detokenize`: the token vault from the command line (api/server/vault_routes.py).

    auditlog vault tokenize --tenant T --subject S VALUE... [--server URL] [--token WRITER | --data-dir D]
    auditlog vault detokenize --tenant T --purpose TEXT TOKEN... [--server URL] [--token VAULT_READER]

Both print the log's answer as JSON on stdout: the tokens in the order of the values (and the subject's token);
each token's value, or "unknown" or "erased", and the index of the log entry that records the detokenisation (it is
committed before any value is read). The credential is --token (env AUDITLOG_TOKEN): a writer's covering the tenant
to tokenise, a vault-reader's to detokenise; for tokenising on the server's own machine, the admin.token of
--data-dir serves too. A refusal is one line on stderr (exit 2: no such role or tenant, no purpose, a bad value;
exit 3: the log unreachable).
"""

from __future__ import annotations

import json

from api.cli.audit import _fail, _http
from api.cli.options import server_option, token_option
from log.audit.admin import ADMIN_TOKEN_FILE
from log.errors import InvalidInput


def _credential(args) -> str:
    from pathlib import Path

    from api.cli import inputs

    given = inputs.token(args)
    if given:
        return given
    if getattr(args, "data_dir", None):
        path = Path(args.data_dir) / ADMIN_TOKEN_FILE
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read the admin token {path}: {exc.strerror or exc}", field="data_dir") \
                from None
    raise InvalidInput("no credential: pass --token (a writer's to tokenise, a vault-reader's to detokenise) or set "
                       "AUDITLOG_TOKEN", field="token")


def cmd_vault(args) -> int:
    token = _credential(args)
    if args.action == "tokenize":
        body = {"tenant": args.tenant, "subject": args.subject, "values": args.values}
        status, answer = _http(args, "POST", "/api/v1/vault/tokenize", body, token)
    else:
        body = {"tenant": args.tenant, "tokens": args.tokens, "purpose": args.purpose}
        status, answer = _http(args, "POST", "/api/v1/vault/detokenize", body, token)
    if status != 200:
        return _fail(status, answer)
    print(json.dumps(answer, indent=1, ensure_ascii=False), flush=True)
    return 0


def add_vault_parser(subparsers, epilog: str = "") -> None:
    """`vault tokenize|detokenize` on the `auditlog` command's subparsers."""
    p = subparsers.add_parser("vault", help="tokenise values, or detokenise tokens with a purpose (logged)",
                              epilog=epilog)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str):
        sub = actions.add_parser(name, help=help, epilog=epilog)
        server_option(sub)
        token_option(sub)
        sub.add_argument("--tenant", required=True, help="the tenant whose vault it is")
        sub.set_defaults(func=cmd_vault)
        return sub

    tokenize = action("tokenize", "tokens for values of one data subject (a writer of the tenant)")
    tokenize.add_argument("--subject", required=True, help="the data subject's reference (e.g. its customer id); "
                                                           "answered as the subject's token")
    tokenize.add_argument("--data-dir", help="use the admin token of this server data dir when no --token is given")
    tokenize.add_argument("values", nargs="+", metavar="VALUE", help="a value to tokenise")
    detokenize = action("detokenize", "the values of tokens (a vault-reader of the tenant); logged before answered")
    detokenize.add_argument("--purpose", required=True, help="why the values are needed (kept in the log entry)")
    detokenize.add_argument("--data-dir", help="use the admin token of this server data dir when no --token is "
                                               "given (an admin is not a vault-reader: refused)")
    detokenize.add_argument("tokens", nargs="+", metavar="TOKEN", help="a vault token (vt. and 26 characters)")
