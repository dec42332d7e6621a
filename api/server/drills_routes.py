"""HTTP routes of audit drills (issue 21): an auditor's drill result logged as an entry, and the drills listed.

| method and path | who | what |
| --- | --- | --- |
| POST /api/v1/drills | drills:record (auditor of the tenant, admin) | a drill's result (log/audit/drills.py: the record without type, at and by); 201 `{"index", "drill"}` once its entry is committed |
| GET /api/v1/drills | events:read (an auditor: its tenants) | `?tenant=&limit=&after=`: `{"drills": [{"index", ...record}], "next_cursor"}`, newest first; `after` is a previous page's `next_cursor` |

The server sets the record's `at` (its clock) and `by` (the credential's name, as the access log names it). Both
routes are the sequencer's: a read worker and a standby pass them on (api/server/readers.py, api/server/standby.py),
as the rest of the audit personality.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.server.access_log import record_read
from api.server.audit_routes import _body, _json, _param, parse_admin_body
from api.server.auth import principal_of, tenant_scope
from api.server.problems import with_expect_continue
from api.server.routes import _query, parse_uint
from api.server.state import LOG
from log.audit.drills import Drills
from log.errors import InvalidInput

DRILLS = web.AppKey("drills", Drills)
MAX_DRILL_BODY = 1 << 20  # a drill's entry is at most 64 KiB; its body, pretty-printed, a little more


async def record_drill(request: web.Request) -> web.Response:
    body = parse_admin_body(await _body(request, MAX_DRILL_BODY))
    tenant = body.get("tenant")
    if not isinstance(tenant, str):
        raise InvalidInput("tenant is required: the tenant drilled, a string", field="tenant")
    tenant_scope(request, tenant)  # access control let only a credential holding drills:record here; its tenant?
    index, drill = await request.app[DRILLS].record(body, principal_of(request).credential)
    return _json({"index": index, "drill": drill}, status=201)


async def list_drills(request: web.Request) -> web.Response:
    params = _query(request, {"tenant", "limit", "after"})
    tenant = _param(params.get("tenant"), "tenant")
    tenants = tenant_scope(request, tenant)
    limit = parse_uint(params.get("limit", "100"), "limit")
    after = parse_uint(params["after"], "after") if "after" in params else None
    await record_read(request, "drills", request.query_string)
    drills, cursor = await request.app[DRILLS].list(tenant, tenants=tenants, after=after, limit=limit)
    return _json({"drills": drills, "next_cursor": cursor})


DRILL_ROUTES = with_expect_continue([
    web.get("/api/v1/drills", list_drills, allow_head=False),
    web.post("/api/v1/drills", record_drill),
])


def add_drill_routes(app: web.Application) -> None:
    """Add the drills' routes and their service over `app[LOG]` (call after the log's cleanup context)."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        app[DRILLS] = Drills(app[LOG])
        yield

    app.cleanup_ctx.append(lifetime)
    app.router.add_routes(DRILL_ROUTES)
