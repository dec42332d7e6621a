"""Several real `auditlog serve` processes on one PostgreSQL log (tests/ha_cluster.py), real SIGKILL and SIGSTOP,
under 32 concurrent writers spread across the servers (each moves to the next server on a connection error or a
503):

- 20 SIGKILLs of whichever server sequences, each restarted after: the time from each kill to the first
  acknowledgement of a write sent after it is printed (median, max, and whether each met the issue's 5 s; only a
  generous bound is asserted); answers are 200 or 503, or no answer from a server while it is dead, never 500; every
  acknowledged entry is stored at its index with its leaf hash; the stored checkpoints form one chain (one per size,
  each the root of the first `size` stored entries); `auditlog verify` says VALID;
- SIGSTOP of the sequencer for 30 s: another server takes over while it is stopped (writes sent after the stop are
  acknowledged, and a write each standby passed on to the stopped one is answered, before it resumes); resumed, the
  stopped server steps down (its /healthz says standby, writes sent to it are acknowledged by the new sequencer) and
  never commits: every batch it counts as committed is a checkpoint stored before the takeover;
- witnessing and timestamping once per log: with a real witness and TSA, only the sequencer speaks to them, and
  after a kill the new sequencer carries on.

In-process tests of the same machinery: tests/test_ha.py. The 20 kills and the 30 s stop are issue 19's figures.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request

import aiohttp
import psycopg

from log.defaults import FORWARD_READ_TIMEOUT, SEQUENCER_LEASE_SECONDS
from log.keys import KEY_FILE_NAME
from tests.e2e.test_pg_failover import OCTET, _check_one_chain_holding_everything_acknowledged, _plain, _verify
from tests.e2e.test_witnessed_log import ORIGIN, Command, cli, wait_for
from tests.ha_cluster import (FAILOVER_TARGET, Cluster, SpreadWriters, failover_summary, first_acknowledgement_after,
                              kill_sequencers, metric)
from tests.postgres import fresh_database

KILLS = 20
BOUND = 30.0  # seconds: asserted per failover; the 5 s target is reported, not asserted (CI is noisy)
PAUSE = 30.0  # seconds the sequencer stays stopped
# Lean servers: no verifier processes (no signed events here), no read workers; restarts under load stay quick.
SERVER_ARGS = ["--verify-processes", "0", "--read-workers", "0"]
TAKEN_OVER = re.compile(r"this server now sequences the log, at size (\d+)")


def _stored_sizes(url: str) -> list[int]:
    with psycopg.connect(_plain(url), connect_timeout=5) as conn:
        return [size for (size,) in conn.execute("SELECT size FROM checkpoints ORDER BY size").fetchall()]


def _lease(url: str) -> tuple[int, float]:
    """The sequencer lease's epoch, and since when (POSIX seconds) its holder holds it."""
    with psycopg.connect(_plain(url), connect_timeout=5) as conn:
        epoch, since = conn.execute("SELECT epoch, since FROM sequencer_lease WHERE id = 1").fetchone()
    return epoch, since / 1000


def _only_retriable_answers(load: SpreadWriters, kills) -> None:
    """Every answer was a 200 or a 503, or (status 0) no answer from a server that was dead at the time."""
    statuses = {status for counter in load.statuses.values() for status in counter}
    assert statuses <= {0, 200, 503}, dict(load.statuses)
    for sent, answered, url, status in load.answers:
        if status == 0:
            assert any(kill.url == url and answered >= kill.killed_at and sent <= kill.restarted_at
                       for kill in kills), f"{url} did not answer a write sent at {sent:.3f} while it was alive"


def test_twenty_sigkills_of_the_sequencer_under_load_lose_nothing_and_fork_nothing(tmp_path):
    with fresh_database() as url, Cluster(tmp_path, url, extra_args=SERVER_ARGS) as cluster:
        load = SpreadWriters(cluster.servers)

        async def scenario():
            await asyncio.sleep(1.0)
            return await kill_sequencers(cluster, load, KILLS, bound=BOUND)

        kills = asyncio.run(load.run_while(scenario))
        summary = failover_summary(kills)
        each = ", ".join(f"{s:.2f} s" + ("" if s <= FAILOVER_TARGET else " (over 5 s)") for s in summary["each_s"])
        print(f"\n{KILLS} SIGKILLs of the sequencer under {load.workers} writers on {cluster.count} servers: failover "
              f"(kill to the first acknowledged write sent after it) median {summary['median_s']:.2f} s, max "
              f"{summary['max_s']:.2f} s; {summary['within_target']} of {KILLS} within {FAILOVER_TARGET:.0f} s: "
              f"{each}; {len(load.acknowledged)} writes acknowledged; answers "
              f"{ {u: dict(c) for u, c in load.statuses.items()} }")
        assert len(kills) == KILLS and len({kill.url for kill in kills}) >= 2  # the sequencer moved around
        assert all(kill.failover_seconds < BOUND for kill in kills)
        _only_retriable_answers(load, kills)
        sizes = _stored_sizes(url)
        assert sizes == sorted(set(sizes))  # strictly increasing: one checkpoint per size
        stored = _check_one_chain_holding_everything_acknowledged(url, load)
        assert stored >= len(load.acknowledged) > 0
        assert _lease(url)[0] >= 1 + KILLS  # every kill was a takeover
        _verify(cluster.servers[0], tmp_path)


def test_a_sequencer_stopped_for_30_seconds_is_replaced_and_resumed_never_commits(tmp_path):
    with fresh_database() as url, Cluster(tmp_path, url, extra_args=SERVER_ARGS) as cluster:
        load = SpreadWriters(cluster.servers)
        moments: dict[str, float] = {}
        passed_on: list[tuple[int, dict]] = []

        async def scenario():
            async with aiohttp.ClientSession() as session:
                paused = await cluster.settled_sequencer(session)
                epoch = _lease(url)[0]
                await asyncio.sleep(1.0)
                moments["stopped"], moments["stopped wall"] = time.monotonic(), time.time()
                paused.proc.send_signal(signal.SIGSTOP)
                # A write to each standby right after the stop: passed on to the stopped sequencer, where it is held
                # until the lease moves (to the standby itself or to the other), then cut off and answered.
                held = asyncio.gather(*(_timed_post(session, server) for server in cluster.servers
                                        if server is not paused))
                try:
                    # Another server takes over while it is stopped (a write sent after the stop is acknowledged)
                    # and the held writes are answered before it resumes; it stays stopped for the whole pause.
                    while first_acknowledgement_after(load, moments["stopped"]) is None or not held.done():
                        assert time.monotonic() < moments["stopped"] + PAUSE, \
                            "no takeover, or the held writes unanswered, while the sequencer was stopped"
                        await asyncio.sleep(0.1)
                    while time.monotonic() < moments["stopped"] + PAUSE:
                        await asyncio.sleep(0.1)
                    acknowledged = [a for a in load.answers if a[3] == 200 and a[0] >= moments["stopped"]]
                    others = await cluster.roles(session)  # the stopped one does not answer
                finally:
                    moments["resumed"] = time.monotonic()
                    paused.proc.send_signal(signal.SIGCONT)
                # Resumed: it finds its session ended, steps down and follows the new sequencer.
                deadline = time.monotonic() + BOUND
                while (health := (await cluster.roles(session)).get(paused.url)) is None or \
                        health["role"] != "standby" or health["sequencer"] is None:
                    assert time.monotonic() < deadline, f"the resumed server did not stand by: {health}"
                    await asyncio.sleep(0.1)
                committed = await asyncio.to_thread(metric, paused, "auditlog_batches_committed_total")
                for number in range(5):  # writes sent to it are passed on to the sequencer
                    entry = b"sent to the resumed server %d" % number
                    async with session.post(f"{paused.url}/api/v1/entries", data=entry,
                                            headers={**OCTET, **paused.admin}) as resp:
                        passed_on.append((resp.status, await resp.json(content_type=None)))
                    if resp.status == 200:
                        load.acknowledged[passed_on[-1][1]["index"]] = (entry, passed_on[-1][1]["leaf_hash"],
                                                                         paused.url)
                await asyncio.sleep(2.0)
                committed_later = await asyncio.to_thread(metric, paused, "auditlog_batches_committed_total")
                return paused, epoch, acknowledged, others, health, committed, committed_later, await held

        paused, epoch, acknowledged, others, health, committed, committed_later, held = \
            asyncio.run(load.run_while(scenario))
        taker = next(server for server in cluster.servers if server.url == health["sequencer"])
        taken_at = [int(match.group(1)) for line in taker.output if (match := TAKEN_OVER.search(line))]
        new_epoch, since = _lease(url)
        print(f"\nsequencer stopped for {PAUSE:.0f} s under {load.workers} writers: {taker.url} took the lease "
              f"{since - moments['stopped wall']:.2f} s after the SIGSTOP (at size {taken_at}; a lease is "
              f"{SEQUENCER_LEASE_SECONDS:.0f} s), writes were acknowledged again after "
              f"{acknowledged[0][1] - moments['stopped']:.2f} s; a write sent to each standby at the SIGSTOP was "
              f"answered {', '.join(f'{status} after {seconds:.2f} s' for status, seconds in held)}; the resumed "
              f"server committed {committed} batches, all before; answers "
              f"{ {u: dict(c) for u, c in load.statuses.items()} }")
        # Another server took over while it was stopped, with a new epoch, and writes went on.
        assert acknowledged and acknowledged[0][1] - moments["stopped"] < BOUND
        # What a standby had passed on to the stopped sequencer was answered once the lease moved, not held for the
        # forward's read timeout (on a loaded host the takeover itself can take 15 s: the bound leaves room for it).
        assert all(status in (200, 503) and seconds < FORWARD_READ_TIMEOUT * 0.8 for status, seconds in held), held
        assert taker is not paused and len(taken_at) == 1 and new_epoch == epoch + 1
        assert {body["role"] for body in others.values()} == {"sequencer", "standby"} and len(others) == 2
        # Resumed, it stood by: what it is sent is acknowledged (by the sequencer it passes it to).
        assert [status for status, _ in passed_on] == [200] * 5, passed_on
        # It never committed after the takeover: every batch it counts is one of the checkpoints stored up to the
        # size the new sequencer took over at, and the count did not grow after it stood by.
        sizes = _stored_sizes(url)
        assert committed == committed_later == len([size for size in sizes if 0 < size <= taken_at[0]]) > 0
        statuses = {status for counter in load.statuses.values() for status in counter}
        assert statuses <= {0, 200, 503}, dict(load.statuses)  # 0: no answer within 5 s (the stopped server)
        _check_one_chain_holding_everything_acknowledged(url, load)


async def _timed_post(session: aiohttp.ClientSession, server) -> tuple[int, float]:
    """POST one entry to `server`, waiting as long as it takes: (status, seconds until answered)."""
    sent = time.monotonic()
    async with session.post(f"{server.url}/api/v1/entries", data=b"held by the stopped sequencer",
                            headers={**OCTET, **server.admin}, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        await resp.read()
        return resp.status, time.monotonic() - sent


def _witnessed_and_stamped_sizes(url: str) -> tuple[set[int], set[int]]:
    """The sizes with a stored cosignature, and those with a stored timestamp."""
    with psycopg.connect(_plain(url), connect_timeout=5) as conn:
        cosigned = {size for (size,) in conn.execute("SELECT size FROM checkpoint_cosignatures").fetchall()}
        stamped = {size for (size,) in conn.execute("SELECT size FROM timestamps").fetchall()}
    return cosigned, stamped


def _add(server, count: int, label: str) -> int:
    """POST `count` single entries to `server` (a standby passes them on); the size after the last."""
    index = None
    for number in range(count):
        request = urllib.request.Request(f"{server.url}/api/v1/entries", data=b"%s %d" % (label.encode(), number),
                                         method="POST", headers={**OCTET, **server.admin})
        with urllib.request.urlopen(request, timeout=30) as response:
            index = json.loads(response.read())["index"]
    return index + 1


def test_witnessing_and_timestamping_run_on_the_sequencer_only_and_go_on_after_a_failover(tmp_path):
    # The log's key first (in the first server's data dir, tests/ha_cluster.py): the witness must know it.
    code, out = cli("keygen", "--origin", ORIGIN, "--out", str(tmp_path / "server0" / KEY_FILE_NAME))
    assert code == 0, out
    log_vkey = (tmp_path / "server0" / "log.vkey").read_text().strip()
    witness = Command(tmp_path / "w", None, argv=["witness", "serve", "--port", "0", "--data-dir", str(tmp_path / "w"),
                                                 "--name", "witness.test/w1", "--log", log_vkey])
    tsa = Command(tmp_path / "tsa", None, argv=["tsa", "serve", "--port", "0", "--data-dir", str(tmp_path / "tsa")])
    try:
        witness.start()
        tsa.start()
        _witnessed_and_stamped_once(tmp_path, log_vkey, witness, tsa)
    finally:
        witness.kill()
        tsa.kill()


def _witnessed_and_stamped_once(tmp_path, log_vkey: str, witness: Command, tsa: Command) -> None:
    witness_vkey = (tmp_path / "w" / "witness-ed25519.vkey").read_text().strip()
    jobs = ["--witness", f"{witness.url} {witness_vkey}", "--witness-interval", "0.2", "--tsa-url", tsa.url,
            "--tsa-ca", str(tmp_path / "tsa" / "tsa-ca.pem"), "--timestamp-interval", "0.3"]
    requests = 'auditlog_witness_requests_total{witness="witness.test/w1"}'
    with fresh_database() as url, Cluster(tmp_path, url, count=2, extra_args=[*SERVER_ARGS, *jobs]) as cluster:
        first, second = cluster.servers
        size = _add(second, 5, "sent to the standby")  # passed on to the first, which sequences
        wait_for("a cosignature and a timestamp of the latest checkpoint",
                 lambda: all(size in sizes for sizes in _witnessed_and_stamped_sizes(url)), BOUND)
        # Only the sequencer spoke to the witness and the TSA: the standby's jobs never ran.
        assert metric(first, requests) >= 1 and metric(first, "auditlog_timestamps_stored_total") >= 1
        assert metric(second, "auditlog_witness_rounds_total") == 0 and metric(second, requests) == 0
        assert metric(second, "auditlog_timestamps_stored_total") == 0

        first.kill()  # the second takes over, and its jobs with it
        wait_for("the takeover", lambda: _role(second) == "sequencer", BOUND)
        size = _add(second, 5, "sent to the new sequencer")
        wait_for("a cosignature and a timestamp of the new sequencer's checkpoint",
                 lambda: all(size in sizes for sizes in _witnessed_and_stamped_sizes(url)), BOUND)
        assert metric(second, requests) >= 1 and metric(second, "auditlog_timestamps_stored_total") >= 1
        _verify(second, tmp_path)


def _role(server) -> str:
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
        return json.loads(response.read())["role"]
