"""The `auditlog` command: keygen, db upgrade, add/proof/verify against a live in-process server (the monitor
against tampered bundles, tiles and history), and `serve` as a real subprocess (listening line, lock, SIGTERM)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from api.server.app import create_app
from api.cli.options import ProgressBar
from api.cli.main import build_parser, main
from log.checkpoint import Checkpoint, sign_checkpoint
from log.hashing import hash_leaf
from log.keys import read_signer_key
from log import defaults
from log.service import LogConfig
from tests.conftest import TEST_ORIGIN, fill_log

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_keygen_writes_a_0600_key_and_prints_the_verifier_key(tmp_path, capsys):
    out = tmp_path / "keys" / "log.key"
    code, stdout, _ = run_cli(capsys, "keygen", "--origin", "example.com/log", "--out", str(out))
    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("PRIVATE+KEY+example.com/log+")
    assert stdout.strip().startswith("example.com/log+")
    assert (tmp_path / "keys" / "log.vkey").read_text().strip() == stdout.strip()
    code, _, stderr = run_cli(capsys, "keygen", "--origin", "example.com/log", "--out", str(out))
    assert code == 2 and "already exists" in stderr  # a local input error, not a failed verification


def test_db_upgrade_creates_the_schema(tmp_path, capsys):
    code, _, _ = run_cli(capsys, "db", "upgrade", "--data-dir", str(tmp_path))
    assert code == 0
    with sqlite3.connect(tmp_path / "auditlog.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"entries", "tiles"} <= tables


def _verifier_key(config) -> str:
    return read_signer_key(config.resolved_key_file()).verifier_key


def test_add_proof_and_verify_against_a_live_server(log_config, live_server, tmp_path, capsys):
    url = live_server(create_app(log_config))
    vkey = _verifier_key(log_config)
    first = tmp_path / "first.json"
    first.write_bytes(b'{"event": "first"}')
    code, out, _ = run_cli(capsys, "add", str(first), "--server", url, "--key", vkey)
    assert code == 0
    receipt = json.loads(out)
    assert receipt["index"] == 0 and receipt["inclusion"] == "verified"

    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"".join(f"line {i}\n".encode() for i in range(300)))
    code, out, _ = run_cli(capsys, "add", "--lines", str(lines), "--server", url)  # no key: unverified
    assert code == 0
    receipts = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in receipts] == list(range(1, 301))

    code, out, _ = run_cli(capsys, "proof", "--index", "42", "--server", url, "--key", vkey)
    assert code == 0
    proof = json.loads(out)
    assert proof["verified"] is True and proof["tree_size"] == 301 and proof["index"] == 42
    leaf = hash_leaf(b"line 99")
    code, out, _ = run_cli(capsys, "proof", "--leaf-hash", leaf.hex(), "--tree-size", "150", "--server", url,
                           "--key", vkey)
    assert code == 0 and json.loads(out)["index"] == 100

    state = tmp_path / "monitor.json"
    code, out, _ = run_cli(capsys, "verify", "--server", url, "--key", vkey, "--state", str(state))
    assert code == 0, out
    assert "Verified 301 entries · integrity VALID · tampered 0" in out
    assert json.loads(state.read_text())["size"] == 301

    run_cli(capsys, "add", str(first), "--server", url)
    code, out, _ = run_cli(capsys, "verify", "--server", url, "--key", vkey, "--state", str(state))
    assert code == 0, out
    assert "consistent with the saved checkpoint of size 301: yes" in out
    assert json.loads(state.read_text())["size"] == 302


def _tampering_server(config, live_server, rewrite) -> str:
    app = create_app(config)

    @web.middleware
    async def tamper(request, handler):
        response = await handler(request)
        changed = rewrite(request.path, response.body) if response.status == 200 else None
        if changed is not None:
            response.body = changed
        return response

    app.middlewares.append(tamper)
    return live_server(app)


def test_verify_names_a_changed_entry(log_config, live_server, capsys):
    # Entry 300 sits in bundle 1 at position 44: change one byte of it in what the server serves.
    def rewrite(path, body):
        if path.startswith("/tile/entries/001"):
            offset = sum(2 + len(f"entry {i}") for i in range(256, 300)) + 2
            return body[:offset] + bytes([body[offset] ^ 1]) + body[offset + 1:]
        return None

    fill_log(log_config, 700)
    url = _tampering_server(log_config, live_server, rewrite)
    code, out, err = run_cli(capsys, "verify", "--server", url, "--key", _verifier_key(log_config))
    assert code == 1
    assert "auditlog verify: FAILED: " in err and "entry 300 (tile/entries/001, position 44)" in err
    assert "integrity INVALID · tampered 1" in out


def test_verify_finds_a_changed_upper_tile_and_a_wrong_root(log_config, live_server, capsys):
    def rewrite(path, body):
        return b"\0" * len(body) if path.startswith("/tile/1/") else None

    fill_log(log_config, 300)
    url = _tampering_server(log_config, live_server, rewrite)
    code, out, err = run_cli(capsys, "verify", "--server", url, "--key", _verifier_key(log_config))
    assert code == 1 and "tile/1/000.p/1: does not match" in err


def test_verify_finds_a_rewritten_history(log_config, live_server, tmp_path, capsys):
    """A saved checkpoint the log signed but whose root the current tree does not extend: a fork."""
    fill_log(log_config, 10)
    url = live_server(create_app(log_config))
    signer = read_signer_key(log_config.resolved_key_file())
    forked = sign_checkpoint(Checkpoint(TEST_ORIGIN, 4, b"\x07" * 32), signer)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"checkpoint": forked.decode()}))
    code, out, err = run_cli(capsys, "verify", "--server", url, "--key", signer.verifier_key, "--state", str(state))
    assert code == 1
    assert "another root at the saved size 4" in err and "consistency proof" in err
    assert json.loads(state.read_text())["checkpoint"] == forked.decode()  # not overwritten


def test_progress_bar_draws_on_a_terminal_only():
    stream = io.StringIO()
    bar = ProgressBar(stream, enabled=True)
    for done in (0, 2560, 12847):
        bar(done, 12847)
    assert "100% 12,847/12,847 entries" in stream.getvalue()
    quiet = io.StringIO()
    ProgressBar(quiet)(5, 10)  # StringIO is not a terminal
    assert quiet.getvalue() == ""


def _start_serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("listening on ") or time.monotonic() > deadline:
            break
    return proc, lines


def test_serve_as_a_process(tmp_path):
    data_dir = tmp_path / "data"
    proc, lines = _start_serve(data_dir, "--origin", "serve.example/log")
    try:
        output = "".join(lines)
        assert "created a new signing key for origin serve.example/log" in output, output
        assert re.search(r"verifier key: serve\.example/log\+[0-9a-f]{8}\+", output)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output).group(1)
        import urllib.request
        with urllib.request.urlopen(url + "/healthz", timeout=10) as resp:
            assert json.loads(resp.read())["status"] == "ok"

        second = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--port", "0", "--data-dir", str(data_dir)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode != 0
        assert "sequencer" in second.stderr and "lock" in second.stderr, second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0

    again, lines = _start_serve(data_dir)  # the origin now comes from the key
    try:
        assert "created" not in "".join(lines) and "origin: serve.example/log" in "".join(lines)
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0


@pytest.mark.parametrize("argv", [["serve", "--port", "-1"], ["proof", "--server", "x"], ["nope"]])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2


# --- the environment is read when a command runs ---------------------------------------------------------------


def test_a_bad_variable_does_not_break_help_or_other_commands(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AUDITLOG_READ_WORKERS", "abc")
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0 and "serve" in capsys.readouterr().out
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--help"])
    assert raised.value.code == 0 and "--read-workers" in capsys.readouterr().out
    code, _, stderr = run_cli(capsys, "keygen", "--origin", "example.com/log", "--out", str(tmp_path / "log.key"))
    assert code == 0, stderr
    code, _, stderr = run_cli(capsys, "db", "upgrade", "--data-dir", str(tmp_path / "db"))
    assert code == 0, stderr


@pytest.mark.parametrize("name, value, what", [
    ("AUDITLOG_READ_WORKERS", "abc", "auto or a non-negative integer"),
    ("AUDITLOG_READ_WORKERS", "-1", "auto or a non-negative integer"),
    ("AUDITLOG_VERIFY_PROCESSES", "two", "a non-negative integer"),
    ("AUDITLOG_WITNESS_INTERVAL", "0", "a positive number of seconds"),
    ("AUDITLOG_WITNESS_K", "0", "a positive integer"),
    ("AUDITLOG_TIMESTAMP_INTERVAL", "soon", "a positive number of seconds"),
])
def test_serve_names_a_bad_variable_in_one_line(monkeypatch, tmp_path, capsys, name, value, what):
    monkeypatch.setenv(name, value)
    code, stdout, stderr = run_cli(capsys, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and stdout == ""
    assert stderr == f"auditlog serve: {name} must be {what}, not {value!r}\n"
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_a_flag_beats_a_bad_variable(monkeypatch):
    """Reading a variable only when its flag is absent: `--read-workers 0` overrides AUDITLOG_READ_WORKERS."""
    from api.cli.options import flag_or_env, non_negative

    monkeypatch.setenv("AUDITLOG_READ_WORKERS", "abc")
    assert flag_or_env(0, "AUDITLOG_READ_WORKERS", non_negative, 5) == 0
    monkeypatch.setenv("AUDITLOG_READ_WORKERS", "")  # empty counts as unset
    assert flag_or_env(None, "AUDITLOG_READ_WORKERS", non_negative, 5) == 5
    monkeypatch.setenv("AUDITLOG_READ_WORKERS", "3")
    assert flag_or_env(None, "AUDITLOG_READ_WORKERS", non_negative, 5) == 3


def test_serve_with_a_bad_variable_as_a_process_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "AUDITLOG_READ_WORKERS": "abc"},
    )
    assert proc.returncode == 2
    assert proc.stderr == "auditlog serve: AUDITLOG_READ_WORKERS must be auto or a non-negative integer, not 'abc'\n"
    assert proc.stdout == ""


def test_the_serve_defaults_are_the_log_defaults():
    """One set of defaults (log/defaults.py): `auditlog serve` with no flags configures what LogConfig() does."""
    args = build_parser().parse_args(["serve"])
    config = LogConfig()
    assert args.batch_size == config.batch_size == defaults.BATCH_SIZE
    assert args.batch_max_age_ms / 1000 == config.batch_max_age == defaults.BATCH_MAX_AGE
    assert args.batch_linger_ms / 1000 == config.batch_linger == defaults.BATCH_LINGER
    assert (args.host, args.port) == (defaults.HOST, defaults.PORT)


def test_the_client_commands_import_without_the_server():
    """api/cli/client.py loads neither aiohttp's server, SQLAlchemy nor the Log: a client machine needs none."""
    code = ("import sys, api.cli.client; "
            "print(sorted(m for m in ('aiohttp.web', 'sqlalchemy', 'log.service', 'api.server') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- --read-workers auto: the default -------------------------------------------------------------------------------


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 1), (3, 2), (defaults.MAX_AUTO_READ_WORKERS + 1,
                                                                     defaults.MAX_AUTO_READ_WORKERS), (64, 4)])
def test_auto_read_workers_is_one_per_core_beyond_the_first_capped(cores, workers):
    assert defaults.MAX_AUTO_READ_WORKERS == 4
    assert defaults.auto_read_workers(cores) == workers


def test_usable_cores_are_the_affinity_not_the_machine(monkeypatch):
    """A container or taskset limits the cores a process may use; the machine may have many more."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert defaults.usable_cores() == 1 and defaults.auto_read_workers() == 0
    monkeypatch.delattr(os, "sched_getaffinity")  # where the OS has no affinity: every core
    assert defaults.usable_cores() == 64 and defaults.auto_read_workers() == defaults.MAX_AUTO_READ_WORKERS


def test_read_workers_default_to_auto_and_take_auto_or_a_count(monkeypatch):
    from api.cli.options import AUTO, count_or_auto, flag_or_env
    from api.cli.server import _read_workers

    monkeypatch.delenv("AUDITLOG_READ_WORKERS", raising=False)
    args = build_parser().parse_args(["serve"])
    assert args.read_workers is None and defaults.READ_WORKERS == AUTO
    assert flag_or_env(args.read_workers, "AUDITLOG_READ_WORKERS", count_or_auto, defaults.READ_WORKERS) == AUTO
    assert build_parser().parse_args(["serve", "--read-workers", "auto"]).read_workers == AUTO
    assert build_parser().parse_args(["serve", "--read-workers", "0"]).read_workers == 0
    assert build_parser().parse_args(["serve", "--read-workers", "3"]).read_workers == 3
    monkeypatch.setenv("AUDITLOG_READ_WORKERS", "auto")
    assert flag_or_env(None, "AUDITLOG_READ_WORKERS", count_or_auto, 0) == AUTO
    # What the startup line says: the count auto chose and why; nothing for a count the operator gave.
    monkeypatch.setattr(defaults, "usable_cores", lambda: 2)
    assert _read_workers(AUTO) == (1, "auto: 2 usable cores, one per core beyond the first, at most 4")
    monkeypatch.setattr(defaults, "usable_cores", lambda: 1)
    assert _read_workers(AUTO) == (0, "auto: 1 usable core")
    assert _read_workers(2) == (2, "")


@pytest.mark.parametrize("value", ["many", "-1", "1.5", "", "autox"])
def test_a_bad_read_workers_value_is_one_usage_line(value, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--read-workers", value])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (f"auditlog serve: argument --read-workers: {value!r} is neither auto nor a "
                                       "non-negative decimal integer (see auditlog serve --help)\n")


def test_serve_help_says_what_auto_means(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--read-workers auto|N" in text
    assert "auto: one per usable core beyond the first, at most 4, none on one core" in text
    assert "default auto" in text
