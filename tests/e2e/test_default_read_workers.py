"""`auditlog serve` as the README runs it, with no `--read-workers`: the default, `auto`, end to end.

1. on this machine's cores, auto starts one read worker per usable core beyond the first (log/defaults.py) and says
   so on its startup line; proofs and tiles are answered by a worker: with the writer paused (SIGSTOP), fresh
   connections still get verifiable proofs and tiles, and only a worker can have answered them;
2. on one core (taskset), auto starts none: one process serves everything, and says so;
3. a server with read workers binds its port with SO_REUSEPORT, yet refuses a port another server already holds
   (exit 2, one line) instead of sharing it: two logs must never answer on one port.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from log import defaults
from log.checkpoint import open_checkpoint
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_inclusion
from log.tiles import tiles_for_size
from tests.credentials import ADMIN
from tests.processes import ServerProcess, child_processes
from tests.reference_tree import mth

pytestmark = pytest.mark.usefixtures("operator_token")

ENTRIES = [f"default read workers {i}".encode() for i in range(300)]


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    """(status, body) over a fresh connection (urllib never reuses one)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=ADMIN), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: bytes, content_type: str = "application/octet-stream") -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **ADMIN})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _answered_while_paused(urls: list[str]) -> dict[str, bytes]:
    """The bodies of those of `urls` answered 200 within 3 s, each fetched over its own fresh connection at once.
    The kernel hands each connection to one of the processes sharing the port; a paused one answers none."""
    def fetch(url):
        try:
            return url, _get(url, timeout=3)
        except OSError:  # the connection went to the paused writer: it times out
            return url, (None, b"")

    with ThreadPoolExecutor(len(urls)) as pool:
        return {url: body for url, (status, body) in pool.map(fetch, urls) if status == 200}


def test_serve_without_the_flag_reads_through_workers(tmp_path):
    expected = defaults.auto_read_workers()
    assert expected >= 1, "this test needs at least 2 usable cores, where auto starts a read worker"
    server = ServerProcess(tmp_path / "data", read_workers=None).start()  # no --read-workers: the default
    try:
        output = "".join(server.output)
        cores = defaults.usable_cores()
        assert f"read workers: {expected} (auto: {cores} usable cores, one per core beyond the first" in output
        workers = child_processes(server.pid, "serve-reads")
        assert len(workers) == expected

        batch = json.dumps({"entries": [base64.b64encode(entry).decode() for entry in ENTRIES]}).encode()
        receipt = _post(f"{server.url}/api/v1/entries", batch, "application/json")
        size = receipt["tree_size"]
        assert size == len(ENTRIES)
        info = json.loads(_get(f"{server.url}/api/v1/log")[1])
        checkpoint, _ = open_checkpoint(receipt["checkpoint"].encode(), parse_verifier_key(info["verifier_key"]),
                                        info["origin"])
        assert checkpoint.root_hash == mth(ENTRIES)

        proofs = [f"{server.url}/api/v1/proof/inclusion?index={i}&tree_size={size}" for i in range(0, size, 19)]
        tile_of = {f"{server.url}/{tile.path()}": tile for tile in tiles_for_size(size)}
        tiles = list(tile_of) * 4
        os.kill(server.pid, signal.SIGSTOP)  # from here on only a read worker can answer
        try:
            answered = _answered_while_paused(proofs + tiles)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        answered_proofs = [url for url in proofs if url in answered]
        answered_tiles = [url for url in tiles if url in answered]
        assert answered_proofs and answered_tiles, "no proof or tile was answered with the writer paused"
        for url in answered_proofs:
            index = int(url.split("index=")[1].split("&")[0])
            hashes = [base64.b64decode(h) for h in json.loads(answered[url])["hashes"]]
            verify_inclusion(hash_leaf(ENTRIES[index]), index, size, hashes, checkpoint.root_hash)
        for url in answered_tiles:  # a tile of level L holds the roots of consecutive subtrees of 256**L leaves
            tile, span = tile_of[url], 256 ** tile_of[url].level
            first = tile.index * 256
            assert answered[url] == b"".join(mth(ENTRIES[(first + k) * span:(first + k + 1) * span])
                                             for k in range(tile.width))

        server.stop()
        assert server.proc.returncode == 0
    finally:
        server.kill()


def test_auto_on_one_core_starts_no_worker(tmp_path):
    one_core = min(os.sched_getaffinity(0))
    server = ServerProcess(tmp_path / "data", read_workers=None, cpus={one_core}).start()
    try:
        assert "read workers: 0 (auto: 1 usable core; one process serves everything)" in "".join(server.output)
        assert child_processes(server.pid, "serve-reads") == []
        receipt = _post(f"{server.url}/api/v1/entries", b"one core")
        status, body = _get(f"{server.url}/api/v1/proof/inclusion?index=0&tree_size={receipt['tree_size']}")
        assert status == 200 and json.loads(body)["hashes"] == []
        server.stop()
        assert server.proc.returncode == 0
    finally:
        server.kill()


def test_a_server_with_workers_refuses_a_port_another_holds(tmp_path):
    first = ServerProcess(tmp_path / "first", read_workers="1").start()
    try:
        port = first.url.rsplit(":", 1)[1]
        second = ServerProcess(tmp_path / "second", read_workers="1", extra_args=["--port", port])
        code, output = second.run_to_exit()
        assert code == 2, output
        assert output.strip().splitlines()[-1] == (f"auditlog serve: cannot listen: port {port} at 127.0.0.1 is "
                                                   "already served by another process")
        assert len(child_processes(first.pid, "serve-reads")) == 1
        status, body = _get(f"{first.url}/api/v1/log")
        assert status == 200 and json.loads(body)["origin"] == first.origin
    finally:
        first.stop()
