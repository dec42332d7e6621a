"""A producer killed between send and receipt, restarted: its outbox re-sends the envelope and it lands once.

Real processes throughout: `auditlog serve --port 0`, and a producer script (the SDK's Recorder with an outbox) that
this test writes and runs twice. Between them sits a TCP proxy (asyncio, in this process) that forwards bytes both
ways, except the log's answer to the first connection: the proxy keeps it, the producer waits for it, and is
SIGKILLed once all of it has arrived, so the event is logged and its producer never learned so. Started again on
the same outbox, the producer's `flush()` sends the same bytes and gets the original index, `duplicate=True`.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import aiohttp
from nacl.signing import SigningKey

from api.client.outbox import Outbox
from api.client.recorder import generate_key
from tests.e2e.test_audit_process import Producer, _admin_headers, _call, _register
from tests.processes import REPO

PRODUCER_SCRIPT = textwrap.dedent('''
    import base64, json, sys
    from api.client.recorder import Recorder
    command, url, outbox, seed, log_key = sys.argv[1:]
    recorder = Recorder(url, producer="restart-agent", signing_key=base64.b64decode(seed), log_key=log_key,
                        tenant="acme", actor={"type": "agent", "id": "restart-agent"}, outbox=outbox, retries=0,
                        timeout=120)
    if command == "record":
        recorder.record("tool_call", run_id="run-restart", event_id="ev-restart-1")
        print("acknowledged")  # never reached: the answer is held back until this process is killed
    else:
        print(json.dumps([{"index": a.index, "duplicate": a.duplicate, "event_id": a.event["event_id"]}
                          for a in recorder.flush()]))
''')


class HoldingProxy:
    """A TCP proxy to 127.0.0.1:`upstream`: forwards everything both ways, except that it keeps the answer to the
    first connection (`held` is set once the upstream closed it, all of it read). `requests` and `answers` are
    each connection's bytes."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.requests: list[bytearray] = []
        self.answers: list[bytearray] = []
        self.held = threading.Event()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert started.wait(10)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        n = len(self.requests)
        self.requests.append(bytearray())
        self.answers.append(bytearray())
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def up():
            while data := await client_r.read(65536):
                self.requests[n] += data
                upstream_w.write(data)
                await upstream_w.drain()

        async def down():
            while data := await upstream_r.read(65536):
                self.answers[n] += data
                if n:
                    client_w.write(data)
                    await client_w.drain()
            if n == 0:
                self.held.set()  # the whole answer is here, none of it forwarded
            else:
                client_w.close()

        await asyncio.gather(up(), down(), return_exceptions=True)
        upstream_w.close()
        client_w.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _http_body(raw: bytes) -> tuple[int, bytes]:
    """Status and body of one raw HTTP/1.1 message (Content-Length or chunked)."""
    sock = type("Raw", (), {"makefile": lambda self, *a, **k: io.BytesIO(raw)})()
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def _request_body(raw: bytes) -> bytes:
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    assert b"content-length" in head.lower(), head
    return body


def test_a_producer_killed_between_send_and_receipt_flushes_its_outbox_and_the_event_lands_once(
        server_factory, tmp_path):
    server = server_factory().start()
    log_key = (server.data_dir / "log.vkey").read_text().strip()
    seed = generate_key()[0]

    async def register():
        async with aiohttp.ClientSession() as session:
            await _register(session, server.url, _admin_headers(server.data_dir),
                            Producer("restart-agent", key=SigningKey(seed)))

    asyncio.run(register())
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER_SCRIPT)
    outbox = tmp_path / "outbox"
    proxy = HoldingProxy(int(server.url.rsplit(":", 1)[1]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def producer(command: str, url: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), command, url, str(outbox),
                                 base64.b64encode(seed).decode(), log_key], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    proxy_url = f"http://127.0.0.1:{proxy.port}"
    try:
        first = producer("record", proxy_url)
        try:
            deadline = time.monotonic() + 60
            while not proxy.held.wait(0.05):
                assert first.poll() is None and time.monotonic() < deadline, \
                    f"no answer reached the proxy: {first.communicate(timeout=5)}"
        finally:
            first.send_signal(signal.SIGKILL)
            out, err = first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL and "acknowledged" not in out, (out, err)

        status, answer = _http_body(proxy.answers[0])
        original = json.loads(answer)
        assert status == 200 and original["event_id"] == "ev-restart-1" and not original["duplicate"]
        with Outbox(outbox) as spool:
            (spooled,) = spool.pending()
        assert spooled.payload == _request_body(proxy.requests[0]), "spooled: the exact bytes that were sent"

        second = producer("flush", proxy_url)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
    finally:
        proxy.close()

    assert json.loads(out) == [{"index": original["index"], "duplicate": True, "event_id": "ev-restart-1"}]
    assert _request_body(proxy.requests[1]) == spooled.payload, "re-sent byte for byte"
    with Outbox(outbox) as spool:
        assert spool.pending() == [] and spool.refused() == []

    async def logged():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            status, _, events = await _call(session, "GET", f"{server.url}/api/v1/events",
                                            params={"run_id": "run-restart"})
            assert status == 200, events
            status, _, timeline = await _call(session, "GET", f"{server.url}/api/v1/runs/run-restart/timeline")
            assert status == 200, timeline
            return events["events"], timeline["events"]

    events, timeline = asyncio.run(logged())
    assert [(e["index"], e["event"]["event_id"]) for e in events] == [(original["index"], "ev-restart-1")]
    assert [e["index"] for e in timeline] == [original["index"]]
