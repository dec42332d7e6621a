"""Access control for the HTTP API: who a request is from (authenticators), and the one table of what each route
needs (`ROUTE_POLICY`), enforced by one middleware before any handler runs, in the writer and in read workers alike.

Credentials. `Authorization: Bearer <credential>` is resolved through a chain of authenticators, each
`async def authenticate(self, bearer) -> Principal | None`: None means "not mine", and one that is its own but
invalid, expired or revoked raises Unauthenticated. Built in: the operator's admin token (`<data dir>/admin.token`
or AUDITLOG_ADMIN_TOKEN, an `admin` principal with credential "admin-token") and API tokens (log/audit/tokens.py);
others (OIDC) are appended with `create_app(..., authenticators=[...])`. The result, or None when the request
carries no credential, is `request[PRINCIPAL]`.

Every request that carries a credential has it checked, on public routes too: a wrong, expired or revoked one is a
401 wherever it is sent, so a client learns at once that its credential is bad. An Authorization header that is not
`Bearer` with visible ASCII, or is longer than MAX_AUTHORIZATION bytes, is a 401 (never a 500). A request without
a credential to a private route is a 401 with `WWW-Authenticate: Bearer realm="auditlog"`; with a credential whose
role lacks the permission, a 403.

The table. Each route of the app (method and canonical path) names PUBLIC or the permission it needs
(log/access.py says which roles hold which). A route missing from the table is refused (fail closed), and
tests/test_access_control.py proves every route the app and the read workers register is in it. Tenant scope is
the handlers' part, with `tenant_scope` here: what an auditor may see depends on the records asked for.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from aiohttp import web

from log import access
from log.access import Principal
from log.audit.tokens import ApiToken, check_token, parse_token
from log.errors import Forbidden, Unauthenticated

logger = logging.getLogger(__name__)

PRINCIPAL = web.RequestKey("principal", object)  # Principal, or None: the request carried no credential
MAX_AUTHORIZATION = 4096  # bytes of an Authorization header; a JWT with many claims fits, a 10 kB header does not
CHALLENGE = 'Bearer realm="auditlog"'

PUBLIC = "public"
FORWARDED = "forwarded"  # a read worker's catch-all: sent on to the writer, which applies this table itself

# (method, canonical path) -> PUBLIC or the permission the route needs. The one route table of access control.
ROUTE_POLICY: dict[tuple[str, str], str] = {
    # What monitors and witnesses verify with, seeing no content: public.
    ("GET", "/checkpoint"): PUBLIC,
    ("GET", "/checkpoint.witnessed"): PUBLIC,
    ("GET", "/tile/{level}/{n}"): PUBLIC,  # hash tiles only: /tile/entries/... is matched first, below
    ("GET", "/api/v1/proof/inclusion"): PUBLIC,
    ("GET", "/api/v1/proof/consistency"): PUBLIC,
    ("GET", "/api/v1/log"): PUBLIC,
    ("GET", "/api/v1/timestamps/latest"): PUBLIC,
    ("GET", "/api/v1/timestamps/{size}"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/api/v1/schemas/auditlog.event/v1"): PUBLIC,
    ("GET", "/api/v1/witnesses"): PUBLIC,  # the witnesses' names, keys and cosigned sizes: what a monitor checks with
    # The web explorer's page and files (api/server/explorer.py) hold no data: what it shows, it fetches from the
    # routes below with the credential the user signs in with.
    ("GET", "/"): PUBLIC,
    ("GET", "/explorer/{file}"): PUBLIC,
    # Signed audit events: each is authenticated by its producer's Ed25519 signature and the registry's tenant
    # check; a transport credential would add a second secret per producer and no assurance (README, "Security").
    ("POST", "/api/v1/events"): PUBLIC,
    # Entry contents and plain entries (public with `serve --public`).
    ("GET", "/tile/entries/{n}"): access.ENTRIES_READ,
    ("GET", "/api/v1/entries/{index}"): access.ENTRIES_READ,
    ("POST", "/api/v1/entries"): access.ENTRIES_APPEND,
    # The audit records: an auditor sees its tenants' (the handlers scope the query), an admin every tenant's.
    ("GET", "/api/v1/events"): access.EVENTS_READ,
    ("GET", "/api/v1/runs/{run_id}/timeline"): access.EVENTS_READ,
    ("GET", "/api/v1/runs/{run_id}/evidence"): access.EVENTS_READ,
    ("GET", "/api/v1/reports"): access.EVENTS_READ,  # compliance reports: the handler checks the tenant's scope
    ("GET", "/api/v1/blobs/{sha256}"): access.BLOBS_READ,
    ("PUT", "/api/v1/blobs/{sha256}"): access.BLOBS_WRITE,
    ("DELETE", "/api/v1/blobs/{sha256}"): access.ADMIN,
    # Administration.
    ("GET", "/api/v1/producers"): access.ADMIN,
    ("POST", "/api/v1/producers"): access.ADMIN,
    ("POST", "/api/v1/producers/{producer}/keys"): access.ADMIN,
    ("POST", "/api/v1/producers/{producer}/keys/{key_id}/retire"): access.ADMIN,
    ("POST", "/api/v1/producers/{producer}/keys/{key_id}/revoke"): access.ADMIN,
    ("GET", "/api/v1/tokens"): access.ADMIN,
    ("POST", "/api/v1/tokens"): access.ADMIN,
    ("POST", "/api/v1/tokens/{token_id}/revoke"): access.ADMIN,
    ("GET", "/api/v1/access-log"): access.ADMIN,
    # Legal holds and data-subject requests (api/server/lifecycle_routes.py): the subject reference travels in the
    # body of a POST, never in a URL (access logs and proxies keep URLs).
    ("GET", "/api/v1/holds"): access.ADMIN,
    ("POST", "/api/v1/holds"): access.ADMIN,
    ("POST", "/api/v1/holds/{hold_id}/release"): access.ADMIN,
    ("POST", "/api/v1/subjects/access"): access.ADMIN,
    ("POST", "/api/v1/subjects/erase"): access.ADMIN,
    # Retention (api/server/retention_job.py): policies and runs are administration; a deletion list says only which
    # entries (indices), blobs (hashes) and subjects (tokens) a deletion removed, what a reader of entries needs to
    # check a pruned entry against (auditlog verify).
    ("GET", "/api/v1/retention/policies"): access.ADMIN,
    ("POST", "/api/v1/retention/policies"): access.ADMIN,
    ("GET", "/api/v1/retention/runs"): access.ADMIN,
    ("POST", "/api/v1/retention/runs"): access.ADMIN,
    ("GET", "/api/v1/deletions/{index}"): access.ENTRIES_READ,
    # The token vault: a writer tokenises for its tenants; only a vault-reader detokenises (its tenants), logged first.
    ("POST", "/api/v1/vault/tokenize"): access.VAULT_TOKENIZE,
    ("POST", "/api/v1/vault/detokenize"): access.VAULT_READ,
    # Audit drills (api/server/drills_routes.py): an auditor logs a drill of its tenants (the handler checks the
    # tenant); the drills are listed to those who read the tenant's events.
    ("POST", "/api/v1/drills"): access.DRILLS_RECORD,
    ("GET", "/api/v1/drills"): access.EVENTS_READ,
    ("GET", "/metrics"): access.METRICS,  # public with `serve --metrics-public`
    ("*", "/{tail}"): FORWARDED,
}


@dataclass(frozen=True)
class AccessSettings:
    """public: `serve --public`, entries readable and plain entries appendable by anyone (log/access.py
    PUBLIC_LOG_PERMISSIONS); metrics_public: `serve --metrics-public`, /metrics without a credential."""

    public: bool = False
    metrics_public: bool = False

    @cached_property
    def public_permissions(self) -> frozenset[str]:
        out = set(access.PUBLIC_LOG_PERMISSIONS if self.public else ())
        if self.metrics_public:
            out.add(access.METRICS)
        return frozenset(out)


class Authenticator(Protocol):
    async def authenticate(self, bearer: str) -> Principal | None: ...


ACCESS = web.AppKey("access_settings", AccessSettings)
AUTHENTICATORS = web.AppKey("authenticators", list)


class AdminTokenAuthenticator:
    """The operator's admin token (`<data dir>/admin.token` or AUDITLOG_ADMIN_TOKEN), compared in constant time:
    an `admin` principal with credential "admin-token". `token` is called per request (the writer loads the token
    when the audit service starts); None: no admin token, nothing is this authenticator's."""

    def __init__(self, token: Callable[[], str | None]):
        self._token = token
        self._encoded: tuple[str | None, bytes] = (None, b"")  # the token last seen, encoded once
        self._principal = Principal("admin-token", "admin", None)

    async def authenticate(self, bearer: str) -> Principal | None:
        expected = self._token()
        if not expected:
            return None
        if self._encoded[0] is not expected:
            self._encoded = (expected, expected.encode())
        if hmac.compare_digest(bearer.encode(), self._encoded[1]):
            return self._principal
        return None


class ApiTokenAuthenticator:
    """API tokens (`alog_<id>_<secret>`, log/audit/tokens.py): `lookup(token id)` gives the token's stored state
    (the writer: its registry in memory; a read worker: `CachedTokenLookup`). A bearer shaped as one of ours is
    ours: unknown, wrong, revoked or expired is Unauthenticated."""

    def __init__(self, lookup: Callable[[str], Awaitable[ApiToken | None]],
                 clock: Callable[[], float] = time.time):
        self._lookup = lookup
        self._clock = clock

    async def authenticate(self, bearer: str) -> Principal | None:
        token_id = parse_token(bearer)
        if token_id is None:
            return None
        return check_token(await self._lookup(token_id), bearer, int(self._clock() * 1000))


class CachedTokenLookup:
    """A read worker's token lookup: `read(token id)` from the database (the writer's `access_tokens` index), a
    token found kept for `ttl` seconds. So a revocation reaches the workers within `ttl`; a token just created is
    found at once (what is not found is not kept)."""

    def __init__(self, read: Callable[[str], Awaitable[ApiToken | None]], ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiToken]] = {}

    async def __call__(self, token_id: str) -> ApiToken | None:
        now = self._clock()
        hit = self._cache.get(token_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        found = await self._read(token_id)
        if found is None:
            self._cache.pop(token_id, None)
        else:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token_id] = (now, found)
        return found


def bearer_of(header: str) -> str:
    """The credential of an `Authorization: Bearer <credential>` value; Unauthenticated for anything else."""
    if len(header) > MAX_AUTHORIZATION:
        raise Unauthenticated(f"the Authorization header is longer than {MAX_AUTHORIZATION} bytes")
    # Bytes that are not UTF-8 arrive from aiohttp as surrogate escapes: not ASCII, so refused here.
    if not header.isascii() or not header.isprintable():
        raise Unauthenticated("the Authorization header must be visible ASCII (Authorization: Bearer <token>)")
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip() or " " in credential.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <token>`")
    return credential.strip()


async def authenticate(request: web.Request) -> Principal | None:
    """The principal of the request's credential; None without one; Unauthenticated for one no authenticator
    accepts, or that has expired."""
    if "Authorization" not in request.headers:
        return None
    headers = request.headers.getall("Authorization")
    if len(headers) > 1:
        raise Unauthenticated("give one Authorization header, not several")
    bearer = bearer_of(headers[0])
    for authenticator in request.app[AUTHENTICATORS]:
        principal = await authenticator.authenticate(bearer)
        if principal is not None:
            if principal.expires_at is not None and principal.expired(int(time.time() * 1000)):
                raise Unauthenticated("the credential has expired")
            return principal
    raise Unauthenticated("the bearer token is not valid for this log")


def rule_of(route) -> str | None:
    """The ROUTE_POLICY entry of an aiohttp route, or None when it has none."""
    resource = route.resource
    if resource is None:
        return None
    return ROUTE_POLICY.get((route.method, resource.canonical))


def check(rule: str | None, principal: Principal | None, settings: AccessSettings, request: web.Request) -> None:
    """Raise unless `principal` (None: no credential) may take `request`, whose route's rule is `rule`."""
    if rule == PUBLIC or rule == FORWARDED:
        return
    if rule is None:
        what = _what(request)
        logger.error("no access rule for %s; refused (add it to api/server/auth.py ROUTE_POLICY)", what)
        raise Forbidden(f"{what} has no access rule on this server; it is refused")
    if rule in settings.public_permissions:
        return
    if principal is None:
        raise Unauthenticated(f"{_what(request)} needs a credential (Authorization: Bearer <token>)")
    if not principal.may(rule):
        roles = ", ".join(sorted(access.PERMISSIONS[rule]))
        raise Forbidden(f"{_what(request)} needs the role {roles}; this credential is a {principal.role}")


def _what(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Resolve the credential and apply ROUTE_POLICY, before the handler reads a byte of the body. A request no
    route matches (404, 405) goes on unchanged, to be answered as before."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return await handler(request)
    rule = rule_of(match_info.route)
    if rule == FORWARDED:  # a read worker passes it to the writer, credential and all: checked there, once
        request[PRINCIPAL] = None
        return await handler(request)
    principal = await authenticate(request)
    request[PRINCIPAL] = principal
    check(rule, principal, request.app[ACCESS], request)
    return await handler(request)


def install(app: web.Application, settings: AccessSettings | None, authenticators) -> None:
    """Set the app's access settings and its authenticator chain (the middleware itself is in the app's list)."""
    app[ACCESS] = settings or AccessSettings()
    app[AUTHENTICATORS] = list(authenticators)


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def tenant_scope(request: web.Request, tenant: str | None = None) -> frozenset[str] | None:
    """The tenants a tenant-scoped read may return for this request: None for every tenant (an admin, or a public
    route), else the principal's. A `tenant` named in the request outside that scope is a 403: refusing a tenant
    the caller named tells it nothing about that tenant's records. Records of other tenants asked for by id (a
    run, a blob) are filtered out by the query and so answer 404, as records that do not exist: an auditor cannot
    learn which runs or blobs another tenant has."""
    principal = principal_of(request)
    if principal is None or principal.tenants is None:
        return None
    if tenant is not None and not principal.may_read_tenant(tenant):
        raise Forbidden(f"tenant {tenant[:128]!r} is outside this credential's tenants")
    return principal.tenants
