"""A real `witness serve` process: keys made on first start (0600), state survives SIGKILL, rollback refused after.

Runs `python -m api.cli witness serve` when api/cli/main.py wires the subcommand, else `python -m witness.cli serve`.
Checkpoints and proofs come from the reference log in tests/vectors, signed with its published test key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from log.checkpoint import Checkpoint, sign_checkpoint
from log.note import NoteSignature, parse_note
from log.note_keys import CosignatureVerifier, parse_signer_key
from witness.cosigner import AddCheckpointRequest

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "vectors" / "reference-log"
DATA = json.loads((REFERENCE / "vectors.json").read_text())
ROOTS = {r["size"]: base64.b64decode(r["root"]) for r in DATA["roots"]}
PROOFS = {(c["first"], c["second"]): [base64.b64decode(h) for h in c["hashes"]] for c in DATA["consistency"]}
LOG_SIGNER = parse_signer_key((REFERENCE / "log.skey").read_text().strip())
LISTENING = re.compile(r"listening on (http://\S+)")


def _command(data_dir: Path) -> list[str]:
    cli = REPO / "api" / "cli.py"
    wired = cli.exists() and "add_witness_parser" in cli.read_text()
    module = ["-m", "api.cli", "witness", "serve"] if wired else ["-m", "witness.cli", "serve"]
    return [sys.executable, *module, "--port", "0", "--data-dir", str(data_dir), "--name", "witness.test/e2e",
            "--log", LOG_SIGNER.verifier_key]


def _start(data_dir: Path) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(_command(data_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump():
        for line in proc.stdout:
            output.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                url.append(match.group(1))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while not found.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"witness did not start:\n{''.join(output)}")
    return proc, url[0], output


def _post(url: str, body: bytes) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _signed(size: int) -> bytes:
    return sign_checkpoint(Checkpoint(DATA["origin"], size, ROOTS[size]), LOG_SIGNER)


def test_witness_process_survives_sigkill_and_refuses_rollback(tmp_path):
    data_dir = tmp_path / "witness"
    proc, url, output = _start(data_dir)
    try:
        key_file = data_dir / "witness-ed25519.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        vkey = (data_dir / "witness-ed25519.vkey").read_text().strip()
        assert any(vkey in line for line in output)
        status, _, body = _post(url, AddCheckpointRequest(0, (), _signed(256)).to_bytes())
        assert status == 200, body
        sig = NoteSignature.from_line(body.decode().rstrip("\n"))
        CosignatureVerifier(vkey).verify(parse_note(_signed(256)).text, sig)
        status, _, body = _post(url, AddCheckpointRequest(256, tuple(PROOFS[(256, 512)]), _signed(512)).to_bytes())
        assert status == 200, body
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown path runs: only what was committed survives
        proc.wait(10)

    proc, url, _ = _start(data_dir)
    try:
        assert (data_dir / "witness-ed25519.vkey").read_text().strip() == vkey  # same key, not a new one
        # a rollback to 257 from 256 (what the witness held before 512) is refused with the size it holds
        assert _post(url, AddCheckpointRequest(256, tuple(PROOFS[(256, 257)]), _signed(257)).to_bytes()) \
            == (409, "text/x.tlog.size", b"512\n")
        assert _post(url, AddCheckpointRequest(0, (), _signed(2)).to_bytes())[:3] == (409, "text/x.tlog.size",
                                                                                     b"512\n")
        status, _, body = _post(url, AddCheckpointRequest(512, (), _signed(512)).to_bytes())
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
