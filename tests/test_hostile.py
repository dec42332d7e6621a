"""Hostile and broken clients (issue 16): a regression corpus run against a real app on SQLite.

Every case is a request a fuzzer or an attacker sent that once got a 500 (or its kin, found by looking at every
route's parsing), named for what it attacks, with the status and the problem `field` it must get now. The requests
go out as raw bytes over a socket, so that header bytes which are not UTF-8 reach the server as they were sent
(an HTTP client library would refuse or re-encode them). After the corpus, the log must still verify and hold
exactly what it held before: nothing accepted was lost, nothing hostile was accepted.

The first 23 cases of the issue: JSON nested 100,000 deep on POST /api/v1/entries and /api/v1/events
(RecursionError), an events `cursor` decoding to an integer of 2^63 or more (OverflowError from SQLite), and bytes
that are not UTF-8 after `Bearer` on the admin routes (UnicodeEncodeError).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import NamedTuple

import pytest

from api.server.app import create_app
from api.server.audit_routes import AUDIT
from api.server.state import LOG
from log.audit.admin import ADMIN_TOKEN_ENV
from log.checkpoint import open_checkpoint
from log.note_keys import parse_verifier_key
from tests.conftest import TEST_ORIGIN, exchange_raw, serve_app
from tests.reference_tree import mth

ADMIN_TOKEN = "hostile-corpus-admin-token-0123456789"
DEEP = 100_000
JSON_CT = (b"Content-Type", b"application/json")
ADMIN = (b"Authorization", b"Bearer " + ADMIN_TOKEN.encode())
BLOB = "ab" * 32


class Case(NamedTuple):
    name: str
    method: str
    target: bytes  # the request target as sent: path and query, percent-encoded or raw
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    status: int
    field: str | None  # the problem's `field`; None: the problem names none (an HTTP-level refusal)


def _cursor(text: str) -> bytes:
    return base64.urlsafe_b64encode(text.encode()).decode().encode()


def _nested(open_: bytes, close: bytes, depth: int, inner: bytes = b"") -> bytes:
    return open_ * depth + inner + close * depth


def _event(**extra) -> dict:
    return {"schema": "auditlog.event/v1", "event_id": "ev-1", "trace_id": "tr-1", "run_id": "run-1",
            "timestamp": "2026-11-18T07:06:40.123Z", "tenant": "acme", "actor": {"type": "agent", "id": "a-1"},
            "event_type": "tool_call", **extra}


def _envelope(event: dict) -> bytes:
    return json.dumps({"producer": "gateway-1", "key_id": "0123456789abcdef",
                       "signature": base64.b64encode(bytes(64)).decode(), "event": event}).encode()


def _deep_extensions(depth: int) -> bytes:
    """An envelope whose event is well-formed but for `extensions` nested `depth` deep."""
    text = _envelope(_event(extensions={"x": "HOLE"}))
    return text.replace(b'"HOLE"', _nested(b'{"a":', b"}", depth, b"1"))


CASES = [
    # --- the three: deep JSON, an overflowing cursor, non-UTF-8 bearer tokens -------------------------
    Case("entries: arrays nested 100,000 deep", "POST", b"/api/v1/entries", (JSON_CT,),
         _nested(b"[", b"]", DEEP), 400, "body"),
    Case("entries: objects nested 100,000 deep", "POST", b"/api/v1/entries", (JSON_CT,),
         _nested(b'{"a":', b"}", DEEP, b"1"), 400, "body"),
    Case("entries: deep nesting inside the entries list", "POST", b"/api/v1/entries", (JSON_CT,),
         b'{"entries":' + _nested(b"[", b"]", DEEP) + b"}", 400, "body"),
    Case("events: arrays nested 100,000 deep", "POST", b"/api/v1/events", (JSON_CT,),
         _nested(b"[", b"]", DEEP), 422, "$"),
    Case("events: objects nested 100,000 deep", "POST", b"/api/v1/events", (JSON_CT,),
         _nested(b'{"a":', b"}", DEEP, b"1"), 422, "$"),
    Case("events: a batch whose events list is nested 100,000 deep", "POST", b"/api/v1/events", (JSON_CT,),
         b'{"events":' + _nested(b"[", b"]", DEEP) + b"}", 422, "$"),
    Case("events: extensions nested 900 deep (parses, but could not be served again)", "POST", b"/api/v1/events",
         (JSON_CT,), _deep_extensions(900), 422, "$.event.extensions"),
    Case("events: extensions nested 63 deep (the event 64, the envelope 65: over the limit of 64)", "POST",
         b"/api/v1/events", (JSON_CT,), _deep_extensions(62), 422, "$.event.extensions"),
    Case("events: cursor of 2^63", "GET", b"/api/v1/events?cursor=" + _cursor(str(2**63)), (), b"", 400, "cursor"),
    Case("events: cursor of 10^30", "GET", b"/api/v1/events?cursor=" + _cursor(str(10**30)), (), b"", 400,
         "cursor"),
    Case("events: cursor below -2^63", "GET", b"/api/v1/events?cursor=" + _cursor(str(-2**63 - 1)), (), b"", 400,
         "cursor"),
    Case("events: negative cursor", "GET", b"/api/v1/events?cursor=" + _cursor("-1"), (), b"", 400, "cursor"),
    Case("events: cursor with an underscore (int() takes 1_000)", "GET", b"/api/v1/events?cursor=" + _cursor("1_000"),
         (), b"", 400, "cursor"),
    Case("events: cursor with a space (int() strips it)", "GET", b"/api/v1/events?cursor=" + _cursor(" 1"), (), b"",
         400, "cursor"),
    Case("events: cursor of Arabic-Indic digits (int() takes them)", "GET",
         b"/api/v1/events?cursor=" + _cursor("\u0661\u0662"), (), b"", 400, "cursor"),
    Case("events: cursor that is not base64", "GET", b"/api/v1/events?cursor=%E2%82%AC", (), b"", 400, "cursor"),
    Case("events: cursor of bytes that are not ASCII", "GET", b"/api/v1/events?cursor=__4", (), b"", 400, "cursor"),
    Case("producers: bearer token of bytes that are not UTF-8", "POST", b"/api/v1/producers",
         ((b"Authorization", b"Bearer \xff\xfe\x80"), JSON_CT), b"{}", 401, "Authorization"),
    Case("producers: the right token followed by a byte that is not UTF-8", "POST", b"/api/v1/producers",
         ((b"Authorization", ADMIN[1] + b"\xff"), JSON_CT), b"{}", 401, "Authorization"),
    Case("producers: bearer token of UTF-8 beyond ASCII", "POST", b"/api/v1/producers",
         ((b"Authorization", "Bearer \u00e9\u00e9".encode()), JSON_CT), b"{}", 401, "Authorization"),
    Case("keys: bearer token of bytes that are not UTF-8", "POST", b"/api/v1/producers/p/keys",
         ((b"Authorization", b"Bearer \xc3\x28"), JSON_CT), b"{}", 401, "Authorization"),
    Case("retire: bearer token of bytes that are not UTF-8", "POST", b"/api/v1/producers/p/keys/0123456789abcdef/retire",
         ((b"Authorization", b"Bearer \x80"), JSON_CT), b"{}", 401, "Authorization"),
    Case("revoke: bearer token of bytes that are not UTF-8", "POST", b"/api/v1/producers/p/keys/0123456789abcdef/revoke",
         ((b"Authorization", b"Bearer \xfe"), JSON_CT), b"{}", 401, "Authorization"),
    Case("blob delete: bearer token of bytes that are not UTF-8", "DELETE", b"/api/v1/blobs/" + BLOB.encode(),
         ((b"Authorization", b"Bearer \xff"),), b"", 401, "Authorization"),
    # --- kin: other bodies ----------------------------------------------------------------------------------
    Case("entries: a member given twice", "POST", b"/api/v1/entries", (JSON_CT,),
         b'{"entries":["AA=="],"entries":["AQ=="]}', 400, "body"),
    Case("entries: a body that is not UTF-8", "POST", b"/api/v1/entries", (JSON_CT,), b"\xff\xfe{}", 400, "body"),
    Case("entries: an empty JSON body", "POST", b"/api/v1/entries", (JSON_CT,), b"", 400, "body"),
    Case("entries: NaN for the list", "POST", b"/api/v1/entries", (JSON_CT,), b'{"entries":NaN}', 400, "entries"),
    Case("entries: Infinity for an entry", "POST", b"/api/v1/entries", (JSON_CT,), b'{"entries":[Infinity]}', 400,
         "entries[0]"),
    Case("entries: a lone surrogate for an entry", "POST", b"/api/v1/entries", (JSON_CT,),
         b'{"entries":["\\ud800"]}', 400, "entries[0]"),
    Case("entries: a 5,000-digit integer", "POST", b"/api/v1/entries", (JSON_CT,), b"1" * 5000, 400, "body"),
    Case("entries: a Content-Type aiohttp cannot parse (was taken as one raw entry)", "POST", b"/api/v1/entries",
         ((b"Content-Type", b"text"),), b'{"entries":["AA=="]}', 415, None),
    Case("entries: a Content-Type of bytes that are not UTF-8", "POST", b"/api/v1/entries",
         ((b"Content-Type", b"\xff\xfe"),), b"x", 415, None),
    Case("entries: a Content-Type on which aiohttp's parser raises IndexError", "POST", b"/api/v1/entries",
         ((b"Content-Type", b"0;0*"),), b"x", 415, None),
    Case("entries: an empty raw entry", "POST", b"/api/v1/entries", ((b"Content-Type", b"application/octet-stream"),),
         b"", 400, "body"),
    Case("events: a body that is not UTF-8", "POST", b"/api/v1/events", (JSON_CT,), b"\xff\xfe", 422, "$"),
    Case("events: a member given twice", "POST", b"/api/v1/events", (JSON_CT,), b'{"events":[],"events":[]}', 422,
         "$"),
    Case("events: a lone surrogate as a member name", "POST", b"/api/v1/events", (JSON_CT,), b'{"\\ud800":1}', 422,
         "$.\ud800"),
    Case("events: a number of a million digits' exponent", "POST", b"/api/v1/events", (JSON_CT,), b"1e999999", 422,
         "$"),
    Case("events: NaN", "POST", b"/api/v1/events", (JSON_CT,), b"NaN", 422, "$"),
    Case("producers: admin JSON nested 30,000 deep", "POST", b"/api/v1/producers", (ADMIN, JSON_CT),
         _nested(b"[", b"]", 30_000), 400, "$"),
    Case("producers: an admin body that is not UTF-8", "POST", b"/api/v1/producers", (ADMIN, JSON_CT), b"\xff{}",
         400, "$"),
    Case("producers: NaN for the producer", "POST", b"/api/v1/producers", (ADMIN, JSON_CT),
         b'{"producer":NaN,"tenants":["t"]}', 400, "producer"),
    Case("entries: an Expect of bytes that are not UTF-8 (aiohttp's own 417 failed: a bare 500)", "POST",
         b"/api/v1/entries", ((b"Expect", b"\xff"), (b"Content-Type", b"application/octet-stream")), b"x", 417,
         "Expect"),
    Case("events: an Expect other than 100-continue", "POST", b"/api/v1/events", ((b"Expect", b"teapot"), JSON_CT),
         b"{}", 417, "Expect"),
    Case("entries: gzip Content-Encoding over bytes that are not gzip", "POST", b"/api/v1/entries",
         ((b"Content-Encoding", b"gzip"), JSON_CT), b'{"entries":["AA=="]}', 400, "body"),
    # --- kin: query and path values --------------------------------------------------------------------------
    Case("events: limit beyond 2^63", "GET", b"/api/v1/events?limit=99999999999999999999999", (), b"", 400, "limit"),
    Case("events: limit with an underscore", "GET", b"/api/v1/events?limit=1_0", (), b"", 400, "limit"),
    Case("events: negative limit", "GET", b"/api/v1/events?limit=-1", (), b"", 400, "limit"),
    Case("events: NUL in a filter (PostgreSQL refuses it in text)", "GET", b"/api/v1/events?tenant=%00", (), b"",
         400, "tenant"),
    Case("events: NUL in a context filter's value", "GET", b"/api/v1/events?context.case_id=a%00", (), b"", 400,
         "context.case_id"),
    Case("timeline: NUL in the run id", "GET", b"/api/v1/runs/%00/timeline", (), b"", 400, "run_id"),
    Case("evidence: NUL in the tenant", "GET", b"/api/v1/runs/r/evidence?tenant=%00", (), b"", 400, "tenant"),
    Case("entry: index of 2^64", "GET", b"/api/v1/entries/18446744073709551616", (), b"", 400, "index"),
    Case("entry: index of fullwidth digits", "GET", b"/api/v1/entries/%EF%BC%91", (), b"", 400, "index"),
    Case("inclusion: tree_size of 2^63", "GET", b"/api/v1/proof/inclusion?index=0&tree_size=9223372036854775808", (),
         b"", 400, "tree_size"),
    Case("inclusion: negative index", "GET", b"/api/v1/proof/inclusion?index=-1", (), b"", 400, "index"),
    Case("inclusion: leaf_hash of a percent-encoded surrogate", "GET", b"/api/v1/proof/inclusion?leaf_hash=%ED%A0%80",
         (), b"", 400, "leaf_hash"),
    Case("consistency: first of 1e3", "GET", b"/api/v1/proof/consistency?first=1e3", (), b"", 400, "first"),
    Case("consistency: second beyond 2^63", "GET", b"/api/v1/proof/consistency?first=1&second=99999999999999999999",
         (), b"", 400, "second"),
    Case("timestamps: size beyond 2^63", "GET", b"/api/v1/timestamps/99999999999999999999", (), b"", 400, "size"),
    Case("tile: level beyond 2^63", "GET", b"/tile/99999999999999999999/000", (), b"", 400, "level"),
    Case("tile: index of eight groups", "GET", b"/tile/0/x999/x999/x999/x999/x999/x999/x999/001", (), b"", 400,
         "index"),
    Case("tile: index of Arabic-Indic digits", "GET", b"/tile/0/%D9%A0%D9%A0%D9%A0", (), b"", 400, "index"),
    Case("tile: partial width beyond 2^63", "GET", b"/tile/0/000.p/999999999999999999999", (), b"", 400, "width"),
    Case("bundle: partial width of 0", "GET", b"/tile/entries/000.p/0", (), b"", 400, "width"),
    Case("blob: a hash of uppercase hex", "GET", b"/api/v1/blobs/" + BLOB.upper().encode(), (), b"", 400, "sha256"),
    Case("blob: a path climbing out", "GET", b"/api/v1/blobs/..%2F..%2Fetc%2Fpasswd", (), b"", 400, "sha256"),
    Case("blob: a hash of a percent-encoded surrogate", "PUT", b"/api/v1/blobs/%ED%A0%80", (), b"x", 400, "sha256"),
]


async def raw_request(port: int, case: Case) -> tuple[int, dict[str, str], bytes]:
    """Send `case` as bytes on a new connection; (status, headers, body) of the answer."""
    lines = [b"%s %s HTTP/1.1" % (case.method.encode(), case.target), b"Host: 127.0.0.1", b"Connection: close"]
    headers = case.headers
    if not any(name.lower() == b"authorization" for name, _ in headers):
        headers = (*headers, ADMIN)  # the corpus is about what a request holds, sent with the right to send it
    lines += [name + b": " + value for name, value in headers]
    if case.body or case.method in ("POST", "PUT"):
        lines.append(b"Content-Length: %d" % len(case.body))
    return await exchange_raw(port, b"\r\n".join(lines) + b"\r\n\r\n" + case.body)


def test_the_cases_have_unique_names():
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("verify_processes", [0, 1], ids=["in-process", "verifier-child"])
def test_the_corpus_gets_its_statuses_and_problems_and_the_log_keeps_what_it_held(log_config, monkeypatch,
                                                                                 verify_processes):
    """Events bodies are checked in this process, or in a verifier child (log/audit/verifier.py), which must answer
    every hostile body too: a child that died on one would be restarted, and the body checked here instead."""
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN_TOKEN)
    entries = [b"held %d" % i for i in range(20)]

    async def scenario():
        app = create_app(log_config, verify_processes=verify_processes)
        async with serve_app(app) as url:
            port = int(url.rsplit(":", 1)[1])
            log = app[LOG]
            pool = app[AUDIT].verifier_pool
            if pool is not None:
                await pool.start()
                pids = pool.pids()
            await log.add_entries(entries)
            before = log.checkpoint
            failures = []
            for case in CASES:
                status, headers, body = await raw_request(port, case)
                problem = {}
                if headers.get("content-type", "").startswith("application/problem+json"):
                    problem = json.loads(body)
                if (status, problem.get("status"), problem.get("field")) != (case.status, case.status, case.field):
                    failures.append(f"{case.name}: got {status} {body[:200]!r}")
            assert not failures, "\n".join(failures)
            if pool is not None:
                assert pool.pids() == pids and pool.checked > 0  # the child answered, and is still the same one

            # Nothing hostile was accepted, nothing held was lost, and the log still verifies.
            after = log.checkpoint
            assert after.size == before.size == len(entries)
            held = [(await log.entry(i)).data for i in range(after.size)]
            assert held == entries
            checkpoint = open_checkpoint(after.note, parse_verifier_key(log.verifier_key), TEST_ORIGIN)[0]
            assert checkpoint.root_hash == mth(held)

    asyncio.run(scenario())


@pytest.mark.parametrize("token", ["bad token with spaces 0123", "caf\u00e9-0123456789abcdef", "\udcff" * 20])
def test_an_admin_token_a_header_cannot_carry_is_refused_at_start(tmp_path, token):
    from log.audit.admin import load_or_create_admin_token

    with pytest.raises(ValueError, match="visible ASCII"):
        load_or_create_admin_token(tmp_path, token)
