"""Who is asking: the Principal an authenticated request carries, and the roles it may hold (issue 18).

Core (no aiohttp): the server's authenticators (API tokens, OIDC) produce a Principal, the route policy reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "auditor", "writer", "monitor")


@dataclass(frozen=True)
class Principal:
    credential: str  # who, for the access log: "token:<token id>", "oidc:<issuer>#<sub>", "admin-token"
    role: str  # one of ROLES
    tenants: frozenset[str] | None  # None: every tenant (admin; monitor); else the tenants in scope
    expires_at: int | None = None  # Unix ms, None: no expiry

    def may_read_tenant(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants
