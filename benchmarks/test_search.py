"""(21) Explorer search over a big log of signed audit events, and the workload that builds that log.

`benchmarks/workloads.py: write_audit_log` writes the log (runs of signed events over 90 days, several tenants); the
test here holds it to what a server would have written: every envelope's signature verifies with its producer's
registered key, valid at the event's time; every event has its index rows; runs are causal chains from an intent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from benchmarks.workloads import AuditEvents, write_audit_log


def test_audit_workload_is_what_ingest_would_have_written(tmp_path):
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

    count, end_ms = 3000, 1_790_000_000_000
    built = write_audit_log(tmp_path / "log", count, seed=7, end_ms=end_ms)
    assert (built.events, built.first_ms >= end_ms - 90 * 86_400_000, built.last_ms < end_ms) == (count, True, True)

    async def read_back():
        log = await Log.open(LogConfig(data_dir=built.data_dir))
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
    assert blobs_missing <= {AuditEvents(1, seed=7, end_ms=end_ms).missing_blob}  # the one deliberate defect kind
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
