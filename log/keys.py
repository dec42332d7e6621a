"""The log's signing key on disk: created on first start (mode 0600), read on every later one.

The key file holds one signed-note signer key string (`PRIVATE+KEY+<origin>+<id>+<key>`); its key name is the
log's origin, so the origin is fixed when the key is made.
"""

from __future__ import annotations

from pathlib import Path

from log.errors import InvalidInput
from log.note_keys import Signer, generate_signer_key, parse_signer_key
from log.secret_files import write_secret_file

KEY_FILE_NAME = "log.key"


def write_signer_key(path: Path, origin: str) -> Signer:
    """Generate a new Ed25519 signer key named `origin` and write it to `path` (0600, never overwriting)."""
    signer_key, _ = generate_signer_key(origin)
    write_secret_file(path, signer_key + "\n", make_parents=True)
    return parse_signer_key(signer_key)


def read_signer_key(path: Path) -> Signer:
    try:
        return parse_signer_key(path.read_text().strip())
    except OSError as exc:
        raise InvalidInput(f"cannot read the log key {path}: {exc}", field="key_file") from exc


def load_signer(path: Path, origin: str | None) -> Signer | None:
    """The signer in `path`, None if the file does not exist; `origin`, when given, must be the key's name. The key
    is created (write_signer_key) only once starting is known to be safe (Log.open)."""
    if not path.exists():
        return None
    signer = read_signer_key(path)
    if origin is not None and origin != signer.name:
        raise InvalidInput(
            f"origin {origin!r} does not match the key in {path}, which signs for {signer.name!r}",
            field="origin",
        )
    return signer
