"""The TSA's HTTP interface over a `TimestampAuthority` (witness/tsa.py): RFC 3161 section 3.4 over HTTP."""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from witness.rfc3161 import TIMESTAMP_QUERY, TIMESTAMP_REPLY
from witness.serving import expect_continue
from witness.tsa import MAX_REQUEST_BYTES, TimestampAuthority

AUTHORITY = web.AppKey("authority", TimestampAuthority)


async def _handle_query(request: web.Request) -> web.Response:
    """RFC 3161 section 3.4: POST application/timestamp-query, answered with application/timestamp-reply."""
    # Not request.content_type: aiohttp's parser raises on some values (e.g. "0;0*"), a 500 for a client's typo.
    if request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() != TIMESTAMP_QUERY:
        return web.Response(status=415, text=f"send a DER TimeStampReq as {TIMESTAMP_QUERY}\n")
    try:
        body = await request.read()
    except RequestPayloadError as exc:  # data its Content-Encoding cannot decode, a broken chunk: not a 500
        return web.Response(status=400, text=f"the body cannot be read: {str(exc)[:120]!r}\n")
    reply = request.app[AUTHORITY].respond(body)
    return web.Response(body=reply, content_type=TIMESTAMP_REPLY)


async def _handle_ca(request: web.Request) -> web.Response:
    return web.Response(body=request.app[AUTHORITY].identity.ca_pem, content_type="application/x-pem-file")


def make_tsa_app(authority: TimestampAuthority) -> web.Application:
    """The TSA's aiohttp app: POST / (and POST /tsa) take queries, GET /ca.pem serves the trust anchor."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[AUTHORITY] = authority
    app.add_routes([
        web.post("/", _handle_query, expect_handler=expect_continue),
        web.post("/tsa", _handle_query, expect_handler=expect_continue),
        web.get("/ca.pem", _handle_ca, expect_handler=expect_continue),
    ])
    return app
