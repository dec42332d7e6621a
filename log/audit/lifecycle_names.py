"""How the records lifecycle names things in the log, shared by the server and the offline verifiers: the shape of a
vault token and where tokens stand in an event, how a vault-access entry names a token, and the hash a deletion's
list is committed by. Standard library only: the verifying client imports this without the server, SQLAlchemy or
the vault's cryptography.

* A vault token is `vt.` + 26 lowercase RFC 4648 base32 characters (log/audit/vault.py makes them).
* A deletion list (a retention run's, an erasure's: the `deletion_items` rows) is committed to by `list_sha256`:
  SHA-256 hex of the UTF-8 lines `<kind> <item>\\n`, sorted bytewise, one per item (kinds `entry` with a decimal
  index, `blob` with a SHA-256 hex, `subject` with `<tenant>/<subject token>`). The same list in any order gives
  the same hash; an empty list, SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

VAULT_TOKEN_PATTERN = r"^vt\.[a-z2-7]{26}$"

_VAULT_TOKEN = re.compile(r"^vt\.[a-z2-7]{26}\Z")
# A vault token inside any string: not preceded or followed by characters a token or an id could continue with.
_TOKEN_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_.:~-])vt\.[a-z2-7]{26}(?![A-Za-z0-9_:~-])")


def is_vault_token(text: object) -> bool:
    """True for a string shaped as a vault token (`^vt\\.[a-z2-7]{26}$`)."""
    return isinstance(text, str) and _VAULT_TOKEN.match(text) is not None


def tokens_in_event(event_bytes: bytes) -> list[str]:
    """The distinct vault tokens in any string (member names included) of an event, given as its JSON bytes, sorted.
    Fast when there is none (a byte search); else the strings are walked as decoded (an escape before a token in
    the raw JSON must not hide it)."""
    if b"vt." not in event_bytes:
        return []
    found: set[str] = set()
    stack = [json.loads(event_bytes)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "vt." in item:
                found.update(_TOKEN_IN_TEXT.findall(item))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(found)


def token_sha256(token: str) -> str:
    """How a vault-access entry names a token: SHA-256 hex of its ASCII (the token itself is not in the log)."""
    return hashlib.sha256(token.encode()).hexdigest()


def deletion_list_sha256(items: Iterable[tuple[str, str]]) -> str:
    """The `list_sha256` a deletion entry commits to, of its (kind, item) pairs in any order (module docstring)."""
    lines = sorted(f"{kind} {item}\n".encode() for kind, item in items)
    return hashlib.sha256(b"".join(lines)).hexdigest()
