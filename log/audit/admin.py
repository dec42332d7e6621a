"""The admin credential that guards registry changes and blob deletion: one bearer token.

Taken from the configuration (`AUDITLOG_ADMIN_TOKEN`) when given; otherwise read from `<data dir>/admin.token`,
which is generated (32 random bytes, URL-safe base64, mode 0600) on first start. Compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from log.audit.errors import AdminUnauthorized
from log.secret_files import write_secret_file

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_TOKEN_ENV = "AUDITLOG_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16


def load_or_create_admin_token(data_dir: Path, configured: str | None = None) -> tuple[str, bool]:
    """(token, created). `configured` (or the environment variable) wins over the file."""
    token = configured or os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
        if not is_token_text(token):
            raise ValueError("the admin token must be visible ASCII characters: an HTTP header cannot carry others")
        return token, False
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    # 32 random bytes, base64url; never starting with "-", which a command line would take for a flag
    # (`auditlog verify --token -x...`). Redrawing keeps the 256 bits (one draw in 64 is redrawn).
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    write_secret_file(path, token + "\n", make_parents=True)
    return token, True


def load_admin_token(data_dir: Path) -> str | None:
    """The admin token as the server took it (AUDITLOG_ADMIN_TOKEN, else `<data dir>/admin.token`), never creating
    one: None when there is none (a read worker's view; the writer made the file before starting workers)."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        return token
    try:
        return (Path(data_dir) / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def is_token_text(token: str) -> bool:
    """True for a token an Authorization header can carry as sent: visible ASCII (0x21-0x7E) only.

    RFC 6750's b64token is narrower; any visible ASCII is allowed so that a configured token keeps working.
    """
    return token.isascii() and token.isprintable() and " " not in token


def check_bearer(expected: str, authorization: str | None) -> None:
    """Raise AdminUnauthorized unless `authorization` is `Bearer <expected>` (constant-time comparison).

    A header value whose token holds anything but visible ASCII (bytes that are not UTF-8 arrive from aiohttp as
    surrogate escapes, which cannot even be encoded) is refused as such, with the same 401, before any comparison.
    """
    presented = ""
    if authorization and authorization[:7].lower() == "bearer ":
        presented = authorization[7:].strip()
    if presented and not is_token_text(presented):
        raise AdminUnauthorized("the bearer token must be visible ASCII characters (Authorization: Bearer <token>)")
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise AdminUnauthorized("this needs the admin bearer token (Authorization: Bearer <token>)")
