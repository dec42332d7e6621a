"""`auditlog serve --archive DIR_OR_TAR`: an archived period of the log (log/archive.py), served read-only, so that
an auditor queries it and proves against it with the same clients and the same API as the live log.

How: the archive is verified and loaded into a private SQLite database with the log's own schema (log/audit/
archive_restore.py: entries, every hash tile, the checkpoint, the audit index rebuilt from the archived envelopes)
in a temporary directory, and the log's own app serves it over a read-only Log (`Log.open_archive`), so every read
answers exactly as the live log answered for that period: /checkpoint (with its cosignatures), tiles, entry bundles,
entries, inclusion and consistency proofs up to its size, events, run timelines and evidence bundles, blobs,
audit drills.

What differs, each with a problem body that says so:

* every method but GET, HEAD and OPTIONS is refused with 405 `read-only-archive` (Allow: GET, HEAD) before access
  control: nothing is ever written to an archive;
* an entry (or entry bundle) before the archive's first bundle is 404 `before-archive`, naming the archived range;
  entries past its checkpoint are past the tree, as on any log;
* the credentials are the operator's (the admin token of --data-dir or AUDITLOG_ADMIN_TOKEN, OIDC): the archived
  period's API tokens are not loaded (a token revoked after the period would live again);
* reads of contents are recorded in the access log as on the live log, written to stderr (`auditlog-access ` JSON
  lines), since the temporary database goes when the server stops;
* the witness and timestamp jobs do not run: the archive's tokens and cosignatures are in its files, for
  `auditlog archive verify`.

The same route table as the live log's serves it (so the OpenAPI document and ROUTE_POLICY hold unchanged).
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from api.server import access_log, auth
from api.server.audit_routes import AUDIT_ADMIN_TOKEN, add_audit_routes
from api.server.drills_routes import add_drill_routes
from api.server.metrics import HttpMetrics, metrics_middleware
from api.server.openapi import document_bytes
from api.server.problems import problem_middleware, problem_response
from api.server.routes import MAX_JSON_BODY, ROUTES
from api.server.state import CONFIG, HTTP_METRICS, LOG, METRIC_SOURCES, OPENAPI
from log.audit.tokens import read_token
from log.blobs import FileBlobStore
from log.service import Log, LogConfig
from log.tiles import TILE_WIDTH, TileID

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ENTRY_PATH = re.compile(r"/api/v1/entries/([0-9]{1,19})")


def archive_middleware(origin: str, entries_from: int, to_size: int):
    """Refuse writes (405) and name the archived range for an entry or bundle before it (404)."""
    period = f"entries [{entries_from:,}, {to_size:,}) of {origin}"

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if request.method not in READ_METHODS:
            return problem_response(405, "read-only-archive", "Read-only archive",
                                    f"this server serves an archive ({period}) read-only: {request.method} "
                                    f"{request.path} is refused; write to the live log",
                                    headers={"Allow": "GET, HEAD"})
        before = _before_archive(request.path, entries_from)
        if before is not None:
            return problem_response(404, "before-archive", "Before the archived period",
                                    f"{before} lies before this archive's period ({period}): it is in an "
                                    "earlier archive, or in the live log", extra={"entries_from": entries_from,
                                                                                  "to_size": to_size})
        return await handler(request)

    return middleware


def _before_archive(path: str, entries_from: int) -> str | None:
    """What `path` asks for when it is an entry or an entry bundle before `entries_from`; else None."""
    match = _ENTRY_PATH.fullmatch(path)
    if match and int(match.group(1)) < entries_from:
        return f"entry {int(match.group(1))}"
    if path.startswith("/tile/entries/"):
        try:
            tile_id = TileID.parse(path)
        except Exception:  # noqa: BLE001 - a malformed path is the route's to refuse (400)
            return None
        if tile_id.index * TILE_WIDTH < entries_from:
            return f"the entry bundle {tile_id.path()}"
    return None


def create_archive_app(config: LogConfig, *, verifier_key: str, origin: str, entries_from: int, to_size: int,
                       blob_dir: Path, access: auth.AccessSettings | None = None, authenticators=(),
                       admin_token: str | None = None, admin_dir: Path | None = None) -> web.Application:
    """The log's read API over the restored archive in `config`'s database (see the module docstring). `admin_dir`
    holds the operator's admin token (created there on first start, as `serve` does), unless `admin_token` or
    AUDITLOG_ADMIN_TOKEN gives it."""
    http_metrics = HttpMetrics()
    app = web.Application(
        middlewares=[metrics_middleware(http_metrics, access_log.finished), problem_middleware,
                     archive_middleware(origin, entries_from, to_size), auth.auth_middleware],
        client_max_size=MAX_JSON_BODY,
    )
    stored_tokens = auth.CachedTokenLookup(lambda token_id: read_token(app[LOG], token_id))
    auth.install(app, access, [auth.AdminTokenAuthenticator(lambda: app.get(AUDIT_ADMIN_TOKEN)),
                               auth.ApiTokenAuthenticator(stored_tokens), *authenticators])
    app[CONFIG] = config
    app[HTTP_METRICS] = http_metrics
    app[OPENAPI] = document_bytes()
    app[METRIC_SOURCES] = []
    why = f"a read-only archive of entries [{entries_from:,}, {to_size:,}) of {origin}"

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        app[LOG] = await Log.open_archive(config, verifier_key, why)
        try:
            yield
        finally:
            await app[LOG].close()

    app.cleanup_ctx.append(lifetime)
    app.cleanup_ctx.append(access_log.lifetime(lambda app: access_log.pipe_sink(sys.stderr)))
    app.router.add_routes(ROUTES)
    add_audit_routes(app, data_dir=admin_dir or config.data_dir, admin_token=admin_token,
                     blobs=FileBlobStore(blob_dir))
    add_drill_routes(app)  # the period's audit drills (a POST is refused above, as every write)
    return app
