"""`auditlog verify --watch` against real `auditlog serve` processes: a round a second until one fails, with the
exit status of that failure (1 when the log was tampered between rounds, 3 when the server went away); SIGTERM
and SIGINT (Ctrl-C) exit 0."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

import aiohttp
import psycopg

from tests.postgres import fresh_database
from tests.processes import REPO, ServerProcess

ENTRIES = 300  # entries 256..299 are in the partial bundle tile/entries/001.p/44, read from the database each time


def _fill(url: str, headers: dict) -> str:
    async def fill():
        async with aiohttp.ClientSession(headers=headers) as session:
            body = {"entries": [base64.b64encode(f"entry {i}".encode()).decode() for i in range(ENTRIES)]}
            async with session.post(f"{url}/api/v1/entries", json=body) as resp:
                assert resp.status == 200, await resp.text()
            async with session.get(f"{url}/api/v1/log") as resp:
                return (await resp.json())["verifier_key"]

    return asyncio.run(fill())


class Watch:
    """`auditlog verify --watch 1s` as a process; its stdout lines collected as they come."""

    def __init__(self, url: str, vkey: str, *extra: str, token: str):
        command = [sys.executable, "-m", "api.cli", "verify", "--server", url, "--log-key", vkey, "--watch", "1s",
                   *extra]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "AUDITLOG_TOKEN": token})
        self.lines: list[str] = []
        self.err = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_rounds(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            assert self.proc.poll() is None, (self.proc.returncode, self.lines, self.proc.stderr.read())
            assert time.monotonic() < deadline, self.lines
            time.sleep(0.05)

    def exit(self, timeout: float = 60) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.err = self.proc.stderr.read()
        return code, self.err


def test_watch_exits_1_when_an_entry_is_changed_between_rounds(tmp_path):
    with fresh_database() as database_url:
        server = ServerProcess(tmp_path / "data", database_url).start()
        watch = None
        try:
            vkey = _fill(server.url, server.admin)
            watch = Watch(server.url, vkey, "--state", str(tmp_path / "monitor.json"), "--json",
                          token=server.admin_token)
            watch.wait_for_rounds(2)
            rounds = [json.loads(line) for line in watch.lines[:2]]
            assert [r["status"] for r in rounds] == ["valid", "valid"]
            assert rounds[1]["previous_size"] == ENTRIES and rounds[1]["entries_checked"] == ENTRIES
            # Someone with write access to the database changes entry 280 while the log runs.
            with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as db:
                db.execute("UPDATE entries SET data = set_byte(data, 0, get_byte(data, 0) # 1) WHERE idx = 280")
            code, err = watch.exit()
            last = json.loads(watch.lines[-1])
            assert code == 1, (code, watch.lines, err)
            assert last["status"] == "invalid" and last["exit_status"] == 1 and last["tampered"] == [280]
            assert "Traceback" not in err
        finally:
            if watch is not None and watch.proc.poll() is None:
                watch.proc.kill()
            server.kill()


def test_watch_exits_3_when_the_server_goes_away_and_0_on_sigterm(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    watches = []
    try:
        vkey = _fill(server.url, server.admin)
        stays = Watch(server.url, vkey, token=server.admin_token)
        watches.append(stays)
        stays.wait_for_rounds(1)
        assert "integrity VALID" in stays.lines[0] and f"size {ENTRIES}" in stays.lines[0], stays.lines
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum == signal.SIGINT:
                stays = Watch(server.url, vkey, token=server.admin_token)
                watches.append(stays)
                stays.wait_for_rounds(1)
            started = time.monotonic()
            stays.proc.send_signal(signum)
            code, err = stays.exit(timeout=10)
            assert code == 0 and "Traceback" not in err and time.monotonic() - started < 5, (signum, code, err)

        goes = Watch(server.url, vkey, token=server.admin_token)
        watches.append(goes)
        goes.wait_for_rounds(1)
        server.stop()
        code, err = goes.exit()
        assert code == 3, (code, goes.lines, err)
        assert "connection refused" in err and "integrity UNKNOWN" in goes.lines[-1], (goes.lines, err)
        assert "Traceback" not in err
    finally:
        for watch in watches:
            if watch.proc.poll() is None:
                watch.proc.kill()
        server.kill()
