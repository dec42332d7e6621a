"""witness/cli.py: the serve arguments, keys made once (0600) and reused, trusted logs from flags and a file."""

from __future__ import annotations

import argparse
import stat

import pytest

from log.errors import InvalidInput
from log.note_keys import generate_signer_key
from witness.cli import add_witness_parser, build_cosigner


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_witness_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["witness", "serve", *argv])


def test_keys_are_made_once_and_logs_come_from_flags_and_file(tmp_path):
    _, log_a = generate_signer_key("a.example/log")
    _, log_b = generate_signer_key("b.example/log")
    logs_file = tmp_path / "logs"
    logs_file.write_text(f"# trusted\nalias.example/log {log_b}\n")
    args = parse("--data-dir", str(tmp_path / "w"), "--name", "w.example/w", "--key-types", "ed25519,mldsa44",
                 "--log", log_a, "--log", f"other.example/log={log_b}", "--logs-file", str(logs_file))
    assert args.func.__name__ == "run_witness_serve"
    cosigner = build_cosigner(args)
    assert set(cosigner.logs) == {"a.example/log", "other.example/log", "alias.example/log"}
    assert [s.key_type for s in cosigner.signers] == [0x04, 0x06]
    for name in ("witness-ed25519.key", "witness-mldsa44.key"):
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o600
    again = build_cosigner(parse("--data-dir", str(tmp_path / "w"), "--key-types", "ed25519,mldsa44",
                                 "--log", log_a))
    assert again.verifier_keys == cosigner.verifier_keys
    cosigner.store.close()
    again.store.close()
    with pytest.raises(InvalidInput):
        build_cosigner(parse("--data-dir", str(tmp_path / "w"), "--name", "other.example/w", "--log", log_a))
    with pytest.raises(InvalidInput):
        build_cosigner(parse("--data-dir", str(tmp_path / "new"), "--log", log_a))  # no key and no --name
    with pytest.raises(InvalidInput):
        build_cosigner(parse("--data-dir", str(tmp_path / "w"), "--name", "w.example/w"))  # no trusted log
