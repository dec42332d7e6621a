"""HTTP routes of legal holds and data-subject requests (issue 20). Admin only (api/server/auth.py ROUTE_POLICY).

Handlers parse, call one method of the audit service's `holds` (log/audit/holds.py) or `subjects`
(log/audit/subjects.py), and encode; errors become problems through api/server/problems.py's table (a deletion a
hold refuses is `HeldByLegalHold`, 409, with the hold's id).

| method and path | what |
| --- | --- |
| GET /api/v1/holds | the holds, placement order: `?tenant=` one tenant's, `?active=true|false` |
| POST /api/v1/holds | place `{"scope": {tenant, run_ids?, context?, subjects?, actor_id?, from?, to?}, "reason", "reference"}`: 201 with the hold and its entry's index |
| POST /api/v1/holds/{hold_id}/release | `{"reason", "reference"?}`: the hold released, and the release entry's index |
| POST /api/v1/subjects/access | `{"tenant", "subject"}`: the evidence bundle of every event carrying the subject's tokens (recorded in the access log, target the subject's token) |
| POST /api/v1/subjects/erase | `{"tenant", "subject", "reason"}`: the erasure, logged first (log/audit/subjects.py); 200 with `complete` false when a hold or a retention obligation kept something |

The subject reference travels in the body of a POST, never in a URL (access logs and proxies keep URLs), and is
never echoed back: answers name the subject by its token.

Wiring: `add_lifecycle_routes(app)` after `add_audit_routes` (the handlers use `app[AUDIT]`). On the sequencer (at
start and on takeover) erasures interrupted by a crash are finished (`SubjectRequests.resume`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.server.access_log import record_read
from api.server.audit_routes import AUDIT, _admin_json, _flag, _param, attested_checkpoints
from api.server.problems import ProblemKind, register_problem_kinds, with_expect_continue
from api.server.state import LOG
from log.audit.holds import HeldByLegalHold, Hold, HoldReceipt, check_hold_id
from log.audit.subjects import SubjectRequests
from log.errors import InvalidInput

logger = logging.getLogger(__name__)
SUBJECTS = web.AppKey("subjects", SubjectRequests)

register_problem_kinds({HeldByLegalHold: ProblemKind(409, "Held by a legal hold")})


def _json(body, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json", headers={"Cache-Control": "no-store"})


def _members(body: dict, allowed: set[str]) -> dict:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r} (known: {', '.join(sorted(allowed))})",
                           field=unknown[0][:40])
    return body


def _hold_answer(receipt: HoldReceipt) -> dict:
    return {"hold": receipt.hold.to_json(), "index": receipt.index}


async def list_holds(request: web.Request) -> web.Response:
    tenant = _param(request.query.get("tenant"), "tenant")
    holds: list[Hold] = await request.app[AUDIT].holds.list(tenant=tenant,
                                                            active=_flag(request.query, "active", None))
    return _json({"holds": [hold.to_json() for hold in holds]})


async def place_hold(request: web.Request) -> web.Response:
    body = _members(await _admin_json(request), {"scope", "reason", "reference"})
    for name in ("scope", "reason", "reference"):
        if name not in body:
            raise InvalidInput(f"{name} is required", field=name)
    receipt = await request.app[AUDIT].holds.place(body["scope"], body["reason"], body["reference"])
    return _json(_hold_answer(receipt), status=201)


async def release_hold(request: web.Request) -> web.Response:
    hold_id = check_hold_id(request.match_info["hold_id"])
    body = _members(await _admin_json(request), {"reason", "reference"})
    if "reason" not in body:
        raise InvalidInput("reason is required: why the hold ends", field="reason")
    receipt = await request.app[AUDIT].holds.release(hold_id, body["reason"], body.get("reference", ""))
    return _json(_hold_answer(receipt))


def _subject_body(body: dict, allowed: set[str]) -> dict:
    _members(body, allowed)
    for name in sorted(allowed):
        if name not in body:
            raise InvalidInput(f"{name} is required", field=name)
    return body


async def subject_access(request: web.Request) -> web.Response:
    body = _subject_body(await _admin_json(request), {"tenant", "subject"})
    subjects = request.app[SUBJECTS]
    subject, _ = await subjects.subject_tokens(body["tenant"], body["subject"])
    await record_read(request, "subject-access", f"{body['tenant']}/{subject}")
    _, bundle = await subjects.access(body["tenant"], body["subject"],
                                      attested=await attested_checkpoints(request.app))
    return _json(bundle)


async def subject_erase(request: web.Request) -> web.Response:
    body = _subject_body(await _admin_json(request), {"tenant", "subject", "reason"})
    receipt = await request.app[SUBJECTS].erase(body["tenant"], body["subject"], body["reason"])
    return _json(receipt.to_json())


LIFECYCLE_ROUTES = with_expect_continue([
    web.get("/api/v1/holds", list_holds, allow_head=False),
    web.post("/api/v1/holds", place_hold),
    web.post("/api/v1/holds/{hold_id}/release", release_hold),
    web.post("/api/v1/subjects/access", subject_access),
    web.post("/api/v1/subjects/erase", subject_erase),
])


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    subjects = app[SUBJECTS] = SubjectRequests(app[AUDIT])
    resuming: set[asyncio.Task] = set()

    async def resume() -> None:
        try:
            finished = await subjects.resume()
        except Exception as exc:  # noqa: BLE001 - retried before the next erasure and at the next start
            logger.warning("finishing interrupted data-subject erasures failed (retried before the next "
                           "erasure): %s", exc)
            return
        if finished:
            logger.warning("finished %d data-subject erasure(s) interrupted before they were done", finished)

    async def follow(role: str) -> None:
        if role == "sequencer":
            task = asyncio.create_task(resume())
            resuming.add(task)
            task.add_done_callback(resuming.discard)

    log = app[LOG]
    if log.role == "sequencer":
        await follow("sequencer")
    log.on_role_change(follow)
    try:
        yield
    finally:
        for task in list(resuming):
            task.cancel()
        await asyncio.gather(*resuming, return_exceptions=True)


def add_lifecycle_routes(app: web.Application) -> None:
    """Add the routes of legal holds and data-subject requests, and the resumption of interrupted erasures on the
    sequencer. Call after `add_audit_routes` (its service opens first)."""
    app.cleanup_ctx.append(_lifetime)
    app.router.add_routes(LIFECYCLE_ROUTES)
