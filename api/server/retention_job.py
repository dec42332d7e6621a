"""Retention in the server: the job that applies the policies, and its HTTP routes (issue 20).

The job runs on the sequencer only (as the witness, timestamp and publishing jobs: it starts when this server
sequences, at start or on a takeover, and stops when it steps down). On each start it first finishes any run that
was interrupted (a crash, a SIGKILL, a takeover half-way), then runs every `interval` seconds (`serve
--retention-interval`; 0: only runs asked for over HTTP, and the finishing of interrupted ones). A failed round is
logged and tried again at the next interval; it never stops the log.

| method and path | who | what |
| --- | --- | --- |
| GET /api/v1/retention/policies | admin | the policies in force: `?tenant=` one tenant's |
| POST /api/v1/retention/policies | admin | set, change or remove (`retain_days: null`) a policy: `{tenant, record_class, selector, retain_days, reason}`; 201 with its entry's index |
| GET /api/v1/retention/runs | admin | the runs, oldest first: `?tenant=`, `?after=<index>`, `?limit=` |
| POST /api/v1/retention/runs | admin | run now (`{"tenant": T}` or `{}` for every tenant with a policy): one result per tenant |
| GET /api/v1/deletions/{index} | entries:read | the deletion list of a retention run or erasure entry, with its recomputed hash |

Handlers parse, call one method of `Retention` (log/audit/retention.py), and encode.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.server.audit_routes import AUDIT, _admin_json, _param
from api.server.background import BackgroundTask
from api.server.metrics import render_dict_metrics
from api.server.problems import with_expect_continue
from api.server.state import LOG, METRIC_SOURCES
from log import defaults
from log.audit.retention import Retention
from log.errors import InvalidInput

logger = logging.getLogger(__name__)

RETENTION = web.AppKey("retention", Retention)
RETENTION_JOB = web.AppKey("retention_job", object)


class RetentionJob:
    """Runs `retention.run()` every `interval` seconds (0: never by itself) while started, after finishing any
    interrupted run. `start()`/`stop()` follow the log's role."""

    def __init__(self, retention: Retention, interval: float = defaults.RETENTION_INTERVAL):
        if interval < 0:
            raise InvalidInput(f"the retention interval must be 0 (off) or positive, not {interval}",
                               field="retention_interval")
        self.retention = retention
        self.interval = interval
        self._task = BackgroundTask("auditlog-retention")
        self.rounds = 0
        self.failures = 0
        self.last_error = ""

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        first = True
        while True:
            try:
                if first:
                    resumed = await self.retention.resume()
                    if resumed:
                        logger.warning("retention: finished %d interrupted run(s)", resumed)
                    first = False
                else:
                    results = await self.retention.run()
                    self.rounds += 1
                    for result in results:
                        if result.index is not None:
                            logger.info("retention run of tenant %s: entry %d, deleted %s, kept by holds %s",
                                        result.tenant, result.index, result.deleted, result.skipped)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed round must not end retention; the next tries again
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("retention round failed (tried again in %g s): %s", self.interval or 0, exc)
                if first:
                    await asyncio.sleep(1)
                    continue
            if not self.interval:
                return
            await asyncio.sleep(self.interval)

    def metrics(self) -> dict[str, float]:
        deleted = self.retention.deleted
        return {"retention_active": 1.0 if self._task.started else 0.0,
                "retention_rounds_total": float(self.rounds), "retention_failures_total": float(self.failures),
                "retention_entries_pruned_total": float(deleted["entry"]),
                "retention_blobs_deleted_total": float(deleted["blob"]),
                "retention_subjects_shredded_total": float(deleted["subject"])}


def _json(body, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json", headers={"Cache-Control": "no-store"})


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, not {value[:40]!r}", field=name) from None


async def list_policies(request: web.Request) -> web.Response:
    tenant = _param(request.query.get("tenant"), "tenant")
    policies = await request.app[RETENTION].policies(tenant)
    return _json({"policies": [policy.to_json() for policy in policies]})


async def set_policy(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    allowed = {"tenant", "record_class", "selector", "retain_days", "reason"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r} (known: {', '.join(sorted(allowed))})",
                           field=unknown[0][:40])
    for name in sorted(allowed):
        if name not in body:
            raise InvalidInput(f"{name} is required" + (" (null removes the policy)" if name == "retain_days" else ""),
                               field=name)
    receipt = await request.app[RETENTION].set_policy(body["tenant"], body["record_class"], body["selector"],
                                                      body["retain_days"], body["reason"])
    return _json({"index": receipt.index, "policy": receipt.policy}, status=201)


async def list_runs(request: web.Request) -> web.Response:
    tenant = _param(request.query.get("tenant"), "tenant")
    limit = _int(request.query.get("limit"), "limit", 100)
    runs = await request.app[RETENTION].runs(tenant, after=_int(request.query.get("after"), "after", -1),
                                              limit=limit)
    return _json({"runs": runs, "next_cursor": runs[-1]["index"] if len(runs) == limit else None})


async def run_now(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    unknown = sorted(set(body) - {"tenant"})
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r} (known: tenant)", field=unknown[0][:40])
    tenant = body.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise InvalidInput("tenant must be a string", field="tenant")
    results = await request.app[RETENTION].run(tenant)
    return _json({"runs": [result.to_json() for result in results]})


async def get_deletion(request: web.Request) -> web.Response:
    text = request.match_info["index"]
    if not text.isdigit() or len(text) > 19:
        raise InvalidInput(f"index must be a non-negative integer, not {text[:40]!r}", field="index")
    return _json(await request.app[RETENTION].deletion(int(text)))


RETENTION_ROUTES = with_expect_continue([
    web.get("/api/v1/retention/policies", list_policies, allow_head=False),
    web.post("/api/v1/retention/policies", set_policy),
    web.get("/api/v1/retention/runs", list_runs, allow_head=False),
    web.post("/api/v1/retention/runs", run_now),
    web.get("/api/v1/deletions/{index}", get_deletion, allow_head=False),
])


def add_retention(app: web.Application, interval: float = defaults.RETENTION_INTERVAL) -> None:
    """Add retention's routes, and its service and job over `app[AUDIT]` (call after `add_audit_routes`): the job
    follows the log's role, running on the sequencer only."""
    if interval < 0:
        raise InvalidInput(f"the retention interval must be 0 (off) or positive, not {interval}",
                           field="retention_interval")

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        audit, log = app[AUDIT], app[LOG]
        retention = Retention(log, audit.blobs, vault=audit.vault, hold_lock=audit.holds.lock)
        app[RETENTION] = retention
        job = RetentionJob(retention, interval)
        app[RETENTION_JOB] = job
        app[METRIC_SOURCES].append(lambda: render_dict_metrics(job.metrics()))

        async def follow(role: str) -> None:
            if role == "sequencer":
                job.start()
            else:
                await job.stop()

        if log.role == "sequencer":
            job.start()
        log.on_role_change(follow)
        try:
            yield
        finally:
            await job.stop()

    app.cleanup_ctx.append(lifetime)
    app.router.add_routes(RETENTION_ROUTES)


__all__ = ["RETENTION", "RETENTION_JOB", "RETENTION_ROUTES", "RetentionJob", "add_retention"]

