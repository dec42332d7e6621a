"""(6) Memory: the server's peak RSS while it ingests many entries over HTTP, and database bytes per entry; its
peak RSS under eight concurrent blob PUTs.

A fresh SQLite server takes `memory_entries` 256-byte entries through the batch API (4 clients, 1024 entries per
request), while a thread samples its VmRSS every quarter second; the peak is VmHWM read at the end. "Flat" is
judged from the samples: RSS at 10 %, 50 % and 100 % of the run are reported beside the peak.

Blobs: eight clients PUT `blob_put_bytes` each at once (64 MiB in the full mode: the largest blob the server
takes), then, in the full mode, eight more of 70 MiB each, chunked (no Content-Length), which the server refuses with
413 once 64 MiB have come. The bodies are generated as they are sent, so the load generator holds none whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
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
        check_acknowledged(server.url, report, expect_entries=entries, token=server.token)
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


_BLOCK = os.urandom(1 << 20)


def _blob_pieces(number: int, size: int):
    """Blob `number` of `size` bytes, in 1 MiB pieces: an 8-byte header, then the block, so each blob differs."""
    head = number.to_bytes(8, "big")
    yield head + _BLOCK[: min(size, len(_BLOCK)) - len(head)]
    left = size - len(_BLOCK)
    while left > 0:
        yield _BLOCK[:left]
        left -= len(_BLOCK)


async def _put_blobs(url: str, count: int, size: int, *, chunked: bool, first: int, token: str) -> list[int]:
    import aiohttp

    async def body(number):
        for piece in _blob_pieces(number, size):
            yield piece

    async def put(session, number):
        digest = hashlib.sha256()
        for piece in _blob_pieces(number, size):
            digest.update(piece)
        headers = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {token}"}
        if not chunked:
            headers["Content-Length"] = str(size)
        async with session.put(f"{url}/api/v1/blobs/{digest.hexdigest()}", data=body(number),
                               headers=headers) as resp:
            await resp.read()
            return resp.status

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(put(session, first + i) for i in range(count)),
                                         return_exceptions=True))


def test_server_memory_under_concurrent_blob_puts(benchmark, bench_mode, results, tmp_path, needs):
    needs("api.cli", "memory.blob_puts_peak_rss")
    size, puts = bench_mode.blob_put_bytes, 8
    with Server(tmp_path / "data", extra_args=["--verify-processes", "0"]) as server:
        idle_mb = proc_status_kb(server.pid, "VmRSS") / 1024
        with RssSampler(server.pid) as sampler:
            start = time.monotonic()
            stored = benchmark.pedantic(asyncio.run, args=(_put_blobs(server.url, puts, size, chunked=False, first=0,
                                                                   token=server.token),),
                                        rounds=1, iterations=1)
            seconds = time.monotonic() - start
            refused = []
            if bench_mode.blob_put_over_limit:
                refused = asyncio.run(_put_blobs(server.url, puts, 70 << 20, chunked=True, first=puts,
                                                token=server.token))
    assert stored == [201] * puts, stored
    assert all(status == 413 or isinstance(status, Exception) for status in refused), refused
    peak_mb = sampler.peak_kb / 1024
    results.record(
        "memory.blob_puts_peak_rss", peak_mb, "MB", idle_rss_mb=round(idle_mb, 1), concurrent_puts=puts,
        blob_bytes=size, put_seconds=round(seconds, 2), megabytes_per_second=round(puts * size / seconds / 1e6, 1),
        over_limit_puts=len(refused), over_limit_bytes=70 << 20 if refused else 0,
        over_limit_statuses=sorted({str(s) for s in refused}), backend="sqlite",
    )
    benchmark.extra_info.update(peak_rss_mb=peak_mb)
