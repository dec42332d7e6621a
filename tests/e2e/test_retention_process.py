"""Retention against a real `auditlog serve` process: a run killed with SIGKILL half-way through its deletions
leaves no entry half-pruned (each is whole, or empty with its pruned_entries row), the restarted server finishes
the run from its list, and `auditlog verify` finds the log VALID before and after (SQLite; the run itself is
tested on PostgreSQL in process, tests/test_retention.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time

import aiohttp

from tests.e2e.test_audit_process import Producer, _admin_headers, _call, _register
from tests.processes import REPO, ServerProcess


def _state(db) -> tuple[dict[int, tuple[int, int | None]], list[tuple]]:
    """{entry index: (data length, pruned row's deletion index)} and the retention_runs rows, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        entries = {idx: (length, deletion) for idx, length, deletion in conn.execute(
            "SELECT e.idx, length(e.data), p.deletion_idx FROM entries e "
            "LEFT JOIN pruned_entries p ON p.idx = e.idx")}
        runs = conn.execute("SELECT idx, finished_at FROM retention_runs").fetchall()
    finally:
        conn.close()
    return entries, runs


def _verify(server: ServerProcess) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "verify", "--server", server.url, "--log-key",
                           str(server.data_dir / "log.vkey"), "--token", server.admin_token],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_run_killed_half_way_leaves_nothing_half_deleted_and_the_restarted_server_finishes_it(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setenv("AUDITLOG_TEST_RETENTION_CHUNK", "20")
    monkeypatch.setenv("AUDITLOG_TEST_RETENTION_DELAY", "0.5")
    server = ServerProcess(tmp_path / "data", extra_args=["--retention-interval", "0"]).start()
    db = server.data_dir / "auditlog.db"
    agent = Producer("agent-1")
    try:
        async def fill() -> None:
            async with aiohttp.ClientSession() as session:
                admin = _admin_headers(server.data_dir)
                await _register(session, server.url, admin, agent)
                events = [agent.envelope(agent.event(f"run-{n % 7}")) for n in range(150)]
                status, _, body = await _call(session, "POST", f"{server.url}/api/v1/events",
                                              json={"events": events})
                assert status == 200, body
                await asyncio.sleep(0.01)  # logged before the policy's "now": due at 0 days
                status, _, body = await _call(session, "POST", f"{server.url}/api/v1/retention/policies",
                                              headers=admin, json={"tenant": "acme", "record_class": "event",
                                                                   "selector": "*", "retain_days": 0,
                                                                   "reason": "test: everything is due"})
                assert status == 201, body

        asyncio.run(fill())
        assert _verify(server).returncode == 0

        # Ask for a run (its answer never comes: the server is killed while it deletes, chunk by chunk).
        runner = subprocess.Popen([sys.executable, "-m", "api.cli", "retention", "run", "--server", server.url,
                                   "--token", server.admin_token], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            entries, runs = _state(db)
            pruned = sum(1 for _, deletion in entries.values() if deletion is not None)
            if runs and 20 <= pruned < 150:
                break
            time.sleep(0.05)
        server.kill()
        runner.wait(30)

        entries, runs = _state(db)
        [(run_index, finished_at)] = runs
        assert finished_at is None, "killed half-way: the run is not marked finished"
        pruned = {idx for idx, (_, deletion) in entries.items() if deletion is not None}
        assert 20 <= len(pruned) < 150
        # Nothing half-deleted: every entry is whole, or empty with the row naming the run.
        for idx, (length, deletion) in entries.items():
            assert (length == 0) == (deletion is not None), f"entry {idx}: {length} bytes, pruned by {deletion}"
            assert deletion in (None, run_index)

        # The restarted server finishes the run from its list at start, and the log verifies.
        monkeypatch.setenv("AUDITLOG_TEST_RETENTION_DELAY", "0")
        server.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _state(db)[1][0][1] is None:
            time.sleep(0.1)
        entries, runs = _state(db)
        assert runs[0][1] is not None, "".join(server.output[-20:])
        assert sum(1 for _, deletion in entries.values() if deletion == run_index) == 150
        assert all((length == 0) == (deletion is not None) for length, deletion in entries.values())
        verified = _verify(server)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "integrity VALID" in verified.stdout and "pruned 150" in verified.stdout
    finally:
        server.kill()
