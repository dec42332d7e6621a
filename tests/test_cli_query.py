"""`auditlog events` and `auditlog get` against a real audit server (tests/e2e/test_audit.py's in-process server in a
thread, SQLite, signed events from registered producers): filters narrow as GET /api/v1/events does, --all follows
the cursor, the --json shapes, every listed event and every fetched entry verified (a byte changed in the database
behind the server is exit 1 naming it), and the exit statuses of an unreachable log, a bad flag and an index past
the tree."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import sqlite3
import time

import aiohttp
import pytest
from aiohttp import web

from api.cli.main import main
from api.client.log_client import event_mismatch
from log.audit.records import parse_entry
from log.hashing import hash_leaf
from tests.e2e.test_audit import Producer, Server, _register
from tests.credentials import ADMIN
from tests.test_cli import run_cli

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "data").start()
    yield server
    server.stop()


async def _post(session, url: str, path: str, **kwargs) -> dict:
    async with session.post(url + path, **kwargs) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


def _registered(url: str, *producers: Producer) -> str:
    """Register the producers and their keys (valid from now on); the log's verifier key."""
    async def go() -> str:
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            for producer in producers:
                await _register(session, url, producer)
            async with session.get(f"{url}/api/v1/log") as resp:
                return (await resp.json())["verifier_key"]

    return asyncio.run(go())


def _log(url: str, events_of: dict[Producer, list[dict]], *, padding: int = 0) -> None:
    """Log the producers' events (one batch each, in the order given), then `padding` plain entries."""
    async def go() -> None:
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            for producer, events in events_of.items():
                body = {"events": [producer.envelope(event) for event in events]}
                answer = await _post(session, url, "/api/v1/events", json=body)
                assert answer["accepted"] == len(events), answer
            if padding:
                entries = [base64.b64encode(f"padding {i}".encode()).decode() for i in range(padding)]
                await _post(session, url, "/api/v1/entries", json={"entries": entries})

    asyncio.run(go())


def _api_ids(url: str, params: dict) -> list[str]:
    """The event ids GET /api/v1/events answers for `params`, all pages."""
    async def go() -> list[str]:
        ids, cursor = [], None
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            while True:
                query = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
                async with session.get(f"{url}/api/v1/events", params=query) as resp:
                    page = await resp.json()
                    assert resp.status == 200, page
                ids += [e["event"]["event_id"] for e in page["events"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    return ids

    return asyncio.run(go())


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def populated(server):
    """Two producers of one tenant, a third of another; runs, types, cases and actors to filter on."""
    agent, reviewer, other = Producer("agent-1", "acme"), Producer("reviewer", "acme"), Producer("agent-9", "globex")
    vkey = _registered(server.url, agent, reviewer, other)
    events = {agent: [], reviewer: [], other: []}
    for i in range(6):
        intent = agent.event(run_id=f"run-{i % 2}", event_type="intent")
        events[agent] += [intent, agent.event(run_id=f"run-{i % 2}", parent=intent["event_id"],
                                              event_type="model_call")]
    events[reviewer] += [reviewer.event(run_id="run-0", event_type="human_review",
                                        context={"case_id": "case-run-0", "alert_id": "alert-7"})]
    events[other] += [other.event(run_id="run-0", event_type="intent")]
    _log(server.url, events)
    return server.url, vkey, events


# (CLI flags, the API's parameters they mean)
FILTERS = [
    (["--run", "run-0"], {"run_id": "run-0"}),
    (["--trace", "tr-run-1"], {"trace_id": "tr-run-1"}),
    (["--tenant", "globex"], {"tenant": "globex"}),
    (["--actor", "reviewer"], {"actor_id": "reviewer"}),
    (["--actor-type", "agent", "--tenant", "acme"], {"actor_type": "agent", "tenant": "acme"}),
    (["--type", "model_call", "--run", "run-1"], {"event_type": "model_call", "run_id": "run-1"}),
    (["--producer", "reviewer"], {"producer": "reviewer"}),
    (["--case-id", "case-run-1"], {"case_id": "case-run-1"}),
    (["--alert", "alert-7"], {"alert_id": "alert-7"}),
    (["--context", "alert_id=alert-7", "--type", "human_review"], {"context.alert_id": "alert-7",
                                                                   "event_type": "human_review"}),
    (["--type", "intent", "--tenant", "acme", "--run", "run-0"], {"event_type": "intent", "tenant": "acme",
                                                                  "run_id": "run-0"}),
]


def test_events_filters_narrow_as_the_api_does(populated, capsys):
    url, vkey, events = populated
    everything = [e["event_id"] for batch in events.values() for e in batch]
    code, out, _ = run_cli(capsys, "events", "--server", url, "--log-key", vkey, "--json", "--limit", "1000")
    assert code == 0 and [line["event"]["event_id"] for line in _lines(out)] == everything
    for flags, params in FILTERS:
        code, out, err = run_cli(capsys, "events", *flags, "--server", url, "--log-key", vkey, "--json")
        assert code == 0, err
        listed = [line["event"]["event_id"] for line in _lines(out)]
        assert listed == _api_ids(url, params), flags
        assert 0 < len(listed) < len(everything), flags  # each filter narrows, to something
        for line in _lines(out):
            parsed = parse_entry(_entry(line))[1]
            assert event_mismatch(parsed, params) is None, flags


def _entry(line: dict) -> bytes:
    """The log entry a --json line's envelope is (its canonical bytes)."""
    from log.audit.records import parse_envelope

    return parse_envelope({k: line[k] for k in ("producer", "key_id", "signature", "event")}).entry_bytes()


def test_events_time_range(server, capsys):
    from log.audit.schema import format_timestamp_ms

    agent = Producer("agent-1", "acme")
    # Keys are valid from their registration on, and the log takes events up to 5 minutes ahead: stamps a minute
    # apart from a minute from now.
    base = (int(time.time()) // 60 + 1) * 60_000
    stamps = [format_timestamp_ms(base + i * 60_000) for i in range(3)]
    vkey = _registered(server.url, agent)
    _log(server.url, {agent: [agent.event(timestamp=t) for t in stamps]})

    def times(*flags):
        code, out, err = run_cli(capsys, "events", *flags, "--server", server.url, "--log-key", vkey, "--json")
        assert code == 0, err
        return [line["event"]["timestamp"] for line in _lines(out)]

    assert times("--since", stamps[1].replace(".000Z", "Z")) == stamps[1:]  # inclusive
    assert times("--until", stamps[1]) == stamps[:1]  # exclusive
    shifted = datetime.datetime.fromisoformat(stamps[2]).astimezone(datetime.timezone(datetime.timedelta(hours=6)))
    assert times("--since", stamps[0], "--until", shifted.isoformat()) == stamps[:2]  # an offset
    assert times("--since", "1d") == stamps  # a duration ago
    assert times("--until", "2026-01-01") == []  # a date: its midnight UTC


def test_events_all_follows_the_cursor_across_pages(server, capsys):
    agent = Producer("agent-1", "acme")
    vkey = _registered(server.url, agent)
    logged = [agent.event(run_id=f"run-{i % 3}") for i in range(23)]
    _log(server.url, {agent: logged})
    common = ["--server", server.url, "--log-key", vkey]

    code, out, err = run_cli(capsys, "events", "--limit", "4", "--all", "--json", *common)
    assert code == 0, err
    lines = _lines(out)
    assert [line["event"]["event_id"] for line in lines] == [e["event_id"] for e in logged]  # 6 pages, in order
    assert [line["index"] for line in lines] == sorted({line["index"] for line in lines})

    code, out, err = run_cli(capsys, "events", "--run", "run-1", "--limit", "2", "--all", "--json", *common)
    assert [line["event"]["event_id"] for line in _lines(out)] == [e["event_id"] for e in logged[1::3]]

    # Without --all: one page, and a note with the cursor of the next; --cursor continues from there.
    code, out, err = run_cli(capsys, "events", "--limit", "4", "--json", *common)
    assert code == 0 and len(_lines(out)) == 4
    cursor = err.split("--cursor ")[1].split()[0]
    code, out, err = run_cli(capsys, "events", "--limit", "4", "--json", "--cursor", cursor, *common)
    assert [line["event"]["event_id"] for line in _lines(out)] == [e["event_id"] for e in logged[4:8]]
    code, out, err = run_cli(capsys, "events", "--limit", "10", "--all", "--cursor", cursor, "--json", *common)
    assert [line["event"]["event_id"] for line in _lines(out)] == [e["event_id"] for e in logged[4:]]
    assert "more events follow" not in err


def test_events_json_and_table_output(populated, capsys):
    url, vkey, events = populated
    code, out, err = run_cli(capsys, "events", "--producer", "reviewer", "--server", url, "--log-key", vkey, "--json")
    assert code == 0 and err == ""
    (line,) = _lines(out)
    assert set(line) == {"index", "leaf_hash", "tree_size", "producer", "key_id", "signature", "event", "verified"}
    review = events[next(p for p in events if p.name == "reviewer")][0]
    assert line["event"] == review and line["producer"] == "reviewer" and line["verified"] is True
    assert base64.b64decode(line["leaf_hash"]) == hash_leaf(_entry(line))
    assert line["index"] < line["tree_size"]

    code, out, err = run_cli(capsys, "events", "--run", "run-1", "--server", url, "--log-key", vkey)
    assert code == 0
    head, table = out.split("\n", 1)
    assert head.startswith("6 events, each verified") and "audit.e2e/log" in head
    assert table.splitlines()[0].split()[:5] == ["#", "index", "time", "(UTC)", "type"]
    assert len(table.splitlines()) == 2 + 6 and table.count("model_call") == 3

    # None found: a line saying so, exit 0; with --json nothing at all.
    code, out, err = run_cli(capsys, "events", "--run", "no-such-run", "--server", url, "--log-key", vkey)
    assert code == 0 and out == "no events match run_id=no-such-run\n"
    code, out, err = run_cli(capsys, "events", "--run", "no-such-run", "--server", url, "--log-key", vkey, "--json")
    assert code == 0 and out == "" and err == ""


def test_get_verifies_and_prints_an_entry(populated, tmp_path, capsys):
    url, vkey, events = populated
    first_event = events[next(iter(events))][0]
    code, out, err = run_cli(capsys, "events", "--limit", "1", "--server", url, "--log-key", vkey, "--json")
    index = _lines(out)[0]["index"]

    code, out, err = run_cli(capsys, "get", str(index), "--server", url, "--log-key", vkey, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"index", "tree_size", "leaf_hash", "entry", "verified", "producer", "key_id", "event"}
    entry = base64.b64decode(document["entry"])
    assert document["verified"] is True and document["index"] == index and document["producer"] == "agent-1"
    assert document["event"] == first_event and base64.b64decode(document["leaf_hash"]) == hash_leaf(entry)

    code, out, err = run_cli(capsys, "get", str(index), "--server", url, "--log-key", vkey)
    assert code == 0 and json.loads(out) == first_event  # the event, pretty
    assert f"entry {index} (" in err and "is included in checkpoint audit.e2e/log" in err

    raw = tmp_path / "entry.bin"
    code, out, err = run_cli(capsys, "get", "0", "--server", url, "--log-key", vkey, "--out", str(raw))
    assert code == 0 and out == "" and parse_entry(raw.read_bytes())[0] == "registry-change"
    code, out, err = run_cli(capsys, "get", "0", "--server", url, "--log-key", vkey, "--json")
    assert "event" not in json.loads(out) and base64.b64decode(json.loads(out)["entry"]) == raw.read_bytes()


def test_get_a_plain_entry_prints_its_bytes(server, capsysbinary):
    vkey = _registered(server.url)
    _log(server.url, {}, padding=3)
    assert main(["get", "2", "--server", server.url, "--log-key", vkey]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == b"padding 2"


def test_get_past_the_end_is_a_usage_error_naming_the_size(server, capsys):
    vkey = _registered(server.url)
    _log(server.url, {}, padding=5)
    code, out, err = run_cli(capsys, "get", "5", "--server", server.url, "--log-key", vkey)
    assert code == 2 and out == ""
    assert err.startswith("auditlog get: entry 5 is not in the log") and "size 5" in err
    assert len(err.splitlines()) == 1


def test_a_byte_changed_in_the_database_is_exit_1_naming_the_event(tmp_path, capsys):
    """An event's stored entry rewritten behind the server (as someone with write access to the database could):
    the server still serves it (it is older than the newest tiles its start-up check re-hashes), and both commands
    refuse it, naming the event and its index."""
    data_dir = tmp_path / "data"
    server = Server(data_dir).start()
    agent = Producer("agent-1", "acme")
    try:
        vkey = _registered(server.url, agent)
        logged = [agent.event(run_id="run-t") for _ in range(5)]
        _log(server.url, {agent: logged}, padding=600)
        code, out, err = run_cli(capsys, "events", "--run", "run-t", "--server", server.url, "--log-key", vkey,
                                 "--json")
        assert code == 0, err
        target = _lines(out)[3]
    finally:
        server.stop()
    index = target["index"]
    with sqlite3.connect(data_dir / "auditlog.db") as db:
        (data,) = db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        changed = bytes(data).replace(b'"case-run-t"', b'"casE-run-t"')  # still a canonical, valid event
        assert changed != data
        db.execute("UPDATE entries SET data = ? WHERE idx = ?", (changed, index))
    server = Server(data_dir).start()
    try:
        common = ["--server", server.url, "--log-key", vkey]
        name = f"event '{target['event']['event_id']}' at index {index}"
        for flags, printed in ((["--run", "run-t"], 0), (["--case-id", "case-run-t"], 0),
                               (["--all", "--limit", "2"], 2)):  # pages [0, 1] then [2, 3]: the second fails
            code, out, err = run_cli(capsys, "events", *flags, *common, "--json")
            assert code == 1, (flags, err)
            assert err.startswith(f"auditlog events: verification failed: {name}: "), err
            assert "does not verify" in err and len(err.splitlines()) == 1
            assert [line["event"] for line in _lines(out)] == logged[:printed]  # only what was verified
        code, out, err = run_cli(capsys, "events", "--run", "run-t", *common)
        assert code == 1 and out == ""  # the table is printed only once every event verified
        code, out, err = run_cli(capsys, "get", str(index), *common)
        assert code == 1 and out == "" and f"entry {index}" in err and "verification failed" in err
        code, out, err = run_cli(capsys, "get", str(index + 1), *common)
        assert code == 0  # its neighbour is untouched
    finally:
        server.stop()


def _listing_proxy(live_server, upstream: str, rewrite, *, ignore_filters: bool = False) -> str:
    """A server in front of `upstream` that passes everything through but rewrites GET /api/v1/events' answers
    (and, with ignore_filters, asks upstream for every event whatever the filters): a log that lies in its listing
    while its tree is sound."""
    async def forward(request: web.Request) -> web.Response:
        path = request.path_qs
        if ignore_filters and request.path == "/api/v1/events":
            path = request.path
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            async with session.request(request.method, upstream + path, headers={
                    k: v for k, v in request.headers.items() if k.lower() in ("accept", "content-type")},
                    data=await request.read()) as resp:
                body, status, content_type = await resp.read(), resp.status, resp.content_type
        if request.path == "/api/v1/events" and status == 200:
            body = json.dumps(rewrite(json.loads(body), request.query)).encode()
        return web.Response(body=body, status=status, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", forward)
    return live_server(app)


def test_a_listing_outside_the_filter_or_unlike_its_entry_is_exit_1(populated, live_server, capsys):
    url, vkey, events = populated

    unfiltered = _listing_proxy(live_server, url, lambda page, query: page, ignore_filters=True)
    code, out, err = run_cli(capsys, "events", "--run", "run-0", "--server", unfiltered, "--log-key", vkey)
    assert code == 1 and "outside the filter run_id=run-0" in err

    def relabel(page, query):  # shows an event other than the one its entry holds
        for item in page["events"]:
            if item["event"]["event_type"] == "model_call":
                item["event"]["event_type"] = "approval"
        return page

    code, out, err = run_cli(capsys, "events", "--server", _listing_proxy(live_server, url, relabel),
                             "--log-key", vkey)
    assert code == 1 and "is not the one its entry holds" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_log_is_exit_3(tmp_path, capsys):
    from log.note_keys import generate_signer_key

    vkey = generate_signer_key("down.example/log")[1]
    down = f"http://127.0.0.1:{_closed_port()}"
    for argv in (["events", "--run", "r"], ["events", "--all", "--json"], ["get", "0"]):
        code, out, err = run_cli(capsys, *argv, "--server", down, "--log-key", vkey)
        assert code == 3, (argv, err)
        assert out == "" and len(err.splitlines()) == 1 and down in err


@pytest.mark.parametrize("argv, says", [
    (["events", "--limit", "0"], "argument --limit: '0' must be at least 1"),
    (["events", "--limit", "1001"], "more than the log's largest page, 1000"),
    (["events", "--since", "yesterday"], "argument --since: 'yesterday' is neither an RFC 3339 time"),
    (["events", "--until", "2026-01-01T00:00:00"], "has no time zone"),
    (["events", "--context", "case_id"], "is not NAME=VALUE"),
    (["events", "--nope"], "auditlog events: unrecognized arguments: --nope"),
    (["events", "--run", "--tenant", "t"], "argument --run/--run-id: expected one argument"),
    (["events", "--server", "127.0.0.1:1"], "argument --server/--url: '127.0.0.1:1' is not an http:// or https://"),
    (["get"], "auditlog get: the following arguments are required: INDEX"),
    (["get", "-1"], "argument INDEX: '-1' is not a non-negative decimal integer"),
    (["get", "abc"], "argument INDEX: 'abc' is not a non-negative decimal integer"),
])
def test_a_bad_flag_is_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_bad_local_input_is_exit_2_before_any_download(tmp_path, capsys):
    from log.note_keys import generate_signer_key

    down = f"http://127.0.0.1:{_closed_port()}"  # never reached: local inputs are checked first
    for argv in (["events"], ["get", "0"]):
        code, out, err = run_cli(capsys, *argv, "--server", down, "--log-key", str(tmp_path / "missing.vkey"))
        assert code == 2 and "missing.vkey" in err
    vkey = generate_signer_key("down.example/log")[1]
    code, out, err = run_cli(capsys, "get", "0", "--out", str(tmp_path / "no" / "entry.bin"), "--server", down,
                             "--log-key", vkey)
    assert code == 2 and "no such directory" in err
