"""Passing a request on to another server process and its answer back, unchanged: how a read worker reaches its
writer (api/server/readers.py) and how a server that stands by reaches the sequencer (api/server/standby.py)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from api.server.routes import MAX_JSON_BODY

# Hop-by-hop headers (RFC 9110 section 7.6.1) and those aiohttp recomputes for the body it sends. Content-Encoding
# too: aiohttp decodes a request body as it reads it, and a response body as the client reads it, so what is passed
# on is never encoded (forwarded, it made the writer decode a gzip body twice and refuse it).
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                  "content-length", "host", "content-encoding"}


def passed_on(headers) -> dict[str, str]:
    """`headers` without the hop-by-hop ones and those the sender recomputes."""
    return {name: value for name, value in headers.items() if name.lower() not in _NOT_FORWARDED}


def utf8_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with every byte that was not UTF-8 replaced by U+FFFD.

    aiohttp reads such bytes as surrogate escapes, and its header writer silently drops surrogates: passed on as
    they were, a value would reach the writer changed into another, possibly valid, one (`Bearer <token>\\xff`
    arrived as `Bearer <token>` and was let in). U+FFFD keeps it invalid, so the writer refuses it as it refuses
    the original when that reaches it directly (every check there treats a non-ASCII character alike)."""
    for name, value in headers.items():
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                headers[name] = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return headers


async def forward(request: web.Request, session: aiohttp.ClientSession, url: str,
                  extra_headers: dict[str, str] | None = None) -> web.Response:
    """Send `request` to `url` and answer with what came back. A body bigger than a JSON body may be (a blob) or of
    unknown length is passed on as it comes, never whole in this process's memory. Raises aiohttp.ClientError or
    OSError when the other side cannot be reached or breaks off: the caller says so to its client."""
    headers = utf8_headers(passed_on(request.headers))
    headers.update(extra_headers or {})
    declared = request.content_length
    if not request.body_exists:
        body = None
    elif declared is not None and declared <= MAX_JSON_BODY:
        body = await request.read()
    else:
        body = request.content.iter_chunked(1 << 16)
        if declared is not None:
            headers["Content-Length"] = str(declared)
    async with session.request(request.method, url, headers=headers, data=body, allow_redirects=False) as answer:
        payload = await answer.read()
        return web.Response(status=answer.status, body=payload, headers=passed_on(answer.headers))
