"""Real `auditlog serve` processes on PostgreSQL whose database sessions are terminated under write load, nothing
injected into the servers:

- rounds of `pg_terminate_backend` on every session of the log's database: each round's recovery time (from the
  termination to the first write acknowledged after the first refused one) is printed; writes are 200 or 503, never
  500; every acknowledged entry is stored at its acknowledged index with its leaf hash, and the monitor verifies the
  log;
- a PostgreSQL server restart under load, clean ("fast") and a crash ("immediate"), on a private cluster
  (tests/pg_cluster.py): the time from the database being reachable again until writes are acknowledged is printed,
  and the same checks;
- two servers on one database: the first is frozen (SIGSTOP) and its sessions terminated, so the second starts and
  takes the lock and writes; the first, thawed, finds its session gone, steps down to standby and commits nothing
  while the second holds the lock (the second listens on port 0 and so advertises no URL: the first cannot pass
  writes on and answers 503); once the second is killed the first takes over from what the database holds. The
  stored checkpoints form one chain (each the root of the first `size` stored entries) and every acknowledged entry
  is in it. (Three servers under SIGKILL and SIGSTOP, with writes passed on: tests/e2e/test_ha_failover.py.)
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import shutil
import signal
import subprocess
import sys
import time

import aiohttp
import psycopg

from log.compact import CompactRange
from tests.pg_cluster import private_cluster
from tests.postgres import ADMIN_URL, fresh_database
from tests.processes import REPO, ServerProcess

OCTET = {"Content-Type": "application/octet-stream"}
RECOVERY_BOUND = 30.0  # seconds: a generous bound; the figures are printed, not asserted
WORKERS = 8


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _terminate_sessions(database: str) -> int:
    """pg_terminate_backend on every session of `database`, as an operator would; the number terminated."""
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                             (database,)).fetchall()
    return sum(1 for (done,) in rows if done)


class Load:
    """A bounded loop of concurrent single-entry POSTs on loopback, to the servers in `targets` (changeable while it
    runs); records every acknowledgement and every answer's status with its time."""

    def __init__(self, targets: list[ServerProcess], workers: int = WORKERS):
        self.targets = targets
        self.workers = workers
        self.acknowledged: dict[int, tuple[bytes, str, str]] = {}  # index -> (entry, leaf hash b64, server url)
        self.answers: list[tuple[float, float, str, int]] = []  # (sent, answered, server url, status)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._running = True
        self._count = 0

    def _next_server(self, number: int, last_status: int | None) -> ServerProcess | None:
        """Where writer `number` sends its next entry, given its last answer's status (None before the first): round
        robin over `targets`; None while there are none."""
        targets = self.targets
        return targets[self._count % len(targets)] if targets else None

    async def _worker(self, session: aiohttp.ClientSession, number: int) -> None:
        status = None
        while self._running:
            server = self._next_server(number, status)
            if server is None:
                await asyncio.sleep(0.01)
                continue
            self._count += 1
            entry = b"worker %d entry %d " % (number, self._count) + os.urandom(16)
            sent = time.monotonic()
            try:
                async with session.post(f"{server.url}/api/v1/entries", data=entry,
                                        headers={**OCTET, **server.admin}) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0  # no answer (a frozen server); nothing acknowledged
            answered = time.monotonic()
            self.answers.append((sent, answered, server.url, status))
            self.statuses[server.url][status] += 1
            if status == 200:
                assert body["index"] not in self.acknowledged, "an index acknowledged twice"
                self.acknowledged[body["index"]] = (entry, body["leaf_hash"], server.url)
            elif status == 503:
                await asyncio.sleep(0.02)  # as the SDK backs off (less: we measure recovery)

    async def run_while(self, scenario) -> object:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            workers = [asyncio.create_task(self._worker(session, n)) for n in range(self.workers)]
            try:
                return await scenario()
            finally:
                self._running = False
                await asyncio.gather(*workers)

    def recovery_after(self, moment: float, url: str) -> float | None:
        """Seconds from `moment` until the first 200 from `url` answered after the first refusal that followed it
        (0 when nothing was refused: the termination hit no batch); None if never."""
        answers = sorted((a for a in self.answers if a[2] == url and a[1] >= moment), key=lambda a: a[1])
        refused = next((a for a in answers if a[3] != 200), None)
        if refused is None:
            return 0.0
        for sent, answered, _, status in answers:
            if status == 200 and sent >= refused[0]:
                return answered - moment
        return None


def _stored(url: str) -> tuple[list[tuple[int, bytes, bytes]], list[tuple[int, bytes]]]:
    with psycopg.connect(_plain(url), connect_timeout=5) as conn:
        entries = conn.execute("SELECT idx, data, leaf_hash FROM entries ORDER BY idx").fetchall()
        checkpoints = conn.execute("SELECT size, root_hash FROM checkpoints ORDER BY size").fetchall()
    return ([(i, bytes(d), bytes(h)) for i, d, h in entries], [(s, bytes(r)) for s, r in checkpoints])


def _check_one_chain_holding_everything_acknowledged(url: str, load: Load) -> int:
    """Every stored checkpoint is the root of the first `size` stored entries (so they form one chain: one per
    size, each consistent with the next), and every acknowledged entry is stored at its index with its leaf hash.
    The stored size."""
    entries, checkpoints = _stored(url)
    assert [index for index, _, _ in entries] == list(range(len(entries)))  # no gaps
    for index, (entry, leaf_hash, server) in load.acknowledged.items():
        assert index < len(entries), (index, server)
        assert entries[index][1] == entry and base64.b64encode(entries[index][2]).decode() == leaf_hash, index
    assert checkpoints and checkpoints[-1][0] == len(entries)
    sizes = iter(checkpoints)
    size, root = next(sizes)
    tree = CompactRange()
    for index, _, leaf_hash in [(-1, b"", b"")] + entries:
        if index >= 0:
            tree.append(leaf_hash)
        while size == tree.size:
            assert tree.root() == root, f"the checkpoint of size {size} is not the root of the stored entries"
            size, root = next(sizes, (None, None))
    assert size is None
    return len(entries)


def _verify(server: ServerProcess, state_dir) -> None:
    async def info():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/api/v1/log") as resp:
                return await resp.json()

    key = asyncio.run(info())["verifier_key"]
    command = [sys.executable, "-m", "api.cli", "verify", "--server", server.url, "--key", key,
               "--state", str(state_dir / "monitor.json"), f"--token={server.admin_token}"]
    verified = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout + verified.stderr


def test_terminated_sessions_under_load_recover_within_seconds_losing_nothing(tmp_path):
    with fresh_database() as url:
        database = url.rsplit("/", 1)[1]
        server = ServerProcess(tmp_path / "data", url, ["--batch-max-age-ms", "2"]).start()
        try:
            load = Load([server])
            terminated_at: list[float] = []

            async def scenario():
                await asyncio.sleep(1.0)
                for _ in range(3):
                    terminated_at.append(time.monotonic())
                    assert await asyncio.to_thread(_terminate_sessions, database) >= 1
                    deadline = time.monotonic() + RECOVERY_BOUND
                    while load.recovery_after(terminated_at[-1], server.url) is None:
                        assert time.monotonic() < deadline, "writes were not acknowledged again"
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)  # steady load between rounds

            asyncio.run(load.run_while(scenario))
            recoveries = [load.recovery_after(moment, server.url) for moment in terminated_at]
            rounds = ", ".join("never" if seconds is None else f"{seconds:.2f} s" for seconds in recoveries)
            print(f"\nPostgreSQL sessions terminated under load: recovery per round {rounds}; "
                  f"answers {dict(load.statuses[server.url])}")
            assert all(seconds is not None and seconds < RECOVERY_BOUND for seconds in recoveries)
            assert set(load.statuses[server.url]) <= {200, 503}, load.statuses  # never 500
            assert load.statuses[server.url][503] >= 1  # the terminations were noticed
            _check_one_chain_holding_everything_acknowledged(url, load)
            _verify(server, tmp_path)
        finally:
            server.kill()


def test_a_postgresql_restart_under_load_recovers_within_seconds_losing_nothing(tmp_path):
    with private_cluster() as cluster:
        url = cluster.create_database()
        server = ServerProcess(tmp_path / "data", url, ["--batch-max-age-ms", "2"]).start()
        try:
            load = Load([server])
            rounds: list[tuple[str, float, float]] = []  # (stop mode, stopped at, reachable again at)

            async def scenario():
                await asyncio.sleep(1.0)
                for mode in ("fast", "immediate"):
                    stopped_at = time.monotonic()
                    await asyncio.to_thread(cluster.stop, mode)
                    await asyncio.sleep(1.0)  # down for a second under load
                    await asyncio.to_thread(cluster.start)  # returns once it accepts connections
                    rounds.append((mode, stopped_at, time.monotonic()))
                    deadline = time.monotonic() + RECOVERY_BOUND
                    while load.recovery_after(stopped_at, server.url) is None:
                        assert time.monotonic() < deadline, "writes were not acknowledged again"
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)

            asyncio.run(load.run_while(scenario))
            figures = []
            for mode, stopped_at, reachable_at in rounds:
                recovery = load.recovery_after(stopped_at, server.url)
                assert recovery is not None and recovery < RECOVERY_BOUND
                figures.append(f"{mode}: writes acknowledged {recovery - (reachable_at - stopped_at):.2f} s after "
                               f"the database was reachable ({recovery:.2f} s after the stop began)")
            print(f"\nPostgreSQL restarts under load: {'; '.join(figures)}; answers {dict(load.statuses[server.url])}")
            assert set(load.statuses[server.url]) <= {200, 503}, load.statuses  # never 500
            _check_one_chain_holding_everything_acknowledged(url, load)
            _verify(server, tmp_path)
        finally:
            server.kill()


def test_two_servers_on_one_database_never_both_commit(tmp_path):
    with fresh_database() as url:
        database = url.rsplit("/", 1)[1]
        first = ServerProcess(tmp_path / "first", url, ["--batch-max-age-ms", "2"]).start()
        second = ServerProcess(tmp_path / "second", url, ["--batch-max-age-ms", "2"])
        try:
            load = Load([first])
            phases: dict[str, float] = {}

            async def scenario():
                await asyncio.sleep(1.0)
                # The first server freezes and its sessions go: its lock with them. The second (same key: a copy of
                # the first's data directory) starts and takes the lock.
                first.proc.send_signal(signal.SIGSTOP)
                load.targets = []
                await asyncio.to_thread(_terminate_sessions, database)
                # (not the first's read workers' socket: a socket file cannot be copied, and is the first's own)
                shutil.copytree(first.data_dir, second.data_dir, ignore=shutil.ignore_patterns("*.sock"))
                await asyncio.to_thread(second.start)
                load.targets = [second]
                await asyncio.sleep(1.0)
                # The first thaws: it finds its connection gone and the lock held, steps down, commits nothing.
                phases["thawed"] = time.monotonic()
                first.proc.send_signal(signal.SIGCONT)
                load.targets = [first, second]
                await asyncio.sleep(2.0)
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{first.url}/readyz") as resp:
                        ready = resp.status, await resp.json()
                # The second goes; the first takes the lock and sequences on from what the second committed.
                load.targets = [first]
                second.kill()
                phases["second killed"] = time.monotonic()
                await asyncio.sleep(2.0)
                return ready

            ready = asyncio.run(load.run_while(scenario))
            print(f"\ntwo servers: answers of the first {dict(load.statuses[first.url])}, "
                  f"of the second {dict(load.statuses[second.url])}; the first's /readyz meanwhile {ready}")
            first_after_thaw = [a for a in load.answers if a[2] == first.url
                                and phases["thawed"] <= a[0] and a[1] < phases["second killed"]]
            assert first_after_thaw and all(status != 200 for _, _, _, status in first_after_thaw)
            first_taking_over = [a for a in load.answers if a[2] == first.url and a[0] >= phases["second killed"]]
            assert any(status == 200 for _, _, _, status in first_taking_over), "the first never took over"
            assert ready[0] == 503 and ready[1]["role"] == "standby", ready
            assert load.statuses[second.url][200] >= 1
            acknowledged_by = collections.Counter(server for _, _, server in load.acknowledged.values())
            assert acknowledged_by[first.url] >= 1 and acknowledged_by[second.url] >= 1
            _check_one_chain_holding_everything_acknowledged(url, load)
        finally:
            first.proc.send_signal(signal.SIGCONT)
            first.kill()
            second.kill()
