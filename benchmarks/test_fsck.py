"""(7) `auditlog db check` throughput: entries/s re-hashed, integrated and compared with the stored tiles and every
stored checkpoint (log/fsck.py check_log), on SQLite and PostgreSQL, over a log the Sequencer wrote in batches of
1024 (one checkpoint per batch), read-only in one snapshot as the command does. The check must pass and count every
entry, tile and checkpoint.
"""

from __future__ import annotations

import asyncio
import time


from benchmarks.workloads import BATCH_SIZE, chunks, random_entries


async def _write(store, signer, entries) -> None:
    from log.sequencer import Sequencer

    seq = Sequencer(store, store.acquire_writer(), signer, batch_size=BATCH_SIZE, max_pending=1 << 22)
    await seq.start()
    try:
        pending = [asyncio.create_task(seq.submit(batch)) for batch in chunks(entries, BATCH_SIZE)]
        await asyncio.gather(*pending)
    finally:
        await seq.close()


def test_db_check_throughput(benchmark, bench_mode, results, database):
    from log.fsck import check_log
    from log.note_keys import generate_signer_key, parse_signer_key, parse_verifier_key
    from log.storage.engine import upgrade_schema
    from log.storage.store import SqlLogStore

    backend, url = database
    upgrade_schema(url)
    signer = parse_signer_key(generate_signer_key("bench.example/log")[0])
    count = bench_mode.durable_entries
    writer_store = SqlLogStore(url)
    try:
        asyncio.run(_write(writer_store, signer, random_entries(count)))
    finally:
        writer_store.close()

    store = SqlLogStore(url, read_only=True)
    verifier = parse_verifier_key(signer.verifier_key)
    try:
        def run():
            started = time.perf_counter()
            report = check_log(store, verifier)
            return time.perf_counter() - started, report

        elapsed, report = benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        store.close()
    assert report.ok, report.disagreements
    assert report.entries == count and report.checkpoints == 1 + -(-count // BATCH_SIZE)  # size 0, each batch
    rate = count / elapsed
    results.record(f"check.{backend}", rate, "entries/s", entries=count, entry_bytes=256, tiles=report.tiles,
                   checkpoints=report.checkpoints, seconds=elapsed)
    benchmark.extra_info.update(entries_per_second=rate)
