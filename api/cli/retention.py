"""`auditlog retention policy set|list`, `retention run`, `retention runs`: retention policies and runs, an admin's
business (api/server/retention_job.py, log/audit/retention.py).

    auditlog retention policy set --tenant T --class event|blob|subject --selector S --days N|none --reason R
                                  [--server URL] [--data-dir D | --token ADMIN]
    auditlog retention policy list [--tenant T] [--server URL] [--data-dir D | --token ADMIN] [--json]
    auditlog retention run [--tenant T] [--server URL] [--data-dir D | --token ADMIN] [--json]
    auditlog retention runs [--tenant T] [--server URL] [--data-dir D | --token ADMIN] [--json]

`policy set` with `--days none` removes the policy. Setting a policy and each run that deletes (or is held back by a
legal hold) are log entries; their index is printed. The admin credential is --token (env AUDITLOG_TOKEN),
AUDITLOG_ADMIN_TOKEN, or the admin.token of --data-dir (as for `token create`).
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import urlencode

from api.cli.audit import _admin_token, _fail, _http
from api.cli.options import json_option, server_option, token_option


def _days(text: str) -> int | None:
    if text.strip().lower() in ("none", "remove"):
        return None
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days (or none, to remove)") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"days must not be negative, not {days}")
    return days


def _counts(counts: dict) -> str:
    return ", ".join(f"{count} {kind}{'s' if count != 1 else ''}" for kind, count in counts.items())


def _query(args) -> str:
    tenant = getattr(args, "tenant", None)
    return "?" + urlencode({"tenant": tenant}) if tenant else ""


def cmd_retention(args) -> int:
    token = _admin_token(args)
    if args.action == "policy" and args.policy_action == "set":
        body = {"tenant": args.tenant, "record_class": args.record_class, "selector": args.selector,
                "retain_days": args.days, "reason": args.reason}
        status, answer = _http(args, "POST", "/api/v1/retention/policies", body, token)
        if status != 201:
            return _fail(status, answer)
        policy = answer["policy"]
        days = "removed" if policy["retain_days"] is None else f"{policy['retain_days']} days"
        print(f"{policy['tenant']} {policy['record_class']} {policy['selector']}: {days}")
        print(f"logged at index {answer['index']}")
        return 0
    if args.action == "policy":
        status, answer = _http(args, "GET", "/api/v1/retention/policies" + _query(args), token=token)
        if status != 200:
            return _fail(status, answer)
        for policy in answer["policies"]:
            print(json.dumps(policy) if args.json else
                  f"{policy['tenant']}  {policy['record_class']:<7} {policy['selector']:<28} "
                  f"{policy['retain_days']} days  (entry {policy['index']}, {policy['at']})"
                  + (f"  {policy['reason']}" if policy["reason"] else ""))
        if not answer["policies"] and not args.json:
            print("no retention policies")
        return 0
    if args.action == "run":
        status, answer = _http(args, "POST", "/api/v1/retention/runs",
                               {"tenant": args.tenant} if args.tenant else {}, token)
        if status != 200:
            return _fail(status, answer)
        for run in answer["runs"]:
            if args.json:
                print(json.dumps(run))
            elif run["index"] is None:
                print(f"{run['tenant']}: nothing due (no entry written)")
            else:
                held = f"; kept by legal holds: {_counts(run['skipped'])}" if run["skipped"] else ""
                print(f"{run['tenant']}: deleted {_counts(run['deleted'])}{held}; logged at index {run['index']} "
                      f"(list sha256 {run['list_sha256']})")
        if not answer["runs"] and not args.json:
            print("no tenant has a retention policy")
        return 0
    status, answer = _http(args, "GET", "/api/v1/retention/runs" + _query(args), token=token)
    if status != 200:
        return _fail(status, answer)
    for run in answer["runs"]:
        state = f"finished {run['finished_at']}" if run["finished_at"] else "unfinished (resumed by the server)"
        print(json.dumps(run) if args.json else
              f"{run['index']}  {run['tenant']}  started {run['started_at']}  {state}  deleted "
              f"{_counts(run['deleted'] or {})}" + (f"  held {_counts(run['skipped'])}" if run["skipped"] else ""))
    if not answer["runs"] and not args.json:
        print("no retention runs")
    return 0


def add_retention_parser(subparsers, epilog: str = "") -> None:
    """`retention policy set|list`, `retention run`, `retention runs` on the `auditlog` command's subparsers."""
    p = subparsers.add_parser("retention", help="retention policies and runs (admin)", epilog=epilog)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(sub):
        server_option(sub)
        token_option(sub)
        sub.add_argument("--data-dir", help="read the admin token from this server data dir (default "
                                            "AUDITLOG_DATA_DIR or ./data, for a server on this machine)")
        sub.set_defaults(func=cmd_retention)
        return sub

    policy = actions.add_parser("policy", help="set or list retention policies", epilog=epilog)
    policy_actions = policy.add_subparsers(dest="policy_action", required=True, metavar="ACTION")
    setter = common(policy_actions.add_parser("set", help="set, change or remove a policy (logged)", epilog=epilog))
    setter.add_argument("--tenant", required=True)
    setter.add_argument("--class", dest="record_class", required=True, choices=("event", "blob", "subject"),
                        help="event entries, blobs, or vault data subjects")
    setter.add_argument("--selector", required=True,
                        help="event: an event type or *; blob: event_type:<t>, media_type:<type/subtype> or *; "
                             "subject: *. The most specific selector in force wins")
    setter.add_argument("--days", required=True, type=_days, metavar="N|none",
                        help="days records are kept after the log received them; none removes the policy")
    setter.add_argument("--reason", required=True, help="why (the regulation, the record class): kept in the entry")
    lister = common(policy_actions.add_parser("list", help="the policies in force", epilog=epilog))
    lister.add_argument("--tenant", help="only this tenant's")
    json_option(lister)
    run = common(actions.add_parser("run", help="run retention now; prints counts and the run's entry index",
                                    epilog=epilog))
    run.add_argument("--tenant", help="only this tenant (default: every tenant with a policy)")
    json_option(run)
    runs = common(actions.add_parser("runs", help="the retention runs, oldest first", epilog=epilog))
    runs.add_argument("--tenant", help="only this tenant's")
    json_option(runs)
