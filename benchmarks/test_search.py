"""(11) Explorer search over a big log of signed audit events, and the workload that builds that log.

`benchmarks/workloads.py: write_audit_log` writes the log (runs of signed events over 90 days, eight tenants); the
first test holds a small one to what a server would have written: every envelope's signature verifies with its
producer's registered key, valid at the event's time; every event has its index rows; runs are causal chains.

The benchmark: a real server (`auditlog serve`, one process) on a copy of the log (full mode: 10^6 events, built
once and cached; short mode: 2,000), and the searches the web explorer makes, as it makes them: `GET /api/v1/events`
with an auditor's token scoped to one tenant, that tenant in the query, pages of 50, over one keep-alive connection,
one request at a time (a person at the explorer waits for each answer). Every query shape in SHAPES, each with
values drawn at random from the log (runs, traces, actors, cases, days, deep cursors), `requests` times; per shape
and overall p50, p95 and max of the time from sending the request to the last byte of its answer. Every answer is
checked: 200, at most 50 events, ascending indices past the cursor, each event of the tenant and matching every
filter, a run's page holding all its events. The figure is the overall p95 (target <= 300 ms at 10^6 events).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import http.client
import json
import random
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest

from benchmarks.workloads import (
    AuditEvents, AuditLog, cached_audit_log, copy_audit_log, percentile, write_audit_log,
)


SMALL_END_MS = 1_790_000_000_000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def small_log(request, tmp_path_factory):
    """A log of 1,000 signed events from write_audit_log, once per module and backend."""
    data_dir = tmp_path_factory.mktemp("audit-log") / "data"
    if request.param == "sqlite":
        yield write_audit_log(data_dir, 1000, seed=7, end_ms=SMALL_END_MS)
    else:
        from tests.postgres import fresh_database

        with fresh_database() as url:
            yield write_audit_log(url, 1000, seed=7, end_ms=SMALL_END_MS, data_dir=data_dir)


def test_audit_workload_is_what_ingest_would_have_written(small_log):
    """A small log from write_audit_log, read back through AuditService: every event authentic, indexed, in its
    run's causal chain; the period and the shares of tenants and shapes as documented; the same seed, the same
    events."""
    import sqlalchemy as sa

    from log.audit.records import parse_entry
    from log.audit.schema import content_references, parse_timestamp_ms
    from log.audit.service import AuditService
    from log.audit.tables import audit_event_blobs, audit_event_context, audit_events
    from log.blobs import FileBlobStore
    from log.service import Log, LogConfig

    built, count, end_ms = small_log, 1000, SMALL_END_MS
    assert (built.events, built.first_ms >= end_ms - 90 * 86_400_000, built.last_ms < end_ms) == (count, True, True)

    async def read_back():
        log = await Log.open(LogConfig(data_dir=built.data_dir, database_url=built.database_url))
        audit = await AuditService.open(log, FileBlobStore(built.data_dir / "blobs"))
        try:
            def read(tx):
                indices = [i for i, in tx.execute(sa.select(audit_events.c.idx).order_by(audit_events.c.idx))]
                return (indices, tx.entries_at(indices),
                        Counter(i for i, in tx.execute(sa.select(audit_event_context.c.idx))),
                        Counter(i for i, in tx.execute(sa.select(audit_event_blobs.c.idx))))

            indices, data, contexts, cited = await log.read(read)
            now = int(time.time() * 1000)
            events = []
            for index in indices:
                kind, envelope = parse_entry(data[index])
                assert kind == "envelope"
                event = envelope.event
                key = audit.registry.key(envelope.producer, envelope.key_id)
                key.verify(envelope.event_bytes, envelope.signature)
                key.check_usable(parse_timestamp_ms(event["timestamp"]), now)
                audit.registry.check_tenant(envelope.producer, event["tenant"])
                assert contexts[index] == len(event["context"]) and cited[index] == len(content_references(event))
                events.append(event)
            blobs_missing = {sha for e in events for sha in content_references(e)
                             if not audit.blobs.exists(sha)}
            return log.size, events, blobs_missing
        finally:
            await audit.close()
            await log.close()

    size, events, blobs_missing = asyncio.run(read_back())
    assert len(events) == count and size == built.size
    assert blobs_missing <= {AuditEvents(1, seed=7, end_ms=end_ms).missing_blob}  # the one deliberate defect
    times = [parse_timestamp_ms(e["timestamp"]) for e in events]
    assert times == sorted(times)  # as a server receives them
    tenants = Counter(e["tenant"] for e in events)
    assert [t for t, _ in tenants.most_common(2)] == list(built.tenants[:2])
    runs: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        runs[event["run_id"]].append(event)
    assert len(runs) == built.runs
    chained = 0
    for run in runs.values():
        assert run[0]["event_type"] == "intent" and 1 <= len(run) <= 10
        ids = {e["event_id"] for e in run}
        chained += all(e.get("parent_event_id") in ids for e in run[1:])
    assert chained >= 0.98 * len(runs)  # all but the deliberately disconnected tool calls (defects=0.002)
    first, second = list(AuditEvents(200, seed=7, end_ms=end_ms)), list(AuditEvents(200, seed=7, end_ms=end_ms))
    assert first == second


def test_every_search_finds_exactly_what_a_filter_over_every_event_would(small_log):
    """events_statement (the events search) against the plain definition, on random queries of every shape the
    explorer makes and more (filters of a random event, a scope, a time range, a cursor, a page size): the same
    indices, in order, one more than the page."""
    import sqlalchemy as sa

    from log.audit.records import parse_entry
    from log.audit.service import EventQuery, events_statement
    from log.audit.tables import audit_events
    from log.storage.engine import normalize_database_url
    from log.storage.schema import entries

    engine = sa.create_engine(normalize_database_url(small_log.database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(entries.c.idx, entries.c.data).join(
                audit_events, audit_events.c.idx == entries.c.idx).order_by(entries.c.idx)).all()
            events = [(idx, parse_entry(bytes(data))[1].event) for idx, data in rows]
            rng = random.Random(5)
            shapes = Counter()
            for _ in range(150):
                _, pick = rng.choice(events)
                filters = filters_of(pick)
                chosen = {name: filters[name] for name in rng.sample(sorted(filters), rng.randint(0, 3))}
                context = tuple(sorted(rng.sample(sorted(pick["context"].items()),
                                                  rng.randint(0, len(pick["context"])))))
                span = rng.choice((None, 86_400_000, 30 * 86_400_000))
                ts = stamp_ms(pick)
                since, until = (None, None) if span is None else (ts - span // 2, ts + span // 2)
                scope = rng.choice((None, frozenset([pick["tenant"]]), frozenset([pick["tenant"], "globex"])))
                query = EventQuery(**chosen, context=context, since=since, until=until, tenants=scope,
                                   after=rng.choice((-1, rng.randrange(len(events)))), limit=rng.choice((1, 5, 50)))

                def wanted(event: dict) -> bool:
                    return (all(filters_of(event)[name] == value for name, value in chosen.items())
                            and all(event["context"].get(name) == value for name, value in context)
                            and (scope is None or event["tenant"] in scope)
                            and (since is None or since <= stamp_ms(event) < until))

                expected = [idx for idx, event in events if idx > query.after and wanted(event)][:query.limit + 1]
                found = [idx for idx, in conn.execute(events_statement(query, 10**9))]
                assert found == expected, query
                shapes[(tuple(sorted(chosen)), bool(context), span is not None)] += bool(expected)
    finally:
        engine.dispose()
    assert sum(shapes.values()) >= 100  # most queries found something: the comparisons compared pages


def filters_of(event: dict) -> dict:
    return {"tenant": event["tenant"], "run_id": event["run_id"], "trace_id": event["trace_id"],
            "actor_id": event["actor"]["id"], "actor_type": event["actor"]["type"], "event_type": event["event_type"]}


def stamp_ms(event: dict) -> int:
    from log.audit.schema import parse_timestamp_ms

    return parse_timestamp_ms(event["timestamp"])


# -- the benchmark ----------------------------------------------------------------------------------------------------

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
PAGE = 50  # the explorer's page size
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sample:
    """Values of one stretch of the log, drawn at random: what an auditor would search for."""

    index: int
    tenant: str
    run_id: str
    trace_id: str
    actor_id: str
    actor_type: str
    event_type: str
    case_id: str | None
    ts: int


def _stamp(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode()


# Each shape: (name, the tenant it searches: "big" or "small", the query's parameters from a sample and the log), as
# the explorer's search form sends them (api/server/explorer/app.js: tenant, run, trace, actor, event type, one
# context NAME=VALUE as context.NAME, from, until; here the tenant always, as an auditor of one tenant would).
def _shapes(log: AuditLog):
    last = log.last_ms + 1

    def days_around(sample: Sample, days: int) -> dict:
        return {"since": _stamp(sample.ts - days * DAY_MS // 2), "until": _stamp(sample.ts + days * DAY_MS // 2)}

    return [
        ("tenant only", "big", lambda s: {}),
        ("tenant only (small tenant)", "small", lambda s: {}),
        ("tenant + last 7 days", "big", lambda s: {"since": _stamp(last - 7 * DAY_MS), "until": _stamp(last)}),
        ("tenant + last 30 days", "big", lambda s: {"since": _stamp(last - 30 * DAY_MS), "until": _stamp(last)}),
        ("tenant + all 90 days", "big", lambda s: {"since": _stamp(log.first_ms), "until": _stamp(last)}),
        ("tenant + one day", "big", lambda s: days_around(s, 1)),
        ("tenant + one day (small tenant)", "small", lambda s: days_around(s, 1)),
        ("run", "big", lambda s: {"run_id": s.run_id}),
        ("trace", "big", lambda s: {"trace_id": s.trace_id}),
        ("actor", "big", lambda s: {"actor_id": s.actor_id}),
        ("actor shared by tenants (policy-engine)", "small", lambda s: {"actor_id": "policy-engine"}),
        ("event type", "big", lambda s: {"event_type": s.event_type}),
        ("event type (small tenant)", "small", lambda s: {"event_type": s.event_type}),
        ("case id", "big", lambda s: {"context.case_id": s.case_id}),
        ("case id (small tenant)", "small", lambda s: {"context.case_id": s.case_id}),
        ("case id + event type", "big", lambda s: {"context.case_id": s.case_id, "event_type": s.event_type}),
        ("actor + event type + 30 days", "big",
         lambda s: {"actor_id": s.actor_id, "event_type": s.event_type, **days_around(s, 30)}),
        ("event type + 7 days (small tenant)", "small", lambda s: {"event_type": s.event_type, **days_around(s, 7)}),
        ("shared actor + event type + 30 days (small tenant)", "small",
         lambda s: {"actor_id": "policy-engine", "event_type": "policy_decision", **days_around(s, 30)}),
        ("deep page: tenant + all 90 days", "big",
         lambda s: {"since": _stamp(log.first_ms), "until": _stamp(last), "cursor": _cursor(s.index)}),
        ("deep page: event type", "big", lambda s: {"event_type": s.event_type, "cursor": _cursor(s.index)}),
        ("deep page: actor shared by tenants", "big", lambda s: {"actor_id": "policy-engine",
                                                                  "cursor": _cursor(s.index)}),
    ]


def _samples(url: str, size: int, tenant: str, count: int,
             rng: random.Random) -> tuple[list[Sample], dict[str, int]]:
    """`count` events of `tenant` found from random places in the log (the first of the tenant's events at or after
    a random index), with the case id of each; and the number of events of each of their runs."""
    import sqlalchemy as sa

    from log.audit.tables import audit_event_context, audit_events

    a, c = audit_events.c, audit_event_context.c
    engine = sa.create_engine(url)
    found: list[Sample] = []
    try:
        with engine.connect() as conn:
            while len(found) < count:
                start = rng.randrange(size)
                rows = conn.execute(sa.select(a.idx, a.run_id, a.trace_id, a.actor_id, a.actor_type, a.event_type,
                                              a.ts).where(a.idx >= start, a.tenant == tenant)
                                    .order_by(a.idx).limit(1)).all()
                if not rows:
                    continue
                idx, run_id, trace_id, actor_id, actor_type, event_type, ts = rows[0]
                case = conn.execute(sa.select(c.value).where(c.idx == idx, c.name == "case_id")).scalar()
                found.append(Sample(idx, tenant, run_id, trace_id, actor_id, actor_type, event_type, case, ts))
            run_sizes = dict(conn.execute(sa.select(a.run_id, sa.func.count()).where(
                a.run_id.in_([s.run_id for s in found])).group_by(a.run_id)).all())
    finally:
        engine.dispose()
    return found, run_sizes


def _check_page(body: dict, tenant: str, params: dict, run_sizes: dict[str, int]) -> int:
    """What every answer must be (module docstring); returns the events on the page."""
    from log.audit.schema import parse_timestamp_ms

    events = body["events"]
    assert len(events) <= PAGE
    indices = [e["index"] for e in events]
    assert indices == sorted(set(indices))
    after = int(base64.urlsafe_b64decode(params["cursor"])) if "cursor" in params else -1
    since = parse_timestamp_ms(params["since"]) if "since" in params else None
    until = parse_timestamp_ms(params["until"]) if "until" in params else None
    for e in events:
        event = e["event"]
        assert e["index"] > after and event["tenant"] == tenant, (e["index"], event["tenant"])
        for name in ("run_id", "trace_id", "event_type"):
            assert name not in params or event[name] == params[name], (name, event)
        assert "actor_id" not in params or event["actor"]["id"] == params["actor_id"]
        assert "context.case_id" not in params or event["context"]["case_id"] == params["context.case_id"]
        stamp = parse_timestamp_ms(event["timestamp"])
        assert (since is None or stamp >= since) and (until is None or stamp < until), (params, event["timestamp"])
    assert body["next_cursor"] is None or len(events) == PAGE
    if "run_id" in params and "cursor" not in params:
        assert len(events) == min(PAGE, run_sizes[params["run_id"]])
    return len(events)


def _token(server_url: str, tenant: str) -> str:
    request = urllib.request.Request(
        f"{server_url}/api/v1/tokens", method="POST",
        data=json.dumps({"role": "auditor", "tenants": [tenant], "reason": "search benchmark"}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["secret"]


def _measure(server_url: str, tokens: dict[str, str], shapes, samples: dict[str, list[Sample]],
             run_sizes: dict[str, int], requests: int) -> dict[str, list[float]]:
    """Each shape's queries, one at a time over one keep-alive connection per tenant; the seconds of each."""
    host = urllib.parse.urlsplit(server_url)
    connections = {tenant: http.client.HTTPConnection(host.hostname, host.port, timeout=120) for tenant in tokens}
    timings: dict[str, list[float]] = {}
    found = Counter()
    try:
        for name, which, make in shapes:
            pool = samples[which]
            tenant = pool[0].tenant
            conn, headers = connections[tenant], {"Authorization": f"Bearer {tokens[tenant]}"}
            seconds = []
            for n in range(requests + 1):  # the first of each shape warms up, untimed
                params = {"tenant": tenant, **make(pool[n % len(pool)]), "limit": str(PAGE)}
                path = "/api/v1/events?" + urllib.parse.urlencode(params)
                started = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - started
                assert response.status == 200, (path, response.status, data[:500])
                found[name] += _check_page(json.loads(data), tenant, params, run_sizes)
                if n:
                    seconds.append(elapsed)
            timings[name] = seconds
    finally:
        for conn in connections.values():
            conn.close()
    # Every shape found something somewhere (a benchmark of empty answers would measure nothing).
    assert all(found[name] for name, _, _ in shapes), found
    return timings


def _summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"p50": round(percentile(ms, 0.5), 2), "p95": round(percentile(ms, 0.95), 2), "max": round(max(ms), 2),
            "requests": len(ms)}


def pytest_generate_tests(metafunc):
    """SQLite in both modes; PostgreSQL in the full mode only (the suite's short mode checks PostgreSQL's searches
    against the plain filter above, in seconds, rather than timing them)."""
    if "backend" in metafunc.fixturenames:
        from benchmarks.conftest import _mode_from

        metafunc.parametrize("backend", ["sqlite", "postgresql"] if _mode_from(metafunc.config).name == "full"
                             else ["sqlite"])


def _to_postgresql(log: AuditLog, url: str) -> AuditLog:
    """The log copied into the empty PostgreSQL database `url` (the schema brought up to date first, as a server
    would; the copy checked against every signed checkpoint before it commits, as `auditlog db copy` does), then
    VACUUM ANALYZE, as autovacuum would have run while the log grew: without statistics the planner walked the
    whole table for a week of a tenant's events, and without the visibility map it read no page from an index
    alone."""
    import sqlalchemy as sa

    from log.fsck import check_snapshot
    from log.keys import read_signer_key
    from log.storage.copy import copy_database
    from log.storage.engine import normalize_database_url, upgrade_schema

    upgrade_schema(log.database_url)
    verifier = read_signer_key(log.data_dir / "log.key").verifier
    report = copy_database(log.database_url, url, check=lambda tx: check_snapshot(tx, verifier))
    assert report.checked.ok and report.entries == log.size, report
    engine = sa.create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()
    return dataclasses.replace(log, database_url=url)


def test_explorer_search(benchmark, bench_mode, results, tmp_path, monkeypatch, backend):
    from benchmarks.prooftree import warm_page_cache
    from benchmarks.server import Server

    full = bench_mode.name == "full"
    events = 1_000_000 if full else 2_000
    requests = 100 if full else 3
    monkeypatch.setenv("AUDITLOG_ADMIN_TOKEN", ADMIN_TOKEN)
    source = cached_audit_log(events) if full else write_audit_log(tmp_path / "built", events)
    log = copy_audit_log(source, tmp_path / "data")
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            from tests.postgres import fresh_database

            log = _to_postgresql(log, stack.enter_context(fresh_database()))
        big, small = log.tenants[0], log.tenants[-1]
        rng = random.Random(21)
        samples, run_sizes = {}, {}
        for which, tenant in (("big", big), ("small", small)):
            samples[which], sizes = _samples(log.database_url, log.size, tenant, max(requests, 8), rng)
            run_sizes.update(sizes)
        if backend == "sqlite":
            warm_page_cache(log.data_dir)
        shapes = _shapes(log)
        with Server(log.data_dir, origin=log.origin, extra_args=["--retention-interval", "off"],
                    database_url=log.database_url if backend == "postgresql" else None) as server:
            tokens = {tenant: _token(server.url, tenant) for tenant in (big, small)}
            timings = benchmark.pedantic(_measure, args=(server.url, tokens, shapes, samples, run_sizes, requests),
                                         rounds=1, iterations=1)
    every = [s for seconds in timings.values() for s in seconds]
    overall = _summary(every)
    per_shape = {name: _summary(seconds) for name, seconds in timings.items()}
    slowest = max(per_shape, key=lambda name: per_shape[name]["p95"])
    results.record(f"search.{backend}", overall["p95"], "ms", events=log.events, page=PAGE, overall=overall,
                   shapes=per_shape, slowest_shape=slowest, tenants={"big": big, "small": small},
                   client="one keep-alive connection, one request at a time, an auditor token of the tenant",
                   server="auditlog serve, one process (--read-workers 0); SQLite: page cache warmed; PostgreSQL: "
                          "the log copied in by auditlog db copy's code, then VACUUM ANALYZE")
    benchmark.extra_info.update(p95_ms=overall["p95"], slowest_shape=slowest)
