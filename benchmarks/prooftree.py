"""A log of a given size for the proof-serving benchmarks, built once and cached between runs.

The fastest honest way to a 10^7-entry log: the production write path in-process (`Log.open` → Sequencer →
`LogWriter.commit_batch`), with large batches (65,536 entries), so every entry, tile and checkpoint is stored
exactly as the server would store it, and the server's startup reconciliation checks the result like any other
log. Entries are 64 random bytes (proofs are built from tiles only; entry size changes nothing they read).

The cache lives in `$AUDITLOG_BENCH_CACHE` (default: the system temp dir)/auditlog-bench-cache, keyed by size,
entry size and a fingerprint of the schema and migrations, so a schema change rebuilds instead of reusing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.server import REPO

ORIGIN = "bench.example/proof-tree"
ENTRY_BYTES = 64
BUILD_BATCH = 65_536
FORMAT = 1  # bump to invalidate every cached tree


def _fingerprint() -> str:
    digest = hashlib.sha256(str(FORMAT).encode())
    sources = [REPO / "log" / "storage" / "schema.py", *sorted((REPO / "alembic" / "versions").glob("*.py"))]
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get("AUDITLOG_BENCH_CACHE", tempfile.gettempdir())) / "auditlog-bench-cache"


async def _build(data_dir: Path, size: int) -> None:
    from log.service import Log, LogConfig

    log = await Log.open(LogConfig(data_dir=data_dir, origin=ORIGIN, batch_size=BUILD_BATCH,
                                   max_pending=4 * BUILD_BATCH))
    try:
        pending: set[asyncio.Task] = set()
        done = 0
        while done < size:
            count = min(BUILD_BATCH, size - done)
            blob = os.urandom(count * ENTRY_BYTES)
            entries = [blob[i:i + ENTRY_BYTES] for i in range(0, len(blob), ENTRY_BYTES)]
            pending.add(asyncio.create_task(log.add_entries(entries)))
            done += count
            if len(pending) >= 2:  # one batch being committed while the next is hashed and queued
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()
        for task in pending:
            await task
        assert log.size == size
    finally:
        await log.close()


def warm_page_cache(data_dir: Path) -> int:
    """Read the log's database files once, so the OS page cache holds them as it does on a server under steady
    random read traffic. Returns the bytes read.

    Why: these machines run DAMON proactive reclaim (kdamond, action pageout), which evicts unmapped file pages left
    idle for about 60 s even with 20 GB free. A tree built minutes before would otherwise be served mostly from disk
    (a random tile read: ~200 us cold against ~25 us cached, measured), which measures the virtual disk, not the
    server. The cache is warmed, never bypassed: each run still reads every tile through SQLite.
    """
    total = 0
    for path in sorted(data_dir.glob("auditlog.db*")):
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


def proof_tree(size: int) -> tuple[Path, float | None]:
    """The data dir of a log of exactly `size` entries (origin ORIGIN), and the seconds a fresh build took."""
    target = cache_root() / f"proof-tree-{size}-{ENTRY_BYTES}B-{_fingerprint()}"
    if (target / "complete").exists():
        return target, None
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.perf_counter()
    asyncio.run(_build(building, size))
    seconds = time.perf_counter() - started
    (building / "complete").write_text(f"{size} entries built in {seconds:.1f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    return target, seconds
