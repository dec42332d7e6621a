"""SIGTERM on a real `auditlog serve` process: it stops accepting, answers what it commits, and exits within 10 s
even while a client trickles a request body one byte a second; every entry it acknowledged is stored."""

from __future__ import annotations

import asyncio
import base64
import signal
import socket
import threading
import time

import aiohttp


def _slow_upload(url: str, stop: threading.Event, answer: list[bytes], token: str) -> socket.socket:
    """A POST of an entry whose 64-byte body arrives one byte a second, on its own thread; what the server sends
    back (if anything) lands in `answer`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /api/v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: 64\r\n\r\n" % token.encode())

    def trickle():
        try:
            for _ in range(64):
                if stop.wait(1.0):
                    return
                sock.sendall(b"s")
        except OSError:
            pass

    def read():
        try:
            while chunk := sock.recv(4096):
                answer.append(chunk)
        except OSError:
            pass

    threading.Thread(target=trickle, daemon=True).start()
    threading.Thread(target=read, daemon=True).start()
    return sock


def test_sigterm_exits_promptly_with_a_slow_upload_open_and_loses_nothing_acknowledged(server_factory):
    server = server_factory().start()
    stop_trickle = threading.Event()
    slow_answer: list[bytes] = []
    sockets = [_slow_upload(server.url, stop_trickle, slow_answer, server.admin_token) for _ in range(2)]
    acknowledged: dict[int, bytes] = {}
    exit_seconds: list[float] = []

    async def burst():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            counter = iter(range(10**9))

            async def writer(w):
                while True:
                    entry = f"sigterm {w} {next(counter)}".encode()
                    try:
                        async with session.post(f"{server.url}/api/v1/entries", data=entry,
                                                headers={"Content-Type": "application/octet-stream"}) as resp:
                            if resp.status != 200:
                                assert resp.status == 503, await resp.text()  # refused, never a 500
                                continue
                            acknowledged[(await resp.json())["index"]] = entry
                    except aiohttp.ClientError:
                        return  # the server has stopped accepting

            writers = [asyncio.create_task(writer(w)) for w in range(16)]
            while len(acknowledged) < 300:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.5)  # the slow uploads are a second or two into their bodies
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 30)
            exit_seconds.append(time.monotonic() - signalled)
            await asyncio.gather(*writers)

    try:
        asyncio.run(burst())
    finally:
        stop_trickle.set()
        for sock in sockets:
            sock.close()
    output = "".join(server.output)
    print(f"exit {exit_seconds[0]:.1f} s after SIGTERM, {len(acknowledged)} entries acknowledged")
    assert exit_seconds[0] < 15, f"exit took {exit_seconds[0]:.1f} s\n{output}"
    assert server.proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert b" 200 " not in b"".join(slow_answer), "a body that never arrived was acknowledged"

    server.start()
    try:
        async def check():
            async with aiohttp.ClientSession(headers=server.admin) as session:
                for index, entry in acknowledged.items():
                    async with session.get(f"{server.url}/api/v1/entries/{index}") as resp:
                        assert resp.status == 200, f"acknowledged entry {index} is missing"
                        assert base64.b64decode((await resp.json())["data"]) == entry

        asyncio.run(check())
    finally:
        server.stop()
