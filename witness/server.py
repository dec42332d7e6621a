"""The tlog-witness HTTP interface over a `Cosigner`: `POST /add-checkpoint` (submission prefix = the app's root).

Responses, as c2sp.org/tlog-witness gives them:

    200  one cosignature line per witness key ("— <name> <base64>\\n" each)
    400  malformed body, or old size larger than the checkpoint size
    403  no signature from a key trusted for the origin verifies
    404  unknown origin
    409  old size is not the latest cosigned size: body "<latest size>\\n", Content-Type text/x.tlog.size
    422  the consistency proof does not verify (or is not empty where it must be), a size-0 checkpoint without the
         empty tree's root, or the same size as the latest cosigned one with another root (C2SP/C2SP#280 moved
         this last case from 409 to 422: closer to a proof that fails than to a retry from another size, and so
         every 409 carries the size body)

Other bodies are one line of plain text saying what failed. The handler parses, calls the cosigner once, and
encodes; `_STATUS` is the only place codes turn into statuses.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from log.note import MAX_NOTE_SIZE
from witness.cosigner import AddCheckpointRequest, Cosigner, format_signature_lines
from witness.errors import (
    BadLogSignature, InconsistentProof, MalformedRequest, OldSizeConflict, RootConflict, UnknownLog, WitnessError,
)
from witness.serving import expect_continue

COSIGNER = web.AppKey("cosigner", Cosigner)
SIZE_CONTENT_TYPE = "text/x.tlog.size"
# The largest body worth reading: the old size line, 63 proof lines of 45 bytes, and a note at its size limit.
MAX_BODY_SIZE = MAX_NOTE_SIZE + 64 * 45 + 32

_STATUS: dict[str, int] = {
    MalformedRequest.code: 400,
    BadLogSignature.code: 403,
    UnknownLog.code: 404,
    OldSizeConflict.code: 409,
    RootConflict.code: 422,
    InconsistentProof.code: 422,
}


def _error_response(exc: WitnessError) -> web.Response:
    status = _STATUS.get(exc.code, 500)
    if isinstance(exc, OldSizeConflict):
        return web.Response(status=status, body=b"%d\n" % exc.latest_size, content_type=SIZE_CONTENT_TYPE)
    return web.Response(status=status, text=f"{exc}\n")


async def add_checkpoint(request: web.Request) -> web.Response:
    try:
        body = await request.read()
    except RequestPayloadError as exc:  # data its Content-Encoding cannot decode, a broken chunk: not a 500
        return web.Response(status=400, text=f"the body cannot be read: {str(exc)[:120]!r}\n")
    try:
        parsed = AddCheckpointRequest.from_bytes(body)
        signatures = await request.app[COSIGNER].add_checkpoint(parsed)
    except WitnessError as exc:
        return _error_response(exc)
    return web.Response(body=format_signature_lines(signatures), content_type="text/plain", charset="utf-8")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_witness_app(cosigner: Cosigner, *, close_store: bool = False) -> web.Application:
    """The witness app. With `close_store`, the cosigner's store is closed when the app shuts down."""
    app = web.Application(client_max_size=MAX_BODY_SIZE)
    app[COSIGNER] = cosigner
    app.router.add_routes([
        web.post("/add-checkpoint", add_checkpoint, expect_handler=expect_continue),
        web.get("/healthz", healthz, expect_handler=expect_continue),
    ])
    if close_store:
        async def _close(app: web.Application):
            yield
            app[COSIGNER].store.close()

        app.cleanup_ctx.append(_close)
    return app
