"""Passing a request on to another server process and its answer back, unchanged: how a read worker reaches its
writer (api/server/readers.py) and how a server that stands by reaches the sequencer (api/server/standby.py); and
single-entry POSTs gathered into batch POSTs on the way (`EntryBatcher`)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from api.server import routes
from api.server.routes import MAX_JSON_BODY
from log.blobs import MAX_BLOB_SIZE
from log.sequencer import Published

logger = logging.getLogger(__name__)

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
    declared = request.content_length
    if declared is not None and declared > MAX_BLOB_SIZE:
        # No route takes this much (a blob is the largest body): refused here, before a byte is read, as the other
        # side would refuse it. Passed on, its early 413 cut the body's stream, and the client got no answer at all.
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BLOB_SIZE, actual_size=declared)
    headers = utf8_headers(passed_on(request.headers))
    headers.update(extra_headers or {})
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


class EntryBatcher:
    """Single-entry POSTs that reach a worker go on to the writer as batch POSTs: one batch in flight at a time,
    each carrying every entry that arrived while the one before was out, within the writer's limits on a batch
    (MAX_BATCH_ENTRIES entries, a MAX_JSON_BODY body).

    Forwarding each POST as it came cost the writer a whole HTTP request per entry, more than serving the client
    itself; a batch costs it one request for all. Each client is answered exactly as the writer answers a single
    entry, only once the writer has acknowledged the batch, i.e. stored it durably. Whatever else the writer
    answers (a full queue, a storage failure) or a writer that does not answer reaches every entry of the batch.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[tuple[int, dict[str, str], bytes]]],
                 unavailable: Callable[[], web.Response]):
        self._send = send  # (JSON body) -> (status, headers, body) of the writer's answer
        self._unavailable = unavailable  # what each entry gets when the writer cannot be reached
        self._waiting: list[tuple[bytes, asyncio.Future]] = []
        self._draining: asyncio.Task | None = None

    async def add(self, entry: bytes) -> web.Response:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._forward(self._take())
        finally:
            self._draining = None

    def _take(self) -> list[tuple[bytes, asyncio.Future]]:
        """The longest prefix of the waiting entries that fits one batch (at least one: a single entry always fits)."""
        size, count = len(b'{"entries":[]}'), 0
        for entry, _ in self._waiting:
            cost = 4 * ((len(entry) + 2) // 3) + 3  # base64, quotes, comma
            if count and (count == routes.MAX_BATCH_ENTRIES or size + cost > routes.MAX_JSON_BODY):
                break
            size += cost
            count += 1
        batch = self._waiting[:count]
        del self._waiting[:count]
        return batch

    async def _forward(self, batch: list[tuple[bytes, asyncio.Future]]) -> None:
        body = b'{"entries":[%s]}' % b",".join([b'"%s"' % base64.b64encode(entry) for entry, _ in batch])
        try:
            status, headers, payload = await self._send(body)
            if status == 200:
                answer = json.loads(payload)
                checkpoint = Published(answer["tree_size"], b"", answer["checkpoint"].encode())
                receipts = answer["entries"]
                if len(receipts) != len(batch):
                    raise ValueError(f"{len(receipts)} receipts for {len(batch)} entries")
                for (_, future), receipt in zip(batch, receipts):
                    if not future.done():
                        future.set_result(routes.single_entry_receipt(
                            receipt["index"], base64.b64decode(receipt["leaf_hash"]), checkpoint))
                return
            for _, future in batch:  # the writer refused or failed the batch: each entry gets its answer
                if not future.done():
                    future.set_result(web.Response(status=status, body=payload, headers=headers))
        except Exception as exc:  # noqa: BLE001 - unreachable writer or an answer we cannot read: nothing acknowledged
            logger.warning("forwarding %d entries to the writer failed: %r", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_result(self._unavailable())
