"""(3) End-to-end HTTP ingest and (4) signed audit events, against a real server process on loopback.

The server is `python -m api.cli serve --port 0` in a subprocess; the load generator is benchmarks/loadgen.py, an
aiohttp client in a process of its own (not wrk, so CI needs nothing beyond the venv). Both share the machine's
cores; each report carries the load generator's and the server's CPU utilisation so a reader can tell which one
was the bottleneck.
"""

from __future__ import annotations

import contextlib

import pytest

from benchmarks.loadgen import DESCRIPTION
from benchmarks.server import Server, loadgen_with_server_cpu
from benchmarks.verify import check_acknowledged

LOADGEN = DESCRIPTION["raw"]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@contextlib.contextmanager
def _server(tmp_path, backend: str):
    with contextlib.ExitStack() as stack:
        url = None
        if backend == "postgresql":
            from tests.postgres import fresh_database

            url = stack.enter_context(fresh_database())
        server = stack.enter_context(Server(tmp_path / "data", url))
        yield server


def _summary(report: dict) -> dict:
    keep = ("requests", "ok", "statuses", "errors", "seconds", "requests_per_second", "entries", "latency_ms",
            "loadgen_cpu_utilisation", "server_cpu_utilisation", "concurrency", "entries_per_request")
    return {key: report[key] for key in keep if key in report}


def test_http_single_entry_posts(benchmark, bench_mode, results, tmp_path, needs):
    needs("api.cli", "http.single.rate", "http.single.p50", "http.single.p99")
    with _server(tmp_path, "sqlite") as server:
        report = benchmark.pedantic(
            loadgen_with_server_cpu, args=(server, "single"),
            kwargs=dict(concurrency=64, seconds=bench_mode.http_single_seconds, warmup=1.0),
            rounds=1, iterations=1,
        )
        check_acknowledged(server.url, report, token=server.token)
    rate = report["entries_per_second"]
    details = dict(load_generator=LOADGEN, backend="sqlite", entry_bytes=256, **_summary(report))
    results.record("http.single.rate", rate, "entries/s", **details)
    results.record("http.single.p50", report["latency_ms"]["p50"], "ms", concurrency=64)
    results.record("http.single.p99", report["latency_ms"]["p99"], "ms", concurrency=64)
    benchmark.extra_info.update(entries_per_second=rate, p99_ms=report["latency_ms"]["p99"])


def test_http_batch_ingest(benchmark, bench_mode, results, tmp_path, backend, needs):
    needs("api.cli", f"http.batch.{backend}")
    requests = bench_mode.http_batch_entries // 1024
    with _server(tmp_path, backend) as server:
        report = benchmark.pedantic(
            loadgen_with_server_cpu, args=(server, "batch"),
            kwargs=dict(concurrency=4, requests=requests, batch=1024), rounds=1, iterations=1,
        )
        check_acknowledged(server.url, report, expect_entries=requests * 1024, token=server.token)
    rate = report["entries_per_second"]
    results.record(f"http.batch.{backend}", rate, "entries/s", load_generator=LOADGEN, entry_bytes=256,
                   body='JSON {"entries": [base64 x 1024]}', **_summary(report))
    benchmark.extra_info.update(entries_per_second=rate)
