"""`auditlog` subcommands of the audit personality.

    auditlog timeline --run RUN [--server URL] [--tenant T] [--log-key VKEY] [--evidence FILE [--wait [--timeout S]]]
                      [--json]
    auditlog verify-evidence FILE [--log-key VKEY] [--witness-key VKEY ...] [--tsa-ca PEM] [--json]
    auditlog producer list|register|add-key|retire-key|revoke-key ...   (admin token: --token,
                                                                        AUDITLOG_ADMIN_TOKEN or --data-dir)
    auditlog producer keygen --out FILE

Wire in with `add_audit_parsers(subparsers)`; each parser sets `func(args) -> int` (the exit status); failures are
raised and turned into a status and one line by api/cli/exits.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

from api.cli.exits import USAGE, CommandFailed, status_for_http
from api.cli.options import json_option, log_key_option, server_option, token_option, wait_options
from log.audit.admin import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE
from log.errors import InvalidInput
from log.audit.schema import format_timestamp_ms


def _http(args, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    """`method path` to the log's servers (--server, api/cli/inputs.py `servers`) with --ca-cert's trust: the
    status and JSON body of the first answer. A GET moves on to the next server on connection errors and 503s; an
    admin POST only when nothing reached the first (a second send could register or create twice). No server
    answering is Unavailable (exit 3), naming each."""
    from api.cli import inputs
    from api.client.tls import client_context

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    answer = inputs.servers(args).request(method, path, idempotent=method == "GET", body=data, headers=headers,
                                          timeout=60, ssl_context=client_context(getattr(args, "ca_cert", None)))
    try:
        return answer.status, json.loads(answer.body)
    except ValueError:
        if answer.status < 300:
            raise CommandFailed(f"{answer.url}{path.split('?')[0]} did not answer JSON: is --server the log's URL?",
                                USAGE) from None
        return answer.status, {"detail": f"HTTP {answer.status}"}


def _fail(status: int, answer: dict) -> int:
    """The log refused: one line with its problem's detail and the fields it names; exit 2 or 3 by the status."""
    detail = answer.get("detail") or answer.get("title") or answer
    fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in answer.get("errors", [])
                       if isinstance(e, dict))
    raise CommandFailed(f"the log answered HTTP {status}: {detail}" + (f" ({fields})" if fields else ""),
                        status_for_http(status))


def _table(events: list[dict]) -> str:
    rows = [("#", "index", "time (UTC)", "type", "actor", "event", "parent", "producer")]
    for n, item in enumerate(events):
        e = item["event"]
        rows.append((str(n), str(item["index"]), e["timestamp"].replace("T", " ").rstrip("Z"), e["event_type"],
                     f"{e['actor']['type']}:{e['actor']['id']}", e["event_id"], e.get("parent_event_id") or "-",
                     item["producer"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_timeline(args) -> int:
    if args.evidence:
        return asyncio.run(_run_evidence(args))
    if args.wait:
        raise InvalidInput("--wait goes with --evidence", field="wait")
    timeline = asyncio.run(_verified_timeline(args))
    if args.json:
        print(json.dumps(timeline, indent=1))
        return 0
    print(f"run {timeline['run_id']}: {len(timeline['events'])} events, each verified included in the checkpoint of "
          f"size {timeline['tree_size']}")
    print(_table(timeline["events"]))
    for child, parent in timeline.get("external_parents", {}).items():
        print(f"note: event {child} has parent {parent} outside this run")
    return 0


async def _verified_timeline(args) -> dict:
    """The run's timeline, every event's inclusion in the signed checkpoint it names checked with the log key
    (LogClient.verified_timeline) before anything of it is shown."""
    from api.cli import inputs

    async with inputs.log_client(args) as client:
        return await client.verified_timeline(args.run, args.tenant)


async def _run_evidence(args) -> int:
    """The run's evidence bundle (the server picks the newest timestamped, else witnessed, else latest checkpoint
    covering the run), checked with the log key before it is written: never a bundle that fails. With --wait, first
    wait (api/client/waiting.py) until a cosigned and a timestamped checkpoint cover every event of the run."""
    from api.cli import inputs
    from api.client.evidence import verify_run_bundle
    from api.client.waiting import wait_for_run

    log_key = inputs.log_key(args)
    inputs.output_file(args.evidence, "--evidence")
    async with inputs.log_client(args, log_key) as client:
        if args.wait:
            await wait_for_run(client, args.run, args.tenant, timeout=args.timeout)
        bundle = await client.run_evidence(args.run, args.tenant)
    report = verify_run_bundle(bundle, log_key)
    Path(args.evidence).write_text(json.dumps(bundle, indent=1) + "\n")
    evidence, checkpoint = report.evidence, report.checkpoint
    cosignatures = len(evidence.note.signatures) - 1 if evidence.note is not None else 0
    if args.json:
        print(json.dumps({"run_id": args.run, "events": evidence.events, "tree_size": checkpoint.size,
                          "cosignatures": cosignatures, "timestamp": report.has_timestamp,
                          "pruned_events": evidence.pruned_events, "deletions": len(evidence.deleted),
                          "file": args.evidence, "verified": True}))
    else:
        pruned = f" (and {evidence.pruned_events} pruned)" if evidence.pruned_events else ""
        print(f"evidence bundle for run {args.run} written to {args.evidence}; verified: {evidence.events} events"
              f"{pruned} in checkpoint {checkpoint.origin} size {checkpoint.size} ({cosignatures} cosignatures, "
              f"{'a' if report.has_timestamp else 'no'} timestamp)")
        for deletion in evidence.deleted:
            print(f"deleted: {deletion.describe()}")
    return 0


def _admin_token(args) -> str:
    """The admin credential (api/cli/inputs.py `token`): --token, $AUDITLOG_TOKEN, $AUDITLOG_ADMIN_TOKEN, or the
    admin.token of --data-dir (read for any server when --data-dir is given; else of ./data for a local server)."""
    from api.cli import inputs

    given = inputs.token(args)
    if given:
        return given
    if args.data_dir:
        path = Path(args.data_dir) / ADMIN_TOKEN_FILE
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read the admin token {path}: {exc.strerror or exc}", field="data_dir") from None
    raise InvalidInput(f"no admin token: pass --token, set {ADMIN_TOKEN_ENV}, or point --data-dir at the "
                       "server's data dir", field="token")


def _admin(args, method: str, path: str, body: dict) -> int:
    status, answer = _http(args, method, path, body, _admin_token(args))
    if status >= 300:
        return _fail(status, answer)
    print(json.dumps(answer.get("change", answer), indent=1))
    print(f"logged at index {answer.get('index')}")
    return 0


def cmd_producer(args) -> int:
    if args.action == "list":
        from api.cli import inputs

        status, answer = _http(args, "GET", "/api/v1/producers", token=inputs.token(args))
        if status != 200:
            return _fail(status, answer)
        for p in answer["producers"]:
            print(f"{p['producer']}  tenants={','.join(p['tenants'])}")
            for k in p["keys"]:
                now = int(time.time() * 1000)
                state = ("revoked" if k["revoked_at"] is not None
                         else "expired" if k["not_after"] is not None and k["not_after"] <= now
                         else f"current until {format_timestamp_ms(k['not_after'])}" if k["not_after"] is not None
                         else "current")
                print(f"  {k['key_id']}  {state}  from {format_timestamp_ms(k['not_before'])}  {k['public_key']}")
        return 0
    if args.action == "keygen":
        from api.client.recorder import generate_key
        from log.secret_files import write_secret_file

        seed, public, key_id = generate_key()
        write_secret_file(args.out, base64.b64encode(seed).decode() + "\n")
        print(f"secret seed written to {args.out}\npublic key {base64.b64encode(public).decode()}\nkey id {key_id}")
        return 0
    body = {"reason": args.reason or ""}
    if args.action == "register":
        body.update(producer=args.producer, tenants=args.tenant)
        return _admin(args, "POST", "/api/v1/producers", body)
    if args.action == "add-key":
        body.update(public_key=args.public_key, not_before=args.not_before, not_after=args.not_after)
        return _admin(args, "POST", f"/api/v1/producers/{args.producer}/keys", body)
    when = {"retire-key": "not_after", "revoke-key": "revoked_at"}[args.action]
    body[when] = args.at
    verb = args.action.split("-")[0]
    return _admin(args, "POST", f"/api/v1/producers/{args.producer}/keys/{args.key_id}/{verb}", body)


def add_audit_parsers(subparsers, epilog: str = "") -> None:
    """Add `timeline`, `verify-evidence` and `producer` to the `auditlog` command's subparsers."""
    p = subparsers.add_parser("timeline", help="print one run's audit timeline, or export its evidence bundle",
                              epilog=epilog)
    p.add_argument("--run", required=True, help="the run id")
    server_option(p)
    token_option(p)
    p.add_argument("--tenant", help="the run's tenant, when run ids repeat across tenants")
    p.add_argument("--evidence", metavar="FILE", help="write the run's evidence bundle to FILE: every event with "
                                                      "its inclusion proof, the witnessed checkpoint with its "
                                                      "cosignatures and timestamp token (check with verify-evidence)")
    wait_options(p, "every event of the run")
    log_key_option(p)
    json_option(p)
    p.set_defaults(func=cmd_timeline)

    p = subparsers.add_parser("verify-evidence", help="check an evidence bundle (an entry's or a run's) offline",
                              epilog=epilog)
    p.add_argument("file", help="the bundle (from proof --evidence or timeline --evidence)")
    log_key_option(p)
    json_option(p)

    producer = subparsers.add_parser("producer", help="the producer registry (changes need the admin token)",
                                     epilog=epilog)
    actions = producer.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, *, admin: bool = True):
        sub = actions.add_parser(name, help=help, epilog=epilog)
        if name != "keygen":
            server_option(sub)
        if name != "keygen":
            token_option(sub)
            sub.add_argument("--data-dir", help="read the admin token from this server data dir (default "
                                                "AUDITLOG_DATA_DIR or ./data, for a server on this machine)")
        if admin:
            sub.add_argument("--reason", help="why (kept in the registry's log entry)")
        sub.set_defaults(func=cmd_producer)
        return sub

    action("list", "list producers, their tenants and keys", admin=False)
    sub = action("register", "register a producer and the tenants it may write for")
    sub.add_argument("--producer", required=True, help="the producer's name")
    sub.add_argument("--tenant", action="append", required=True,
                     help="a tenant the producer may write for (repeatable)")
    sub = action("add-key", "add a signing key to a producer")
    sub.add_argument("--producer", required=True)
    sub.add_argument("--public-key", required=True, help="base64 of the 32-byte Ed25519 public key")
    sub.add_argument("--not-before", help="RFC 3339; default now")
    sub.add_argument("--not-after", help="RFC 3339; default never")
    for name, when in (("retire-key", "not_after: the key signs nothing after this (RFC 3339; default now)"),
                       ("revoke-key", "revoked_at: nothing it signed from this time on counts (RFC 3339; "
                                      "default now)")):
        sub = action(name, f"{name.split('-')[0]} a producer's key")
        sub.add_argument("--producer", required=True)
        sub.add_argument("--key-id", required=True)
        sub.add_argument("--at", help=when)
    sub = action("keygen", "make a producer signing key (seed file mode 0600); prints the public key", admin=False)
    sub.add_argument("--out", required=True, help="where to write the secret seed")
