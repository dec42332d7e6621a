"""A real `python -m api.cli serve` process on a random loopback port, and tools to watch it from outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from tests.processes import REPO, ServerProcess
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def server_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a server process and its children (read workers): what the whole server has used."""
    total = proc_cpu_seconds(pid)
    if total is None:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:
        children = []
    return total + sum(proc_cpu_seconds(child) or 0.0 for child in children)


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, all its threads, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Server(ServerProcess):
    """The benchmarks' server: the same process the end-to-end tests start, under the benchmarks' origin."""

    origin: str = "bench.example/log"
    # One process unless a benchmark says otherwise, as every figure but the default's was measured since the start:
    # the figures stay comparable with earlier runs, and the memory figures cover the one process they sample.
    read_workers: str | None = "0"

    def start(self, timeout: float = 120) -> "Server":
        return super().start(timeout)

    @property
    def token(self) -> str:
        """The credential the benchmarks send, as any client does: the server's admin token."""
        return self.admin_token


@dataclass
class BareServer(ServerProcess):
    """benchmarks/bare.py in its own process: a bare aiohttp GET handler answering a proof-shaped body of `hashes`
    hashes. `credential` is sent with every request as the log's is (and ignored), so both see the same bytes."""

    hashes: int = 20
    credential: str = ""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "benchmarks.bare", "--port", "0", "--hashes", str(self.hashes)]

    @property
    def token(self) -> str:
        return self.credential


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; `peak_kb` is its VmHWM at `stop()`."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, VmRSS kB)
        self.peak_kb: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = proc_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic() - self._started, rss))

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = proc_status_kb(self.pid, "VmHWM")


def run_loadgen(url: str | list[str], kind: str, *, timeout: float = 3600, **options) -> dict:
    """Run benchmarks/loadgen.py in its own process and return its JSON report. Several URLs spread its workers
    over several servers.

    Options become flags (`paths_file="x"` → `--paths-file x`). The report gains `server_cpu_*` only if the caller
    measures them; see `with_server_cpu`.
    """
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--kind", kind]
    for each in [url] if isinstance(url, str) else url:
        cmd += ["--url", each]
    for name, value in options.items():
        if value is not None:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loadgen_with_server_cpu(server: Server | list[Server], kind: str, **options) -> dict:
    """`run_loadgen`, plus the server's CPU utilisation (cores busy, read workers included) over the load
    generator's measured window. Several servers (of one log): the workers spread over them, their CPU summed."""
    servers = server if isinstance(server, list) else [server]
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            cpus = [server_cpu_seconds(each.pid) for each in servers]
            if None not in cpus:
                samples.append((time.time(), sum(cpus)))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        report = run_loadgen([each.url for each in servers], kind, **{"token": servers[0].token, **options})
    finally:
        done.set()
        thread.join()
    start, end = report["window_epoch"]
    inside = [(t, cpu) for t, cpu in samples if start <= t <= end]
    if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
        report["server_cpu_utilisation"] = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    else:
        report["server_cpu_utilisation"] = None
    return report
