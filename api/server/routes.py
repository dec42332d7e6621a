"""The HTTP handlers and the one route table. Each handler parses its request, calls the log, and encodes the answer.

Parsing is strict and every rejection is an `InvalidInput` naming the field, which `api.server.problems` turns into a
400 problem: integers are ASCII decimal digits only, at most 2^63 - 1; unknown or repeated query parameters are
refused rather than ignored (a misspelt `tree-size` must not silently mean "the latest tree").

Static read API (c2sp.org/tlog-tiles): `/checkpoint`, `/tile/<L>/<N>[.p/<W>]` and `/tile/entries/<N>[.p/<W>]`.
Full tiles and bundles never change, so they are cached for a year as immutable; partial ones are answered with
`no-cache`, since the log may stop serving them once the full tile exists.

Witnessing and timestamping (api/server/app.py `Witnessing`): `/checkpoint` carries the witnesses' cosignatures gathered so
far after the log's signature; `/checkpoint.witnessed` is the latest checkpoint cosigned by k of the n witnesses;
`/api/v1/timestamps/latest` and `/api/v1/timestamps/<size>` serve the RFC 3161 tokens. These routes always exist
(the OpenAPI document is static) and answer a 404 problem when the job is not configured or has nothing yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from datetime import datetime, timezone

from aiohttp import web
from multidict import CIMultiDict

from api.server import access_log, metrics
from api.server.problems import RETRY_AFTER_SECONDS, ProblemKind, register_problem_kinds, with_expect_continue
from api.server.readiness import readiness, readiness_metrics, serving_role
from api.server.state import HTTP_METRICS, LOG, METRIC_SOURCES, OPENAPI, TIMESTAMP_JOB, WITNESS_JOB
from log.errors import InvalidInput, NotFound
from log.sequencer import Published
from log.tiles import MAX_ENTRY_SIZE, TileID
from api.server.timestamping import checkpoint_size
from witness.rfc3161 import TIMESTAMP_REPLY, TimestampError, TimestampRejected, UntrustedTimestamp

MAX_BATCH_ENTRIES = 4096
MAX_JSON_BODY = 16 << 20  # 4096 entries of ~3 KiB each, or fewer bigger ones
MAX_QUERY_INT = 2**63 - 1
HASH_SIZE = 32

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
CHECKPOINT_CONTENT_TYPE = "text/plain; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

_DIGITS = re.compile(r"[0-9]{1,19}")

# The witnessing and timestamping errors, into api.server.problems' one table.
register_problem_kinds({
    TimestampError: ProblemKind(422, "Invalid timestamp"),
    UntrustedTimestamp: ProblemKind(422, "Untrusted timestamp"),
    TimestampRejected: ProblemKind(502, "The timestamp authority refused"),
})


# --- parsing -----------------------------------------------------------------------------------------------------


def parse_uint(text: str, field: str) -> int:
    """A non-negative decimal integer of ASCII digits, at most 2^63 - 1 ("1e3", "-1", "", " 1", "+1" are refused)."""
    if not _DIGITS.fullmatch(text) or int(text) > MAX_QUERY_INT:
        raise InvalidInput(f"{field} must be a decimal integer in [0, 2^63 - 1], not {text[:40]!r}", field=field)
    return int(text)


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters as a dict, refusing names outside `allowed` and names given twice."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            raise InvalidInput(
                f"unknown query parameter {name[:40]!r}; expected {', '.join(sorted(allowed))}", field=name[:40]
            )
        if name in params:
            raise InvalidInput(f"query parameter {name!r} is given more than once", field=name)
        params[name] = value
    return params


def _query_int(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    return None if value is None else parse_uint(value, name)


def _require(value, name: str):
    if value is None:
        raise InvalidInput(f"query parameter {name!r} is required", field=name)
    return value


def parse_hash(text: str, field: str) -> bytes:
    """A 32-byte hash in base64url or standard base64, padded or not.

    A standard-base64 "+" arrives as a space when the client did not percent-encode it, so spaces read as "+".
    """
    normalized = text.replace(" ", "+").replace("-", "+").replace("_", "/").rstrip("=")
    try:
        value = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not base64 or base64url: {text[:80]!r}", field=field) from None
    if len(value) != HASH_SIZE:
        raise InvalidInput(f"{field} must decode to {HASH_SIZE} bytes, not {len(value)}", field=field)
    return value


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing (413) a declared or actual length above `limit` before reading all of it."""
    declared = request.content_length
    if declared is not None and "Content-Encoding" not in request.headers:
        if declared > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
        # aiohttp's parser delivers exactly the declared length: one read, no copy. (Not so for an encoded body:
        # aiohttp decodes it as it reads, and the declared length is the encoded one; it is read in chunks below,
        # its decoded length counted against the limit.)
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError as exc:
            raise InvalidInput(f"the body ended after {len(exc.partial)} of its {declared} bytes",
                               field="body") from None
    body = bytearray()
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


def _unique_members(pairs: list[tuple[str, object]]) -> dict:
    """An object_pairs_hook refusing a member name given twice: which one counts would be the parser's choice, and
    a proxy or client library in front of the log may choose the other."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        repeated = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise ValueError(f"member {repeated[:40]!r} is given more than once")
    return document


def parse_batch(body: bytes) -> list[bytes]:
    """`{"entries": ["<base64>", ...]}`: 1 to MAX_BATCH_ENTRIES non-empty entries of at most MAX_ENTRY_SIZE bytes.

    Refused as InvalidInput naming the body: bytes that are not UTF-8 JSON, a member name given twice, and nesting
    deeper than the parser's recursion limit (the C scanner raises RecursionError at ~1,000 levels; a batch has 2).
    """
    try:
        document = json.loads(body, object_pairs_hook=_unique_members)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", field="body") from None
    except RecursionError:
        raise InvalidInput("the body is not a batch: its JSON is nested too deeply", field="body") from None
    if not isinstance(document, dict):
        raise InvalidInput('the body must be a JSON object {"entries": [...]}', field="body")
    unknown = sorted(set(document) - {"entries"})
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r} in the body", field=unknown[0][:40])
    items = document.get("entries")
    if not isinstance(items, list):
        raise InvalidInput('"entries" must be a list of base64 strings', field="entries")
    if not 1 <= len(items) <= MAX_BATCH_ENTRIES:
        raise InvalidInput(f"entries must hold 1 to {MAX_BATCH_ENTRIES} items, not {len(items)}", field="entries")
    entries = []
    for position, item in enumerate(items):
        field = f"entries[{position}]"
        if not isinstance(item, str):
            raise InvalidInput(f"{field} must be a base64 string, not {type(item).__name__}", field=field)
        try:
            entry = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{field} is not valid base64", field=field) from None
        _check_entry(entry, field)
        entries.append(entry)
    return entries


def _check_entry(entry: bytes, field: str) -> None:
    if not entry:
        raise InvalidInput(f"{field} is empty; an entry holds at least one byte", field=field)
    if len(entry) > MAX_ENTRY_SIZE:
        raise InvalidInput(f"{field} is {len(entry)} bytes; the limit is {MAX_ENTRY_SIZE}", field=field)


def _prefers_octet_stream(request: web.Request) -> bool:
    """True when the Accept header ranks application/octet-stream above application/json."""
    best: dict[str, float] = {}
    for part in request.headers.get("Accept", "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media.lower()] = max(quality, best.get(media.lower(), 0.0))
    octet, json_q = best.get(OCTET_STREAM, 0.0), best.get(JSON, 0.0)
    return octet > 0 and octet > json_q


# --- encoding ----------------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rfc3339_ms(unix_ms: int) -> str:
    moment = datetime.fromtimestamp(unix_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(body: dict, *, status: int = 200, cache: str = NO_CACHE) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": cache})


class _CheckpointFields:
    """`"tree_size":N,"checkpoint":"<note>"` of the newest checkpoint, JSON-encoded once per checkpoint rather than
    once per write acknowledged with it (hundreds of acknowledgements share one checkpoint)."""

    def __init__(self) -> None:
        self._cached: tuple[Published | None, bytes] = (None, b"")  # one tuple: read and replaced atomically

    def __call__(self, published: Published) -> bytes:
        cached = self._cached
        if cached[0] is not published:
            cached = (published, b'"tree_size":%d,"checkpoint":%s' % (published.size,
                                                                       json.dumps(published.note.decode()).encode()))
            self._cached = cached
        return cached[1]


checkpoint_fields = _CheckpointFields()


def json_bytes(body: bytes, *, status: int = 200, cache: str = NO_CACHE) -> web.Response:
    """A JSON body the handler wrote out itself."""
    headers = _JSON_HEADERS.get(cache)
    if headers is None:
        headers = _JSON_HEADERS[cache] = CIMultiDict({"Content-Type": f"{JSON}; charset=utf-8", "Cache-Control": cache})
    # A copy of ready-made headers: aiohttp adds to them, and building them from content_type and charset cost
    # ~1 us of a single-entry POST's ~200.
    return web.Response(body=body, status=status, headers=headers.copy())


_JSON_HEADERS: dict[str, CIMultiDict] = {}


def _proof_json(fields: bytes, hashes: list[bytes]) -> web.Response:
    """`{<fields>,"hashes":[base64, ...]}`, written out directly: `fields` are `"name":<integer>` pairs and base64
    needs no JSON escaping, and json.dumps was ~5 % of a proof request's server CPU. Encoded as bytes straight from
    binascii: through base64.b64encode, str and back it took 11 us for 20 hashes, this 5."""
    if not hashes:
        return json_bytes(b'{%s,"hashes":[]}' % fields)
    listed = b'","'.join([binascii.b2a_base64(h, newline=False) for h in hashes])
    return json_bytes(b'{%s,"hashes":["%s"]}' % (fields, listed))


# --- handlers ----------------------------------------------------------------------------------------------------


def media_type(request: web.Request) -> str | None:
    """The request's media type, lowercased, without parameters; None without a Content-Type.

    Read here rather than through aiohttp's `request.content_type`, whose parser (the standard library's email
    header parser) raises IndexError on some values (e.g. "0;0*"), and which reads a value it cannot parse as
    application/octet-stream, as if it were an entry."""
    raw = request.headers.get("Content-Type")
    return None if raw is None else raw.split(";", 1)[0].strip().lower()


def is_single_entry(request: web.Request) -> bool:
    """A POST /api/v1/entries of one raw entry: no Content-Type, or application/octet-stream. Any other value (a
    Content-Type that is not a media type included) is not taken as an entry but refused (415)."""
    kind = media_type(request)
    return kind is None or kind == OCTET_STREAM


async def read_single_entry(request: web.Request) -> bytes:
    body = await read_body(request, MAX_ENTRY_SIZE)
    _check_entry(body, "body")
    return body


def single_entry_receipt(index: int, leaf_hash: bytes, checkpoint: Published) -> web.Response:
    """The answer to a single-entry POST, once the entry is durably stored (the writer's, or a read worker's)."""
    return json_bytes(b'{"index":%d,"leaf_hash":"%s",%s}' % (index, base64.b64encode(leaf_hash),
                                                              checkpoint_fields(checkpoint)))


async def add_entries(request: web.Request) -> web.Response:
    if is_single_entry(request):
        entries, single = [await read_single_entry(request)], True
    elif media_type(request) == JSON:
        entries, single = parse_batch(await read_body(request, MAX_JSON_BODY)), False
    else:
        declared = request.headers.get("Content-Type", "")[:80]
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type must be {OCTET_STREAM} (one entry) or {JSON} (a batch), not {declared!r}"
        )
    result = await request.app[LOG].add_entries(entries)
    # Written out directly (integers and base64 need no escaping): json.dumps of the receipts was ~6 % of a
    # single-entry POST's server CPU.
    if single:
        return single_entry_receipt(result.first_index, result.leaf_hashes[0], result.checkpoint)
    checkpoint = checkpoint_fields(result.checkpoint)
    # Keyless entries get consecutive indices: no outcome objects needed.
    receipts = b",".join([b'{"index":%d,"leaf_hash":"%s"}' % (index, base64.b64encode(leaf_hash))
                          for index, leaf_hash in enumerate(result.leaf_hashes, result.first_index)])
    return json_bytes(b'{"entries":[%s],%s}' % (receipts, checkpoint))


async def get_entry(request: web.Request) -> web.Response:
    _query(request, set())
    index = parse_uint(request.match_info["index"], "index")
    await access_log.record_read(request, "entry", str(index))
    entry = await request.app[LOG].entry(index)
    if _prefers_octet_stream(request):
        return web.Response(body=entry.data, content_type=OCTET_STREAM, headers={"Cache-Control": IMMUTABLE})
    return _json(
        {"index": entry.index, "data": b64(entry.data), "leaf_hash": b64(entry.leaf_hash),
         "received_at": rfc3339_ms(entry.received_at)},
        cache=IMMUTABLE,
    )


async def inclusion_proof(request: web.Request) -> web.Response:
    """By index, or by leaf hash (which finds the smallest index with that hash first). tree_size: default latest."""
    log = request.app[LOG]
    params = _query(request, {"index", "leaf_hash", "tree_size"})
    index = _query_int(params, "index")
    tree_size = _query_int(params, "tree_size")
    if tree_size is None:
        tree_size = log.size
    if "leaf_hash" in params:
        if index is not None:
            raise InvalidInput("give either index or leaf_hash, not both", field="leaf_hash")
        index = await log.find_leaf(parse_hash(params["leaf_hash"], "leaf_hash"), tree_size)
    _require(index, "index")
    hashes = await log.inclusion_proof(index, tree_size)
    return _proof_json(b'"index":%d,"tree_size":%d' % (index, tree_size), hashes)


async def consistency_proof(request: web.Request) -> web.Response:
    log = request.app[LOG]
    params = _query(request, {"first", "second"})
    first = _require(_query_int(params, "first"), "first")
    second = _query_int(params, "second")
    if second is None:
        second = log.size
    hashes = await log.consistency_proof(first, second)
    return _proof_json(b'"first":%d,"second":%d' % (first, second), hashes)


async def log_info(request: web.Request) -> web.Response:
    _query(request, set())
    log = request.app[LOG]
    published = log.checkpoint
    return _json({
        "origin": log.origin,
        "verifier_key": log.verifier_key,
        "tree_size": published.size,
        "root_hash": b64(published.root_hash),
        "checkpoint": published.note.decode(),
    })


def _note(note: bytes) -> web.Response:
    return web.Response(body=note, headers={"Content-Type": CHECKPOINT_CONTENT_TYPE, "Cache-Control": NO_CACHE})


async def checkpoint(request: web.Request) -> web.Response:
    """The latest checkpoint; with witnesses configured, followed by the cosignatures gathered for it so far."""
    job = request.app.get(WITNESS_JOB)
    return _note(request.app[LOG].checkpoint.note if job is None else await job.cosigned_checkpoint())


async def checkpoint_witnessed(request: web.Request) -> web.Response:
    _query(request, set())
    job = request.app.get(WITNESS_JOB)
    if job is None:
        raise NotFound("this log has no witnesses configured")
    note = await job.witnessed_checkpoint()
    if note is None:
        raise NotFound(f"no checkpoint has been cosigned by {job.policy.k} of the {len(job.witnesses)} witnesses yet")
    return _note(note)


def _timestamp_job(request: web.Request):
    job = request.app.get(TIMESTAMP_JOB)
    if job is None:
        raise NotFound("this log has no timestamp authority configured")
    return job


async def timestamp_latest(request: web.Request) -> web.Response:
    _query(request, set())
    found = await _timestamp_job(request).latest_token()
    if found is None:
        raise NotFound("no checkpoint has been timestamped yet")
    note, response = found
    return _json({"tree_size": checkpoint_size(note), "checkpoint": note.decode(), "timestamp": b64(response)})


async def timestamp_for_size(request: web.Request) -> web.Response:
    _query(request, set())
    size = parse_uint(request.match_info["size"], "size")
    found = await _timestamp_job(request).token_for(size)
    if found is None:
        raise NotFound(f"no timestamp for the checkpoint of size {size}")
    return web.Response(body=found[1], content_type=TIMESTAMP_REPLY, headers={"Cache-Control": NO_CACHE})


async def _serve_tile(request: web.Request, tile_id: TileID) -> web.Response:
    data = await request.app[LOG].tile(tile_id)
    response = web.Response(
        body=data, content_type=OCTET_STREAM,
        headers={"Cache-Control": NO_CACHE if tile_id.is_partial else IMMUTABLE},
    )
    if tile_id.level is None:
        response.enable_compression()  # tlog-tiles: entry bundles SHOULD be compressed (as the client accepts)
    return response


async def hash_tile(request: web.Request) -> web.Response:
    if request.match_info["level"] == "entries":  # never entry contents through the public hash tile route
        raise NotFound(f"nothing is served at {request.path}")
    return await _serve_tile(request, TileID.parse(f"tile/{request.match_info['level']}/{request.match_info['n']}"))


async def entry_bundle(request: web.Request) -> web.Response:
    await access_log.record_read(request, "entry-bundle", request.match_info["n"])
    return await _serve_tile(request, TileID.parse(f"tile/entries/{request.match_info['n']}"))


async def healthz(request: web.Request) -> web.Response:
    log = request.app[LOG]
    size = log.committed_checkpoint.size  # liveness: never a read replica's state
    role = serving_role(request.app)
    if log.failure is not None:
        return _json({"status": "failing", "origin": log.origin, "tree_size": size, "detail": log.failure,
                      **role}, status=503)
    return _json({"status": "ok", "origin": log.origin, "tree_size": size, **role})


async def readyz(request: web.Request) -> web.Response:
    """Readiness (api/server/readiness.py): 200 while the log can take writes, 503 with the reason while not."""
    report = readiness(request.app)
    if report["status"] == "ready":
        return _json(report)
    return web.json_response(report, status=503, headers={"Cache-Control": NO_CACHE,
                                                          "Retry-After": str(RETRY_AFTER_SECONDS)})


async def metrics_text(request: web.Request) -> web.Response:
    log = request.app[LOG]
    text = metrics.render(
        log.stats, request.app[HTTP_METRICS], tree_size=log.committed_checkpoint.size,
        storage_bytes=await log.storage_bytes()
    )
    text += readiness_metrics(readiness(request.app))
    text += "".join(source() for source in request.app[METRIC_SOURCES])
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": NO_CACHE})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type=JSON)


# The one route table. The OpenAPI document (api/server/openapi.py) describes exactly these; a test holds them together.
# Entry bundles come before hash tiles: "/tile/entries/..." would otherwise match "/tile/{level}/...".
ROUTES = with_expect_continue([
    web.post("/api/v1/entries", add_entries),
    web.get("/api/v1/entries/{index}", get_entry, allow_head=False),
    web.get("/api/v1/proof/inclusion", inclusion_proof, allow_head=False),
    web.get("/api/v1/proof/consistency", consistency_proof, allow_head=False),
    web.get("/api/v1/log", log_info, allow_head=False),
    web.get("/api/v1/openapi.json", openapi, allow_head=False),
    web.get("/checkpoint", checkpoint, allow_head=False),
    web.get("/checkpoint.witnessed", checkpoint_witnessed, allow_head=False),
    web.get("/api/v1/timestamps/latest", timestamp_latest, allow_head=False),
    web.get("/api/v1/timestamps/{size}", timestamp_for_size, allow_head=False),
    web.get("/tile/entries/{n:.+}", entry_bundle, allow_head=False),
    web.get("/tile/{level}/{n:.+}", hash_tile, allow_head=False),
    web.get("/healthz", healthz, allow_head=False),
    web.get("/readyz", readyz, allow_head=False),
    web.get("/metrics", metrics_text, allow_head=False),
    web.get("/api/v1/access-log", access_log.list_access_log, allow_head=False),
])

# The reads a read worker (api/server/readers.py) answers itself, from its read-only Log, with the handlers above:
# those whose answer is the stored tree's alone. A worker forwards every other route to the writer. So serving a
# new read from the workers too is one more handler named here; the routes themselves stay in ROUTES only.
READ_WORKER_HANDLERS = frozenset({get_entry, inclusion_proof, consistency_proof, entry_bundle, hash_tile})
READ_WORKER_ROUTES = [route for route in ROUTES if route.handler in READ_WORKER_HANDLERS]
