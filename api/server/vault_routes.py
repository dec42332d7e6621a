"""HTTP routes of the token vault (log/audit/vault.py): tokenise at the boundary, detokenise with a purpose.

| method and path | who | body -> answer |
| --- | --- | --- |
| POST /api/v1/vault/tokenize | vault:tokenize (writer: its tenants; admin) | `{"tenant", "subject", "values": [...]}` -> `{"tenant", "subject", "tokens": [...], "created"}` |
| POST /api/v1/vault/detokenize | vault:read (vault-reader: its tenants) | `{"tenant", "tokens": [...], "purpose"}` -> `{"tenant", "values": [{"token", "status", "value"?}], "index"}` |

The role is api/server/auth.py's table, checked before a handler runs; the tenant is checked here
(`auth.tenant_scope`: a tenant outside the credential's is a 403). A detokenisation is recorded in the access log
(what "vault", target "<tenant>: <n> tokens") as every read of contents is, and it is a log entry
(`auditlog.vault-access/v1`, its index in the answer) committed before any value is read. The subject reference
travels in the body, never in a URL: access logs and proxies keep URLs.

Wiring: `add_vault_routes(app)` after the audit routes (the vault is `app[AUDIT].vault`).
"""

from __future__ import annotations

import json

from aiohttp import web

from api.server.access_log import record_read
from api.server.audit_routes import AUDIT, VAULT_SERVED, _body, _json, parse_admin_body
from api.server.auth import principal_of, tenant_scope
from api.server.problems import ProblemKind, register_problem_kinds, with_expect_continue
from log import defaults
from log.audit.vault import SubjectErased, VaultIntegrityError
from log.audit.vault_keys import MasterKeyMismatch
from log.errors import InvalidInput

# The largest tokenise body: every value at its limit, with room for its quotes and the JSON around them. Values
# full of characters JSON escapes may not fit: send fewer per request (the 413 says so).
MAX_TOKENIZE_BODY = defaults.VAULT_MAX_VALUES * (defaults.VAULT_MAX_VALUE_BYTES + 8) + (64 << 10)
# The largest detokenise body: every token (29 characters) quoted, and the longest purpose escaped.
MAX_DETOKENIZE_BODY = defaults.VAULT_MAX_DETOKENIZE * 40 + defaults.VAULT_MAX_PURPOSE * 12 + (4 << 10)

VAULT_PROBLEMS: dict[type, ProblemKind] = {
    SubjectErased: ProblemKind(410, "Data subject erased"),
    VaultIntegrityError: ProblemKind(500, "Vault integrity error"),
    MasterKeyMismatch: ProblemKind(500, "Vault master key mismatch"),
}
register_problem_kinds(VAULT_PROBLEMS)


async def _request_json(request: web.Request, limit: int, allowed: frozenset[str]) -> dict:
    body = parse_admin_body(await _body(request, limit))
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown member {unknown[0][:40]!r}", field=unknown[0][:40])
    return body


def _string(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} is required and must be a string", field=name)
    return value


async def tokenize(request: web.Request) -> web.Response:
    body = await _request_json(request, MAX_TOKENIZE_BODY, frozenset({"tenant", "subject", "values"}))
    tenant = _string(body, "tenant")
    tenant_scope(request, tenant)  # a writer tokenises for its own tenants only
    subject = _string(body, "subject")
    values = body.get("values")
    if not isinstance(values, list):
        raise InvalidInput("values is required: a list of strings", field="values")
    result = await request.app[AUDIT].vault.tokenize(tenant, subject, values)
    return _json({"tenant": tenant, "subject": result.subject, "tokens": result.tokens, "created": result.created})


async def detokenize(request: web.Request) -> web.Response:
    body = await _request_json(request, MAX_DETOKENIZE_BODY, frozenset({"tenant", "tokens", "purpose"}))
    tenant = _string(body, "tenant")
    tenant_scope(request, tenant)  # a vault-reader reads its own tenants only
    if "purpose" not in body:
        raise InvalidInput("purpose is required: say why these tokens are detokenised", field="purpose")
    tokens, purpose = body.get("tokens"), body.get("purpose")
    vault = request.app[AUDIT].vault
    vault.check_detokenize(tenant, tokens, purpose)  # a malformed request is refused before it is a read
    await record_read(request, "vault", f"{tenant}: {len(tokens)} tokens")
    answer = await vault.detokenize(tenant, tokens, purpose, principal_of(request))
    return web.Response(body=json.dumps({"tenant": tenant, "values": [v.to_json() for v in answer.values],
                                         "index": answer.index}, separators=(",", ":")).encode(),
                        content_type="application/json", headers={"Cache-Control": "no-store"})


VAULT_ROUTES = with_expect_continue([
    web.post("/api/v1/vault/tokenize", tokenize),
    web.post("/api/v1/vault/detokenize", detokenize),
])


def add_vault_routes(app: web.Application) -> None:
    """Add the vault's routes (the vault itself lives in the audit service, opened by add_audit_routes, which loads
    the master key only for an app that serves them). Call before the app starts."""
    app[VAULT_SERVED] = True
    app.router.add_routes(VAULT_ROUTES)
