"""`auditlog` subcommands of the audit personality.

    auditlog timeline --run RUN [--url URL] [--tenant T] [--log-key VKEY] [--evidence FILE]
    auditlog verify-evidence FILE --log-key VKEY
    auditlog producer list|register|add-key|retire-key|revoke-key ...   (admin token: --admin-token,
                                                                        AUDITLOG_ADMIN_TOKEN or --data-dir)
    auditlog producer keygen --out FILE

Wire in with `add_audit_parsers(subparsers)`; each parser sets `func(args) -> int` (the exit status).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from log import defaults
from log.audit.admin import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE
from log.audit.errors import EvidenceError
from log.audit.evidence import verify_bundle
from log.audit.schema import format_timestamp_ms

DEFAULT_URL = os.environ.get("AUDITLOG_SERVER") or os.environ.get("AUDITLOG_URL", defaults.SERVER_URL)


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"detail": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SystemExit(f"auditlog: cannot reach {url}: {reason}") from None


def _fail(status: int, answer: dict) -> int:
    print(f"error {status}: {answer.get('detail', answer)}", file=sys.stderr)
    for error in answer.get("errors", []):
        print(f"  {error['field']}: {error['message']}", file=sys.stderr)
    return 1


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
    query = f"?tenant={args.tenant}" if args.tenant else ""
    if args.evidence:
        status, bundle = _http("GET", f"{args.url}/api/v1/runs/{args.run}/evidence{query}")
        if status != 200:
            return _fail(status, bundle)
        if args.log_key:
            try:
                report = verify_bundle(bundle, args.log_key)
            except EvidenceError as exc:
                print(f"the log's evidence bundle does not verify: {exc}", file=sys.stderr)
                return 1
            print(f"verified: {report.events} events in the checkpoint of size {report.checkpoint.size}")
        Path(args.evidence).write_text(json.dumps(bundle, indent=1) + "\n")
        print(f"evidence bundle for run {args.run} written to {args.evidence}")
        return 0
    status, timeline = _http("GET", f"{args.url}/api/v1/runs/{args.run}/timeline{query}")
    if status != 200:
        return _fail(status, timeline)
    print(f"run {timeline['run_id']}: {len(timeline['events'])} events, checkpoint of size {timeline['tree_size']}")
    print(_table(timeline["events"]))
    for child, parent in timeline.get("external_parents", {}).items():
        print(f"note: event {child} has parent {parent} outside this run")
    return 0


def cmd_verify_evidence(args) -> int:
    try:
        bundle = json.loads(Path(args.file).read_text())
        report = verify_bundle(bundle, args.log_key)
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    except EvidenceError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"OK: run {report.run_id}: {report.events} events from {', '.join(report.producers)}, "
          f"{report.registry_entries} registry entries, all included in checkpoint {report.checkpoint.origin} "
          f"size {report.checkpoint.size}; signatures, keys and causal order hold")
    for warning in report.warnings:
        print(f"note: {warning}")
    return 0


def _admin_token(args) -> str:
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    if not token and args.data_dir:
        token = (Path(args.data_dir) / ADMIN_TOKEN_FILE).read_text().strip()
    if not token:
        raise SystemExit(f"give --admin-token, set {ADMIN_TOKEN_ENV}, or point --data-dir at the server's data dir")
    return token


def _admin(args, method: str, path: str, body: dict) -> int:
    status, answer = _http(method, f"{args.url}{path}", body, _admin_token(args))
    if status >= 300:
        return _fail(status, answer)
    print(json.dumps(answer.get("change", answer), indent=1))
    print(f"logged at index {answer.get('index')}")
    return 0


def cmd_producer(args) -> int:
    if args.action == "list":
        status, answer = _http("GET", f"{args.url}/api/v1/producers")
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


def add_audit_parsers(subparsers) -> None:
    """Add `timeline`, `verify-evidence` and `producer` to the `auditlog` command's subparsers."""
    p = subparsers.add_parser("timeline", help="print one run's audit timeline, or export its evidence bundle")
    p.add_argument("--run", required=True, help="the run id")
    p.add_argument("--server", "--url", dest="url", default=DEFAULT_URL, help="the log server (env AUDITLOG_SERVER)")
    p.add_argument("--tenant")
    p.add_argument("--evidence", metavar="FILE", help="write the run's evidence bundle to FILE")
    p.add_argument("--log-key", help="verify the evidence bundle with this log verifier key before writing it")
    p.set_defaults(func=cmd_timeline)

    p = subparsers.add_parser("verify-evidence", help="check an evidence bundle offline")
    p.add_argument("file")
    p.add_argument("--log-key", required=True, help="the log's verifier key (name+id+key)")
    p.set_defaults(func=cmd_verify_evidence)

    p = subparsers.add_parser("producer", help="the producer registry (changes need the admin token)")
    p.add_argument("action", choices=["list", "register", "add-key", "retire-key", "revoke-key", "keygen"])
    p.add_argument("--producer")
    p.add_argument("--tenant", action="append", help="a tenant the producer may write for (repeatable)")
    p.add_argument("--public-key", help="base64 of the 32-byte Ed25519 public key")
    p.add_argument("--key-id")
    p.add_argument("--not-before")
    p.add_argument("--not-after")
    p.add_argument("--at", help="retire-key: not_after; revoke-key: revoked_at (RFC 3339; default now)")
    p.add_argument("--reason")
    p.add_argument("--out", help="keygen: where to write the secret seed")
    p.add_argument("--server", "--url", dest="url", default=DEFAULT_URL, help="the log server (env AUDITLOG_SERVER)")
    p.add_argument("--admin-token")
    p.add_argument("--data-dir", help="read the admin token from this server data dir")
    p.set_defaults(func=cmd_producer)
