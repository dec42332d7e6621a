"""(7) `auditlog db check` throughput: entries/s re-hashed, integrated and compared with the stored tiles and every
stored checkpoint (log/fsck.py check_log), on SQLite and PostgreSQL, over a log the Sequencer wrote in batches of
1024 (one checkpoint per batch), read-only in one snapshot as the command does. The check must pass and count every
entry, tile and checkpoint.
"""

from __future__ import annotations

import time

from benchmarks.workloads import BATCH_SIZE, write_log


def test_db_check_throughput(benchmark, bench_mode, results, database):
    from log.fsck import check_log
    from log.note_keys import parse_verifier_key
    from log.storage.store import SqlLogStore

    backend, url = database
    count = bench_mode.durable_entries
    signer = write_log(url, count)

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
