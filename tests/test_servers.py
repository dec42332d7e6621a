"""Clients given several servers of one log (api/client/servers.py): LogClient, the blocking transport the Recorder
and the CLI's admin commands use, and the CLI's --server / AUDITLOG_SERVER lists.

The servers are real, on loopback ports: a port nothing listens on (dead), an aiohttp app that answers every request
503 with Retry-After (busy), one that reads a request to its last byte and closes the connection without answering
(dropper: the answer of a request that was sent is lost), and a real log. What is held: a client moves past the dead
and the busy one to the good one, and stays with it; a plain entry POST whose answer was lost, or that was answered
503, is sent to no other server (nothing may be logged twice), while a read or an audit event (idempotent) moves on;
every server down is one Unavailable naming each and why (exit 3 in the CLI). The Recorder's outbox with several
servers is in tests/test_recorder_outbox.py; the CLI contract rows with a dead and a good server in
tests/test_cli_contract.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.server
import socket
import threading
import time
import urllib.request

import pytest
from aiohttp import web

from api.cli.main import main
from api.client.log_client import LogClient
from api.client.servers import AnswerLost, ServerList, ServersUnavailable, parse_servers, retry_after_seconds
from api.server.app import create_app
from log.errors import InvalidInput, Unavailable
from log.keys import read_signer_key
from log.note_keys import generate_signer_key
from tests.conftest import fill_log
from tests.credentials import ADMIN_TOKEN

OCTETS = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {ADMIN_TOKEN}"}


def dead_url() -> str:
    """A loopback URL nothing listens on (a port bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def busy_app(seen: list[str], retry_after: str = "1") -> web.Application:
    """Every request answered 503 with Retry-After, as a server is while no sequencer is elected; `seen` gets each
    request's method and path."""
    async def unavailable(request: web.Request) -> web.Response:
        await request.read()
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"type": "urn:auditlog:problem:unavailable", "title": "Service unavailable",
                                  "status": 503, "detail": "no sequencer yet"}, status=503,
                                 content_type="application/problem+json", headers={"Retry-After": retry_after})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unavailable)
    return app


class Dropper(http.server.ThreadingHTTPServer):
    """Reads each request to the end of its body, records it, and closes the connection without a word: a server
    that died after the request reached it, whose answer the client never gets. With `upstream`, it first hands
    the request on to that log and throws its answer away: one that died after the write was carried out."""

    daemon_threads = True

    def __init__(self, upstream: str | None = None):
        self.upstream = upstream
        self.seen: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _DropHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _DropHandler(http.server.BaseHTTPRequestHandler):
    def _drop(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, body))
        if self.server.upstream is not None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
            request = urllib.request.Request(self.server.upstream + self.path, data=body or None,
                                             method=self.command, headers=headers)
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
        self.close_connection = True  # and no answer: the connection closes when this returns

    do_GET = do_POST = do_PUT = _drop

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dropper():
    server = Dropper()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def good(log_config, live_server):
    """A real log (empty) in a background thread: its URL and its verifier key."""
    url = live_server(create_app(log_config, admin_token=ADMIN_TOKEN))
    return url, read_signer_key(log_config.resolved_key_file()).verifier_key


# -- the list and the walk ------------------------------------------------------------------------------------------

def test_servers_are_one_url_a_comma_list_or_a_sequence_and_a_bad_one_is_named():
    assert parse_servers("http://a:1/") == ("http://a:1",)
    assert parse_servers("http://a:1, https://b/log/,http://a:1") == ("http://a:1", "https://b/log")
    assert parse_servers(["http://a:1,http://b:2", "http://c:3"]) == ("http://a:1", "http://b:2", "http://c:3")
    for bad, named in (("http://a:1,htp://b", "'htp://b'"), (["http://a:1", "b.example:80"], "'b.example:80'"),
                       ("http://a:1,http://c:x", "'http://c:x'"), ("http://a:1?x=1", "'http://a:1?x=1'")):
        with pytest.raises(InvalidInput) as caught:
            parse_servers(bad)
        assert named in str(caught.value), caught.value
    with pytest.raises(InvalidInput, match="no server URL"):
        parse_servers(" , ")
    assert ServerList("http://a:1,http://b:2").current == "http://a:1"


def test_retry_after_is_seconds_or_an_http_date():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 90 < retry_after_seconds(later) <= 100


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_walk_moves_on_backs_off_honours_retry_after_within_its_bound_and_gives_up_naming_each():
    clock = FakeClock()
    servers = ServerList(["http://a:1", "http://b:2"], attempts=2, backoff=0.1, max_retry_after=2.0, deadline=60,
                         clock=clock)
    walk = servers.walk("GET", "/checkpoint?x=1", idempotent=True)
    assert walk.next() == ("http://a:1", 0.0)
    walk.failed("http://a:1", "connection refused")
    assert walk.next() == ("http://b:2", 0.0), "the next server at once"
    walk.failed("http://b:2", "HTTP 503", retry_after=30)
    url, wait = walk.next()
    assert url == "http://a:1" and wait == pytest.approx(0.1), "a waits out its back-off, b its Retry-After"
    clock.now += wait
    walk.failed("http://a:1", "connection refused")
    url, wait = walk.next()
    assert url == "http://b:2" and wait == pytest.approx(1.9), "Retry-After 30 honoured up to the bound, 2 s"
    clock.now += wait
    walk.failed("http://b:2", "HTTP 503: draining")
    assert walk.next() is None, "each server had its 2 attempts"
    error = walk.unavailable()
    assert isinstance(error, Unavailable) and isinstance(error, ServersUnavailable)
    assert str(error) == ("GET /checkpoint: no server could answer: http://a:1: connection refused (2 attempts); "
                          "http://b:2: HTTP 503: draining (2 attempts)")
    assert servers.current == "http://a:1", "no server answered: the preference stays"

    # A server that answered becomes the first one asked by the next request.
    walk = servers.walk("GET", "/checkpoint", idempotent=True)
    walk.failed("http://a:1", "connection refused")
    from api.client.servers import Answer
    assert walk.settle(Answer("http://b:2", 200, "text/plain", b"ok"))
    assert servers.current == "http://b:2" and servers.walk("GET", "/", idempotent=True).next() == ("http://b:2", 0)

    # The deadline: a wait that would pass it ends the walk.
    short = ServerList("http://a:1", attempts=5, max_retry_after=30, deadline=10, clock=clock)
    walk = short.walk("POST", "/api/v1/events", idempotent=True)
    walk.failed("http://a:1", "HTTP 503", retry_after=20)
    assert walk.next() is None
    assert str(walk.unavailable()) == "POST http://a:1/api/v1/events failed: HTTP 503"


# -- LogClient against real servers -------------------------------------------------------------------------------

def test_a_client_moves_past_a_dead_server_and_a_busy_one_to_a_good_one_and_stays_there(good, live_server):
    url, key = good
    seen: list[str] = []
    busy = live_server(busy_app(seen))
    dead = dead_url()

    async def scenario():
        async with LogClient([dead, busy, url], key, token=ADMIN_TOKEN) as client:
            assert (await client.checkpoint()).size == 0
            assert seen == ["GET /checkpoint"] and client.base_url == url
            receipt = await client.add(b"written once")  # sent to the server that answered last
            assert receipt.index == 0 and (await client.checkpoint()).size == 1
            assert seen == ["GET /checkpoint"], "the busy server is not asked again while the good one answers"
        # A plain entry POST may go on past a server that refused the connection: nothing reached it.
        async with LogClient(f"{dead},{url}", key, token=ADMIN_TOKEN) as client:
            assert (await client.add(b"after a dead server")).index == 1

    asyncio.run(scenario())


def test_every_server_down_is_unavailable_naming_each_and_why(live_server):
    seen: list[str] = []
    busy = live_server(busy_app(seen, retry_after="0"))
    dead = dead_url()

    async def scenario():
        async with LogClient([dead, busy], generate_signer_key("x.example/log")[1]) as client:
            await client.checkpoint()

    with pytest.raises(ServersUnavailable) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert message.startswith("GET /checkpoint: no server could answer: ")
    assert f"{dead}: connection refused (2 attempts)" in message
    assert f"{busy}: HTTP 503: no sequencer yet (Retry-After 0 s) (2 attempts)" in message
    assert seen == ["GET /checkpoint", "GET /checkpoint"]


def test_a_plain_entry_whose_answer_was_lost_or_refused_503_is_sent_to_no_other_server(good, dropper, live_server):
    url, key = good
    seen: list[str] = []
    busy = live_server(busy_app(seen))

    async def scenario():
        async with LogClient([dropper.url, url], key, token=ADMIN_TOKEN) as client:
            with pytest.raises(AnswerLost) as caught:
                await client.add(b"maybe logged")
            assert isinstance(caught.value, Unavailable) and caught.value.url == dropper.url
            assert "not sent again" in str(caught.value) and "--leaf-hash" in str(caught.value)
            assert dropper.seen == [("POST", "/api/v1/entries", b"maybe logged")]
            # A read is idempotent: past the dropper (its answer lost too) to the good server, which has nothing.
            assert (await client.checkpoint()).size == 0
            methods = [method for method, _, _ in dropper.seen]  # (aiohttp itself resends a GET once)
            assert methods[0] == "POST" and set(methods[1:]) == {"GET"}, methods
        async with LogClient([busy, url], key, token=ADMIN_TOKEN) as client:
            with pytest.raises(Unavailable, match="HTTP 503") as caught:
                await client.add(b"refused for now")
            assert not isinstance(caught.value, ServersUnavailable)
            assert seen == ["POST /api/v1/entries"]
            assert (await client.checkpoint()).size == 0, "the good server never got the entry"

    asyncio.run(scenario())


def test_the_blocking_transport_tells_a_connect_that_failed_from_an_answer_that_was_lost(good, dropper):
    url, _ = good
    dead = dead_url()
    # Nothing reached the dead server: even a request that is not idempotent goes on to the next.
    answer = ServerList([dead, url]).request("POST", "/api/v1/entries", idempotent=False, body=b"one",
                                             headers=OCTETS, timeout=10)
    assert answer.status == 200 and answer.url == url
    with pytest.raises(AnswerLost, match=f"POST /api/v1/entries to {dropper.url}: the request was sent"):
        ServerList([dropper.url, url]).request("POST", "/api/v1/entries", idempotent=False, body=b"two",
                                               headers=OCTETS, timeout=10)
    assert dropper.seen == [("POST", "/api/v1/entries", b"two")]
    servers = ServerList([dropper.url, url])
    read = servers.request("GET", "/checkpoint", idempotent=True, timeout=10)
    assert read.status == 200 and read.url == url and servers.current == url
    assert read.body.split(b"\n")[1] == b"1", "the good log holds the one entry sent to it, not the lost one"


# -- the CLI ------------------------------------------------------------------------------------------------------

def test_the_cli_takes_several_servers_from_flags_or_the_environment(log_config, live_server, tmp_path, capsys,
                                                                    monkeypatch):
    fill_log(log_config, 5)
    url = live_server(create_app(log_config, admin_token=ADMIN_TOKEN))
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    dead, other = dead_url(), dead_url()
    monkeypatch.delenv("AUDITLOG_SERVER", raising=False)
    monkeypatch.delenv("AUDITLOG_URL", raising=False)

    assert main(["verify", "--server", f"{dead},{url}", "--log-key", key, "--quiet"]) == 0, capsys.readouterr()
    assert "VALID" in capsys.readouterr().out
    entry = tmp_path / "entry.txt"
    entry.write_text("through the second server\n")
    assert main(["add", str(entry), "--server", dead, "--server", url, "--log-key", key,
                 "--token", ADMIN_TOKEN]) == 0
    assert '"index": 5' in capsys.readouterr().out
    assert main(["producer", "list", "--server", dead, "--server", url, "--token", ADMIN_TOKEN]) == 0
    capsys.readouterr()

    monkeypatch.setenv("AUDITLOG_SERVER", f"{dead},{url}")
    assert main(["proof", "--index", "5", "--log-key", key, "--token", ADMIN_TOKEN]) == 0
    assert '"verified": true' in capsys.readouterr().out

    # Every server down: exit 3, one line naming each and why.
    assert main(["verify", "--server", f"{dead},{other}", "--log-key", key, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert f"{dead}: connection refused" in err and f"{other}: connection refused" in err, err
    assert main(["token", "list", "--server", f"{dead},{other}", "--token", ADMIN_TOKEN]) == 3
    err = capsys.readouterr().err
    assert f"{dead}: connection refused" in err and f"{other}: connection refused" in err, err

    # A bad URL is a usage error naming it: in a flag, and in the variable.
    with pytest.raises(SystemExit) as raised:
        main(["verify", "--server", f"{url},htp://typo", "--log-key", key])
    assert raised.value.code == 2 and "'htp://typo' is not an http:// or https:// URL" in capsys.readouterr().err
    monkeypatch.setenv("AUDITLOG_SERVER", f"{url},127.0.0.1:1")
    assert main(["verify", "--log-key", key]) == 2
    err = capsys.readouterr().err
    assert "AUDITLOG_SERVER" in err and "'127.0.0.1:1'" in err and len(err.splitlines()) == 1, err
