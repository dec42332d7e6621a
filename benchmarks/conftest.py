"""The performance suite: modes, sizes, and the results file the README's performance table quotes.

Two modes. The short mode is the default, takes seconds, and runs in CI with `pytest tests benchmarks`, so the
suite never rots. The full mode (`--bench-full`, or `AUDITLOG_BENCH=full`) runs the sizes the targets are stated
at and takes many minutes. Every benchmark asserts only that the work it timed was done correctly (roots equal a
recomputation, every entry acknowledged with a distinct index, proofs verify), never a timing threshold.

Figures are written at the end of the session to `benchmarks/results.json` (and rendered as
`benchmarks/results.md`), one section per mode, each stamped with the machine, the date and the git commit.
A run replaces only the figures it produced, so `-k` runs refresh part of a section. `AUDITLOG_BENCH_RESULTS`
names another JSON path (the Markdown file goes beside it), e.g. to keep CI runs from touching the committed file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.targets import TARGETS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class BenchMode:
    """Sizes for one mode. Every benchmark reads its size here, so a mode is defined in one place."""

    name: str
    hash_sizes: tuple[int, ...]  # (1) in-memory hashing + integration
    durable_entries: int  # (2) entries through the sequencer per backend
    http_single_seconds: float  # (3) single-entry POSTs, measured window
    http_batch_entries: int  # (3) entries through the batch API
    events: int  # (4) signed audit events sent, each once
    proof_tree_size: int  # (5) tree size proofs are served from
    proof_requests: int  # (5) in-process proofs per kind
    http_read_seconds: float  # (5) measured window per HTTP read kind
    default_proofs_tree_size: int  # (5) tree size of inclusion proofs from the default server against a bare handler
    default_proofs_turns: int  # (5) turns of (bare handler, default server) load, measured one after the other
    memory_entries: int  # (6) entries ingested over HTTP while sampling the server's peak RSS
    blob_put_bytes: int  # (6) size of each of the eight concurrent blob PUTs while sampling the server's peak RSS
    blob_put_over_limit: bool  # (6) then eight more, chunked, 70 MiB each (over the 64 MiB limit: 413 mid-body)
    rounds: int  # repetitions of the in-memory hashing benchmark (median reported)
    failover_kills: int  # (9) SIGKILLs of the sequencer of three servers on one PostgreSQL log


SHORT = BenchMode(
    name="short", hash_sizes=(10_000, 100_000), durable_entries=20_480, http_single_seconds=3.0,
    http_batch_entries=40_960, events=5_000, proof_tree_size=100_000, proof_requests=2_000,
    http_read_seconds=2.0, default_proofs_tree_size=100_000, default_proofs_turns=1, memory_entries=100_000,
    blob_put_bytes=8 << 20, blob_put_over_limit=False, rounds=1, failover_kills=5,
)
FULL = BenchMode(
    name="full", hash_sizes=(100_000, 1_000_000), durable_entries=1_048_576, http_single_seconds=20.0,
    http_batch_entries=1_048_576, events=30_000, proof_tree_size=10_000_000, proof_requests=20_000,
    http_read_seconds=10.0, default_proofs_tree_size=1 << 20, default_proofs_turns=3, memory_entries=10_000_000,
    blob_put_bytes=64 << 20, blob_put_over_limit=True, rounds=3, failover_kills=40,
)


def pytest_addoption(parser):
    group = parser.getgroup("auditlog benchmarks")
    group.addoption(
        "--bench-full", action="store_true", default=False,
        help="run the performance suite at full size (minutes); same as AUDITLOG_BENCH=full",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: an auditlog performance benchmark (benchmarks/)")


def _mode_from(config) -> BenchMode:
    mode = SHORT
    if config.getoption("--bench-full", default=False) or os.environ.get("AUDITLOG_BENCH", "").lower() == "full":
        mode = FULL
    # The 10^7-entry HTTP ingest of (6) takes many minutes; this shortens it (the count is in the results).
    override = os.environ.get("AUDITLOG_BENCH_MEMORY_ENTRIES")
    if override:
        mode = dataclasses.replace(mode, memory_entries=int(override))
    return mode


@pytest.fixture(scope="session")
def bench_mode(request) -> BenchMode:
    return _mode_from(request.config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """(backend, URL) of an empty database of each kind: SQLite in tmp_path, a fresh PostgreSQL database (dropped)."""
    from log.storage.engine import sqlite_url_for

    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = sqlite_url_for(tmp_path / "bench.db")
        else:
            from tests.postgres import fresh_database

            url = stack.enter_context(fresh_database())
        yield request.param, url


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.bench)


# -- the results file ---------------------------------------------------------------------------------------------

def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _postgres_version() -> str | None:
    try:
        import psycopg

        from tests.postgres import ADMIN_URL

        with psycopg.connect(ADMIN_URL, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # noqa: BLE001 - the version is a label; the PostgreSQL benchmarks report real failures
        return None


def host_speed() -> dict:
    """The host's speed now, from fixed pieces of C work and a 4 KiB write made durable (best of five rounds): this
    machine's speed moves by up to 40 % from hour to hour, and figures of two runs compare only next to these."""
    import hashlib
    import time

    from nacl.signing import SigningKey

    signed = SigningKey(bytes(32)).sign(bytes(300))
    verify = SigningKey(bytes(32)).verify_key.verify
    block = bytes(64)

    def best(fn, calls: int) -> float:
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            rounds.append((time.perf_counter() - started) / calls)
        return min(rounds)

    with tempfile.TemporaryFile() as scratch:  # the file system the benchmarks' databases live on
        page = bytes(4096)

        def write_and_sync():
            os.pwrite(scratch.fileno(), page, 0)
            os.fdatasync(scratch.fileno())

        fsync_us = round(best(write_and_sync, 10) * 1e6)
    return {"ed25519_verify_us": round(best(lambda: verify(signed), 200) * 1e6, 1),
            "sha256_64_bytes_ns": round(best(lambda: hashlib.sha256(block).digest(), 20_000) * 1e9),
            "fdatasync_4k_us": fsync_us}


def machine_description() -> dict:
    commit = _run(["git", "rev-parse", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--", "log", "api", "witness"])
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "git_commit": commit,
        "git_worktree_dirty": bool(dirty),  # uncommitted changes in log/, api/ or witness/ were measured too
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class Results:
    """Figures recorded during the session, keyed by a stable figure id (see benchmarks/targets.py)."""

    def __init__(self, mode: BenchMode):
        self.mode = mode
        self.figures: dict[str, dict] = {}
        self.host_speed_at_start = host_speed()

    def record(self, key: str, value: float | None, unit: str, *, status: str = "measured", **details) -> dict:
        """Record one figure. `status` is "measured" or "pending" (a feature not landed yet: no value)."""
        if TARGETS.figure(key) is None:
            raise KeyError(f"{key!r} is not a figure listed in benchmarks/targets.py")
        target = TARGETS.get(key)
        figure = {"value": value, "unit": unit, "status": status, "details": details}
        if target is not None:
            figure["target"] = target.text
            figure["meets_target"] = None if value is None else target.met_by(value)
        self.figures[key] = figure
        return figure


_RESULTS_KEY = pytest.StashKey[Results]()


@pytest.fixture(scope="session")
def results(request, bench_mode) -> Results:
    stash = request.config.stash
    if _RESULTS_KEY not in stash:
        stash[_RESULTS_KEY] = Results(bench_mode)
    return stash[_RESULTS_KEY]


@pytest.fixture
def needs(results):
    """`needs("api.cli", "http.single.rate", ...)`: skip, recording the figures as pending, until a module lands."""
    import importlib.util

    def check(module: str, *figure_keys: str) -> None:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            reason = f"{module} has not landed yet"
            for key in figure_keys:
                results.record(key, None, "", status="pending", reason=reason)
            pytest.skip(f"pending: {reason}")

    return check


def results_path() -> Path:
    return Path(os.environ.get("AUDITLOG_BENCH_RESULTS", HERE / "results.json"))


def pytest_sessionfinish(session, exitstatus):
    results = session.config.stash.get(_RESULTS_KEY, None)
    if results is None or not results.figures:
        return
    path = results_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    modes = data.setdefault("modes", {})
    section = modes.setdefault(results.mode.name, {"figures": {}})
    machine = machine_description()
    machine["host_speed"] = {"start": results.host_speed_at_start, "end": host_speed()}
    for figure in results.figures.values():
        figure["measured_at"] = {"date": machine["date"], "git_commit": machine["git_commit"]}
    section["machine"] = machine
    section["sizes"] = {k: v for k, v in results.mode.__dict__.items() if k != "name"}
    section.setdefault("figures", {}).update(results.figures)
    section["figures"] = dict(sorted(section["figures"].items(), key=lambda kv: TARGETS.order(kv[0])))
    data["about"] = (
        "auditlog performance figures written by `pytest benchmarks` (short mode) and "
        "`pytest benchmarks --bench-full` (full mode); see benchmarks/conftest.py and benchmarks/results.md"
    )
    path.write_text(json.dumps(data, indent=2) + "\n")
    from benchmarks.report import render_markdown

    path.with_suffix(".md").write_text(render_markdown(data))
