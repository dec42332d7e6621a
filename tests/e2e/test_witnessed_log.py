"""The log, two witnesses and the TSA as real processes on loopback (`python -m api.cli ...`, port 0).

One scenario, in order: entries are added; the log gets its checkpoint cosigned by both witnesses and timestamped;
`auditlog verify` with both witness keys and the TSA certificate passes; `proof --evidence` writes a bundle that
`verify-evidence` accepts offline and rejects after one byte of the entry, a cosignature or the token changes.
Then the log is tampered with: (a) a second log with the same key and another history on its own database is
pointed at the same witnesses, which refuse it and never cosign, and `verify --state` flags it against the
checkpoint saved from the real log; (b) one entry of the real log is rewritten in its database, and verify names it.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from api.cli.main import main as cli_main
from log.note import COSIGNATURE_ED25519, NoteSignature, parse_note
from log.note_keys import generate_signer_key
from tests.processes import REPO, ServerProcess
from tests.credentials import ADMIN

ORIGIN = "e2e.test/log"  # what ServerProcess passes as --origin
ENTRIES = 10
FORK_ENTRIES = 12


@dataclass
class Command(ServerProcess):
    """Any `python -m api.cli ...` server printing a listening line (the witnesses, the TSA)."""

    argv: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "api.cli", *self.argv]


def cli(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def run_main(capsys, *args: str) -> tuple[int, str]:
    """The CLI in-process (faster than a subprocess for the many offline checks)."""
    capsys.readouterr()
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# The log here takes the operator's admin token (tests/conftest.py operator_token), which requests and commands send.
pytestmark = pytest.mark.usefixtures("operator_token")


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=ADMIN), timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def add(url: str, entries: list[bytes]) -> dict:
    body = json.dumps({"entries": [base64.b64encode(e).decode() for e in entries]}).encode()
    request = urllib.request.Request(url + "/api/v1/entries", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **ADMIN})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def metric(url: str, name: str) -> float | None:
    _, _, body = get(url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def flip_b64(text: str, position: int) -> str:
    data = bytearray(base64.b64decode(text))
    data[position] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def test_witnessed_timestamped_log_verified_and_tampering_caught(tmp_path, processes, capsys):
    # -- the log's key first: the witnesses must know it ---------------------------------------------------------
    data = tmp_path / "log"
    code, out = cli("keygen", "--origin", ORIGIN, "--out", str(data / "log.key"))
    assert code == 0, out
    log_vkey = (data / "log.vkey").read_text().strip()

    tsa = Command(tmp_path / "tsa", None, argv=["tsa", "serve", "--port", "0", "--data-dir", str(tmp_path / "tsa")])
    witnesses = [
        Command(tmp_path / f"w{i}", None, argv=["witness", "serve", "--port", "0", "--data-dir", str(tmp_path / f"w{i}"),
                                               "--name", f"witness.test/w{i}", "--log", log_vkey])
        for i in (1, 2)
    ]
    processes += [tsa, *witnesses]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda p: p.start(), [tsa, *witnesses]))
    witness_vkeys = [(tmp_path / f"w{i}" / "witness-ed25519.vkey").read_text().strip() for i in (1, 2)]
    tsa_ca = str(tmp_path / "tsa" / "tsa-ca.pem")

    witness_flags = [arg for w, vkey in zip(witnesses, witness_vkeys) for arg in ("--witness", f"{w.url} {vkey}")]
    witness_flags += ["--witness-interval", "0.2"]
    log_flags = [*witness_flags, "--tsa-url", tsa.url, "--tsa-ca", tsa_ca, "--timestamp-interval", "0.3"]
    log = ServerProcess(data, None, log_flags)
    processes.append(log)
    log.start()
    assert any("witnessing: 2 witnesses" in line for line in log.output)

    # -- entries, witnessed and timestamped -----------------------------------------------------------------------
    add(log.url, [f"entry {i}".encode() for i in range(ENTRIES)])

    def witnessed():
        status, content_type, body = get(log.url + "/checkpoint.witnessed")
        if status != 200:
            return None
        note = parse_note(body)
        return note if note.text.split("\n")[1] == str(ENTRIES) and len(note.signatures) == 3 else None

    note = wait_for("two cosignatures on the checkpoint of size 10", witnessed)
    assert {s.name for s in note.signatures} == {ORIGIN, "witness.test/w1", "witness.test/w2"}

    def stamped():
        status, _, body = get(log.url + "/api/v1/timestamps/latest")
        return status == 200 and json.loads(body)["tree_size"] == ENTRIES and json.loads(body)

    latest = wait_for("a timestamp of the witnessed checkpoint", stamped)
    assert latest["checkpoint"].encode() == note.to_bytes()  # the witnessed note, byte for byte
    status, content_type, der = get(log.url + f"/api/v1/timestamps/{ENTRIES}")
    assert (status, content_type) == (200, "application/timestamp-reply")
    assert der == base64.b64decode(latest["timestamp"])
    assert len(parse_note(get(log.url + "/checkpoint")[2]).signatures) == 3  # /checkpoint carries them too
    assert metric(log.url, 'auditlog_witness_cosigned_size{witness="witness.test/w2"}') == ENTRIES
    assert metric(log.url, "auditlog_timestamps_stored_total") >= 1

    # -- the monitor, with both witnesses and the TSA ------------------------------------------------------------
    state = tmp_path / "monitor.json"
    witness_keys = [arg for vkey in witness_vkeys for arg in ("--witness-key", vkey)]
    code, out = cli("verify", "--server", log.url, "--key", log_vkey, *witness_keys, "--tsa-ca", tsa_ca,
                    "--state", str(state), "--quiet")
    assert code == 0, out
    assert f"Verified {ENTRIES} entries · integrity VALID · tampered 0" in out
    assert "cosigned by 2 of 2 witnesses" in out and "timestamp VALID (genTime " in out, out
    # a third witness that never cosigned: 2 of 3 is not enough
    other = tmp_path / "w3.vkey"
    other.write_text(generate_signer_key("witness.test/w3", COSIGNATURE_ED25519)[1] + "\n")
    code, out = run_main(capsys, "verify", "--server", log.url, "--key", log_vkey, *witness_keys,
                         "--witness-key", str(other), "--quiet")
    assert code == 1 and "cosigned by 2 of 3 witnesses" in out, out

    # -- one entry's evidence, checked offline -------------------------------------------------------------------
    bundle_file = tmp_path / "entry-3.json"
    code, out = cli("proof", "--evidence", "3", "--out", str(bundle_file), "--server", log.url, "--key", log_vkey)
    assert code == 0, out
    check = ["--log-key", log_vkey, *witness_keys, "--tsa-ca", tsa_ca]
    code, out = cli("verify-evidence", str(bundle_file), *check)
    assert code == 0, out
    assert "OK: entry 3" in out and "cosigned by 2 of 2 witnesses" in out and "timestamp VALID" in out, out
    bundle = json.loads(bundle_file.read_text())
    assert bundle["checkpoint"] == latest["checkpoint"] and bundle["timestamp"] == latest["timestamp"]

    def tampered(change) -> str:
        changed = json.loads(json.dumps(bundle))
        change(changed)
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(changed))
        code, out = run_main(capsys, "verify-evidence", str(path), *check)
        assert code == 1, out
        return out

    def flip_cosignature(b: dict) -> None:
        text, lines = b["checkpoint"].split("\n\n", 1)
        out = []
        for line in lines.rstrip("\n").split("\n"):
            sig = NoteSignature.from_line(line)
            if sig.name == "witness.test/w1":
                sig = NoteSignature(sig.name, sig.key_id, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1]))
            out.append(sig.to_line())
        b["checkpoint"] = text + "\n\n" + "".join(out)

    assert "check 4 (inclusion)" in tampered(lambda b: b.update(entry=flip_b64(b["entry"], 0)))
    assert "check 5 (cosignatures)" in tampered(flip_cosignature)
    assert "check 6 (timestamp)" in tampered(lambda b: b.update(timestamp=flip_b64(b["timestamp"], -1)))

    # -- (a) a fork: the same key, another history, the same witnesses --------------------------------------------
    log.stop()
    fork_dir = tmp_path / "fork"
    fork_dir.mkdir()
    shutil.copy(data / "log.key", fork_dir / "log.key")
    fork = ServerProcess(fork_dir, None, witness_flags)
    processes.append(fork)
    fork.start()
    add(fork.url, [f"forged {i}".encode() for i in range(FORK_ENTRIES)])
    for name in ("witness.test/w1", "witness.test/w2"):
        wait_for(f"{name} to refuse the fork", lambda: (metric(fork.url, f'auditlog_witness_refusals_total'
                                                                        f'{{witness="{name}"}}') or 0) >= 1)
        assert metric(fork.url, f'auditlog_witness_cosigned_size{{witness="{name}"}}') == -1
    assert get(fork.url + "/checkpoint.witnessed")[0] == 404
    assert len(parse_note(get(fork.url + "/checkpoint")[2]).signatures) == 1  # the fork's own signature only
    code, out = cli("verify", "--server", fork.url, "--key", log_vkey, "--state", str(state), "--quiet")
    assert code == 1, out
    assert "rewrote its history" in out and "integrity INVALID" in out, out
    fork.stop()

    # -- (b) an entry rewritten in the real log's database --------------------------------------------------------
    # Since issue 16 the server re-hashes the entries of its newest level-0 tiles (all 10 here) at start and refuses
    # to serve a changed one, naming it; `db check` names it too. (A rewritten entry older than the newest tiles,
    # which the server still starts with, is found by the monitor: tests/e2e/test_server_process.py.)
    with sqlite3.connect(data / "auditlog.db") as db:
        assert db.execute("UPDATE entries SET data = ? WHERE idx = 5", (b"entry 5, rewritten",)).rowcount == 1
    code, out = ServerProcess(data, None, log_flags).run_to_exit()
    assert code == 1 and "cannot start: entry 5 was changed after it was logged" in out, out
    code, out = run_main(capsys, "db", "check", "--data-dir", str(data), "--log-key", log_vkey, "--quiet")
    assert code == 1 and "auditlog db check: FAILED: entry 5: " in out, out
