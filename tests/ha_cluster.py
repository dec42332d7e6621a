"""Several real `auditlog serve` processes on one PostgreSQL log, for the e2e tests and the benchmarks.

Each server has its own data dir holding the same `log.key` and `admin.token` (copied from the first server's after
it started) and a fixed loopback port, so that it advertises http://127.0.0.1:<port> to the others and comes back
at the same URL when restarted. Writers (tests/e2e/test_pg_failover.py `Load`) are spread across the servers and
move to the next one on a connection error or a 503, as a client given several URLs does.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from log.keys import KEY_FILE_NAME
from tests.e2e.test_pg_failover import Load
from tests.processes import ServerProcess

SHARED_FILES = (KEY_FILE_NAME, "admin.token")
FAILOVER_TARGET = 5.0  # seconds: the target from a SIGKILL to the next acknowledged write (reported only)


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick, released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def metric(server: ServerProcess, name: str) -> float | None:
    """One unlabelled sample of the server's /metrics (read with its admin token), or None if it has none."""
    request = urllib.request.Request(f"{server.url}/metrics", headers=server.admin)
    with urllib.request.urlopen(request, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


@dataclass
class Cluster:
    """`count` servers on the log at `database_url`; the first to start sequences, the others stand by."""

    root: Path
    database_url: str
    count: int = 3
    extra_args: list[str] = field(default_factory=list)
    server_class: type[ServerProcess] = ServerProcess
    servers: list[ServerProcess] = field(default_factory=list)
    _starting: set[str] = field(default_factory=set)

    def start(self) -> "Cluster":
        for number in range(self.count):
            self.servers.append(self.server_class(self.root / f"server{number}", self.database_url,
                                                  [*self.extra_args, "--port", str(free_port())]))
        first, *others = self.servers
        first.start()
        for server in others:
            server.data_dir.mkdir(parents=True)
            for name in SHARED_FILES:
                if (first.data_dir / name).exists():  # no admin.token where AUDITLOG_ADMIN_TOKEN gives it
                    shutil.copy(first.data_dir / name, server.data_dir / name)
        with ThreadPoolExecutor(len(others) or 1) as pool:
            list(pool.map(lambda server: server.start(), others))
        return self

    def kill(self) -> None:
        for server in self.servers:
            server.kill()

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc) -> None:
        self.kill()

    def alive(self) -> list[ServerProcess]:
        """The servers running and listening (not one being started again)."""
        return [server for server in self.servers if server.proc is not None and server.proc.poll() is None
                and server.url not in self._starting]

    async def restart(self, server: ServerProcess) -> None:
        """Start a killed server again, same data dir and port; it counts as alive once it listens."""
        self._starting.add(server.url)
        try:
            await asyncio.to_thread(server.start)
        finally:
            self._starting.discard(server.url)

    async def roles(self, session: aiohttp.ClientSession) -> dict[str, dict]:
        """Each live server's /healthz body ({"role", "sequencer", ...}) by URL; a server that does not answer in
        time is left out."""
        async def health(server: ServerProcess):
            try:
                async with session.get(f"{server.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    return server.url, await resp.json()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return server.url, None

        answers = await asyncio.gather(*(health(server) for server in self.alive()))
        return {url: body for url, body in answers if body is not None}

    async def settled_sequencer(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> ServerProcess:
        """The sequencer, once every live server answers and exactly one says it sequences and the others name it."""
        deadline = time.monotonic() + timeout
        while True:
            roles = await self.roles(session)
            sequencers = [url for url, body in roles.items() if body.get("role") == "sequencer"]
            if len(roles) == len(self.alive()) and len(sequencers) == 1 and \
                    all(body.get("sequencer") == sequencers[0] for body in roles.values()):
                return next(server for server in self.servers if server.url == sequencers[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"the servers did not settle on one sequencer: {roles}")
            await asyncio.sleep(0.05)


class SpreadWriters(Load):
    """`Load` with each writer keeping to one server (writer n starts at server n mod the count) until it answers
    a 503 or not at all (status 0), then moving to the next: as a client given several URLs does."""

    def __init__(self, servers: list[ServerProcess], workers: int = 32):
        super().__init__(servers, workers)
        self._position: dict[int, int] = {}

    def _next_server(self, number: int, last_status: int | None) -> ServerProcess | None:
        position = self._position.get(number, number)
        if last_status in (0, 503):
            position += 1
        self._position[number] = position
        return self.targets[position % len(self.targets)] if self.targets else None


@dataclass
class Kill:
    """One SIGKILL of the sequencer: which server, when (monotonic seconds), when the first write sent after it was
    acknowledged (by whichever server) and when the killed server listened again (None until it does)."""

    url: str
    killed_at: float
    acknowledged_at: float
    restarted_at: float | None = None

    @property
    def failover_seconds(self) -> float:
        return self.acknowledged_at - self.killed_at


def first_acknowledgement_after(load: Load, moment: float) -> float | None:
    """When the first write sent at or after `moment` was acknowledged (200), or None if none was yet."""
    times = [answered for sent, answered, _, status in load.answers if status == 200 and sent >= moment]
    return min(times) if times else None


async def kill_sequencers(cluster: Cluster, load: Load, rounds: int, bound: float = 30.0,
                          steady: float = 0.3) -> list[Kill]:
    """`rounds` times, under `load`: SIGKILL whichever server sequences and wait for a write sent after the kill to
    be acknowledged (within `bound` seconds, else AssertionError). Each killed server is started again at once (same
    data dir, same port), in the background: the next round waits only until at least two servers are up (so one
    can take over) and they agree on the sequencer, then `steady` seconds more. Returns once every server is back."""
    kills: list[Kill] = []
    restarts: list[asyncio.Task] = []

    async def restart(server: ServerProcess, kill: Kill) -> None:
        await cluster.restart(server)
        kill.restarted_at = time.monotonic()

    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            deadline = time.monotonic() + bound * 2
            while len(cluster.alive()) < 2:
                assert time.monotonic() < deadline, "the killed servers did not come back"
                await asyncio.sleep(0.05)
            victim = await cluster.settled_sequencer(session)
            await asyncio.sleep(steady)
            killed_at = time.monotonic()
            victim.kill()
            deadline = killed_at + bound
            while (acknowledged_at := first_acknowledgement_after(load, killed_at)) is None:
                assert time.monotonic() < deadline, f"no write was acknowledged within {bound} s of kill {len(kills)}"
                await asyncio.sleep(0.01)
            kills.append(Kill(victim.url, killed_at, acknowledged_at))
            restarts.append(asyncio.create_task(restart(victim, kills[-1])))
        await asyncio.gather(*restarts)
    return kills


def failover_summary(kills: list[Kill]) -> dict:
    """Median and max failover seconds, and how many kills met the issue's target."""
    seconds = sorted(kill.failover_seconds for kill in kills)
    middle = len(seconds) // 2
    median = seconds[middle] if len(seconds) % 2 else (seconds[middle - 1] + seconds[middle]) / 2
    return {"kills": len(seconds), "median_s": median, "max_s": seconds[-1], "min_s": seconds[0],
            "within_target": sum(1 for s in seconds if s <= FAILOVER_TARGET), "target_s": FAILOVER_TARGET,
            "each_s": [round(kill.failover_seconds, 3) for kill in kills]}
