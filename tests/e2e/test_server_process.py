"""End to end against real `auditlog serve` processes, on SQLite and on PostgreSQL.

What a production log promises: concurrent submissions get distinct consecutive indices and a root anyone can
recompute; SIGKILL never loses an acknowledged entry; one writer per database; tampering is found by `verify`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import urllib.request

import aiohttp
import psycopg

from log.checkpoint import open_checkpoint
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from tests.processes import REPO
from tests.reference_tree import mth


async def _log_info(session, url):
    async with session.get(f"{url}/api/v1/log") as resp:
        assert resp.status == 200
        return await resp.json()


async def _verified_checkpoint(session, url, vkey):
    async with session.get(f"{url}/checkpoint") as resp:
        assert resp.status == 200
        note = await resp.read()
    checkpoint, _ = open_checkpoint(note, parse_verifier_key(vkey), "e2e.test/log")
    return checkpoint


async def _post(session, url, entry: bytes):
    async with session.post(f"{url}/api/v1/entries", data=entry,
                            headers={"Content-Type": "application/octet-stream"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _all_entries(session, url, size):
    out = []
    for index in range(size):
        async with session.get(f"{url}/api/v1/entries/{index}") as resp:
            assert resp.status == 200
            out.append(base64.b64decode((await resp.json())["data"]))
    return out


def test_concurrent_submissions_get_consecutive_indices_and_a_recomputable_root(server_factory):
    server = server_factory().start()

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200), headers=server.admin) as session:
            info = await _log_info(session, server.url)
            entries = [f"concurrent entry {i}".encode() for i in range(1000)]
            receipts = await asyncio.gather(*(_post(session, server.url, e) for e in entries))
            indices = [r["index"] for r in receipts]
            assert sorted(indices) == list(range(1000))
            for entry, receipt in zip(entries, receipts):
                assert base64.b64decode(receipt["leaf_hash"]) == hash_leaf(entry)
                assert receipt["tree_size"] > receipt["index"]
            by_index = [None] * 1000
            for entry, index in zip(entries, indices):
                by_index[index] = entry
            checkpoint = await _verified_checkpoint(session, server.url, info["verifier_key"])
            assert checkpoint.size == 1000
            assert checkpoint.root_hash == mth(by_index)

    asyncio.run(scenario())


def test_sigkill_mid_load_keeps_every_acknowledged_entry(server_factory):
    server = server_factory().start()
    acknowledged: dict[int, bytes] = {}

    async def load(stop_after: int):
        async with aiohttp.ClientSession(headers=server.admin) as session:
            counter = iter(range(10**9))

            async def worker(w):
                while len(acknowledged) < stop_after:
                    entry = f"load {w} {next(counter)}".encode() * 3
                    try:
                        receipt = await _post(session, server.url, entry)
                    except (aiohttp.ClientError, AssertionError):
                        return
                    acknowledged[receipt["index"]] = entry

            workers = [asyncio.create_task(worker(w)) for w in range(32)]
            while len(acknowledged) < stop_after:
                await asyncio.sleep(0.01)
            server.kill()  # SIGKILL while the workers still have requests in flight
            await asyncio.gather(*workers, return_exceptions=True)

    asyncio.run(load(stop_after=600))
    assert len(acknowledged) >= 600
    server.start()

    async def check():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            info = await _log_info(session, server.url)
            size = info["tree_size"]
            assert size >= max(acknowledged) + 1
            stored = await _all_entries(session, server.url, size)
            for index, entry in acknowledged.items():
                assert stored[index] == entry, f"acknowledged entry {index} was lost or changed"
            receipt = await _post(session, server.url, b"after the restart")
            assert receipt["index"] == size
            checkpoint = await _verified_checkpoint(session, server.url, info["verifier_key"])
            assert checkpoint.size == size + 1
            assert checkpoint.root_hash == mth(stored + [b"after the restart"])

    asyncio.run(check())


def test_a_second_server_on_the_same_database_is_refused_on_sqlite_and_stands_by_on_postgresql(server_factory,
                                                                                                database_url):
    """SQLite has one writer per file; on PostgreSQL the second server stands by (tests/e2e/test_ha_failover.py)."""
    first = server_factory().start()
    second = server_factory()
    if database_url is None:
        code, output = second.run_to_exit()
        assert code != 0
        assert "sequencer" in output.lower() and "lock" in output.lower(), output
    else:
        second.start()
        assert "standing by" in "".join(second.output)
        with urllib.request.urlopen(f"{second.url}/healthz", timeout=10) as answer:
            assert json.loads(answer.read())["role"] == "standby"
    assert first.proc.poll() is None


def _tamper_entry(data_dir, database_url, index: int) -> None:
    """Flip one byte of a stored entry, as someone with write access to the database could."""
    if database_url is None:
        with sqlite3.connect(data_dir / "auditlog.db") as db:
            (data,) = db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
            changed = bytes([data[0] ^ 0x01]) + data[1:]
            db.execute("UPDATE entries SET data = ? WHERE idx = ?", (changed, index))
    else:
        with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as db:
            db.execute("UPDATE entries SET data = set_byte(data, 0, get_byte(data, 0) # 1) WHERE idx = %s",
                       (index,))


def test_verify_finds_a_byte_changed_in_the_database(server_factory, tmp_path, database_url):
    server = server_factory().start()

    async def fill():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            info = await _log_info(session, server.url)
            body = {"entries": [base64.b64encode(f"entry {i}".encode()).decode() for i in range(700)]}
            async with session.post(f"{server.url}/api/v1/entries", json=body) as resp:
                assert resp.status == 200, await resp.text()
            return info["verifier_key"]

    vkey = asyncio.run(fill())

    def verify():
        command = [sys.executable, "-m", "api.cli", "verify", "--server", server.url, "--key", vkey,
                   "--state", str(tmp_path / "monitor.json"), f"--token={server.admin_token}"]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    clean = verify()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "700" in clean.stdout and "VALID" in clean.stdout

    server.stop()
    # Entry 100, older than the newest two level-0 tiles (256..699) that the start-up check re-hashes: the server
    # starts and serves it, and the monitor must find it. (A change there is refused at start: tests/test_fsck.py.)
    _tamper_entry(server.data_dir, database_url, 100)
    server.start()
    tampered = verify()
    assert tampered.returncode != 0
    assert "100" in tampered.stdout + tampered.stderr, tampered.stdout + tampered.stderr


def test_startup_refuses_a_store_whose_tiles_disagree_with_the_checkpoint(server_factory, database_url):
    server = server_factory().start()

    async def fill():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            for i in range(5):
                await _post(session, server.url, f"entry {i}".encode())

    asyncio.run(fill())
    server.stop()
    if database_url is None:
        with sqlite3.connect(server.data_dir / "auditlog.db") as db:
            db.execute("UPDATE tiles SET data = zeroblob(length(data)) WHERE level = 0 AND idx = 0")
    else:
        with psycopg.connect(database_url) as db:
            db.execute("UPDATE tiles SET data = set_byte(data, 0, get_byte(data, 0) # 1) WHERE level = 0")
    code, output = server.run_to_exit()
    assert code != 0
    assert "does not match" in output or "tile" in output, output
