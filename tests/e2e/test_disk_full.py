"""A real `auditlog serve` process on SQLite whose storage fails under it, two ways, nothing injected in the server:

- disk full: a tmpfs of 8 MiB holds its data directory, and a file written until the kernel says ENOSPC takes the
  rest; SQLite answers "database or disk is full". Space comes back when the file is removed. Mounting needs
  privileges (CI runs as root): where the mount is refused this case is skipped.
- I/O error: the server's file size limit (RLIMIT_FSIZE, set with prlimit from outside) is lowered to just above
  its files' sizes, so a write that would grow one fails with EFBIG, which SQLite reports as SQLITE_IOERR_WRITE
  ("disk I/O error"). Raising the limit again ends it. Needs no privileges.

While storage fails: writes are 503 with Retry-After and the reason (never 500), refused at once; /readyz is 503
naming it; /healthz stays 200. Once it ends the log takes writes again by itself, and every acknowledged entry is
there, at its index, after a SIGKILL and restart too, and the monitor verifies the whole log.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import resource
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.processes import REPO, ServerProcess

TMPFS_SIZE = "8m"
ENTRY_SIZE = 16 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def _fill(path) -> int:
    """Write `path` until the disk is full; the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (4096, 512, 1):  # the last pages too
            while True:
                try:
                    written += f.write(b"\0" * size)
                except OSError:
                    break
    return written


class DiskFull:
    reason = "disk full"

    def __init__(self, request):
        self.disk = request.getfixturevalue("small_disk")
        self.data_dir = self.disk / "data"
        self.filler = self.disk / "filler"

    def begin(self, server):
        assert _fill(self.filler) > 0

    def end(self, server):
        self.filler.unlink()


class FileSizeLimit:
    reason = "disk I/O error"

    def __init__(self, request):
        self.data_dir = request.getfixturevalue("tmp_path") / "data"

    def begin(self, server):
        largest = max(path.stat().st_size for path in self.data_dir.iterdir() if path.is_file())
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (largest + (256 << 10), resource.RLIM_INFINITY))

    def end(self, server):
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


@pytest.mark.parametrize("fault_kind", [DiskFull, FileSizeLimit], ids=["tmpfs-enospc", "fsize-eio"])
def test_failing_storage_is_503_with_the_reason_and_the_log_recovers_by_itself_losing_nothing(request, fault_kind):
    fault = fault_kind(request)
    server = ServerProcess(fault.data_dir, extra_args=["--batch-max-age-ms", "2"]).start()
    acknowledged: dict[int, bytes] = {}
    reason = fault.reason

    async def post(session, entry: bytes):
        async with session.post(f"{server.url}/api/v1/entries", data=entry, headers=OCTET) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200:
                acknowledged[body["index"]] = entry
            return resp.status, resp.headers, body

    async def scenario():
        async with aiohttp.ClientSession(headers=server.admin) as session:
            for i in range(20):
                status, _, body = await post(session, b"before %d " % i + os.urandom(ENTRY_SIZE))
                assert status == 200, body
            fault.begin(server)

            # Writes until SQLite meets the fault (the WAL may still have room for a few).
            refused = None
            for i in range(400):
                status, headers, body = await post(session, b"while full %d " % i + os.urandom(ENTRY_SIZE))
                assert status in (200, 503), body  # never 500
                if status == 503:
                    refused = (headers, body)
                    break
            assert refused is not None, "the log never noticed"
            headers, body = refused
            assert headers["Retry-After"] == "1"
            assert body["type"] == "urn:auditlog:problem:storage-unavailable" and body["reason"] == reason

            started = time.monotonic()
            status, headers, body = await post(session, b"refused at once")
            assert status == 503 and body["reason"] == reason and "Retry-After" in headers
            assert time.monotonic() - started < 0.5
            async with session.get(f"{server.url}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["reason"] == reason
            async with session.get(f"{server.url}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with session.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
                assert "auditlog_ready 0\n" in text and f'auditlog_write_unavailable{{reason="{reason}"}} 1' in text

            fault.end(server)  # storage is back: writes are acknowledged again within seconds, as the SDK retries
            deadline = time.monotonic() + 10
            while True:
                status, _, body = await post(session, b"after")
                assert status in (200, 503), body
                if status == 200:
                    break
                assert time.monotonic() < deadline, "the log did not take writes again once space was back"
                await asyncio.sleep(0.2)
            async with session.get(f"{server.url}/readyz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ready"
            for i in range(5):
                status, _, body = await post(session, b"after %d" % i)
                assert status == 200, body

    def check_everything_acknowledged():
        async def read():
            async with aiohttp.ClientSession(headers=server.admin) as session:
                async with session.get(f"{server.url}/api/v1/log") as resp:
                    info = await resp.json()
                for index, entry in acknowledged.items():
                    async with session.get(f"{server.url}/api/v1/entries/{index}") as resp:
                        assert resp.status == 200
                        assert base64.b64decode((await resp.json())["data"]) == entry, index
                return info

        info = asyncio.run(read())
        assert info["tree_size"] == len(acknowledged)  # nothing refused was stored: no gaps, no extras
        command = [sys.executable, "-m", "api.cli", "verify", "--server", server.url, "--key", info["verifier_key"],
                   "--state", str(fault.data_dir.parent / "monitor.json"), f"--token={server.admin_token}"]
        verified = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout + verified.stderr

    try:
        asyncio.run(scenario())
        check_everything_acknowledged()
        server.kill()
        server.start()
        check_everything_acknowledged()
    finally:
        server.kill()
