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
        return token, False
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    write_secret_file(path, token + "\n", make_parents=True)
    return token, True


def check_bearer(expected: str, authorization: str | None) -> None:
    """Raise AdminUnauthorized unless `authorization` is `Bearer <expected>` (constant-time comparison)."""
    presented = ""
    if authorization and authorization[:7].lower() == "bearer ":
        presented = authorization[7:].strip()
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise AdminUnauthorized("this needs the admin bearer token (Authorization: Bearer <token>)")
