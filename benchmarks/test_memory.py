"""(6) Memory: the server's peak RSS while it ingests many entries over HTTP, and database bytes per entry.

A fresh SQLite server takes `memory_entries` 256-byte entries through the batch API (4 clients, 1024 entries per
request), while a thread samples its VmRSS every quarter second; the peak is VmHWM read at the end. "Flat" is
judged from the samples: RSS at 10 %, 50 % and 100 % of the run are reported beside the peak.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.server import RssSampler, Server, loadgen_with_server_cpu, proc_status_kb
from benchmarks.verify import check_acknowledged


def _db_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.glob("auditlog.db*"))


def _rss_at(samples, fraction):
    if not samples:
        return None
    return samples[min(len(samples) - 1, int(fraction * (len(samples) - 1)))][1] / 1024


def test_server_memory_while_ingesting(benchmark, bench_mode, results, tmp_path, needs):
    needs("api.cli", "memory.server_peak_rss", "memory.db_bytes_per_entry")
    requests = bench_mode.memory_entries // 1024
    entries = requests * 1024
    data_dir = tmp_path / "data"
    with Server(data_dir) as server:
        idle_mb = proc_status_kb(server.pid, "VmRSS") / 1024
        with RssSampler(server.pid) as sampler:
            report = benchmark.pedantic(
                loadgen_with_server_cpu, args=(server, "batch"),
                kwargs=dict(concurrency=4, requests=requests, batch=1024, timeout=4 * 3600),
                rounds=1, iterations=1,
            )
        check_acknowledged(server.url, report, expect_entries=entries)
    peak_mb = sampler.peak_kb / 1024
    samples = sampler.samples
    results.record(
        "memory.server_peak_rss", peak_mb, "MB", entries=entries, idle_rss_mb=round(idle_mb, 1),
        rss_mb_at_10pct=_rss_at(samples, 0.1), rss_mb_at_50pct=_rss_at(samples, 0.5),
        rss_mb_at_end=_rss_at(samples, 1.0), samples=len(samples), backend="sqlite",
        ingest_entries_per_second=report["entries_per_second"], ingest_seconds=report["seconds"],
    )
    db_bytes = _db_bytes(data_dir)
    results.record("memory.db_bytes_per_entry", db_bytes / entries, "bytes", entries=entries, entry_bytes=256,
                   database_bytes=db_bytes, note="auditlog.db plus its -wal/-shm files after a clean shutdown")
