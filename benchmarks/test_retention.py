"""(10) A retention run (log/audit/retention.py): over a log of N audit event entries of which N/10 are past their
policy (received 200 days ago under a 90-day policy), the time of `Retention.run()`: finding what is due, writing
the run's entry with its deletion list, and pruning every due entry (their audit index rows with them). Full mode:
10^6 entries, 10^5 due (target <= 60 s); short mode: `durable_entries`. The log is built fast: entries and their
audit_events and context rows through `Log.add_entries` in batches of 1,024 (no signatures: a run reads only the
index and the entries' ages). The run must prune exactly the due entries and leave the others whole.
"""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

BATCH = 1024
DAY_MS = 86_400_000


def _rows(index: int, tenant: str):
    from log.audit.tables import EVENT_COLUMNS, audit_event_context, audit_events
    from log.storage import RowInsert

    event = (tenant, "bench", f"ev-{index}", f"run-{index // 16}", f"tr-{index // 16}", None, "agent", "a-1",
             "model_call", 1_765_000_000_000 + index)
    return [RowInsert(audit_events.name, EVENT_COLUMNS, event),
            RowInsert(audit_event_context.name, ("name", "value"), ("case_id", f"case-{index // 64}"))]


async def _build_and_run(url: str, data_dir, count: int, due: int) -> tuple[float, object, int]:
    from log.audit.retention import Retention
    from log.blobs import FileBlobStore
    from log.service import Log, LogConfig

    log = await Log.open(LogConfig(data_dir=data_dir, database_url=url, origin="bench.example/retention",
                                   max_pending=1 << 22))
    try:
        pending = []
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            entries = [b'{"bench":%d,"type":"auditlog.envelope/v1"}' % i for i in range(start, start + size)]
            pending.append(log.add_entries(entries, rows=[_rows(i, "acme") for i in range(start, start + size)]))
            if len(pending) >= 16:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        old = int(time.time() * 1000) - 200 * DAY_MS
        await log.write(lambda tx: tx.execute(sa.text(f"UPDATE entries SET received_at = {old} WHERE idx < {due}")))
        retention = Retention(log, FileBlobStore(data_dir / "blobs"))
        await retention.set_policy("acme", "event", "*", 90, "benchmark: 90 days")

        started = time.perf_counter()
        [result] = await retention.run()
        seconds = time.perf_counter() - started

        pruned = await log.read(lambda tx: tx.execute(sa.text(
            "SELECT count(*), min(idx), max(idx) FROM pruned_entries"))[0])
        intact = await log.read(lambda tx: tx.execute(sa.text(
            f"SELECT count(*) FROM entries WHERE idx >= {due} AND length(data) > 0"))[0][0])
        return seconds, (result, tuple(pruned)), intact
    finally:
        await log.close()


def test_retention_run(benchmark, bench_mode, results, database, tmp_path):
    backend, url = database
    count = 1_000_000 if bench_mode.name == "full" else bench_mode.durable_entries
    due = count // 10

    def run():
        return asyncio.run(_build_and_run(url, tmp_path / "data", count, due))

    seconds, (result, pruned), intact = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result.deleted["entry"] == due and pruned == (due, 0, due - 1), (result, pruned)
    assert intact == count - due + 2  # every other event, the policy's entry and the run's
    results.record(f"retention.run.{backend}", seconds, "s", entries=count, due=due,
                   rate_entries_per_s=round(due / seconds), run_index=result.index)
    benchmark.extra_info[f"retention.run.{backend}"] = seconds
