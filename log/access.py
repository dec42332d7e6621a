"""Who may do what: the roles, the principal a credential resolves to, and the role rules, as data.

No HTTP here (api/server/auth.py holds the route table that names, for every route, the permission below it needs
or that it is public; its middleware resolves credentials to a `Principal`). The rules:

| permission      | roles            | what it covers                                                            |
| --------------- | ---------------- | ------------------------------------------------------------------------- |
| entries:read    | monitor, admin   | entry contents: /tile/entries/..., GET /api/v1/entries/<i>                |
| entries:append  | writer, admin    | plain entries: POST /api/v1/entries                                       |
| events:read     | auditor, admin   | audit events, run timelines, evidence bundles (an auditor: its tenants)   |
| blobs:read      | auditor, admin   | GET /api/v1/blobs/<sha256> (an auditor: blobs its tenants' events name)   |
| blobs:write     | writer, admin    | PUT /api/v1/blobs/<sha256>                                                |
| metrics         | monitor, admin   | /metrics (unless the server runs with --metrics-public)                   |
| vault:tokenize  | writer, admin    | POST /api/v1/vault/tokenize (a writer: its tenants)                       |
| vault:read      | vault-reader     | POST /api/v1/vault/detokenize, with a purpose, logged before it answers   |
| drills:record   | auditor, admin   | POST /api/v1/drills: an audit drill's result, as a log entry (its tenant) |
| admin           | admin            | producer registry, API tokens, blob deletion, the access log, retention   |
|                 |                  | policies, legal holds, data-subject access and erasure                    |

Detokenising is vault-reader's alone, not admin's: the people who run the log are not by that the people who may
see who its subjects are (separation of duties); an admin who must can issue a vault-reader credential, and that
issue is itself a log entry.

`serve --public` makes entries:read and entries:append public (a public transparency log, as CT and Rekor run);
nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "auditor", "writer", "monitor", "vault-reader")

ENTRIES_READ = "entries:read"
ENTRIES_APPEND = "entries:append"
EVENTS_READ = "events:read"
BLOBS_READ = "blobs:read"
BLOBS_WRITE = "blobs:write"
METRICS = "metrics"
VAULT_TOKENIZE = "vault:tokenize"
VAULT_READ = "vault:read"
DRILLS_RECORD = "drills:record"
ADMIN = "admin"

# permission -> the roles that hold it. The one place a role's rights are written down.
PERMISSIONS: dict[str, frozenset[str]] = {
    ENTRIES_READ: frozenset({"monitor", "admin"}),
    ENTRIES_APPEND: frozenset({"writer", "admin"}),
    EVENTS_READ: frozenset({"auditor", "admin"}),
    BLOBS_READ: frozenset({"auditor", "admin"}),
    BLOBS_WRITE: frozenset({"writer", "admin"}),
    METRICS: frozenset({"monitor", "admin"}),
    VAULT_TOKENIZE: frozenset({"writer", "admin"}),
    VAULT_READ: frozenset({"vault-reader"}),
    DRILLS_RECORD: frozenset({"auditor", "admin"}),
    ADMIN: frozenset({"admin"}),
}

# The permissions `serve --public` gives everyone, credential or not.
PUBLIC_LOG_PERMISSIONS = frozenset({ENTRIES_READ, ENTRIES_APPEND})

# Roles whose credentials name the tenants they cover; an auditor's must name at least one (an auditor of every
# tenant is an admin's business). admin and monitor cover every tenant and name none.
TENANT_ROLES = frozenset({"auditor", "writer", "vault-reader"})
TENANTS_REQUIRED = frozenset({"auditor", "vault-reader"})


@dataclass(frozen=True)
class Principal:
    """Who a request is from, once its credential has been checked.

    credential  who, for the access log: "token:<token id>", "oidc:<issuer>#<sub>", "admin-token"
    role        one of ROLES
    tenants     None: every tenant (admin, monitor; a writer not limited to some); else the tenants in scope
    expires_at  Unix ms when the credential stops being valid; None: no expiry
    """

    credential: str
    role: str
    tenants: frozenset[str] | None
    expires_at: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.tenants is not None and not isinstance(self.tenants, frozenset):
            object.__setattr__(self, "tenants", frozenset(self.tenants))

    def may(self, permission: str) -> bool:
        """True if this principal's role holds `permission` (tenant scope aside)."""
        return self.role in PERMISSIONS[permission]

    def may_read_tenant(self, tenant: str) -> bool:
        """True if `tenant` is in this principal's scope."""
        return self.tenants is None or tenant in self.tenants

    def expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and now_ms >= self.expires_at


def check_tenants(role: str, tenants) -> frozenset[str] | None:
    """The tenants a credential of `role` may carry, or ValueError saying why not: none for admin and monitor,
    at least one for an auditor, any (None: every tenant) for a writer."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    tenants = None if tenants is None else frozenset(tenants)
    if tenants is not None and not tenants:
        tenants = None
    if tenants is not None and role not in TENANT_ROLES:
        raise ValueError(f"a {role} covers every tenant; give no tenants")
    if tenants is None and role in TENANTS_REQUIRED:
        raise ValueError(f"an {role} credential names the tenants it may read (at least one)")
    return tenants
