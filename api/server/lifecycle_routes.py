"""HTTP routes of legal holds and data-subject requests (issue 20). Admin only (api/server/auth.py ROUTE_POLICY).

Handlers parse, call one method of the audit service's `holds` (log/audit/holds.py) or `subjects`
(log/audit/subjects.py), and encode; errors become problems through api/server/problems.py's table (a deletion a
hold refuses is `HeldByLegalHold`, 409, with the hold's id).

| method and path | what |
| --- | --- |
| GET /api/v1/holds | the holds, placement order: `?tenant=` one tenant's, `?active=true|false` |
| POST /api/v1/holds | place `{"scope": {tenant, run_ids?, context?, subjects?, actor_id?, from?, to?}, "reason", "reference"}`: 201 with the hold and its entry's index |
| POST /api/v1/holds/{hold_id}/release | `{"reason", "reference"?}`: the hold released, and the release entry's index |

Wiring: `add_lifecycle_routes(app)` after `add_audit_routes` (the handlers use `app[AUDIT]`).
"""

from __future__ import annotations

import json

from aiohttp import web

from api.server.audit_routes import AUDIT, _admin_json, _flag, _param
from api.server.problems import ProblemKind, register_problem_kinds, with_expect_continue
from log.audit.holds import HeldByLegalHold, Hold, HoldReceipt, check_hold_id
from log.errors import InvalidInput

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


LIFECYCLE_ROUTES = with_expect_continue([
    web.get("/api/v1/holds", list_holds, allow_head=False),
    web.post("/api/v1/holds", place_hold),
    web.post("/api/v1/holds/{hold_id}/release", release_hold),
])


def add_lifecycle_routes(app: web.Application) -> None:
    """Add the routes of legal holds and data-subject requests. Call after `add_audit_routes`."""
    app.router.add_routes(LIFECYCLE_ROUTES)
