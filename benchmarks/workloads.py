"""Shared workload pieces: entry generation, timing, percentiles, and the in-memory integration path."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

ENTRY_SIZE = 256
BATCH_SIZE = 1024


def random_entries(count: int, size: int = ENTRY_SIZE) -> list[bytes]:
    """`count` distinct random entries of `size` bytes (made before any timing starts)."""
    blob = os.urandom(count * size)
    return [blob[i:i + size] for i in range(0, count * size, size)]


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def integrate_in_memory(entries: Sequence[bytes], batch_size: int = BATCH_SIZE):
    """What the sequencer does per batch, minus signing and storage: hash the leaves, extend the frontier and its
    edge tiles, and take the changed tiles. Returns (frontier, edge, tile writes).
    """
    from log.compact import CompactRange
    from log.hashing import hash_leaves
    from log.edge import EdgeTiles, extend_tree

    frontier = CompactRange()
    edge = EdgeTiles(0, {})
    tiles_written = 0
    for batch in chunks(entries, batch_size):
        extend_tree(frontier, edge, hash_leaves(batch))
        tiles_written += len(edge.take_dirty())
    return frontier, edge, tiles_written


def timed(fn: Callable, *args) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - started, value


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def write_log(url: str, count: int, origin: str = "bench.example/log"):
    """A log of `count` random entries at `url` (schema migrated first), written by the Sequencer in batches of
    BATCH_SIZE (one checkpoint per batch) under a new key; returns that key's signer. What the db check, db copy and
    archive benchmarks measure against."""
    import asyncio

    from log.note_keys import generate_signer_key, parse_signer_key
    from log.sequencer import Sequencer
    from log.storage.engine import upgrade_schema
    from log.storage.store import SqlLogStore

    async def sequence(store, signer) -> None:
        seq = Sequencer(store, store.acquire_writer(), signer, batch_size=BATCH_SIZE, max_pending=1 << 22)
        await seq.start()
        try:
            pending = [asyncio.create_task(seq.submit(batch)) for batch in chunks(random_entries(count), BATCH_SIZE)]
            await asyncio.gather(*pending)
        finally:
            await seq.close()

    signer = parse_signer_key(generate_signer_key(origin)[0])
    upgrade_schema(url)
    store = SqlLogStore(url)
    try:
        asyncio.run(sequence(store, signer))
    finally:
        store.close()
    return signer
