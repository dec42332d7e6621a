"""(5) Proof serving from a large tree: in process through the Log, and over HTTP from a server process.

The tree comes from benchmarks/prooftree.py (built through the production write path once, then cached). In
process: random indices and sizes, each call timed on its own, caches as a fresh server has them (warm after the
first few thousand). Over HTTP: 64 concurrent clients on random inclusion proofs, consistency proofs, tiles and
the checkpoint. Every in-process proof is verified against the signed checkpoint after timing; a sample of the
HTTP answers is fetched again and verified the same way.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from benchmarks.loadgen import DESCRIPTION
from benchmarks.prooftree import ORIGIN, proof_tree, warm_page_cache
from benchmarks.server import BareServer, Server, loadgen_with_server_cpu
from benchmarks.verify import fetch_and_verify_http_proofs, verify_consistency, verify_inclusion
from benchmarks.workloads import percentile
from tests.processes import child_processes

LOADGEN = DESCRIPTION["raw"]


@pytest.fixture(scope="module")
def tree(bench_mode):
    data_dir, build_seconds = proof_tree(bench_mode.proof_tree_size)
    return data_dir, bench_mode.proof_tree_size, build_seconds


async def _in_process(data_dir, size, requests, seed):
    from log.service import Log, LogConfig

    rng = random.Random(seed)
    log = await Log.open(LogConfig(data_dir=data_dir, origin=ORIGIN))
    try:
        assert log.size == size
        root = log.checkpoint.root_hash
        inclusion, consistency = [], []
        for _ in range(requests):
            index = rng.randrange(size)
            started = time.perf_counter()
            proof = await log.inclusion_proof(index, size)
            inclusion.append((time.perf_counter() - started, index, proof))
        for _ in range(requests):
            first = rng.randrange(1, size + 1)
            started = time.perf_counter()
            proof = await log.consistency_proof(first, size)
            consistency.append((time.perf_counter() - started, first, proof))
        # Correctness, after the clock: every proof verifies against the checkpoint's root (and the old root
        # recomputed for each first size from the tiles).
        for _, index, proof in inclusion:
            leaf_hash = (await log.entry(index)).leaf_hash
            verify_inclusion(index, size, leaf_hash, proof, root)
        for _, first, proof in consistency:
            verify_consistency(first, size, await _root_at(log, first), root, proof)
        return inclusion, consistency
    finally:
        await log.close()


async def _root_at(log, size):
    """The root of the tree's first `size` leaves, folded from stored perfect-subtree hashes (tiles)."""
    from log.compact import CompactRange, frontier_node_ids

    nodes = frontier_node_ids(size)
    hashes = await asyncio.get_running_loop().run_in_executor(None, log.node_hashes, nodes)
    return CompactRange(size, [hashes[node] for node in nodes]).root()


def test_proofs_in_process(benchmark, bench_mode, results, request, needs):
    size = bench_mode.proof_tree_size
    needs("log.proofs", f"proof.inclusion.inproc@{size}", f"proof.consistency.inproc@{size}")
    data_dir, size, build_seconds = request.getfixturevalue("tree")
    warm_page_cache(data_dir)
    inclusion, consistency = benchmark.pedantic(
        lambda: asyncio.run(_in_process(data_dir, size, bench_mode.proof_requests, seed=1)), rounds=1, iterations=1
    )
    for key, samples in (("proof.inclusion.inproc", inclusion), ("proof.consistency.inproc", consistency)):
        micros = [seconds * 1e6 for seconds, _, _ in samples]
        results.record(
            f"{key}@{size}", sum(micros) / len(micros), "µs", tree_size=size, calls=len(micros),
            p50_us=percentile(micros, 0.5), p99_us=percentile(micros, 0.99), verified=len(micros),
            tree_build_seconds=build_seconds, note="mean of sequential awaited calls on a freshly opened Log "
            "(random positions; the Log's caches start cold, the OS page cache warm: see prooftree.warm_page_cache)",
        )


def _paths(kind: str, size: int, count: int, rng: random.Random) -> list[str]:
    from log.tiles import tiles_for_size

    if kind == "inclusion":
        return [f"/api/v1/proof/inclusion?index={rng.randrange(size)}&tree_size={size}" for _ in range(count)]
    if kind == "consistency":
        return [f"/api/v1/proof/consistency?first={rng.randrange(1, size + 1)}&second={size}"
                for _ in range(count)]
    if kind == "tile":
        tiles = tiles_for_size(size)
        return ["/" + rng.choice(tiles).path() for _ in range(count)]
    if kind == "checkpoint":
        return ["/checkpoint"]
    raise ValueError(kind)


READS = [("inclusion", 1), ("inclusion", 0), ("consistency", 1), ("consistency", 0), ("tile", 1), ("tile", 0),
         ("checkpoint", 0)]


@pytest.mark.parametrize("kind,read_workers", READS, ids=[f"{k}-{w}-workers" for k, w in READS])
def test_reads_over_http(benchmark, bench_mode, results, request, tmp_path, kind, read_workers, needs):
    """Each read kind against a fresh server: with one read worker (`serve --read-workers 1`: two processes share
    the port) and as one process. /checkpoint only as one process: a worker forwards it to the writer, which adds
    the cosignatures."""
    size = bench_mode.proof_tree_size
    name = {"inclusion": "proof.inclusion.http", "consistency": "proof.consistency.http",
            "tile": "read.tile.http", "checkpoint": "read.checkpoint.http"}[kind]
    if not read_workers and kind != "checkpoint":
        name += ".one_process"
    for module in ("log.proofs", "api.cli"):
        needs(module, f"{name}@{size}", f"{name}.p99@{size}")
    data_dir, size, _ = request.getfixturevalue("tree")
    rng = random.Random(2)
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(_paths(kind, size, 50_000, rng)))
    warm_page_cache(data_dir)
    with Server(data_dir, origin=ORIGIN, read_workers=str(read_workers)) as server:
        report = benchmark.pedantic(
            loadgen_with_server_cpu, args=(server, "get"),
            kwargs=dict(concurrency=64, seconds=bench_mode.http_read_seconds, warmup=1.0,
                        paths_file=paths_file),
            rounds=1, iterations=1,
        )
        assert report["ok"] == report["requests"] > 0, report
        fetch_and_verify_http_proofs(server.url, kind, size, rng, token=server.token)
    results.record(
        f"{name}@{size}", report["requests_per_second"], "req/s", tree_size=size, load_generator=LOADGEN,
        read_workers=read_workers, requests=report["requests"], seconds=report["seconds"],
        latency_ms=report["latency_ms"],
        page_cache="warmed before the run (prooftree.warm_page_cache); the server's own caches start cold",
        loadgen_cpu_utilisation=report["loadgen_cpu_utilisation"],
        server_cpu_utilisation=report["server_cpu_utilisation"],
    )
    results.record(f"{name}.p99@{size}", report["latency_ms"]["p99"], "ms", tree_size=size, concurrency=64)
    benchmark.extra_info.update(requests_per_second=report["requests_per_second"])


def test_default_server_against_a_bare_aiohttp_get(benchmark, bench_mode, results, tmp_path, needs):
    """Inclusion proofs from `auditlog serve` as it starts with no flags (`--read-workers auto`: on 2 cores, one
    worker beside the writer) against a bare aiohttp GET handler answering a body of the same shape and size
    (benchmarks/bare.py, one process), with the same load generator and 64 clients. Both servers run side by side
    for the whole test and take the load in turns, bare handler first, after a turn left out; each turn's ratio
    compares two windows seconds apart, and the median turn is reported (this host's speed drifts, and other work
    shares it)."""
    size = bench_mode.default_proofs_tree_size
    keys = [f"proof.inclusion.http.default@{size}", f"proof.inclusion.http.default.p99@{size}",
            f"read.bare_get.http@{size}", f"proof.inclusion.http.default.vs_bare@{size}"]
    for module in ("log.proofs", "api.cli"):
        needs(module, *keys)
    data_dir, build_seconds = proof_tree(size)
    rng = random.Random(3)
    paths_file = tmp_path / "paths.json"
    paths_file.write_text(json.dumps(_paths("inclusion", size, 50_000, rng)))
    warm_page_cache(data_dir)
    load = dict(concurrency=64, seconds=bench_mode.http_read_seconds, warmup=1.0, paths_file=paths_file)
    with Server(data_dir, origin=ORIGIN, read_workers=None) as server, \
            BareServer(tmp_path, hashes=(size - 1).bit_length(), credential=server.token) as bare:
        workers = len(child_processes(server.pid, "serve-reads"))
        assert f"read workers: {workers} (auto: " in "".join(server.output)

        def turns():
            # A turn left out first: the first bare window ran 25-40 % below the later ones in every full run (the
            # log's processes just started beside it), which made the first turn's ratio the highest.
            for target in (bare, server):
                loadgen_with_server_cpu(target, "get", **{**load, "seconds": 2.0})
            measured = []
            for _ in range(bench_mode.default_proofs_turns):
                measured.append((loadgen_with_server_cpu(bare, "get", **load),
                                 loadgen_with_server_cpu(server, "get", **load)))
            return measured

        measured = benchmark.pedantic(turns, rounds=1, iterations=1)
        for bare_report, proofs_report in measured:
            assert bare_report["ok"] == bare_report["requests"] > 0, bare_report
            assert proofs_report["ok"] == proofs_report["requests"] > 0, proofs_report
        fetch_and_verify_http_proofs(server.url, "inclusion", size, rng, token=server.token)
    ratios = [proofs["requests_per_second"] / bare["requests_per_second"] for bare, proofs in measured]
    median_turn = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    bare_report, proofs_report = measured[median_turn]
    per_turn = [dict(bare_rps=round(bare["requests_per_second"]), proofs_rps=round(proofs["requests_per_second"]),
                     ratio=round(ratio, 3), bare_server_cpu=bare["server_cpu_utilisation"],
                     proofs_server_cpu=proofs["server_cpu_utilisation"])
                for (bare, proofs), ratio in zip(measured, ratios)]
    common = dict(tree_size=size, load_generator=LOADGEN, concurrency=64, seconds_per_window=load["seconds"],
                  turns=len(measured), tree_build_seconds=build_seconds)
    results.record(
        f"proof.inclusion.http.default@{size}", proofs_report["requests_per_second"], "req/s", **common,
        read_workers="auto", read_workers_started=workers, requests=proofs_report["requests"],
        latency_ms=proofs_report["latency_ms"], loadgen_cpu_utilisation=proofs_report["loadgen_cpu_utilisation"],
        server_cpu_utilisation=proofs_report["server_cpu_utilisation"],
        note="the turn with the median ratio to the bare handler; every turn in the ratio's details",
    )
    results.record(f"proof.inclusion.http.default.p99@{size}", proofs_report["latency_ms"]["p99"], "ms",
                   tree_size=size, concurrency=64)
    results.record(
        f"read.bare_get.http@{size}", bare_report["requests_per_second"], "req/s", **common,
        handler="benchmarks/bare.py: aiohttp, one process, a fixed proof-shaped body of "
                f"{(size - 1).bit_length()} hashes", requests=bare_report["requests"],
        latency_ms=bare_report["latency_ms"], loadgen_cpu_utilisation=bare_report["loadgen_cpu_utilisation"],
        server_cpu_utilisation=bare_report["server_cpu_utilisation"],
    )
    results.record(f"proof.inclusion.http.default.vs_bare@{size}", ratios[median_turn], "×", **common,
                   read_workers_started=workers, per_turn=per_turn,
                   note="median over turns of (proofs/s ÷ bare GETs/s), each turn's two windows back to back")
    benchmark.extra_info.update(ratio=ratios[median_turn], per_turn=per_turn)
