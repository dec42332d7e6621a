"""The token vault's master key: what wraps every tenant's tokenisation key and every data subject's key.

`MasterKey` is the interface a key management service can stand behind (wrap and unwrap a data key, and the id of
the key that did it, stored beside each wrapped key). `LocalMasterKey` is the one shipped: a 256-bit AES key held
by this process, wrapping with AES Key Wrap (RFC 3394, `cryptography.hazmat.primitives.keywrap`), whose integrity
check makes a wrong master key fail (`MasterKeyMismatch`) instead of returning garbage.

Where the local key comes from (`load_master_key`), first found wins:
1. `serve --vault-key-file PATH`: the operator's file (never created here), base64 of 32 bytes on one line;
2. AUDITLOG_VAULT_MASTER_KEY: base64 of 32 bytes;
3. `<data dir>/vault-master.key`, generated on first start (mode 0600, log/secret_files.py), so that one command
   starts a working log. In production keep the master key elsewhere than the database it protects (README).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from log.errors import InvalidInput, LogError
from log.secret_files import write_secret_file

MASTER_KEY_FILE = "vault-master.key"
MASTER_KEY_ENV = "AUDITLOG_VAULT_MASTER_KEY"
MASTER_KEY_SIZE = 32  # AES-256
_KEY_ID_DOMAIN = b"auditlog vault master key id\n"


class MasterKeyMismatch(LogError):
    """A wrapped key does not unwrap under this master key: the vault was set up with another master key (or the
    wrapped key was altered). The server refuses to start rather than serve or create mappings under the wrong
    key."""

    code = "vault-master-key-mismatch"


class MasterKey(ABC):
    """Wraps and unwraps data keys. Implementations: this module's `LocalMasterKey`; a KMS client (its key id the
    KMS key's name) fits the same three members. Calls may block (a KMS round trip): the vault calls them from a
    thread, and caches what it unwrapped."""

    @property
    @abstractmethod
    def key_id(self) -> str:
        """Names this master key (at most 64 characters), stored with every key it wraps: a vault whose keys were
        wrapped by another is refused at start, and a rotation knows which key to ask."""

    @abstractmethod
    def wrap(self, key: bytes) -> bytes:
        """The wrapped form of `key` (a 32-byte data key), safe to store beside the data it protects."""

    @abstractmethod
    def unwrap(self, wrapped: bytes) -> bytes:
        """The key that `wrap` wrapped; MasterKeyMismatch when `wrapped` was not made by this master key or was
        altered (never a wrong key)."""


class LocalMasterKey(MasterKey):
    """A 256-bit key in this process. Its id is `local:` + 16 hex digits of a hash of the key: a different key has
    a different id (and the id reveals nothing of the key)."""

    def __init__(self, key: bytes):
        if not isinstance(key, bytes) or len(key) != MASTER_KEY_SIZE:
            raise InvalidInput(f"a vault master key is {MASTER_KEY_SIZE} bytes, not "
                               f"{len(key) if isinstance(key, bytes) else type(key).__name__}", field="vault_key")
        self._key = key
        self._key_id = "local:" + hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> LocalMasterKey:
        return cls(secrets.token_bytes(MASTER_KEY_SIZE))

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, key: bytes) -> bytes:
        return wrap_key(self._key, key)

    def unwrap(self, wrapped: bytes) -> bytes:
        return unwrap_key(self._key, wrapped)

    def encoded(self) -> str:
        """The key as the file and the environment variable hold it: standard base64."""
        return base64.b64encode(self._key).decode()

    def __repr__(self) -> str:  # never the key
        return f"LocalMasterKey({self._key_id})"


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES Key Wrap of `key` (a multiple of 8 bytes, at least 16) under `kek` (16, 24 or 32 bytes)."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3394 unwrap; MasterKeyMismatch when the integrity check fails (another KEK, or altered bytes)."""
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise MasterKeyMismatch("a wrapped vault key does not unwrap under this master key (the integrity check "
                                "of RFC 3394 failed: another master key, or altered bytes)") from None


def parse_master_key(text: str, where: str) -> LocalMasterKey:
    """A master key from its base64 text (surrounding whitespace ignored); InvalidInput naming `where` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"the vault master key in {where} is not base64", field="vault_key") from None
    if len(raw) != MASTER_KEY_SIZE:
        raise InvalidInput(f"the vault master key in {where} is {len(raw)} bytes; it must be base64 of "
                           f"{MASTER_KEY_SIZE} random bytes", field="vault_key")
    return LocalMasterKey(raw)


def load_master_key(data_dir: str | os.PathLike, key_file: str | os.PathLike | None = None,
                    environ: Mapping[str, str] | None = None) -> tuple[LocalMasterKey, str, bool]:
    """(master key, where it came from, whether it was created now), in the order of the module docstring. A
    `key_file` that cannot be read or does not hold a key is InvalidInput: an operator's key is never replaced."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        try:
            text = Path(key_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the vault master key file {key_file}: {exc}", field="vault_key_file") \
                from None
        return parse_master_key(text, str(key_file)), str(key_file), False
    if environ.get(MASTER_KEY_ENV):
        return parse_master_key(environ[MASTER_KEY_ENV], MASTER_KEY_ENV), MASTER_KEY_ENV, False
    path = Path(data_dir) / MASTER_KEY_FILE
    if path.exists():
        return parse_master_key(path.read_text(), str(path)), str(path), False
    key = LocalMasterKey.generate()
    try:
        write_secret_file(path, key.encoded() + "\n", make_parents=True)
    except FileExistsError:  # another process of this server made it first: that one is the key
        return parse_master_key(path.read_text(), str(path)), str(path), False
    return key, str(path), True


__all__ = ["MASTER_KEY_ENV", "MASTER_KEY_FILE", "LocalMasterKey", "MasterKey", "MasterKeyMismatch",
           "load_master_key", "parse_master_key", "unwrap_key", "wrap_key"]
