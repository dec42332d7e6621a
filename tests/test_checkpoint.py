"""log.checkpoint: the strict checkpoint body, and signing/opening against independent vectors.

Vector sources (see tests/test_note.py for details):
- tests/vectors/reference-log/: a checkpoint signed by Go's golang.org/x/mod/sumdb/note v0.7.0, plus one cosignature.
- tests/vectors/cosigned-checkpoint.note/.keys: a real arche2025h1 staging CT log checkpoint, cosigned by
  remora.n621.de.
- filippo.io/torchwood cmd/litewitness/testdata/mldsa.txt: a checkpoint signed with an ML-DSA-44 (type 0x06) key.
- The tlog-checkpoint spec example body (c2sp.org/tlog-checkpoint).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, sign_checkpoint
from log.errors import InvalidInput, SignatureError
from log.note import COSIGNATURE_MLDSA44, format_note, parse_note, sign_note
from log.note_keys import (
    CosignatureSigner,
    CosignatureVerifier,
    generate_signer_key,
    parse_signer_key,
    parse_verifier_key,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
REF = VECTORS / "reference-log"
LOG_SKEY = (REF / "log.skey").read_text().strip()
LOG_VKEY = (REF / "log.vkey").read_text().strip()
WIT_SKEY = (REF / "wit.skey").read_text().strip()
WIT_VKEY = (REF / "wit.vkey").read_text().strip()
REF_NOTE = (REF / "log" / "checkpoint").read_bytes()
REF_ROOT = base64.b64decode("ZnbNk5DNP0lHnbxRLXmKfR+3Isv3TfT1e/BZUT/rrIA=")
REF_CHECKPOINT = Checkpoint("reference.example/log", 70000, REF_ROOT)

ARCHE_NOTE = (VECTORS / "cosigned-checkpoint.note").read_bytes()
ARCHE_KEYS = dict(
    line.split(" ", 1) for line in (VECTORS / "cosigned-checkpoint.keys").read_text().splitlines()
    if line and not line.startswith("#")
)

SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
EMPTY_ROOT = hashlib.sha256(b"").digest()


# --- the body: to_text / from_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        SPEC_TEXT,
        REF_NOTE.decode().split("\n\n")[0] + "\n",
        ARCHE_NOTE.decode().split("\n\n")[0] + "\n",
        "a\n0\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",
        SPEC_TEXT + "extension one\nextension two\n",
        "origin with spaces + plus\n1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        f"o\n{MAX_TREE_SIZE}\n" + base64.b64encode(bytes(32)).decode() + "\n",
    ],
    ids=["spec", "reference", "arche", "empty tree", "extensions", "odd origin", "max size"],
)
def test_from_text_to_text_round_trip(text: str) -> None:
    checkpoint = Checkpoint.from_text(text)
    assert checkpoint.to_text() == text
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint


def test_reference_body() -> None:
    assert Checkpoint.from_text(REF_NOTE.decode().split("\n\n")[0] + "\n") == REF_CHECKPOINT
    assert REF_CHECKPOINT.to_text() == "reference.example/log\n70000\nZnbNk5DNP0lHnbxRLXmKfR+3Isv3TfT1e/BZUT/rrIA=\n"


def test_extensions_are_kept_in_order() -> None:
    checkpoint = Checkpoint.from_text(SPEC_TEXT + "b\na\n")
    assert checkpoint.extensions == ("b", "a")
    assert checkpoint.to_text().endswith("\nb\na\n")


_ROOT_B64 = base64.b64encode(bytes(range(32))).decode()
BAD_BODIES = {
    "empty": "",
    "no final newline": f"o\n1\n{_ROOT_B64}",
    "two lines": "o\n1\n",
    "empty origin": f"\n1\n{_ROOT_B64}\n",
    "leading zero": f"o\n01\n{_ROOT_B64}\n",
    "only zeroes": f"o\n00\n{_ROOT_B64}\n",
    "plus sign": f"o\n+1\n{_ROOT_B64}\n",
    "minus sign": f"o\n-1\n{_ROOT_B64}\n",
    "space before size": f"o\n 1\n{_ROOT_B64}\n",
    "underscore in size": f"o\n1_000\n{_ROOT_B64}\n",
    "non-ASCII digit": f"o\n\u0661\n{_ROOT_B64}\n",
    "hex size": f"o\n0x10\n{_ROOT_B64}\n",
    "empty size": f"o\n\n{_ROOT_B64}\n",
    "size 2^63": f"o\n{2**63}\n{_ROOT_B64}\n",
    "root of 31 bytes": f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n",
    "root of 33 bytes": f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n",
    "root unpadded": f"o\n1\n{_ROOT_B64.rstrip('=')}\n",
    "root URL-safe alphabet": f"o\n1\n{base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode()}\n",
    "root non-canonical pad bits": f"o\n1\n{_ROOT_B64[:-2]}9=\n",
    "root hex": f"o\n1\n{bytes(32).hex()}\n",
    "root with trailing space": f"o\n1\n{_ROOT_B64} \n",
    "empty extension line": f"o\n1\n{_ROOT_B64}\n\n",
    "empty line between extensions": f"o\n1\n{_ROOT_B64}\na\n\nb\n",
    "carriage return": f"o\r\n1\n{_ROOT_B64}\n",
    "tab in origin": f"o\tx\n1\n{_ROOT_B64}\n",
}


@pytest.mark.parametrize("text", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_from_text_rejects(text: str) -> None:
    with pytest.raises(SignatureError):
        Checkpoint.from_text(text)


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, bytes(32)),
        ("a\nb", 1, bytes(32)),
        ("o", -1, bytes(32)),
        ("o", 2**63, bytes(32)),
        ("o", True, bytes(32)),
        ("o", 1.0, bytes(32)),
        ("o", 1, bytes(31)),
        ("o", 1, "0" * 32),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("a\nb",)),
        ("o", 1, bytes(32), ["list"]),
    ],
)
def test_constructor_rejects(args: tuple) -> None:
    with pytest.raises(InvalidInput):
        Checkpoint(*args)


_lines = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    origin=_lines,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_lines, max_size=3).map(tuple),
)
def test_round_trip_property(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    text = checkpoint.to_text()
    assert Checkpoint.from_text(text) == checkpoint
    assert Checkpoint.from_text(text).to_text() == text


# --- signing and opening --------------------------------------------------------------------------------------


def test_sign_checkpoint_matches_x_mod_note() -> None:
    signed = sign_checkpoint(REF_CHECKPOINT, parse_signer_key(LOG_SKEY))
    cosig = CosignatureSigner(WIT_SKEY).cosign(REF_CHECKPOINT.to_text(), 1790000000)
    note = parse_note(signed)
    assert format_note(note.text, [*note.signatures, cosig]) == REF_NOTE


def test_open_checkpoint_reference() -> None:
    checkpoint, note = open_checkpoint(REF_NOTE, parse_verifier_key(LOG_VKEY))
    assert checkpoint == REF_CHECKPOINT
    assert len(note.signatures) == 2
    assert CosignatureVerifier(WIT_VKEY).verify(note.text, note.signatures[1]) == 1790000000
    assert open_checkpoint(REF_NOTE, parse_verifier_key(LOG_VKEY), "reference.example/log")[0] == REF_CHECKPOINT


def test_open_checkpoint_arche() -> None:
    checkpoint, note = open_checkpoint(ARCHE_NOTE, parse_verifier_key(ARCHE_KEYS["log"]))
    assert checkpoint.origin == "arche2025h1.staging.ct.transparency.dev"
    assert checkpoint.size == 1432088532
    assert checkpoint.extensions == ()
    remora = CosignatureVerifier(ARCHE_KEYS["witness"])
    [line] = [s for s in note.signatures if s.name == remora.name]
    assert remora.verify(checkpoint.to_text(), line) == 1779573024


def test_open_checkpoint_with_an_mldsa_log_key() -> None:
    skey, vkey = generate_signer_key("example.com/pq-log", COSIGNATURE_MLDSA44)
    checkpoint = Checkpoint("example.com/pq-log", 5, bytes(32))
    signed = sign_checkpoint(checkpoint, parse_signer_key(skey))
    assert open_checkpoint(signed, parse_verifier_key(vkey))[0] == checkpoint


def test_open_checkpoint_origin_checks() -> None:
    verifier = parse_verifier_key(LOG_VKEY)
    with pytest.raises(SignatureError, match="origin"):
        open_checkpoint(REF_NOTE, verifier, "reference.example/other")
    # A log whose key name differs from its origin opens only when the origin is given.
    skey, vkey = generate_signer_key("keyname.example/log")
    signed = sign_checkpoint(REF_CHECKPOINT, parse_signer_key(skey))
    with pytest.raises(SignatureError, match="origin"):
        open_checkpoint(signed, parse_verifier_key(vkey))
    assert open_checkpoint(signed, parse_verifier_key(vkey), REF_CHECKPOINT.origin)[0] == REF_CHECKPOINT


def test_open_checkpoint_rejects_a_signed_non_checkpoint() -> None:
    signer = parse_signer_key(LOG_SKEY)
    root_line = REF_CHECKPOINT.to_text().split("\n")[2]
    signed = sign_note(f"reference.example/log\n070000\n{root_line}\n", [signer])  # validly signed, bad size line
    with pytest.raises(SignatureError, match="checkpoint"):
        open_checkpoint(signed, signer.verifier)


def test_open_checkpoint_needs_the_log_signature() -> None:
    # Only the witness signed: the log's key finds nothing.
    text = REF_CHECKPOINT.to_text()
    only_cosig = format_note(text, [CosignatureSigner(WIT_SKEY).cosign(text, 1)])
    with pytest.raises(SignatureError, match="no signature"):
        open_checkpoint(only_cosig, parse_verifier_key(LOG_VKEY))


CHECKPOINT_MUTATIONS = {
    "flipped bit in log signature": lambda d: d.replace(b"lPIu21FCTvLA", b"lPIu21FCTvLB"),
    "changed size": lambda d: d.replace(b"\n70000\n", b"\n70001\n"),
    "size with leading zero": lambda d: d.replace(b"\n70000\n", b"\n070000\n"),
    "changed root": lambda d: d.replace(b"ZnbNk5", b"ZnbNk6"),
    "changed origin": lambda d: d.replace(b"reference.example/log\n", b"reference.example/lug\n"),
    "extension line added": lambda d: d.replace(b"rIA=\n", b"rIA=\next\n", 1),
    "extra blank line": lambda d: d.replace(b"rIA=\n\n", b"rIA=\n\n\n", 1),
    "missing trailing newline": lambda d: d[:-1],
    "log key id changed": lambda d: d.replace(b"lPIu21", b"lPIu2w"),
    "log line renamed": lambda d: d.replace(b" reference.example/log lPIu", b" reference.example/lug lPIu"),
    "bad base64": lambda d: d.replace(b"lPIu21", b"lPIu2*"),
    "log line removed": lambda d: b"".join(line for line in d.splitlines(keepends=True) if b"lPIu21" not in line),
}


@pytest.mark.parametrize("mutate", CHECKPOINT_MUTATIONS.values(), ids=CHECKPOINT_MUTATIONS.keys())
def test_open_checkpoint_rejects_mutation(mutate) -> None:
    mutated = mutate(REF_NOTE)
    assert mutated != REF_NOTE
    with pytest.raises(SignatureError):
        open_checkpoint(mutated, parse_verifier_key(LOG_VKEY))
