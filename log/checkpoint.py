"""Checkpoints (c2sp.org/tlog-checkpoint): the signed tree head, a signed note whose text is

    <origin>\\n
    <tree size, ASCII decimal, no leading zeroes unless it is "0">\\n
    <base64 of the 32-byte RFC 6962 root hash>\\n
    <extension line>\\n ...     (optional, each non-empty; NOT RECOMMENDED by the spec)

Signing and opening go through log.note. A malformed checkpoint body raises SignatureError, like every other
malformed or unverifiable signed note; a bad argument to the constructor raises InvalidInput.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from log.errors import InvalidInput, SignatureError
from log.note import Note, NoteSigner, NoteVerifier, open_note, sign_note

HASH_SIZE = 32
# The spec puts no bound on the size; Go's readers (x/mod tlog, torchwood) parse it as an int64, so we do too.
MAX_TREE_SIZE = 2**63 - 1

_SIZE = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_ROOT = re.compile(r"[A-Za-z0-9+/]{43}=", re.ASCII)  # 32 bytes in standard padded base64


def _bad_line(line: str) -> str | None:
    """Why `line` cannot be a checkpoint line (empty, or a newline/control character), or None if it can."""
    if not line:
        return "is empty"
    bad = next((c for c in line if c < " "), None)
    if bad is not None:
        return f"contains control character {bad!r}"
    try:
        line.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: `origin` names the log, `root_hash` is the RFC 6962 root of the first `size` leaves."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or (why := _bad_line(self.origin)):
            raise InvalidInput(f"checkpoint origin {self.origin!r} {why or 'is not a string'}", field="origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidInput(f"tree size {self.size!r} must be an integer in [0, 2^63 - 1]", field="size")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise InvalidInput(f"root hash must be {HASH_SIZE} bytes, got {self.root_hash!r:.80}", field="root_hash")
        if not isinstance(self.extensions, tuple):
            raise InvalidInput("extensions must be a tuple of lines", field="extensions")
        for line in self.extensions:
            if not isinstance(line, str) or (why := _bad_line(line)):
                raise InvalidInput(f"extension line {line!r} {why or 'is not a string'}", field="extensions")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root, then each extension line, every line ending in a newline."""
        lines = (self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii"), *self.extensions)
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly; `from_text(c.to_text()) == c` and `from_text(t).to_text() == t`.

        1. The text ends with a newline and has at least three lines, none of them empty.
        2. Line 1, the origin, is non-empty (its form is not otherwise assumed, as the spec requires).
        3. Line 2 is the size in ASCII decimal without leading zeroes ("0" for the empty tree), below 2^63.
        4. Line 3 is the root: canonical standard base64 of exactly 32 bytes.
        5. Every further line is a non-empty extension line.
        """
        if not isinstance(text, str):
            raise InvalidInput(f"checkpoint text must be str, not {type(text).__name__}", field="text")
        if not text.endswith("\n"):
            raise SignatureError(f"checkpoint text does not end with a newline: {text[-40:]!r}")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise SignatureError(f"checkpoint has {len(lines)} lines; needs origin, size and root hash")
        origin, size_line, root_line, *extensions = lines
        for number, line in enumerate(lines, start=1):
            if why := _bad_line(line):
                raise SignatureError(f"checkpoint line {number} {why}")
        if not _SIZE.fullmatch(size_line):
            raise SignatureError(f"checkpoint size {size_line[:40]!r} is not a decimal without leading zeroes")
        size = int(size_line)
        if size > MAX_TREE_SIZE:
            raise SignatureError(f"checkpoint size {size} exceeds 2^63 - 1")
        if not _ROOT.fullmatch(root_line):
            raise SignatureError(f"checkpoint root {root_line[:80]!r} is not the base64 of {HASH_SIZE} bytes")
        try:
            root = base64.b64decode(root_line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"checkpoint root {root_line!r} is not valid base64") from exc
        if base64.b64encode(root).decode("ascii") != root_line:
            raise SignatureError(f"checkpoint root {root_line!r} is not canonical base64 (non-zero pad bits)")
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """The signed note of `checkpoint`, signed by `signer` (whose name SHOULD equal the origin)."""
    return sign_note(checkpoint.to_text(), [signer])


def open_checkpoint(data: bytes, verifier: NoteVerifier, origin: str | None = None) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint from the log whose key is `verifier`; return the checkpoint and the parsed note.

    1. Open the note with `verifier`: it must carry a valid signature from that key, and any other line from that
       key must verify too; lines from other keys (witnesses, other signature types) are ignored.
    2. Parse the text as a checkpoint body.
    3. Its origin line must equal `origin`, or the verifier's key name if `origin` is None (tlog-checkpoint: the
       log's key name SHOULD match the origin; we insist unless told otherwise).
    Raises SignatureError naming the failed step.
    """
    note, _ = open_note(data, [verifier])
    checkpoint = Checkpoint.from_text(note.text)
    expected = verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise SignatureError(f"checkpoint origin {checkpoint.origin!r} is not the expected {expected!r}")
    return checkpoint, note
