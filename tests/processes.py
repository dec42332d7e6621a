"""Real `auditlog serve` processes on random loopback ports, for the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on (https?://\S+)")


@dataclass
class ServerProcess:
    """One `auditlog serve` process. `start()` waits for its "listening on" line; `kill()` sends SIGKILL."""

    data_dir: Path
    database_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    origin: str = "e2e.test/log"
    proc: subprocess.Popen | None = None
    url: str = ""
    output: list[str] = field(default_factory=list)
    # `--read-workers` (extra_args may name it again: the last one counts), or None for serve's default, auto. One
    # process unless a test asks for more: with auto (a worker per server here) tests/e2e took 21.3 min and 5.7 CPU
    # minutes against 14.6 and 4.3 with 0, measured back to back on a busy 2-core host. The default's own tests
    # (tests/e2e/test_default_read_workers.py) and the read path's (--read-workers N) say what they run.
    read_workers: str | None = "0"
    cpus: set[int] | None = None  # the cores the server (and its children) may run on, through taskset

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(self.data_dir), "--origin", self.origin]
        if self.read_workers is not None:
            cmd += ["--read-workers", self.read_workers]
        cmd += self.extra_args
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.cpus is not None:
            cmd = ["taskset", "--cpu-list", ",".join(map(str, sorted(self.cpus))), *cmd]
        return cmd

    def start(self, timeout: float = 60) -> "ServerProcess":
        self.output = []
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        found = threading.Event()

        def pump():
            for line in self.proc.stdout:
                if len(self.output) < 2000:  # a long-running server's log is not kept whole
                    self.output.append(line)
                match = LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match.group(1).rstrip("/")
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)
                self.kill()
                raise RuntimeError(f"server did not start (exit {self.proc.poll()}):\n{''.join(self.output)}")
        return self

    def run_to_exit(self, timeout: float = 60) -> tuple[int, str]:
        """Start and wait for the process to exit by itself (for servers expected to refuse to start)."""
        proc = subprocess.run(self.command(), cwd=REPO, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def admin_token(self) -> str:
        """The credential this server takes as its admin's: AUDITLOG_ADMIN_TOKEN, else <data dir>/admin.token."""
        return os.environ.get("AUDITLOG_ADMIN_TOKEN") or (Path(self.data_dir) / "admin.token").read_text().strip()

    @property
    def admin(self) -> dict[str, str]:
        """The Authorization header of `admin_token`, for requests to private routes."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def child_processes(pid: int, command: str) -> list[int]:
    """The child processes of `pid` whose command line holds `command` (a server's children are its read workers
    and its verifier processes)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(child) for child in f.read().split()]
    found = []
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if command.encode() in f.read():
                    found.append(child)
        except FileNotFoundError:
            pass
    return found
