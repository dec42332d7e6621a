"""While the store cannot take writes (disk full, I/O errors, the database gone) the log says so: writes get 503 with
Retry-After and the reason, `/readyz` is 503 naming it, `/healthz` stays 200, and the log takes writes again by
itself once the condition clears. The faults here are the drivers' real exceptions (SQLite's own SQLITE_FULL, made
by a page limit; psycopg's own "the connection is closed"); tests/e2e/test_disk_full.py fills a real disk.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

import log.sequencer
from api.server.app import create_app
from api.server.readiness import readiness, readiness_metrics
from api.server.state import LOG, TIMESTAMP_JOB, WITNESS_JOB
from log.errors import StorageError, StorageUnavailable
from log.replica import ReplicaStatus
from log.storage.faults import storage_fault
from tests.credentials import ADMIN
from tests.postgres import fresh_database
from tests import test_sequencer
from tests.test_sequencer import _run, _verify_whole_tree

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")

store, signer = test_sequencer.store, test_sequencer.signer  # the sequencer tests' fixtures: SQLite and PostgreSQL

OCTET = {"Content-Type": "application/octet-stream"}


def real_sqlite_error(pragma: str, statement: str) -> sqlite3.Error:
    """The exception SQLite itself raises for `statement` on a connection set up by `pragma`."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute(pragma)
    try:
        for _ in range(100):
            conn.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite raised nothing")


def sqlite_disk_full() -> sqlite3.Error:
    return real_sqlite_error("PRAGMA max_page_count = 2", "INSERT INTO t VALUES (randomblob(10000))")


def wrapped(driver_error: BaseException) -> StorageError:
    """As the writer raises it: a StorageError from the driver's exception."""
    try:
        raise StorageError(f"sqlite batch commit failed: {driver_error}") from driver_error
    except StorageError as exc:
        return exc


def closed_psycopg_connection_error() -> psycopg.Error:
    with fresh_database() as url:
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        conn.close()
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return exc
    raise AssertionError("psycopg raised nothing")


# --- classification ----------------------------------------------------------------------------------------------


def test_storage_faults_are_classified_from_the_drivers_exceptions_and_their_causes():
    full = sqlite_disk_full()
    assert str(full) == "database or disk is full"
    assert storage_fault(full) == "disk full"
    assert storage_fault(wrapped(full)) == "disk full"  # through the StorageError the writer wraps it in
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode, io_error.sqlite_errorname = 10 | (3 << 8), "SQLITE_IOERR_WRITE"
    assert storage_fault(wrapped(io_error)) == "disk I/O error"
    assert storage_fault(OSError(errno.ENOSPC, "No space left on device")) == "disk full"
    assert storage_fault(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk full"
    assert storage_fault(OSError(errno.EIO, "Input/output error")) == "disk I/O error"
    closed = closed_psycopg_connection_error()
    assert storage_fault(wrapped(closed)) == "database unreachable: the connection is closed"
    terminated = psycopg.errors.AdminShutdown("terminating connection due to administrator command\nmore")
    assert storage_fault(terminated) == "database unreachable: terminating connection due to administrator command"
    assert storage_fault(psycopg.errors.DiskFull("could not extend file")) == "disk full"


@pytest.mark.parametrize("error", [
    StorageError("injected: disk full before the commit"),  # words alone are not a driver's fault
    sqlite3.IntegrityError("UNIQUE constraint failed: entries.idx"),
    psycopg.errors.UniqueViolation("duplicate key"),
    OSError(errno.EACCES, "Permission denied"),
    RuntimeError("a bug"),
    ValueError("database or disk is full"),
])
def test_other_failures_are_not_storage_faults(error):
    assert storage_fault(error) is None
    assert storage_fault(wrapped(error)) is None


# --- the sequencer -----------------------------------------------------------------------------------------------


class FullDiskWriter:
    """Wraps a real writer; while `full`, each commit fails with SQLite's real "database or disk is full", as the
    writer raises it, before the commit point (nothing stored)."""

    def __init__(self, inner):
        self.inner, self.full, self.calls = inner, False, 0

    def commit_batch(self, batch):
        self.calls += 1
        if self.full:
            raise wrapped(sqlite_disk_full())
        return self.inner.commit_batch(batch)

    def close(self):
        self.inner.close()


def test_a_full_disk_makes_the_sequencer_unavailable_refuses_at_once_and_recovers_by_itself(store, signer,
                                                                                           monkeypatch):
    monkeypatch.setattr(log.sequencer, "UNAVAILABLE_RETRY_SECONDS", 0.2)
    writer = FullDiskWriter(store.acquire_writer())

    async def scenario(sequencer):
        await sequencer.submit([b"before"])
        assert sequencer.unavailable is None
        writer.full = True
        with pytest.raises(StorageUnavailable) as failed:
            await sequencer.submit([b"during 1"])
        assert failed.value.reason == "disk full" and sequencer.unavailable == "disk full"
        calls = writer.calls
        for refused in (sequencer.submit([b"during 2"]), sequencer.submit_work(lambda tx: None)):
            with pytest.raises(StorageUnavailable):  # at once: not queued, no commit tried
                await asyncio.wait_for(refused, 0.05)
        assert writer.calls == calls
        await asyncio.sleep(0.25)
        with pytest.raises(StorageUnavailable):  # the one let through finds the disk still full
            await sequencer.submit([b"during 3"])
        assert writer.calls == calls + 1 and sequencer.unavailable == "disk full"
        writer.full = False  # space is back
        await asyncio.sleep(0.25)
        after = await sequencer.submit([b"after"])
        assert sequencer.unavailable is None
        more = await sequencer.submit([b"more"])  # no longer rationed
        return after, more

    after, more = asyncio.run(_run(store, signer, scenario, writer=writer))
    assert (after.first_index, more.first_index) == (1, 2)
    assert _verify_whole_tree(store, signer) == [b"before", b"after", b"more"]


# --- HTTP: 503 with the reason, /readyz, /healthz, /metrics --------------------------------------------------------


def test_writes_are_answered_503_with_the_reason_and_readyz_says_why_while_healthz_stays_ok(log_config,
                                                                                           monkeypatch):
    monkeypatch.setattr(log.sequencer, "UNAVAILABLE_RETRY_SECONDS", 0.2)

    async def main():
        app = create_app(log_config)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            log_ = app[LOG]
            ready = await client.get("/readyz")
            assert ready.status == 200
            body = await ready.json()
            assert body["status"] == "ready" and "reason" not in body and body["tree_size"] == 0
            assert "witness" not in body and "timestamp" not in body  # no such jobs configured
            assert "auditlog_ready 1\n" in await (await client.get("/metrics")).text()

            sequencer = log_._sequencer
            writer = sequencer._writer = FullDiskWriter(sequencer._writer)
            writer.full = True
            for _ in range(2):  # the batch that finds the disk full, then one refused at once
                resp = await client.post("/api/v1/entries", data=b"x", headers=OCTET)
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
                assert resp.headers["Content-Type"] == "application/problem+json"
                problem = await resp.json()
                assert problem["type"] == "urn:auditlog:problem:storage-unavailable"
                assert problem["reason"] == "disk full" and "disk full" in problem["detail"]
            assert log_.write_unavailable == "disk full"
            ready = await client.get("/readyz")
            assert ready.status == 503 and ready.headers["Retry-After"] == "1"
            assert (await ready.json())["status"] == "unavailable"
            assert (await ready.json())["reason"] == "disk full"
            health = await client.get("/healthz")
            assert health.status == 200 and (await health.json())["status"] == "ok"
            text = await (await client.get("/metrics")).text()
            assert "auditlog_ready 0\n" in text and 'auditlog_write_unavailable{reason="disk full"} 1\n' in text

            writer.full = False
            await asyncio.sleep(0.25)
            resp = await client.post("/api/v1/entries", data=b"x", headers=OCTET)
            assert resp.status == 200, await resp.text()
            assert (await client.get("/readyz")).status == 200
            text = await (await client.get("/metrics")).text()
            assert "auditlog_ready 1\n" in text and "auditlog_write_unavailable{" not in text

    asyncio.run(main())


def test_a_storage_fault_outside_the_sequencer_is_503_and_a_bug_is_still_500(log_config):
    async def main():
        app = create_app(log_config)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            log_ = app[LOG]
            for error, status in ((OSError(errno.ENOSPC, "No space left on device"), 503),
                                  (wrapped(sqlite_disk_full()), 503), (RuntimeError("a bug"), 500),
                                  (StorageError("the store holds inconsistent state"), 500)):
                async def fail(*args, error=error):
                    raise error

                log_.entry = fail
                resp = await client.get("/api/v1/entries/0")
                assert resp.status == status, (error, await resp.text())
                assert ("Retry-After" in resp.headers) == (status == 503)
                if status == 503:
                    assert (await resp.json())["reason"] == "disk full"

    asyncio.run(main())


def test_readyz_reports_stopped_and_shutting_down(log_config):
    async def main():
        app = create_app(log_config)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            sequencer = app[LOG]._sequencer
            sequencer._batches.stop(StorageError("the stored tiles disagree"))
            body = await (await client.get("/readyz")).json()
            assert body["reason"] == "stopped: the stored tiles disagree"
            sequencer._batches.closing = True
            sequencer._batches.stopped = None
            body = await (await client.get("/readyz")).json()
            assert body["reason"] == "shutting down"

    asyncio.run(main())


class _Stub:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)


def test_readiness_reports_witness_and_timestamp_lag_and_metrics_carry_it():
    log_ = _Stub(write_unavailable="database unreachable: the connection is closed", origin="o", size=1000,
                 committed_checkpoint=_Stub(size=1000), replica_status=lambda: None)
    witness_job = _Stub(policy=_Stub(k=2), metrics=lambda: {
        "witness_latest_size": 1000.0, "witness_witnessed_size": 900.0, "witness_backlog_entries": 100.0,
        "witness_backlog_seconds": 12.3456})
    timestamp_job = _Stub(metrics=lambda: {"timestamped_size": 800, "seconds_since_last_timestamp": 61.5})
    app = {LOG: log_, WITNESS_JOB: witness_job, TIMESTAMP_JOB: timestamp_job}
    report = readiness(app)
    assert report == {
        "status": "unavailable", "reason": "database unreachable: the connection is closed", "origin": "o",
        "tree_size": 1000,
        "witness": {"k": 2, "latest_size": 1000, "witnessed_size": 900, "lag_entries": 100, "lag_seconds": 12.346},
        "timestamp": {"timestamped_size": 800, "lag_entries": 200, "age_seconds": 61.5},
    }
    text = readiness_metrics(report)
    for line in ("auditlog_ready 0", 'auditlog_write_unavailable{reason="database unreachable"} 1',
                 "auditlog_witness_lag_entries 100", "auditlog_witness_lag_seconds 12.346",
                 "auditlog_timestamp_lag_entries 200", "auditlog_timestamp_age_seconds 61.5"):
        assert line + "\n" in text
    # before the first cosignature and the first token
    witness_job.metrics = lambda: {"witness_latest_size": 1000.0, "witness_witnessed_size": -1.0,
                                   "witness_backlog_entries": 1000.0, "witness_backlog_seconds": 3.0}
    timestamp_job.metrics = lambda: {"timestamped_size": None, "seconds_since_last_timestamp": None}
    report = readiness(app)
    assert report["witness"]["witnessed_size"] is None and report["witness"]["lag_entries"] == 1000
    assert report["timestamp"] == {"timestamped_size": None, "lag_entries": 1000, "age_seconds": None}
    assert "auditlog_timestamp_age_seconds" not in readiness_metrics(report)


def test_readiness_reports_the_read_replica_and_metrics_carry_it():
    """With --read-database-url: the replica's replayed size against the primary's, its lag and replay state; an
    unreachable replica is said (error, reachable 0) while the log stays ready for writes."""
    behind = ReplicaStatus(replayed_size=990, primary_size=1000, lag_seconds=2.5, replay_age_seconds=3.25,
                           replay_paused=True, error=None)
    log_ = _Stub(write_unavailable=None, origin="o", committed_checkpoint=_Stub(size=1000),
                 replica_status=lambda: behind)
    report = readiness({LOG: log_})
    assert report == {"status": "ready", "origin": "o", "tree_size": 1000, "replica": {
        "reachable": True, "replayed_size": 990, "primary_size": 1000, "lag_entries": 10, "lag_seconds": 2.5,
        "replay_age_seconds": 3.25, "replay_paused": True}}
    text = readiness_metrics(report)
    for line in ("auditlog_ready 1", "auditlog_replica_reachable 1", "auditlog_replica_replayed_size 990",
                 "auditlog_replica_lag_entries 10", "auditlog_replica_lag_seconds 2.5",
                 "auditlog_replica_replay_age_seconds 3.25"):
        assert line + "\n" in text
    down = ReplicaStatus(replayed_size=990, primary_size=1000, lag_seconds=None, replay_age_seconds=None,
                         replay_paused=None, error="connection refused")
    log_.replica_status = lambda: down
    report = readiness({LOG: log_})
    assert report["status"] == "ready"
    assert report["replica"]["reachable"] is False and report["replica"]["error"] == "connection refused"
    text = readiness_metrics(report)
    assert "auditlog_replica_reachable 0\n" in text and "auditlog_replica_lag_seconds" not in text
