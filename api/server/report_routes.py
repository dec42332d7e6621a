"""GET /api/v1/reports: a compliance report (log/audit/report.py) as JSON, HTML or PDF (api/reports/).

    GET /api/v1/reports?tenant=T&from=WHEN&to=WHEN[&framework=soc2|hipaa|sox|iso27001|eu-ai-act|all][&format=json|html|pdf]

`from` and `to` are RFC 3339 times or dates (YYYY-MM-DD: that day's midnight UTC); the period is [from, to).
Permission events:read (ROUTE_POLICY), with the tenant in the credential's scope (403 outside it). The report is
verified against the witnessed checkpoint when the server has witnesses and one is witnessed, else the latest. It
reads contents (every event of the period, the reviewed drafts), so it is recorded in the access log as a read
("report", target "<tenant> <from>..<to>"). The engine's heavy work runs on threads and in the signature verifier
processes, the rendering on a thread: the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from api.reports import CONTENT_TYPES, FORMATS, render
from api.server.access_log import record_read
from api.server.audit_routes import AUDIT
from api.server.auth import tenant_scope
from api.server.state import LOG, WITNESS_JOB
from log.audit.periods import parse_day_or_time
from log.audit.report import ReportRequest, build_report
from log.audit.schema import TOKEN_PATTERN, python_regex
from log.errors import InvalidInput

PARAMETERS = ("tenant", "from", "to", "framework", "format")
_TOKEN = python_regex(TOKEN_PATTERN)


def parse_report_query(params) -> tuple[ReportRequest, str]:
    """(the ReportRequest, the format) of the route's query parameters, or InvalidInput naming the parameter."""
    for name in params:
        if name not in PARAMETERS:
            raise InvalidInput(f"unknown query parameter {name[:40]!r}", field=name[:40])
        if len(params.getall(name)) > 1:
            raise InvalidInput(f"query parameter {name!r} is repeated", field=name)
    tenant = params.get("tenant")
    if not tenant or not _TOKEN.match(tenant):
        raise InvalidInput("tenant is required: a tenant id (1-128 of A-Za-z0-9._:~-)", field="tenant")
    for bound in ("from", "to"):
        if not params.get(bound):
            raise InvalidInput(f"{bound} is required: an RFC 3339 time or a date YYYY-MM-DD", field=bound)
    framework = params.get("framework", "all")  # ReportRequest refuses an unknown one, naming the field
    format = params.get("format", "json")
    if format not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, not {format[:40]!r}", field="format")
    request = ReportRequest(tenant, parse_day_or_time(params["from"], "from"), parse_day_or_time(params["to"], "to"),
                            (framework,))
    return request, format


async def get_report(request: web.Request) -> web.Response:
    wanted, format = parse_report_query(request.query)
    tenant_scope(request, wanted.tenant)  # 403 for a tenant outside the credential's
    await record_read(request, "report", f"{wanted.tenant} {request.query['from']}..{request.query['to']}")
    note, witnessed = None, False
    witness_job = request.app.get(WITNESS_JOB)
    if witness_job is not None and (found := await witness_job.witnessed_checkpoint()) is not None:
        note, witnessed = found, True
    audit = request.app[AUDIT]
    report = await build_report(request.app[LOG], audit.blobs, wanted, checkpoint_note=note, witnessed=witnessed,
                                verifier_pool=audit.verifier_pool)
    if format == "json":
        body = json.dumps(report, separators=(",", ":")).encode()
    else:
        body, _ = await asyncio.to_thread(render, report, format)
    headers = {"Cache-Control": "no-store",
               # The verdict for a client that asked for HTML or PDF (`auditlog report` exits 1 on INVALID).
               "Auditlog-Chain-Integrity": report["summary"]["integrity"],
               "Auditlog-Summary": json.dumps(report["summary"]["line"])}
    if format != "json":
        name = f"report-{wanted.tenant}-{report['period']['from'][:10]}-{report['period']['to'][:10]}.{format}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPES[format]})


REPORT_ROUTES = [web.get("/api/v1/reports", get_report, allow_head=False)]


def add_report_routes(app: web.Application) -> None:
    app.router.add_routes(REPORT_ROUTES)
