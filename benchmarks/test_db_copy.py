"""(9) `auditlog db copy` throughput: entries/s over the whole command's work (every table read in one snapshot,
written in one transaction, the copy re-hashed and checked against every signed checkpoint before it commits), SQLite
to PostgreSQL and back, over a log the Sequencer wrote in batches of 1024. Each copy runs in a process of its own so
that its peak RSS (VmHWM) is the copy's: it must stay flat as the log grows (rows go over CHUNK_ROWS at a time).
The copy must verify and hold every entry.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.conftest import REPO
from benchmarks.workloads import write_log

# Runs one copy with the command's own check and reports its time and the process's peak RSS.
_COPY = """
import json, sys, time
from log.fsck import check_snapshot
from log.note_keys import parse_verifier_key
from log.storage.copy import copy_database

verifier = parse_verifier_key(sys.argv[3])
started = time.perf_counter()
report = copy_database(sys.argv[1], sys.argv[2], check=lambda tx: check_snapshot(tx, verifier))
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "entries": report.entries, "ok": report.checked.ok,
                  "checked": report.checked.entries, "rows": report.total_rows, "peak_mb": peak_kb / 1024}))
"""


def _copy(source: str, destination: str, verifier_key: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _COPY, source, destination, verifier_key], cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_db_copy_throughput(benchmark, bench_mode, results, tmp_path):
    from log.storage.engine import sqlite_url_for
    from tests.postgres import fresh_database

    count = bench_mode.durable_entries
    source = sqlite_url_for(tmp_path / "source.db")
    signer = write_log(source, count)

    with fresh_database() as postgres:
        def run():
            there = _copy(source, postgres, signer.verifier_key)
            back = _copy(postgres, sqlite_url_for(tmp_path / "back.db"), signer.verifier_key)
            return there, back

        there, back = benchmark.pedantic(run, rounds=1, iterations=1)
    for key, figures in (("copy.sqlite_to_postgresql", there), ("copy.postgresql_to_sqlite", back)):
        assert figures["ok"] and figures["entries"] == figures["checked"] == count, figures
        rate = count / figures["seconds"]
        results.record(key, rate, "entries/s", entries=count, entry_bytes=256, rows=figures["rows"],
                       seconds=round(figures["seconds"], 2), peak_rss_mb=round(figures["peak_mb"], 1))
        benchmark.extra_info[key] = rate
