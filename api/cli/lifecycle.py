"""`auditlog hold ...` and `auditlog subject ...`: legal holds and data-subject requests, an admin's business
(api/server/lifecycle_routes.py, log/audit/holds.py, log/audit/subjects.py).

    auditlog hold place --tenant T [--run R]... [--context NAME=VALUE]... [--subject TOKEN]... [--actor A]
                        [--from WHEN] [--to WHEN] --reason R --reference REF
    auditlog hold release HOLD_ID --reason R [--reference REF]
    auditlog hold list [--tenant T] [--active] [--json]
    auditlog subject access --tenant T --subject REF --out FILE [--log-key VKEY]
    auditlog subject erase --tenant T --subject REF --reason R [--json]

Every command takes --server and the admin credential (--token, AUDITLOG_TOKEN, AUDITLOG_ADMIN_TOKEN, or the
admin.token of --data-dir), as `token` and `producer` do. Placing and releasing print the hold and the index of
the entry that logged it. `subject access` writes the subject's evidence bundle once it has verified it with the
log key (never a bundle that fails: exit 1). `subject erase` exits 0 when the erasure was logged; when a legal hold
or a retention obligation kept something it says what, on stderr, and still exits 0 (the erasure did what the law
allows and is logged; asking again after the hold is released finishes it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlencode

from api.cli.audit import _admin_token, _fail, _http
from api.cli.options import json_option, log_key_option, server_option, token_option
from log.errors import InvalidInput


def _context(text: str) -> dict:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise InvalidInput(f"--context takes NAME=VALUE (case_id=C-17), not {text!r}", field="context")
    return {"name": name, "value": value}


def _when(text: str, flag: str) -> str:
    """A date or an RFC 3339 time (log/audit/periods.py) as the server takes it: milliseconds, UTC."""
    from log.audit.periods import parse_day_or_time
    from log.audit.schema import format_timestamp_ms

    return format_timestamp_ms(parse_day_or_time(text, flag))


def _describe(hold: dict) -> str:
    scope = {k: v for k, v in hold["scope"].items() if k != "tenant"}
    state = "active" if hold["active"] else f"released {hold['released_at']} (entry {hold['released_index']})"
    return (f"{hold['hold_id']}  {hold['tenant']}  {json.dumps(scope, separators=(',', ':')) if scope else 'whole tenant'}"
            f"  placed {hold['placed_at']} (entry {hold['placed_index']})  {state}  reference {hold['reference']!r}"
            f"  reason {hold['reason']!r}")


def cmd_hold(args) -> int:
    token = _admin_token(args)
    if args.action == "list":
        query = {**({"tenant": args.tenant} if args.tenant else {}), **({"active": "true"} if args.active else {})}
        status, answer = _http(args, "GET", "/api/v1/holds" + ("?" + urlencode(query) if query else ""), token=token)
        if status != 200:
            return _fail(status, answer)
        for hold in answer["holds"]:
            print(json.dumps(hold) if args.json else _describe(hold))
        if not answer["holds"] and not args.json:
            print("no legal holds")
        return 0
    if args.action == "place":
        scope: dict = {"tenant": args.tenant}
        if args.run:
            scope["run_ids"] = args.run
        if args.context:
            scope["context"] = [_context(text) for text in args.context]
        if args.subject:
            scope["subjects"] = args.subject
        if args.actor:
            scope["actor_id"] = args.actor
        if args.from_time:
            scope["from"] = _when(args.from_time, "from")
        if args.to_time:
            scope["to"] = _when(args.to_time, "to")
        status, answer = _http(args, "POST", "/api/v1/holds",
                               {"scope": scope, "reason": args.reason, "reference": args.reference}, token)
        if status != 201:
            return _fail(status, answer)
    else:
        status, answer = _http(args, "POST", f"/api/v1/holds/{args.hold_id}/release",
                               {"reason": args.reason, "reference": args.reference or ""}, token)
        if status != 200:
            return _fail(status, answer)
    print(_describe(answer["hold"]))
    print(f"logged at index {answer['index']}")
    return 0


def cmd_subject(args) -> int:
    from api.cli import inputs

    if args.action == "access":
        log_key = inputs.log_key(args)
        inputs.output_file(args.out, "--out")
        status, answer = _http(args, "POST", "/api/v1/subjects/access",
                               {"tenant": args.tenant, "subject": args.subject}, _admin_token(args))
        if status != 200:
            return _fail(status, answer)
        from api.client.evidence import verify_evidence

        verify_evidence(answer, log_key)  # EvidenceError (exit 1): never a bundle that fails
        Path(args.out).write_text(json.dumps(answer, indent=1) + "\n")
        print(f"the data subject's evidence bundle was written to {args.out}; verified: "
              f"{len(answer.get('events', []))} events")
        return 0
    status, answer = _http(args, "POST", "/api/v1/subjects/erase",
                           {"tenant": args.tenant, "subject": args.subject, "reason": args.reason},
                           _admin_token(args))
    if status != 200:
        return _fail(status, answer)
    if args.json:
        print(json.dumps(answer))
    else:
        print(f"subject {answer['subject']} of {answer['tenant']}: erasure logged at index {answer['index']}; "
              f"key {'shredded' if answer['key_shredded'] else 'KEPT'}, {answer['blobs_deleted']} blob(s) deleted")
    skipped = answer["skipped"]
    if skipped["subject_hold"] is not None:
        print(f"auditlog subject erase: legal hold {skipped['subject_hold']} covers the subject: its key is kept "
              f"until the hold is released; ask again then", file=sys.stderr)
    for hold_id, count in skipped["blobs_held"].items():
        print(f"auditlog subject erase: {count} blob(s) kept for legal hold {hold_id}", file=sys.stderr)
    for policy, count in skipped["blobs_retained"].items():
        print(f"auditlog subject erase: {count} blob(s) kept for retention policy entry {policy}", file=sys.stderr)
    return 0


def _common(sub, func) -> None:
    server_option(sub)
    token_option(sub)
    sub.add_argument("--data-dir", help="read the admin token from this server data dir (default AUDITLOG_DATA_DIR "
                                        "or ./data, for a server on this machine)")
    sub.set_defaults(func=func)


def add_lifecycle_parsers(subparsers, epilog: str = "") -> None:
    """`hold place|release|list` and `subject access|erase` on the `auditlog` command's subparsers."""
    hold = subparsers.add_parser("hold", help="legal holds: nothing in scope is deleted while one is active (admin)",
                                 epilog=epilog)
    actions = hold.add_subparsers(dest="action", required=True, metavar="ACTION")
    place = actions.add_parser("place", help="place a hold; logged", epilog=epilog)
    _common(place, cmd_hold)
    place.add_argument("--tenant", required=True, help="the tenant held (a hold never reaches another)")
    place.add_argument("--run", action="append", metavar="RUN_ID", help="a run id (repeatable: any of them)")
    place.add_argument("--context", action="append", metavar="NAME=VALUE",
                       help="a context id such as case_id=C-17 (repeatable: any of them)")
    place.add_argument("--subject", action="append", metavar="TOKEN",
                       help="a data subject's vault token (repeatable: any of them)")
    place.add_argument("--actor", metavar="ACTOR_ID", help="only events of this actor")
    place.add_argument("--from", dest="from_time", metavar="WHEN", help="only events at or after (RFC 3339 or a date)")
    place.add_argument("--to", dest="to_time", metavar="WHEN", help="only events at or before (RFC 3339 or a date)")
    place.add_argument("--reason", required=True, help="why (logged)")
    place.add_argument("--reference", required=True, help="the case, order or matter number (logged)")
    release = actions.add_parser("release", help="release a hold; logged", epilog=epilog)
    _common(release, cmd_hold)
    release.add_argument("hold_id", metavar="HOLD_ID", help="the hold's id (16 hex digits, from hold list)")
    release.add_argument("--reason", required=True, help="why it ends (logged)")
    release.add_argument("--reference", help="the order that lifts it, if any (logged)")
    lister = actions.add_parser("list", help="list holds, active and released", epilog=epilog)
    _common(lister, cmd_hold)
    lister.add_argument("--tenant", help="only this tenant's holds")
    lister.add_argument("--active", action="store_true", help="only active holds")
    json_option(lister)

    subject = subparsers.add_parser("subject", help="data-subject requests: access and erasure (admin)",
                                    epilog=epilog)
    actions = subject.add_subparsers(dest="action", required=True, metavar="ACTION")
    access = actions.add_parser("access", help="export every event carrying the subject's tokens as an evidence "
                                               "bundle, verified before it is written", epilog=epilog)
    _common(access, cmd_subject)
    access.add_argument("--tenant", required=True)
    access.add_argument("--subject", required=True, metavar="REF",
                        help="the subject's reference (sent in the request body, never in a URL)")
    access.add_argument("--out", required=True, metavar="FILE", help="where to write the bundle")
    log_key_option(access)
    erase = actions.add_parser("erase", help="erase a subject: its vault key and blobs not held or retained; "
                                             "logged first", epilog=epilog)
    _common(erase, cmd_subject)
    erase.add_argument("--tenant", required=True)
    erase.add_argument("--subject", required=True, metavar="REF",
                       help="the subject's reference (sent in the request body, never in a URL)")
    erase.add_argument("--reason", required=True, help="why (logged), e.g. the request's number")
    json_option(erase)
