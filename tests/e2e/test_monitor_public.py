"""`auditlog verify` on a log with access control, as a monitor without a credential for entry contents would run it
(issue 18): it verifies what is public (the checkpoint, the hash tiles, the root they give) and says that the entry
contents were not re-hashed; with a credential it re-hashes them too. A real `auditlog serve` process; a proxy that
changes one byte of a hash tile shows that the public check still catches a lying log."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from tests.processes import REPO, ServerProcess


def verify(*argv: str, cwd) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITLOG_")}
    proc = subprocess.run([sys.executable, "-m", "api.cli", "verify", "--quiet", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


class TileFlipper(http.server.ThreadingHTTPServer):
    """Passes requests on to the log, changing the first byte of the level-0 hash tile tile/0/000."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _Flip)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Flip(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.server.upstream + self.path, headers=headers),
                                        timeout=60) as answer:
                status, content_type, data = answer.status, answer.headers.get("Content-Type"), answer.read()
        except urllib.error.HTTPError as exc:
            status, content_type, data = exc.code, exc.headers.get("Content-Type"), exc.read()
        if self.path.startswith("/tile/0/000") and status == 200:
            data = bytes([data[0] ^ 1]) + data[1:]
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    root = tmp_path_factory.mktemp("public-monitor")
    server = ServerProcess(root / "data").start()
    token = (root / "data" / "admin.token").read_text().strip()
    lines = root / "entries.txt"
    lines.write_text("".join(f"entry {n}\n" for n in range(300)))
    add = subprocess.run([sys.executable, "-m", "api.cli", "add", "--lines", str(lines), "--server", server.url,
                          f"--token={token}", "--log-key", str(root / "data" / "log.vkey")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert add.returncode == 0, add.stderr
    outside = root / "elsewhere"  # no data dir here: no credential is found by default
    outside.mkdir()
    yield server, token, str(root / "data" / "log.vkey"), outside
    server.stop()


def test_without_a_credential_the_public_tree_is_verified_and_the_contents_are_said_unchecked(log):
    server, token, vkey, outside = log
    code, out, err = verify("--server", server.url, "--log-key", vkey, cwd=outside)
    assert code == 0, out + err
    assert "Verified 300 leaf hashes · integrity VALID" in out and "entry contents NOT checked" in out, out

    code, out, err = verify("--server", server.url, "--log-key", vkey, "--json", cwd=outside)
    report = json.loads(out)
    assert code == 0 and report["contents_checked"] is False and report["status"] == "valid", out


def test_with_a_credential_the_contents_are_rehashed(log):
    server, token, vkey, outside = log
    code, out, err = verify("--server", server.url, "--log-key", vkey, f"--token={token}", cwd=outside)
    assert code == 0, out + err
    assert "Verified 300 entries · integrity VALID" in out and "NOT checked" not in out, out


def test_without_a_credential_a_changed_hash_tile_is_still_caught(log):
    server, token, vkey, outside = log
    proxy = TileFlipper(server.url)
    try:
        code, out, err = verify("--server", f"http://127.0.0.1:{proxy.server_address[1]}", "--log-key", vkey,
                                cwd=outside)
    finally:
        proxy.shutdown()
    assert code == 1, out + err
    assert "integrity INVALID" in out and "does not match the checkpoint root" in err, out + err
