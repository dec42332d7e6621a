"""(2) Durable integration: entries/s through the Sequencer into SQLite and PostgreSQL, as in production.

Batches of 1024; each batch's entries, changed tiles and signed checkpoint committed in one transaction (SQLite
WAL with synchronous=FULL; PostgreSQL with COPY), acknowledged only after the commit. Submissions of 1024 entries
are kept 16 deep in the queue so the writer never waits for work; the clock runs from the first submission to the
last acknowledgement. Afterwards startup reconciliation (`load_tree_state`: signature, tiles, entry count, root
from tiles) must pass on the stored log, and the stored root must equal the root recomputed in memory.
"""

from __future__ import annotations

import asyncio
import time


from benchmarks.workloads import BATCH_SIZE, chunks, integrate_in_memory, random_entries

IN_FLIGHT = 16


async def _ingest(store, signer, entries) -> tuple[float, list[int]]:
    from log.sequencer import Sequencer

    seq = Sequencer(store, store.acquire_writer(), signer, batch_size=BATCH_SIZE, max_pending=1 << 22)
    await seq.start()
    firsts: list[int] = []
    window = asyncio.Semaphore(IN_FLIGHT)

    async def submit(batch):
        try:
            receipt = await seq.submit(batch)
        finally:
            window.release()
        firsts.append(receipt.first_index)

    try:
        started = time.perf_counter()
        tasks = []
        for batch in chunks(entries, BATCH_SIZE):
            await window.acquire()  # at most IN_FLIGHT submissions queued or being integrated
            tasks.append(asyncio.create_task(submit(batch)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    finally:
        await seq.close()
    return elapsed, firsts


def test_durable_integration(benchmark, bench_mode, results, database):
    from log.note_keys import generate_signer_key, parse_signer_key
    from log.sequencer import load_tree_state
    from log.storage.engine import upgrade_schema
    from log.storage.store import SqlLogStore

    backend, url = database
    upgrade_schema(url)
    store = SqlLogStore(url)
    signer = parse_signer_key(generate_signer_key("bench.example/log")[0])
    count = bench_mode.durable_entries
    entries = random_entries(count)
    try:
        elapsed, firsts = benchmark.pedantic(
            lambda: asyncio.run(_ingest(store, signer, entries)), rounds=1, iterations=1
        )
        # Correctness of the stored work: every batch got its own indices, the store reconciles, roots agree.
        assert sorted(firsts) == list(range(0, count, BATCH_SIZE))
        state = load_tree_state(store, signer)
        assert state.published.size == count
        expected_root = integrate_in_memory(entries)[0].root()
        assert state.published.root_hash == expected_root
        assert store.read_entries(count - 3, count) == entries[-3:]
        db_bytes = store.storage_bytes()
    finally:
        store.close()
    rate = count / elapsed
    results.record(
        f"durable.{backend}", rate, "entries/s", entries=count, entry_bytes=256, batch_size=BATCH_SIZE,
        in_flight_submissions=IN_FLIGHT, seconds=elapsed, database_bytes_per_entry=round(db_bytes / count, 1),
    )
    benchmark.extra_info.update(entries_per_second=rate)
