"""API tokens: bearer credentials an admin creates for a role and tenants, kept only as the SHA-256 of their secret.

A token is `alog_<token id>_<secret>`: the id (16 hex digits) names the token in lists, revocations and the access
log; the secret is 32 random bytes (256 bits, `secrets.token_urlsafe`). The log stores the SHA-256 of the whole
token, never the token. A plain SHA-256 is enough here, where a password store needs a slow, salted hash: that is
against guessing low-entropy secrets, and a 256-bit random secret cannot be guessed or searched for from its hash
(preimage resistance), so the hash may even sit in the log's entries, which monitors read.

Creation and revocation are log entries (`auditlog.token-change/v1`, log/audit/records.py), as producer-registry
changes are: who could read and write what, when, is itself in the tamper-evident record. The `access_tokens`
table is an index of those entries, committed with them; the server folds it into `TokenRegistry` on start, and a
read worker looks single tokens up in it (`token_from_records`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from functools import cached_property

from log.access import Principal
from log.audit.errors import RegistryConflict
from log.errors import NotFound, Unauthenticated

TOKEN_PREFIX = "alog_"
_TOKEN = re.compile(r"^alog_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
_TOKEN_ID = re.compile(r"^[0-9a-f]{16}\Z")


def new_token() -> tuple[str, str]:
    """(token id, the whole token) for a new token."""
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_id_of(text: str) -> str | None:
    """The token id `text` names: a whole token's id, or `text` itself when it is an id; None for anything else."""
    match = _TOKEN.match(text)
    if match:
        return match.group(1)
    return text if _TOKEN_ID.match(text) else None


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    role: str
    tenants: frozenset[str] | None
    sha256: bytes
    created_at: int  # Unix ms
    expires_at: int | None = None
    revoked_at: int | None = None
    reason: str = ""
    index: int | None = None  # the creation record's log index

    @cached_property
    def principal(self) -> Principal:
        return Principal(f"token:{self.token_id}", self.role, self.tenants, self.expires_at)

    def to_json(self) -> dict:
        """What `GET /api/v1/tokens` shows: everything but the hash (of no use to a reader, and never the secret)."""
        return {"token_id": self.token_id, "role": self.role,
                "tenants": None if self.tenants is None else sorted(self.tenants), "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at, "reason": self.reason,
                "index": self.index}


def apply_token_change(tokens: dict[str, ApiToken], change: dict, index: int | None = None) -> None:
    """Apply one parsed token-change record to `tokens` (token id -> ApiToken); RegistryConflict if it cannot."""
    token_id = change["token_id"]
    existing = tokens.get(token_id)
    if change["change"] == "token-created":
        if existing is not None:
            raise RegistryConflict(f"token {token_id} already exists")
        tokens[token_id] = ApiToken(token_id, change["role"], change["tenants"], change["sha256"], change["at"],
                                    change["expires_at"], reason=change["reason"], index=index)
        return
    if existing is None:
        raise NotFound(f"no token {token_id}")
    if existing.revoked_at is not None:
        raise RegistryConflict(f"token {token_id} is already revoked")
    tokens[token_id] = replace(existing, revoked_at=change["at"])


def check_token(found: ApiToken | None, token: str, now_ms: int) -> Principal:
    """The principal of `token`, given what its id names (`found`); Unauthenticated if it is not that token (the
    digests compared in constant time), or revoked, or expired. The messages never repeat the token."""
    if found is None or not hmac.compare_digest(found.sha256, token_digest(token)):
        raise Unauthenticated("the bearer token is not valid for this log")
    if found.revoked_at is not None:
        raise Unauthenticated(f"API token {found.token_id} was revoked")
    if found.expires_at is not None and now_ms >= found.expires_at:
        raise Unauthenticated(f"API token {found.token_id} has expired")
    return found.principal


def parse_token(bearer: str) -> str | None:
    """The token id of a bearer credential shaped as one of our tokens; None when it is not ours."""
    match = _TOKEN.match(bearer)
    return match.group(1) if match else None


class TokenRegistry:
    """The fold of token-change records (the writer's, in memory). Apply from one task at a time."""

    def __init__(self) -> None:
        self._tokens: dict[str, ApiToken] = {}

    def get(self, token_id: str) -> ApiToken | None:
        return self._tokens.get(token_id)

    def tokens(self) -> list[ApiToken]:
        return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.token_id))

    def check(self, change: dict) -> None:
        apply_token_change(dict(self._tokens), change)

    def apply(self, change: dict, index: int | None = None) -> None:
        apply_token_change(self._tokens, change, index)


def token_from_records(records: list[tuple[int, dict]]) -> ApiToken | None:
    """One token's state from its change records (index, parsed change), in log order (a read worker's lookup)."""
    tokens: dict[str, ApiToken] = {}
    for index, change in records:
        apply_token_change(tokens, change, index)
    return next(iter(tokens.values()), None)


async def read_token(log, token_id: str) -> ApiToken | None:
    """One token's state, read from the `access_tokens` index through `log.read` (a read worker's lookup: it has
    no registry in memory, only the database the writer commits to), on the primary: a revocation counts at once,
    not once a read replica has replayed it."""
    from sqlalchemy import select

    from log.audit.canonical import parse_json
    from log.audit.records import parse_token_change
    from log.audit.tables import access_tokens

    query = (select(access_tokens.c.idx, access_tokens.c.record).where(access_tokens.c.token_id == token_id)
             .order_by(access_tokens.c.idx))
    rows = await log.read(lambda tx: list(tx.execute(query)), primary=True)
    return token_from_records([(idx, parse_token_change(parse_json(record.encode()).value)) for idx, record in rows])
