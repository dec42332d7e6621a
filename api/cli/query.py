"""`auditlog events` (search the audit events) and `auditlog get` (one entry), both verified against the log.

    auditlog events [--run R] [--trace T] [--tenant T] [--actor ID] [--actor-type TYPE] [--type TYPE]
                    [--producer P] [--case-id C] [--alert-id A] [--customer-id C] [--context NAME=VALUE ...]
                    [--since WHEN] [--until WHEN] [--limit N] [--cursor C | --all] [--server URL] [--log-key VKEY]
                    [--json]
    auditlog get INDEX [--out FILE] [--server URL] [--log-key VKEY] [--json]

Nothing is printed on the log's word. `events` checks every listed event through the verifying client
(api/client/log_client.py, `LogClient.events`): the leaf hash of its entry bytes, computed here, proven included in
a checkpoint signed by the log key; the event shown the one those bytes hold; the event inside the filters asked
for. `get` proves entry INDEX included in the latest signed checkpoint before printing it. Failures are raised
(log/errors.py) and become a status and one line in api/cli/exits.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

from api.cli import inputs
from api.cli.exits import say
from api.cli.options import (duration, json_option, log_key_option, non_negative, positive, server_option,
                             token_option)
from log.errors import NotFound, ProofError, VerificationError

MAX_PAGE = 1000  # the log's largest page (log/audit/service.py)


def when(text: str) -> str:
    """A time bound for --since/--until: an RFC 3339 instant (`2026-12-07T18:00:00Z`, an offset, fractions, or a
    date for its midnight UTC), or a duration ago (`90s`, `15m`, `2h`, `1d`); as the API takes it, RFC 3339 UTC
    with milliseconds."""
    from log.audit.periods import parse_day_or_time
    from log.audit.schema import format_timestamp_ms
    from log.errors import InvalidInput

    value = text.strip()
    try:
        ago = duration(value)
    except argparse.ArgumentTypeError:
        ago = None
    if ago is not None:
        return format_timestamp_ms(int((time.time() - ago) * 1000))
    try:
        return format_timestamp_ms(parse_day_or_time(value, "time"))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or a duration ago (90s, 15m, 2h, 1d)") from None


def context_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. case_id=case-9)")
    return name, value


def page_size(text: str) -> int:
    value = positive(text)
    if value > MAX_PAGE:
        raise argparse.ArgumentTypeError(f"{text!r} is more than the log's largest page, {MAX_PAGE}")
    return value


# The flags of `events`: (flag, aliases, the API's parameter, help).
_FILTERS = (
    ("--run", ("--run-id",), "run_id", "this run"),
    ("--trace", ("--trace-id",), "trace_id", "this trace"),
    ("--tenant", (), "tenant", "this tenant"),
    ("--actor", ("--actor-id",), "actor_id", "the actor with this id"),
    ("--actor-type", (), "actor_type", "actors of this type (agent, human, service...)"),
    ("--type", ("--event-type",), "event_type", "this type (intent, model_call, tool_call, outcome...)"),
    ("--producer", (), "producer", "this producer, who signed them"),
    ("--case-id", ("--case",), "case_id", "this case, context.case_id"),
    ("--alert-id", ("--alert",), "alert_id", "this alert, context.alert_id"),
    ("--customer-id", ("--customer",), "customer_id", "this customer, context.customer_id"),
)


def _filters(args) -> dict[str, str]:
    """The API's query parameters for the flags given."""
    out = {param: getattr(args, param) for _, _, param, _ in _FILTERS if getattr(args, param) is not None}
    for name, value in args.context or []:
        out[name if name in ("case_id", "alert_id", "customer_id") else f"context.{name}"] = value
    for bound in ("since", "until"):
        if getattr(args, bound) is not None:
            out[bound] = getattr(args, bound)
    return out


def _line(event) -> dict:
    envelope = event.envelope
    return {"index": event.index, "leaf_hash": base64.b64encode(event.leaf_hash).decode(),
            "tree_size": event.tree_size, **envelope.to_json(), "verified": True}


def cmd_events(args) -> int:
    return asyncio.run(_events(args))


async def _events(args) -> int:
    from api.cli.audit import _table

    filters = _filters(args)
    shown: list = []
    cursor, seen_cursors, last_index, checkpoint = args.cursor, set(), -1, None
    async with inputs.log_client(args) as client:
        while True:
            page = await client.events(filters, cursor=cursor, limit=args.limit)
            if page.events and page.events[0].index <= last_index:
                raise VerificationError(f"the log's next page starts at index {page.events[0].index}, not after "
                                        f"index {last_index} where the previous page ended")
            if page.events:
                last_index = page.events[-1].index
                if checkpoint is not None and page.checkpoint.size > checkpoint.size:
                    # A later page was proven in a newer checkpoint: one history, or no listing.
                    await client.consistency(checkpoint.size, page.checkpoint.size)
                checkpoint = page.checkpoint
            if args.json:
                for event in page.events:  # every line printed was verified first
                    print(json.dumps(_line(event)), flush=True)
            else:
                shown += page.events
            cursor = page.next_cursor
            if cursor is None or not args.all:
                break
            if cursor in seen_cursors:
                raise VerificationError(f"the log answered the cursor {cursor!r} twice: its pages do not advance")
            seen_cursors.add(cursor)
    if not args.json:
        if not shown:
            asked = " ".join(f"{name}={value}" for name, value in filters.items())
            print(f"no events match{(' ' + asked) if asked else ''}" + (" after the cursor" if args.cursor else ""))
        else:
            print(f"{len(shown)} event{'s' if len(shown) > 1 else ''}, each verified: its entry's leaf hash "
                  f"included in the checkpoint "
                  f"{checkpoint.origin} size {checkpoint.size}, signed by the log")
            print(_table([{"index": e.index, "event": e.event, "producer": e.producer} for e in shown]))
    if cursor is not None and not args.all:
        say("events", f"note: more events follow: --cursor {cursor} for the next page, or --all for every page")
    return 0


def cmd_get(args) -> int:
    return asyncio.run(_get(args))


async def _get(args) -> int:
    from log.audit.errors import InvalidEvent
    from log.audit.records import parse_entry
    from log.hashing import hash_leaf

    index = args.index
    inputs.output_file(args.out, "--out")
    async with inputs.log_client(args) as client:
        checkpoint = await client.checkpoint()
        if index >= checkpoint.size:
            raise NotFound(f"entry {index} is not in the log: its latest signed checkpoint has size "
                           f"{checkpoint.size} (entries 0 to {checkpoint.size - 1})" if checkpoint.size else
                           f"entry {index} is not in the log: its latest signed checkpoint has size 0")
        entry = await client.entry(index, verify=False)
        leaf_hash = hash_leaf(entry)
        try:
            await client.inclusion_proof(index, checkpoint.size, leaf_hash=leaf_hash)
        except VerificationError as exc:
            raise ProofError(f"entry {index}: the bytes the log served are not the entry its signed checkpoint of "
                             f"size {checkpoint.size} holds there: {exc}") from None
    try:
        kind, record = parse_entry(entry)
    except InvalidEvent:
        kind, record = None, None
    envelope = record if kind == "envelope" else None
    if args.out:
        Path(args.out).write_bytes(entry)
    if args.json:
        document = {"index": index, "tree_size": checkpoint.size, "leaf_hash": base64.b64encode(leaf_hash).decode(),
                    "entry": base64.b64encode(entry).decode(), "verified": True}
        if envelope is not None:
            document.update(producer=envelope.producer, key_id=envelope.key_id, event=envelope.event)
        print(json.dumps(document, indent=1), flush=True)
    elif not args.out:
        if envelope is not None:
            print(json.dumps(envelope.event, indent=1, ensure_ascii=False), flush=True)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(entry)
            sys.stdout.buffer.flush()
    where = f", written to {args.out}" if args.out else ""
    print(f"entry {index} ({len(entry)} bytes{', an event of ' + envelope.producer if envelope else ''}) is "
          f"included in checkpoint {checkpoint.origin} size {checkpoint.size}, signed by the log{where}",
          file=sys.stderr, flush=True)
    return 0


def add_query_parsers(commands) -> None:
    """Add `events` and `get` to the `auditlog` command's subparsers."""
    p = commands.add_parser(
        "events", help="search the audit events, each verified against the log",
        description="List the audit events GET /api/v1/events finds, oldest first. Every event is checked before "
                    "it is printed: its entry's leaf hash, computed here, proven included in a checkpoint signed by "
                    "the log key; the event shown the one that entry holds; the event inside the filters. Output: "
                    "a table, or with --json one JSON object per line (JSON Lines: index, leaf_hash, tree_size, "
                    "producer, key_id, signature, event, verified), nothing when none match. Exit 1 names the "
                    "first event that fails a check.")
    for flag, aliases, param, text in _FILTERS:
        p.add_argument(flag, *aliases, dest=param, metavar=flag.lstrip("-").upper().replace("-", "_"),
                       help=f"only events of {text}; the API's {param}")
    p.add_argument("--context", action="append", type=context_pair, metavar="NAME=VALUE",
                   help="only events whose context has NAME=VALUE (repeatable; every one must hold)")
    p.add_argument("--since", type=when, metavar="WHEN",
                   help="only events timestamped at or after WHEN: RFC 3339 (2026-12-07T18:00:00Z) or a duration ago "
                        "(15m, 2h, 1d)")
    p.add_argument("--until", type=when, metavar="WHEN", help="only events timestamped before WHEN (as --since)")
    p.add_argument("--limit", type=page_size, default=100, metavar="N",
                   help=f"events per page (1 to {MAX_PAGE}; default %(default)s); without --all only the first page "
                        "is listed and a note gives the cursor of the next")
    p.add_argument("--cursor", metavar="CURSOR", help="start after a page: the cursor a previous listing noted")
    p.add_argument("--all", action="store_true",
                   help="follow the cursor through every page (from --cursor's, if given)")
    server_option(p)
    token_option(p)
    log_key_option(p)
    json_option(p)
    p.set_defaults(func=cmd_events)

    p = commands.add_parser(
        "get", help="fetch one entry, verified against the latest signed checkpoint",
        description="Fetch entry INDEX and prove it included in the log's latest signed checkpoint (its leaf hash "
                    "computed here). Prints the event, as JSON, when the entry is a signed audit event, else the "
                    "entry's bytes; with --json an object: index, tree_size, leaf_hash, entry (base64), verified, "
                    "and for an audit event producer, key_id and event. An index past the tree is exit 2.")
    p.add_argument("index", type=non_negative, metavar="INDEX", help="the entry's index in the log")
    p.add_argument("--out", metavar="FILE", help="write the entry's bytes to FILE (instead of stdout)")
    server_option(p)
    token_option(p)
    log_key_option(p)
    json_option(p)
    p.set_defaults(func=cmd_get)
