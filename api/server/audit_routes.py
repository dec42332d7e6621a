"""HTTP routes of the audit personality: signed events in, timelines, evidence, blobs and the producer registry.

Wiring (in `api.server.app.create_app`, after the log's own cleanup context): `add_audit_routes(app, data_dir=...)`.
It adds a cleanup context that opens the `AuditService` over `app[LOG]` and the blob store, and the routes of
`AUDIT_ROUTES`. Handlers parse, call one method of the service, and encode; errors of the audit personality are
turned into RFC 9457 problems by `AUDIT_PROBLEMS` (one table, here), everything else by `api.server.problems`.
Who may call which route is api/server/auth.py's table, applied before a handler runs; the handlers of tenant-scoped
reads narrow their queries to the caller's tenants (`auth.tenant_scope`) and report each read of contents to the
access log (`record_read`) once it is authorized.

| method and path | what |
| --- | --- |
| POST /api/v1/events | one envelope, or `{"events": [...]}` (at most 1000); `?proofs=true|false` |
| GET /api/v1/events | filter: tenant, run_id, trace_id, actor_id, actor_type, event_type, producer, case_id, alert_id, customer_id, context.<name>, since, until (RFC 3339); `cursor`, `limit` |
| GET /api/v1/runs/{run_id}/timeline | causal order, each event with its inclusion proof in the included checkpoint |
| GET /api/v1/runs/{run_id}/evidence | the evidence bundle (log/audit/evidence.py) |
| GET /api/v1/schemas/auditlog.event/v1 | the JSON Schema |
| PUT, GET /api/v1/blobs/{sha256}; DELETE (admin, `?reason=`) | the content-addressed blob store |
| GET /api/v1/producers; POST (admin) | list; register `{"producer", "tenants", "reason"}` |
| GET, POST /api/v1/tokens; POST /api/v1/tokens/{token_id}/revoke (admin) | API tokens: list (never secrets); create `{"role", "tenants"?, "expires_at"?, "reason"?}` (the token answered once); revoke `{"reason"?}` |
| POST /api/v1/producers/{producer}/keys (admin) | `{"public_key": base64, "not_before"?, "not_after"?, "reason"?}` |
| POST /api/v1/producers/{producer}/keys/{key_id}/retire, .../revoke (admin) | `{"not_after"?}` / `{"revoked_at"?}`, `"reason"` |
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from api.server.access_log import record_read
from api.server.auth import principal_of, tenant_scope
from api.server.problems import ProblemKind, problem_body, register_problem_kinds, with_expect_continue
from api.server.routes import checkpoint_fields, json_bytes, parse_uint
from api.server.state import LOG, METRIC_SOURCES, TIMESTAMP_JOB, WITNESS_JOB
from log.audit.admin import load_or_create_admin_token
from log.audit.errors import (
    AdminUnauthorized, AuthenticationFailed, EventConflict, InvalidEvent, RegistryConflict, TenantForbidden,
)
from log.audit.records import format_registry_change
from log.audit.schema import EVENT_SCHEMA, SCHEMA_URL_PATH, parse_timestamp_ms
from log.audit.service import (
    AuditService, AuditStats, EventQuery, LoggedEvent, PrunedEvent, Receipt, SubmitResult,
)
from log.audit.vault_keys import MASTER_KEY_ENV, load_master_key
from log import defaults
from log.blobs import MAX_BLOB_SIZE, BlobMismatch, BlobNotFound, BlobStore, FileBlobStore, check_digest
from log.errors import InvalidInput, LogError, NotFound, Unavailable

AUDIT = web.AppKey("audit", AuditService)
AUDIT_ADMIN_TOKEN = web.AppKey("audit_admin_token", str)
AUDIT_SETTINGS = web.AppKey("audit_settings", object)
AUDIT_BLOB_UPLOADS = web.AppKey("audit_blob_uploads", asyncio.Semaphore)
VAULT_SERVED = web.AppKey("vault_served", bool)  # set by api/server/vault_routes.py: the vault's key is loaded

MAX_EVENTS_BODY = 8 << 20
logger = logging.getLogger(__name__)

MAX_ADMIN_BODY = 64 << 10
JSON = "application/json"
CONTEXT_PARAMS = ("case_id", "alert_id", "customer_id")


# The audit personality's errors -> HTTP, registered into api.server.problems' one table.
AUDIT_PROBLEMS: dict[type, ProblemKind] = {
    InvalidEvent: ProblemKind(422, "Invalid audit event"),
    AuthenticationFailed: ProblemKind(401, "Producer not authenticated", www_authenticate="Signature"),
    TenantForbidden: ProblemKind(403, "Tenant not allowed for this producer"),
    AdminUnauthorized: ProblemKind(401, "Admin credential required", www_authenticate="Bearer"),
    EventConflict: ProblemKind(409, "Event id already used for other content"),
    RegistryConflict: ProblemKind(409, "Registry conflict"),
    BlobMismatch: ProblemKind(422, "Blob does not match its hash"),
    BlobNotFound: ProblemKind(404, "No such blob"),
}
register_problem_kinds(AUDIT_PROBLEMS)


def _json(body, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(), content_type=JSON,
                        headers={"Cache-Control": "no-store"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _body(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    body = bytearray()
    while chunk := await request.content.read(1 << 16):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


async def _admin_json(request: web.Request) -> dict:
    """An admin request's body (the caller's role was checked by api/server/auth.py before the handler ran)."""
    return parse_admin_body(await _body(request, MAX_ADMIN_BODY))


def parse_admin_body(data: bytes) -> dict:
    """An admin request's JSON object (an empty body is `{}`), or InvalidInput naming `$`."""
    try:
        body = json.loads(data or b"{}")
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", field="$") from exc
    except RecursionError:
        raise InvalidInput("the body is not an admin request: its JSON is nested too deeply", field="$") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="$")
    return body


def _param(value: str | None, name: str) -> str | None:
    """A query or path value that reaches a database filter. Refuses NUL (InvalidInput naming `name`): no stored
    token holds one, and PostgreSQL refuses it in a text parameter (a 500 before, and on SQLite an empty answer)."""
    if value is not None and "\x00" in value:
        raise InvalidInput(f"{name} must not contain a NUL character", field=name)
    return value


def _flag(params, name: str, default: bool | None) -> bool | None:
    value = params.get(name)
    if value is None:
        return default
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{name} must be true or false, not {value!r}", field=name)
    return value in ("true", "1")


def _time(value, name: str) -> int | None:
    if value is None:
        return None
    ms = parse_timestamp_ms(value) if isinstance(value, str) else None
    if ms is None:
        raise InvalidInput(f"{name} must be an RFC 3339 UTC timestamp with milliseconds, not {value!r}", field=name)
    return ms


def _text(body: dict, name: str, default=None):
    value = body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    return value


# --- encoding -----------------------------------------------------------------------------------------------

_json_string = json.encoder.encode_basestring_ascii


def _receipt_fields(receipt: Receipt) -> bytes:
    """A receipt's JSON members, written out directly (json.dumps of the receipt and its checkpoint was ~4 % of a
    one-event request's CPU): producer and event id are validated tokens, the rest integers, booleans, base64."""
    proof = b""
    if receipt.proof is not None:
        proof = b',"inclusion_proof":[%s]' % b",".join([b'"%s"' % base64.b64encode(h) for h in receipt.proof])
    return b'"status":200,"producer":%s,"event_id":%s,"index":%d,"leaf_hash":"%s","duplicate":%s%s' % (
        _json_string(receipt.producer).encode(), _json_string(receipt.event_id).encode(), receipt.index,
        base64.b64encode(receipt.leaf_hash), b"true" if receipt.duplicate else b"false", proof)


def _pruned(event: PrunedEvent) -> dict:
    """A pruned event as listed beside the others: where it was, its leaf hash (which still proves that), and the
    retention run's entry that deleted its contents (GET /api/v1/deletions/{deletion_index})."""
    return {"index": event.index, "leaf_hash": _b64(event.leaf_hash), "deletion_index": event.deletion_index,
            "event_id": event.event_id, "run_id": event.run_id, "tenant": event.tenant,
            "event_type": event.event_type}


def _logged(event: LoggedEvent) -> dict:
    out = {"index": event.index, "entry": _b64(event.data), **event.envelope.to_json()}
    if event.proof is not None:
        out["inclusion_proof"] = [_b64(h) for h in event.proof]
    return out


def _submit_response(result: SubmitResult) -> web.Response:
    checkpoint = checkpoint_fields(result.checkpoint)
    if result.single:
        only = result.results[0]
        if isinstance(only, LogError):
            raise only
        return json_bytes(b"{%s,%s}" % (_receipt_fields(only), checkpoint), cache="no-store")
    items = [json.dumps(problem_body(r), separators=(",", ":")).encode() if isinstance(r, LogError)
             else b"{%s}" % _receipt_fields(r) for r in result.results]
    accepted = sum(1 for r in result.results if isinstance(r, Receipt))
    return json_bytes(b'{"accepted":%d,"refused":%d,"results":[%s],%s}' % (
        accepted, len(items) - accepted, b",".join(items), checkpoint), cache="no-store")


# --- handlers -----------------------------------------------------------------------------------------------

async def submit_events(request: web.Request) -> web.Response:
    proofs = _flag(request.query, "proofs", None)
    result = await request.app[AUDIT].submit(await _body(request, MAX_EVENTS_BODY), proofs=proofs)
    return _submit_response(result)


def format_cursor(index: int) -> str:
    """The `next_cursor` of a page whose last event has log index `index`: base64url of its decimal digits."""
    return base64.urlsafe_b64encode(str(index).encode()).decode()


def parse_cursor(text: str) -> int:
    """The index a `format_cursor` value names: base64url (padded or not) of ASCII decimal digits in [0, 2^63 - 1].

    Anything else is InvalidInput naming `cursor` (before, a cursor decoding to 2^63 or more reached the database
    and came back as a 500: SQLite integers are 64-bit signed; non-alphabet characters were skipped, not refused).
    """
    padded = text + "=" * (-len(text) % 4)
    try:
        digits = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidInput(f"cursor must be a next_cursor this log returned, not {text[:40]!r}",
                           field="cursor") from None
    return parse_uint(digits, "cursor")


_QUERY_FIELDS = ("tenant", "run_id", "trace_id", "actor_id", "actor_type", "event_type", "producer")


def parse_event_query(params) -> EventQuery:
    """The EventQuery of GET /api/v1/events' query parameters (a MultiDict), or InvalidInput naming the parameter:
    unknown or repeated names, NUL anywhere, `limit` and `cursor` as `parse_uint` and `parse_cursor` read them,
    `since` and `until` as RFC 3339 UTC with milliseconds."""
    known = {*_QUERY_FIELDS, *CONTEXT_PARAMS, "since", "until", "cursor", "limit"}
    for name in params:
        if name not in known and not name.startswith("context."):
            raise InvalidInput(f"unknown query parameter {name!r}", field=name)
        if len(params.getall(name)) > 1:
            raise InvalidInput(f"query parameter {name!r} is repeated", field=name)
        _param(name, name)
        _param(params[name], name)
    context = tuple(sorted(
        [(name, params[name]) for name in CONTEXT_PARAMS if name in params]
        + [(name.removeprefix("context."), value) for name, value in params.items() if name.startswith("context.")]
    ))
    limit = parse_uint(params.get("limit", "100"), "limit")
    after = parse_cursor(params["cursor"]) if "cursor" in params else -1
    return EventQuery(**{f: params.get(f) for f in _QUERY_FIELDS}, context=context,
                      since=_time(params.get("since"), "since"), until=_time(params.get("until"), "until"),
                      after=after, limit=limit)


async def list_events(request: web.Request) -> web.Response:
    query = parse_event_query(request.query)
    # An auditor's query is narrowed to its tenants in the query itself (not after paging); a tenant it names
    # outside them is a 403.
    query = replace(query, tenants=tenant_scope(request, query.tenant))
    await record_read(request, "events", request.query_string)
    page = await request.app[AUDIT].query_events(query)
    cursor = None if page.next_cursor is None else format_cursor(page.next_cursor)
    body = {"events": [_logged(e) for e in page.events], "next_cursor": cursor}
    if page.pruned:  # events of the page whose contents a retention run deleted
        body["pruned"] = [_pruned(e) for e in page.pruned]
    return _json(body)


async def run_timeline(request: web.Request) -> web.Response:
    audit = request.app[AUDIT]
    run_id, tenant = _param(request.match_info["run_id"], "run_id"), _param(request.query.get("tenant"), "tenant")
    tenants = tenant_scope(request, tenant)
    await record_read(request, "timeline", run_id)
    timeline = await audit.timeline(run_id, tenant, proofs=_flag(request.query, "proofs", True), tenants=tenants)
    body = {
        "run_id": timeline.run_id, "origin": audit.log.origin, "log_key": audit.log.verifier_key,
        "tree_size": timeline.checkpoint.size, "checkpoint": timeline.checkpoint.note.decode(),
        "events": [_logged(e) for e in timeline.events], "external_parents": timeline.external_parents,
    }
    if timeline.pruned:  # the run's events whose contents a retention run deleted
        body["pruned"] = [_pruned(e) for e in timeline.pruned]
    return _json(body)


async def run_evidence(request: web.Request) -> web.Response:
    run_id, tenant = _param(request.match_info["run_id"], "run_id"), _param(request.query.get("tenant"), "tenant")
    tenants = tenant_scope(request, tenant)
    await record_read(request, "evidence", run_id)
    bundle = await request.app[AUDIT].evidence(run_id, tenant, attested=await attested_checkpoints(request.app),
                                               tenants=tenants)
    return _json(bundle)


async def attested_checkpoints(app: web.Application) -> list[tuple[bytes, bytes | None]]:
    """What a run bundle's checkpoint is chosen from, best first: the newest timestamped checkpoint with its token
    (the witnessed note, cosignatures included, when the log has witnesses), the newest witnessed one, and the
    latest with the cosignatures gathered for it so far. `AuditService.evidence` takes the first that covers
    the run."""
    found: list[tuple[bytes, bytes | None]] = []
    timestamp_job, witness_job = app.get(TIMESTAMP_JOB), app.get(WITNESS_JOB)
    if timestamp_job is not None and (stamped := await timestamp_job.latest_token()) is not None:
        found.append(stamped)
    if witness_job is not None:
        if (witnessed := await witness_job.witnessed_checkpoint()) is not None:
            found.append((witnessed, None))
        found.append((await witness_job.cosigned_checkpoint(), None))
    return found


async def event_schema(request: web.Request) -> web.Response:
    return web.Response(body=json.dumps(EVENT_SCHEMA, indent=2).encode(), content_type="application/schema+json",
                        headers={"Cache-Control": "public, max-age=3600"})


BLOB_PIECE = 1 << 20  # bytes handed to the store at a time: a thread hop per MiB, memory one MiB per upload


async def _pieces(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The body in pieces of about BLOB_PIECE bytes; 413 as soon as it passes `limit` (declared or counted)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    piece, size = bytearray(), 0
    while chunk := await request.content.read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        piece += chunk
        if len(piece) >= BLOB_PIECE:
            yield bytes(piece)
            piece.clear()
    if piece:
        yield bytes(piece)


async def put_blob(request: web.Request) -> web.Response:
    """Streamed to the store (never whole in memory), at most AUDIT_BLOB_UPLOADS at once: 503 beyond."""
    digest = check_digest(request.match_info["sha256"])
    declared = request.content_length
    if declared is not None and declared > MAX_BLOB_SIZE:  # before taking a slot or reading a byte
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BLOB_SIZE, actual_size=declared)
    uploads = request.app[AUDIT_BLOB_UPLOADS]
    if uploads.locked():
        raise Unavailable("this server is storing as many blobs at once as it takes; retry later")
    async with uploads:
        created = await request.app[AUDIT].put_blob_from(digest, _pieces(request, MAX_BLOB_SIZE))
    # Stored: now who uploaded it, so an auditor reads it only if an uploader covered its tenant (a producer
    # naming another tenant's hash shows nothing). The policy table lets only a writer or an admin here.
    principal = principal_of(request)
    await request.app[AUDIT].record_blob_upload(digest, None if principal is None else principal.tenants)
    return _json({"sha256": digest, "created": created}, status=201 if created else 200)


async def check_blob_read(request: web.Request, digest: str) -> None:
    """An auditor reads a blob only when an event of one of its tenants names it and a credential covering that
    tenant uploaded it (`AuditService.blob_tenants`: the blob index and the uploads; a blob stored before uploads
    were recorded, by citation alone); a blob shared by two tenants' events is visible to each. A blob outside its
    tenants is answered as one that does not exist (404), as runs are."""
    principal = principal_of(request)
    if principal is None or principal.tenants is None:
        return
    found = await request.app[AUDIT].blob_tenants(digest)
    if not any(principal.may_read_tenant(tenant) for tenant in found):
        raise BlobNotFound(f"no blob {digest} for this credential's tenants")


async def get_blob(request: web.Request) -> web.Response:
    digest = check_digest(request.match_info["sha256"])
    await record_read(request, "blob", digest)  # a probe for another tenant's blob is a read too (answered 404)
    await check_blob_read(request, digest)
    data = await request.app[AUDIT].get_blob(digest)
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"ETag": f'"{digest}"', "Cache-Control": "private, max-age=31536000, immutable"})


async def delete_blob(request: web.Request) -> web.Response:
    reason = request.query.get("reason", "")
    index = await request.app[AUDIT].erase_blob(request.match_info["sha256"], reason)
    return _json({"sha256": request.match_info["sha256"], "erased": True, "erasure_index": index})


def _registry_receipt(receipt) -> dict:
    return {"index": receipt.index, "change": format_registry_change(receipt.change), "tree_size": receipt.checkpoint.size,
            "checkpoint": receipt.checkpoint.note.decode()}


async def list_producers(request: web.Request) -> web.Response:
    out = []
    for producer in request.app[AUDIT].registry.producers():
        out.append({"producer": producer.producer_id, "tenants": sorted(producer.tenants), "keys": [
            {"key_id": k.key_id, "public_key": k.public_key_b64(), "not_before": k.not_before,
             "not_after": k.not_after, "revoked_at": k.revoked_at}
            for k in sorted(producer.keys.values(), key=lambda k: k.not_before)]})
    return _json({"producers": out})


async def register_producer(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    tenants = body.get("tenants")
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise InvalidInput("tenants must be a list of tenant ids", field="tenants")
    receipt = await request.app[AUDIT].register_producer(_text(body, "producer"), tenants,
                                                         _text(body, "reason", ""))
    return _json(_registry_receipt(receipt), status=201)


async def add_key(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    try:
        public_key = base64.b64decode(_text(body, "public_key") or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"public_key must be base64: {exc}", field="public_key") from exc
    receipt = await request.app[AUDIT].add_key(
        request.match_info["producer"], public_key, not_before=_time(body.get("not_before"), "not_before"),
        not_after=_time(body.get("not_after"), "not_after"), reason=_text(body, "reason", ""))
    return _json(_registry_receipt(receipt), status=201)


async def retire_key(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    receipt = await request.app[AUDIT].retire_key(
        request.match_info["producer"], request.match_info["key_id"],
        not_after=_time(body.get("not_after"), "not_after"), reason=_text(body, "reason", ""))
    return _json(_registry_receipt(receipt))


async def revoke_key(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    receipt = await request.app[AUDIT].revoke_key(
        request.match_info["producer"], request.match_info["key_id"],
        revoked_at=_time(body.get("revoked_at"), "revoked_at"), reason=_text(body, "reason", ""))
    return _json(_registry_receipt(receipt))


def _token_answer(receipt) -> dict:
    out = {"token": receipt.token.to_json(), "index": receipt.index, "tree_size": receipt.checkpoint.size,
           "checkpoint": receipt.checkpoint.note.decode()}
    if receipt.secret is not None:
        out["secret"] = receipt.secret  # shown once: the log keeps only its SHA-256
    return out


async def list_tokens(request: web.Request) -> web.Response:
    return _json({"tokens": [token.to_json() for token in request.app[AUDIT].tokens.tokens()]})


async def create_token(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    unknown = sorted(set(body) - {"role", "tenants", "expires_at", "reason"})
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r}", field=unknown[0][:40])
    role = _text(body, "role")
    if role is None:
        raise InvalidInput("role is required", field="role")
    tenants = body.get("tenants")
    if tenants is not None and (not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants)):
        raise InvalidInput("tenants must be a list of tenant ids", field="tenants")
    receipt = await request.app[AUDIT].create_token(role, tenants, expires_at=_time(body.get("expires_at"),
                                                                                   "expires_at"),
                                                    reason=_text(body, "reason", ""))
    response = _json(_token_answer(receipt), status=201)
    return response


async def revoke_token(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    token_id = request.match_info["token_id"]
    if request.app[AUDIT].tokens.get(token_id) is None:
        raise NotFound(f"no token {token_id[:40]!r}")
    receipt = await request.app[AUDIT].revoke_token(token_id, _text(body, "reason", ""))
    return _json(_token_answer(receipt))


AUDIT_ROUTES = with_expect_continue([
    web.post("/api/v1/events", submit_events),
    web.get("/api/v1/events", list_events, allow_head=False),
    web.get("/api/v1/runs/{run_id}/timeline", run_timeline, allow_head=False),
    web.get("/api/v1/runs/{run_id}/evidence", run_evidence, allow_head=False),
    web.get(SCHEMA_URL_PATH, event_schema, allow_head=False),
    web.put("/api/v1/blobs/{sha256}", put_blob),
    web.get("/api/v1/blobs/{sha256}", get_blob, allow_head=False),
    web.delete("/api/v1/blobs/{sha256}", delete_blob),
    web.get("/api/v1/producers", list_producers, allow_head=False),
    web.post("/api/v1/producers", register_producer),
    web.post("/api/v1/producers/{producer}/keys", add_key),
    web.post("/api/v1/producers/{producer}/keys/{key_id}/retire", retire_key),
    web.post("/api/v1/producers/{producer}/keys/{key_id}/revoke", revoke_key),
    web.get("/api/v1/tokens", list_tokens, allow_head=False),
    web.post("/api/v1/tokens", create_token),
    web.post("/api/v1/tokens/{token_id}/revoke", revoke_token),
])


def add_audit_routes(app: web.Application, *, data_dir: Path, admin_token: str | None = None,
                     blobs: BlobStore | None = None, verify_processes: int = 0,
                     blob_uploads: int = defaults.BLOB_UPLOADS, vault_key_file: Path | None = None) -> None:
    """Add the audit routes and the service's lifetime to `app`. Call after the log's cleanup context is added
    (the service opens over `app[LOG]`). Blobs default to `<data_dir>/blobs`; the admin token to
    AUDITLOG_ADMIN_TOKEN or `<data_dir>/admin.token` (created on first start). `verify_processes` child
    processes check submitted envelopes and their signatures (log/audit/verifier.py; 0: this process does).
    `blob_uploads`: blob PUTs streaming at once; more are answered 503 with Retry-After. The token vault's master
    key: `vault_key_file`, else AUDITLOG_VAULT_MASTER_KEY, else `<data_dir>/vault-master.key` (created on first
    start); one the vault's keys were not wrapped with stops the start (log/audit/vault_keys.py)."""
    data_dir = Path(data_dir)
    app[AUDIT_BLOB_UPLOADS] = asyncio.Semaphore(blob_uploads)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        token, created = load_or_create_admin_token(data_dir, admin_token)
        if created:
            logger.warning("created the admin token for the producer registry in %s", data_dir / "admin.token")
        app[AUDIT_ADMIN_TOKEN] = token
        master_key = None
        if app.get(VAULT_SERVED):  # an app without the vault's routes (an archive's) needs no master key, makes none
            master_key, where, created = load_master_key(data_dir, vault_key_file)
            if created:
                logger.warning("created the token vault's master key in %s: keep a copy elsewhere (it opens every "
                               "mapping; without it none opens), and in production supply it with --vault-key-file "
                               "or %s instead", where, MASTER_KEY_ENV)
        app[AUDIT] = await AuditService.open(app[LOG], blobs or FileBlobStore(data_dir / "blobs"),
                                             verify_processes=verify_processes, vault_master_key=master_key)
        app[METRIC_SOURCES].append(lambda: render_audit_metrics(app[AUDIT].stats))

        async def reload_on_takeover(role: str) -> None:
            if role == "sequencer":  # another server may have changed the registries while this one stood by
                await app[AUDIT].reload()

        app[LOG].on_role_change(reload_on_takeover)
        try:
            yield
        finally:
            await app[AUDIT].close()

    app.cleanup_ctx.append(lifetime)
    app.router.add_routes(AUDIT_ROUTES)


def render_audit_metrics(stats: AuditStats) -> str:
    """Prometheus text lines for the audit counters, to append to /metrics."""
    lines = []
    declared = set()
    for name, value in stats.counters().items():
        base = name.split("{")[0]
        metric = f"auditlog_audit_{base}_total"
        if base not in declared:
            declared.add(base)
            lines.append(f"# TYPE {metric} counter")
        lines.append(f"{metric}{name[len(base):]} {value}")
    return "\n".join(lines) + "\n"
