"""Clients that hold connections without using them, against a real server process on loopback
(api/server/connections.py): slowloris heads, trickled bodies, idle keep-alive connections, more connections than
the cap. The servers run with timeouts of a second or two (flags), so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.processes import ServerProcess

SHORT = ["--header-timeout", "1", "--body-idle-timeout", "1", "--keepalive-timeout", "3"]
# One process: the connection cap is each process's own, and /metrics counts the writer's connections only, so the
# counts these tests check are one process's. Read workers apply the same bounds to their own connections.
ONE_PROCESS = ["--read-workers", "0"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("hostile") / "data",
                       extra_args=SHORT + ONE_PROCESS + ["--verify-processes", "0"]) as server:
        yield server


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float | None, bytes]:
    """Seconds until the server closed the connection (None: still open after `limit`), and what it sent."""
    start, got = time.monotonic(), b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), max(0.01, limit - (time.monotonic() - start)))
            if not chunk:
                return time.monotonic() - start, got
            got += chunk
    except asyncio.TimeoutError:
        return None, got
    except ConnectionResetError:
        return time.monotonic() - start, got


async def _trickle(url: str, data: bytes, *, head: bytes = b"", limit: float = 6.0) -> tuple[float | None, bytes]:
    """Send `head` at once, then `data` one byte every 0.5 s until the server closes; (seconds to close, answer)."""
    reader, writer = await asyncio.open_connection(*_address(url))
    try:
        writer.write(head)
        start = time.monotonic()

        async def drip():
            for byte in data:
                await asyncio.sleep(0.5)
                writer.write(bytes([byte]))
                await writer.drain()

        dripping = asyncio.create_task(drip())
        try:
            seconds, answer = await _closed_after(reader, limit)
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)
        return (None if seconds is None else time.monotonic() - start), answer
    finally:
        writer.close()


def _auth(server) -> str:
    """The Authorization header line of the server's admin token, for requests written out as bytes."""
    return f"Authorization: Bearer {server.admin_token}\r\n"


def _get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric(server, name: str) -> float:
    for line in _get(server.url, "/metrics", server.admin)[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_slowloris_heads_get_408_and_are_closed_after_the_header_timeout(server):
    head = b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"

    async def main():
        return await asyncio.gather(*(_trickle(server.url, head) for _ in range(10)))

    for seconds, answer in asyncio.run(main()):
        # 1 s bound, checked every 0.25 s: well before the keep-alive time (3 s) or the 20 s the head would take
        assert seconds is not None and seconds < 2.5, seconds
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert _get(server.url, "/healthz")[0] == 200
    assert _metric(server, 'auditlog_http_connections_timed_out_total{reason="header"}') >= 10


def test_connections_that_never_send_are_closed_after_the_header_timeout(server):
    async def main():
        connections = [await asyncio.open_connection(*_address(server.url)) for _ in range(50)]
        try:
            return await asyncio.gather(*(_closed_after(reader, 5) for reader, _ in connections))
        finally:
            for _, writer in connections:
                writer.close()

    for seconds, _ in asyncio.run(main()):
        assert seconds is not None and seconds < 2.5, seconds


def test_a_trickled_body_is_cut_after_the_body_idle_timeout_and_nothing_is_stored(server):
    blob = b"x" * 40
    digest = hashlib.sha256(blob).hexdigest()
    head = (f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: {len(blob)}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    entry_head = f"POST /api/v1/entries HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: 40\r\n\r\n".encode()
    size_before = _get(server.url, "/checkpoint")[1].split(b"\n")[1]

    async def main():
        # One byte every 0.5 s keeps the body from being idle for 1 s: the bytes trickle every 3 s instead.
        async def slow(head):
            reader, writer = await asyncio.open_connection(*_address(server.url))
            writer.write(head + b"x")
            start = time.monotonic()
            try:
                seconds, answer = await _closed_after(reader, 8)
                return (None if seconds is None else time.monotonic() - start), answer
            finally:
                writer.close()

        return await asyncio.gather(slow(head), slow(entry_head))

    for seconds, answer in asyncio.run(main()):
        assert seconds is not None and seconds < 2.5, seconds
        assert b" 201 " not in answer and b" 200 " not in answer
    assert _get(server.url, f"/api/v1/blobs/{digest}", server.admin)[0] == 404
    assert _metric(server, 'auditlog_http_connections_timed_out_total{reason="body_idle"}') >= 2
    blobs = server.data_dir / "blobs"
    assert not [path for path in blobs.rglob("*") if path.is_file()]  # not even a temporary file
    assert _get(server.url, "/checkpoint")[1].split(b"\n")[1] == size_before


def test_a_body_that_keeps_coming_is_not_cut(server):
    """The body idle bound is on silence, not on the whole body's time: 0.5 s between bytes, 4 s in all."""
    blob = b"y" * 8
    digest = hashlib.sha256(blob).hexdigest()
    head = f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: {len(blob)}\r\n\r\n".encode()
    seconds, answer = asyncio.run(_trickle(server.url, blob, head=head, limit=8))
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    assert _get(server.url, f"/api/v1/blobs/{digest}", server.admin) == (200, blob)


def test_idle_keep_alive_connections_are_closed(server):
    async def main():
        reader, writer = await asyncio.open_connection(*_address(server.url))
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            start = time.monotonic()
            seconds, _ = await _closed_after(reader, 6)
            return first, seconds, time.monotonic() - start
        finally:
            writer.close()

    first, seconds, _ = asyncio.run(main())
    assert first.startswith(b"HTTP/1.1 200 ")
    assert seconds is not None and 2.5 <= seconds < 5, seconds  # kept for the keep-alive time (3 s), not beyond


def test_connections_beyond_the_cap_are_refused_and_the_server_keeps_answering(tmp_path):
    args = ["--max-connections", "8", "--header-timeout", "3", "--verify-processes", "0", *ONE_PROCESS]
    with ServerProcess(tmp_path / "data", extra_args=args) as server:
        async def main():
            held = [await asyncio.open_connection(*_address(server.url)) for _ in range(8)]
            await asyncio.sleep(0.2)
            reader, writer = await asyncio.open_connection(*_address(server.url))
            refused = await _closed_after(reader, 3)
            writer.close()
            for _, w in held:
                w.close()
            return refused

        seconds, answer = asyncio.run(main())
        assert seconds is not None and seconds < 1, seconds
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer, answer
        deadline = time.monotonic() + 5
        while True:  # the held ones are gone (closed by the client here); a normal request is answered
            status, _ = _get(server.url, "/healthz")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
        assert _metric(server, "auditlog_http_connections_refused_total") >= 1


# --- blob uploads stream to disk ---------------------------------------------------------------------------------

def _files(server) -> list:
    return [path for path in (server.data_dir / "blobs").rglob("*") if path.is_file()]


def _put(url: str, path: str, data: bytes, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url + path, data=data, method="PUT", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_a_blob_bigger_than_any_buffer_streams_in_and_reads_back_exactly(server):
    blob = os.urandom(20 << 20) + b"end"  # 20 MiB: many 1 MiB pieces, far beyond aiohttp's buffers
    digest = hashlib.sha256(blob).hexdigest()
    status, _, _ = _put(server.url, f"/api/v1/blobs/{digest}", blob, server.admin)
    assert status == 201
    assert _get(server.url, f"/api/v1/blobs/{digest}", server.admin) == (200, blob)
    assert (server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest).read_bytes() == blob


def test_a_streamed_blob_that_does_not_match_its_name_is_refused_and_leaves_no_file(server):
    before = _files(server)
    blob = os.urandom(3 << 20)
    wrong = hashlib.sha256(blob + b"!").hexdigest()
    status, body, _ = _put(server.url, f"/api/v1/blobs/{wrong}", blob, server.admin)
    assert status == 422 and b"blob-hash-mismatch" in body
    assert _files(server) == before


def test_a_blob_body_cut_midway_leaves_no_file(server):
    before = _files(server)
    blob = os.urandom(5 << 20)
    digest = hashlib.sha256(blob).hexdigest()

    async def main():
        reader, writer = await asyncio.open_connection(*_address(server.url))
        writer.write(f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: {len(blob)}\r\n\r\n".encode())
        writer.write(blob[: 3 << 20])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.transport.abort()  # the client goes away mid-body

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while _files(server) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _files(server) == before
    assert _get(server.url, f"/api/v1/blobs/{digest}", server.admin)[0] == 404


def test_blob_uploads_beyond_the_cap_get_503_with_retry_after(tmp_path):
    args = ["--blob-uploads", "1", "--body-idle-timeout", "5", "--verify-processes", "0"]
    with ServerProcess(tmp_path / "data", extra_args=args) as server:
        blob = b"z" * 1000
        digest = hashlib.sha256(blob).hexdigest()

        async def main():
            reader, writer = await asyncio.open_connection(*_address(server.url))  # holds the one slot
            writer.write(f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: {len(blob)}\r\n\r\n"
                         .encode() + blob[:10])
            await writer.drain()
            await asyncio.sleep(0.5)
            refused = await asyncio.to_thread(_put, server.url, f"/api/v1/blobs/{digest}", blob, server.admin)
            writer.write(blob[10:])
            await writer.drain()
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
            return refused, first

        (status, _, headers), first = asyncio.run(main())
        assert status == 503 and headers.get("Retry-After") == "1"
        assert first.startswith(b"HTTP/1.1 201 ")
        assert _put(server.url, f"/api/v1/blobs/{digest}", blob, server.admin)[0] == 200  # the slot is free again


def _declared_over_the_blob_limit(server) -> bytes:
    """The answer's head to a blob PUT declaring a byte more than a blob may have, and sending none of it."""
    from log.blobs import MAX_BLOB_SIZE

    async def main():
        reader, writer = await asyncio.open_connection(*_address(server.url))
        writer.write(f"PUT /api/v1/blobs/{'a' * 64} HTTP/1.1\r\nHost: x\r\n{_auth(server)}Content-Length: {MAX_BLOB_SIZE + 1}\r\n\r\n"
                     .encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        return answer

    return asyncio.run(main())


def test_a_declared_body_over_the_blob_limit_is_refused_before_it_is_read(server):
    assert _declared_over_the_blob_limit(server).startswith(b"HTTP/1.1 413 ")


def test_blobs_stream_through_read_workers_too(tmp_path):
    """With a read worker on the same port (SO_REUSEPORT), a PUT lands on the writer or on the worker, which passes
    a body bigger than any JSON body on to the writer as it comes. Eight fresh connections: both ways, but for a
    1 in 256 chance; declared lengths and chunked bodies, matching and not."""
    import http.client

    with ServerProcess(tmp_path / "data", extra_args=["--read-workers", "1", "--verify-processes", "0"]) as server:
        host, port = _address(server.url)
        blobs = [os.urandom(9 << 20) + bytes([i]) for i in range(8)]
        for i, blob in enumerate(blobs):
            digest = hashlib.sha256(blob).hexdigest()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            if i % 2:  # chunked: no Content-Length
                connection.request("PUT", f"/api/v1/blobs/{digest}", body=iter([blob[:5 << 20], blob[5 << 20:]]),
                                   encode_chunked=True, headers=server.admin)
            else:
                connection.request("PUT", f"/api/v1/blobs/{digest}", body=blob, headers=server.admin)
            assert connection.getresponse().status == 201
            connection.close()
            assert _get(server.url, f"/api/v1/blobs/{digest}", server.admin) == (200, blob)
        wrong = hashlib.sha256(b"other").hexdigest()
        for _ in range(4):
            assert _put(server.url, f"/api/v1/blobs/{wrong}", blobs[0], server.admin)[0] == 422
        assert len(_files(server)) == len(blobs)  # the eight blobs, no temporary file
        # A declared length over the limit is refused before a byte is read by either process (a worker passed it on,
        # the writer's early 413 cut the body's stream, and the client was left without an answer)
        for _ in range(8):
            assert _declared_over_the_blob_limit(server).startswith(b"HTTP/1.1 413 ")
