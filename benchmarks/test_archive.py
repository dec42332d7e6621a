"""(10) `auditlog archive` and `auditlog archive verify`: seconds to archive a log of N entries (every hash tile, every
entry bundle, the checkpoint, the manifest; a .tar, fsynced and renamed into place) from its SQLite database in one
snapshot with each entry checked against its leaf hash, and seconds to verify that archive offline (every file
hashed, the checkpoint's signature, every tile level by level and the root, every entry re-hashed). The log is the
one the Sequencer wrote in batches of 1024 (as for db check and db copy), 256-byte entries. Target: each <= 60 s at
10^6 entries. The archive must verify and hold every entry.
"""

from __future__ import annotations

import time

from benchmarks.workloads import write_log


def test_archive_and_verify_seconds(benchmark, bench_mode, results, tmp_path):
    from log.archive import verify_archive
    from log.archive_writer import write_archive
    from log.audit.archive import AUDIT_RECORDS
    from log.storage.engine import sqlite_url_for
    from log.storage.store import SqlLogStore

    count = bench_mode.durable_entries
    url = sqlite_url_for(tmp_path / "log.db")
    signer = write_log(url, count)

    store = SqlLogStore(url, read_only=True)
    try:
        def run():
            started = time.perf_counter()
            summary = write_archive(store, tmp_path / "archive.tar", log_key=signer.verifier_key, from_size=0,
                                    records=AUDIT_RECORDS)
            written = time.perf_counter()
            report = verify_archive(summary.path, signer.verifier_key, records=AUDIT_RECORDS)
            return summary, report, written - started, time.perf_counter() - written

        summary, report, write_seconds, verify_seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        store.close()
    assert report.ok, report.failures
    assert summary.entries == report.entries == count and summary.to_size == count
    archive_bytes = summary.path.stat().st_size
    for key, seconds in (("archive.write", write_seconds), ("archive.verify", verify_seconds)):
        results.record(f"{key}@{count}", round(seconds, 2), "s", entries=count, entry_bytes=256,
                       entries_per_second=round(count / seconds), archive_bytes=archive_bytes, files=summary.files)
    benchmark.extra_info.update(write_seconds=write_seconds, verify_seconds=verify_seconds)
