"""`auditlog serve --publish-dir D --public` as a real process (issue 19, static publishing): D is served by
`python -m http.server`, a plain static file server in its own process, and `auditlog verify` (the monitor) against
that server says VALID, across two rounds with a saved state; a changed tile file in D makes it exit 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from log.note import parse_note
from tests.processes import REPO, ServerProcess

SERVING = re.compile(r"Serving HTTP on \S+ port (\d+)")


def run_cli(*argv: str, cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITLOG_")}
    proc = subprocess.run([sys.executable, "-m", "api.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def published_size(directory: Path) -> int:
    try:
        return int(parse_note((directory / "checkpoint").read_bytes()).text.split("\n")[1])
    except FileNotFoundError:
        return -1


def wait_for_size(directory: Path, size: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while published_size(directory) != size:
        assert time.monotonic() < deadline, f"{directory}/checkpoint has size {published_size(directory)}, not {size}"
        time.sleep(0.05)


def add_lines(server: ServerProcess, vkey: Path, first: int, count: int, root: Path) -> None:
    lines = root / f"entries-{first}.txt"
    lines.write_text("".join(f"entry {n}\n" for n in range(first, first + count)))
    code, _, err = run_cli("add", "--lines", str(lines), "--server", server.url, "--log-key", str(vkey), cwd=root)
    assert code == 0, err  # a public log: plain appends need no credential


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def test_the_publish_dir_served_by_a_static_server_verifies_and_a_changed_tile_fails(tmp_path):
    published = tmp_path / "published"
    outside = tmp_path / "monitor"  # no data dir here: the monitor holds no credential and finds no key by itself
    outside.mkdir()
    server = ServerProcess(tmp_path / "data", extra_args=["--publish-dir", str(published), "--public"]).start()
    static = None
    try:
        assert f"publishing: the checkpoint, hash tiles and entry bundles as files in {published}" in \
            "".join(server.output)
        vkey = tmp_path / "data" / "log.vkey"
        add_lines(server, vkey, 0, 300, outside)
        wait_for_size(published, 300)
        for path in ("checkpoint", "tile/0/000", "tile/0/001.p/44", "tile/entries/001.p/44", "tile/1/000.p/1"):
            assert (published / path).read_bytes() == get(f"{server.url}/{path}"), path

        static = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                   str(published), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=REPO)
        match = SERVING.search(static.stdout.readline())
        assert match, "python -m http.server did not say where it listens"
        static_url = f"http://127.0.0.1:{match.group(1)}"
        state = outside / "state.json"
        verify = ("verify", "--quiet", "--server", static_url, "--log-key", str(vkey), "--state", str(state))

        code, out, err = run_cli(*verify, cwd=outside)
        assert code == 0, out + err
        assert "Verified 300 entries · integrity VALID" in out, out

        add_lines(server, vkey, 300, 200, outside)
        wait_for_size(published, 500)
        code, out, err = run_cli(*verify, cwd=outside)
        assert code == 0, out + err
        assert "Verified 500 entries · integrity VALID" in out, out
        assert "consistent with the saved checkpoint of size 300: yes" in out, out

        tile = published / "tile" / "0" / "000"
        data = tile.read_bytes()
        tile.write_bytes(bytes([data[0] ^ 1]) + data[1:])
        code, out, err = run_cli(*verify, cwd=outside)
        assert code == 1, out + err
        assert "integrity INVALID" in out and "does not match" in err, out + err
    finally:
        if static is not None:
            static.kill()
            static.wait(10)
        server.stop()
