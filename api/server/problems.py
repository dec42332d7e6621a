"""RFC 9457 problem details: the one place where errors become HTTP statuses and `application/problem+json` bodies.

Every error response of the API is a problem object:

    {"type": "urn:auditlog:problem:<code>", "title": "...", "status": 400, "detail": "...", "field": "index"}

`type` is stable (it is built from the error's `code`, never from its message), `title` is the same for every
occurrence of a type, `detail` is this occurrence's message, and `field` (an extension member) names the request
field to blame where one is known. Log errors are looked up by class, most specific first, so a subclass without
its own entry inherits its parent's status while keeping its own `type`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass

from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_urldispatcher import _default_expect_handler as _aiohttp_expect

from log.errors import (
    Conflict, EntryPruned, Forbidden, InvalidInput, LogError, NotFound, ProofError, SequencerLockHeld, SignatureError, StorageError,
    StorageUnavailable, Unauthenticated, Unavailable, VerificationError,
)
from log.storage.faults import storage_fault

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:auditlog:problem:"
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class ProblemKind:
    status: int
    title: str
    retry_after: bool = False
    www_authenticate: str | None = None  # the challenge a 401 carries


# Error class -> how it is answered. Looked up along the class's MRO, so the most specific entry wins.
_BY_CLASS: dict[type, ProblemKind] = {
    InvalidInput: ProblemKind(400, "Invalid request"),
    Unauthenticated: ProblemKind(401, "Credential required", www_authenticate='Bearer realm="auditlog"'),
    Forbidden: ProblemKind(403, "Forbidden"),
    NotFound: ProblemKind(404, "Not found"),
    Conflict: ProblemKind(409, "Conflict"),
    EntryPruned: ProblemKind(410, "Entry contents deleted under a retention policy"),
    VerificationError: ProblemKind(422, "Verification failed"),
    ProofError: ProblemKind(422, "Invalid proof"),
    SignatureError: ProblemKind(422, "Invalid signature"),
    Unavailable: ProblemKind(503, "Service unavailable", retry_after=True),
    SequencerLockHeld: ProblemKind(503, "Sequencer lock held elsewhere", retry_after=True),
    StorageUnavailable: ProblemKind(503, "Storage unavailable", retry_after=True),
    StorageError: ProblemKind(500, "Storage error"),
    LogError: ProblemKind(500, "Log error"),
}

# Failures the HTTP layer finds itself (no LogError behind them): status -> (code, title).
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    408: ("request-timeout", "Request timeout"),
    411: ("length-required", "Length required"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    500: ("internal-error", "Internal server error"),
}


def register_problem_kinds(kinds: dict[type, ProblemKind]) -> None:
    """Add a personality's error classes to the one table (called once, when its module is imported)."""
    _BY_CLASS.update(kinds)


def kind_of(exc: LogError) -> ProblemKind:
    for cls in type(exc).__mro__:
        kind = _BY_CLASS.get(cls)
        if kind is not None:
            return kind
    return _BY_CLASS[LogError]


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict | None = None,
) -> web.Response:
    body: dict = {"type": TYPE_PREFIX + code, "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if extra:
        body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_body(exc: LogError) -> dict:
    """The RFC 9457 body for a log error: for whole responses, and for each refused item of a batch answer."""
    kind = kind_of(exc)
    body: dict = {"type": TYPE_PREFIX + exc.code, "title": kind.title, "status": kind.status, "detail": str(exc)}
    if getattr(exc, "field", None) is not None:
        body["field"] = exc.field
    if isinstance(exc, Conflict) and exc.index is not None:
        body["index"] = exc.index  # where the log already holds the key (event-conflict: the event logged first)
    if isinstance(exc, EntryPruned):
        # The deletion entry to read (GET /api/v1/deletions/{deletion_index}); for a bundle, every pruned entry and
        # the bundle with those written as zero bytes, so a verifier re-hashes the rest (api/client/monitor.py).
        body["index"], body["deletion_index"] = exc.index, exc.deletion_index
        body["pruned"] = [{"index": index, "deletion_index": deletion} for index, deletion in exc.pruned.items()]
        if exc.present is not None:
            body["bundle"] = base64.b64encode(exc.present).decode()
    if getattr(exc, "reason", None) is not None:
        body["reason"] = exc.reason  # StorageUnavailable: "disk full", "database unreachable: ...", ...
    body.update(getattr(exc, "problem_members", None) or {})  # an error's own members (a legal hold's hold_id)
    errors = getattr(exc, "errors", None)
    if errors and all(hasattr(e, "field") and hasattr(e, "message") for e in errors):
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return body


def problem_from_log_error(exc: LogError) -> web.Response:
    kind = kind_of(exc)
    headers = {"Cache-Control": "no-store"}
    if kind.retry_after:  # the error's own estimate when it has one (a read replica's lag), else a second
        headers["Retry-After"] = str(getattr(exc, "retry_after", None) or RETRY_AFTER_SECONDS)
    if kind.www_authenticate:
        headers["WWW-Authenticate"] = kind.www_authenticate
    body = problem_body(exc)
    return web.Response(status=body["status"], body=json.dumps(body).encode(), content_type=PROBLEM_CONTENT_TYPE,
                        headers=headers)


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """The routes' Expect handler: `100-continue` is answered as aiohttp does; any other expectation is a 417
    problem naming the header. aiohttp's own handler runs before the middlewares and failed to build its 417 for
    an expectation of bytes that are not UTF-8 (a bare 500)."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11 or expect.lower() == "100-continue":
        return await _aiohttp_expect(request)
    return problem_response(417, "expectation-failed", "Expectation failed",
                            f"the only expectation this server meets is 100-continue, not {expect[:40]!r}",
                            field="Expect")


def with_expect_continue(routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """`routes` with `expect_continue` as their Expect handler."""
    return [web.RouteDef(r.method, r.path, r.handler, {**r.kwargs, "expect_handler": expect_continue}) for r in routes]


def problem_from_http(exc: web.HTTPException, request: web.Request) -> web.Response:
    code, title = _BY_STATUS.get(exc.status, (f"http-{exc.status}", exc.reason))
    headers = {}
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        detail = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}"
        headers["Allow"] = ",".join(allowed)
    elif exc.status == 404:
        detail = f"nothing is served at {request.path}"
    elif exc.text and exc.text != f"{exc.status}: {exc.reason}":
        detail = exc.text
    else:
        detail = exc.reason
    return problem_response(exc.status, code, title, detail, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Turn every error into a problem response: log errors by class, HTTP errors by status, anything else 500."""
    try:
        return await handler(request)
    except LogError as exc:
        if type(exc) is StorageError:  # one that wraps a passing storage condition is answered as that (503)
            reason = storage_fault(exc)
            if reason is not None:
                exc = StorageUnavailable(f"storage is unavailable: {reason}; retry later", reason)
        return problem_from_log_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_from_http(exc, request)
    except RequestPayloadError as exc:  # the body cannot be read as sent: data its Content-Encoding cannot decode...
        return problem_response(400, "bad-request", "Bad request", f"the body cannot be read: {str(exc)[:120]}",
                                field="body")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the one place that answers the unexpected, after logging it
        reason = storage_fault(exc)
        if reason is not None:  # a driver or file error that is a passing storage condition, not a bug: 503
            logger.warning("storage unavailable handling %s %s: %s", request.method, request.path, exc)
            return problem_from_log_error(StorageUnavailable(f"storage is unavailable: {reason}; retry later", reason))
        logger.exception("unexpected error handling %s %s", request.method, request.path)
        return problem_response(500, "internal-error", "Internal server error",
                                "an unexpected error occurred; it has been logged")
