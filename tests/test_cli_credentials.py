"""Where the client commands and the SDK take their bearer credential from (api/cli/inputs.py `token`): --token,
$AUDITLOG_TOKEN, $AUDITLOG_ADMIN_TOKEN, or the data dir's admin.token, that last only for a server on this machine.
A recording HTTP server stands in for the log: what matters here is the header that reaches it."""

from __future__ import annotations

import argparse
import http.server
import subprocess
import sys
import threading

import pytest

from tests.processes import REPO


class Recording(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"type": "urn:auditlog:problem:unavailable", "detail": "not now"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def recording():
    server = Recording()
    yield server
    server.shutdown()


def cli(*argv: str, cwd, env: dict | None = None) -> int:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITLOG_")}
    proc = subprocess.run([sys.executable, "-m", "api.cli", *argv], cwd=cwd, env={**base, **(env or {}),
                          "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    return proc.returncode


def _vkey() -> str:
    from log.note_keys import generate_signer_key

    return generate_signer_key("example.com/log")[1]


@pytest.mark.parametrize("how", ["flag", "env", "admin env", "data dir"])
def test_each_source_of_the_credential_reaches_the_log(recording, tmp_path, how):
    argv = ["proof", "--index", "0", "--server", recording.url, "--log-key", _vkey()]
    env = {}
    if how == "flag":
        argv += ["--token", "from-the-flag"]
    elif how == "env":
        env["AUDITLOG_TOKEN"] = "from-the-flag"
    elif how == "admin env":
        env["AUDITLOG_ADMIN_TOKEN"] = "from-the-flag"
    else:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "admin.token").write_text("from-the-flag\n")
    assert cli(*argv, cwd=tmp_path, env=env) == 3  # the stand-in answers 503
    assert recording.seen and all(auth == "Bearer from-the-flag" for _, auth in recording.seen), recording.seen


def test_no_credential_sends_no_header(recording, tmp_path):
    assert cli("proof", "--index", "0", "--server", recording.url, "--log-key", _vkey(), cwd=tmp_path) == 3
    assert recording.seen and all(auth is None for _, auth in recording.seen)


def test_the_local_admin_token_is_never_sent_to_another_host(tmp_path, monkeypatch):
    from api.cli import inputs

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin.token").write_text("local-secret\n")
    monkeypatch.chdir(tmp_path)
    for name in ("AUDITLOG_TOKEN", "AUDITLOG_ADMIN_TOKEN", "AUDITLOG_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for server, expected in (("http://127.0.0.1:8080", "local-secret"), ("http://localhost:8080", "local-secret"),
                             ("http://[::1]:8080", "local-secret"), ("https://log.example.com", None),
                             ("http://10.0.0.7:8080", None)):
        assert inputs.token(argparse.Namespace(server=server, token=None)) == expected, server


def test_the_sdk_sends_its_credential_with_blob_uploads(recording):
    from api.client.recorder import Recorder, RecorderError

    recorder = Recorder(recording.url, producer="p", signing_key=b"\x01" * 32, log_key=_vkey(), tenant="t",
                        actor={"type": "agent", "id": "a"}, retries=0, token="writer-secret")
    with pytest.raises(RecorderError):
        recorder.put_blob(b"payload")
    assert recording.seen == [(recording.seen[0][0], "Bearer writer-secret")]
    assert recording.seen[0][0].startswith("/api/v1/blobs/")
