"""Ed25519 signature checks in processes of their own, so that a server's signature work does not share its GIL.

Why: libsodium verifies without the GIL, but a thread must take the GIL back after every signature. In a server
whose event loop keeps the GIL busy that wait dominates: a 16-signature chunk took 6.6 ms of wall time for 1.7 ms
of CPU (benchmarks/PROFILES.md). A process verifies a whole request's signatures without stopping; the server pays
one pipe write and one read per request, which costs its event loop less than verifying even one signature.

`VerifierPool(n)` runs `n` child processes of `python -m log.audit.verifier`, started on first use and restarted
after a failure. `verify(jobs)` gives one bool per (public key, message, signature), in order, or raises
`VerifierUnavailable` when no child can answer; the caller then verifies in its own process. Nothing is ever taken
as verified without an answer for it: a child's reply is a list of verdicts, and anything short of a complete
reply fails the whole request.

Wire format on the child's stdin and stdout (little-endian):
    request:  u32 payload length, u32 count, then per job: 32-byte key, 64-byte signature, u32 length, message
    reply:    `count` bytes, 1 for a valid signature and 0 for anything else
The child writes READY once at start, so a broken interpreter or import is found before any request waits on it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

READY = b"auditlog-verifier/1\n"
_HEADER = struct.Struct("<II")
_JOB = struct.Struct("<32s64sI")
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
RESTART_DELAY = 1.0  # seconds between a child's failure and the next start, so a broken setup does not spin
START_TIMEOUT = 30.0
_KEY_CACHE = 4096  # parsed public keys kept by a child


class VerifierUnavailable(Exception):
    """No verifier process could answer; verify in this process instead."""


def encode_request(jobs: Sequence[tuple[bytes, bytes, bytes]]) -> bytes:
    """The request frame for (public key, message, signature) jobs. A key or signature of the wrong size is sent as
    zeros to keep one verdict per job; `VerifierPool.verify` refuses it whatever the verdict."""
    parts = []
    for public_key, message, signature in jobs:
        if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
            public_key, signature = bytes(PUBLIC_KEY_SIZE), bytes(SIGNATURE_SIZE)
        parts.append(_JOB.pack(public_key, signature, len(message)))
        parts.append(message)
    payload = b"".join(parts)
    return _HEADER.pack(len(payload), len(jobs)) + payload


def decode_request(payload: bytes, count: int) -> list[tuple[bytes, bytes, bytes]]:
    """The jobs of a request frame's payload; raises ValueError if the payload does not hold exactly `count`."""
    jobs = []
    offset = 0
    for _ in range(count):
        public_key, signature, length = _JOB.unpack_from(payload, offset)
        offset += _JOB.size
        message = payload[offset:offset + length]
        if len(message) != length:
            raise ValueError("request frame ends inside a message")
        offset += length
        jobs.append((public_key, message, signature))
    if offset != len(payload):
        raise ValueError("request frame has bytes after its last job")
    return jobs


class _Child:
    """One verifier process and the futures waiting for its replies, oldest first (it answers in order)."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()
        self.has_waiting = asyncio.Event()
        self.failed = False
        self.closing = False  # a stop we asked for is not a failure worth a warning
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._read_replies()), loop.create_task(self._watch_exit())]

    def expect(self, count: int, future: asyncio.Future) -> None:
        self.waiting.append((count, future))
        self.has_waiting.set()

    async def _read_replies(self) -> None:
        stdout = self.process.stdout
        try:
            while True:
                await self.has_waiting.wait()
                count, future = self.waiting[0]
                reply = await stdout.readexactly(count)
                self.waiting.popleft()
                if not self.waiting:
                    self.has_waiting.clear()
                if not future.done():
                    future.set_result([byte == 1 for byte in reply])
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self.fail(exc)

    async def _watch_exit(self) -> None:
        status = await self.process.wait()
        self.fail(ConnectionError(f"verifier process exited with status {status}"))

    def fail(self, cause: BaseException) -> None:
        if not self.failed and not self.closing:
            logger.warning("signature verifier process %s failed: %s", self.process.pid, cause)
        self.failed = True
        while self.waiting:
            _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(VerifierUnavailable(str(cause)))
        if self.process.returncode is None:
            self.process.kill()


class VerifierPool:
    """`processes` verifier children, each used for whole requests in turn. `close()` when done."""

    def __init__(self, processes: int):
        self.processes = processes
        self._children: list[_Child | None] = [None] * processes
        self._starting: list[asyncio.Task | None] = [None] * processes
        self._failed_at = [float("-inf")] * processes
        self._next = 0
        self._closed = False
        self.verified = 0  # signatures answered by a child

    async def verify(self, jobs: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """One verdict per (public key, message, signature); raises VerifierUnavailable when no child is running.
        A child still starting is not waited for: the caller verifies this request itself meanwhile."""
        if not jobs:
            return []
        child = self._pick()
        if child is None:
            raise VerifierUnavailable("no verifier process is running")
        future = asyncio.get_running_loop().create_future()
        child.expect(len(jobs), future)
        try:
            child.process.stdin.write(encode_request(jobs))
            await child.process.stdin.drain()
        except (ConnectionError, OSError) as exc:
            child.fail(exc)
        verdicts = await future
        if len(verdicts) != len(jobs):
            raise VerifierUnavailable("verifier answered the wrong number of verdicts")
        self.verified += len(verdicts)
        return [valid and len(public_key) == PUBLIC_KEY_SIZE and len(signature) == SIGNATURE_SIZE
                for valid, (public_key, _, signature) in zip(verdicts, jobs)]

    def _pick(self) -> _Child | None:
        """A running child, in turn; starts (in the background) any that is missing."""
        if self._closed:
            return None
        for _ in range(self.processes):
            slot = self._next
            self._next = (self._next + 1) % self.processes
            child = self._children[slot]
            if child is not None and child.failed:
                self._children[slot] = child = None
                self._failed_at[slot] = time.monotonic()
            if child is not None:
                return child
            self._start_later(slot)
        return None

    def _start_later(self, slot: int) -> None:
        if self._starting[slot] is not None or time.monotonic() - self._failed_at[slot] < RESTART_DELAY:
            return
        self._starting[slot] = asyncio.get_running_loop().create_task(self._start(slot))

    async def _start(self, slot: int) -> None:
        process = None
        try:
            process = await asyncio.create_subprocess_exec(
                *child_command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env())
            greeting = await asyncio.wait_for(process.stdout.readexactly(len(READY)), START_TIMEOUT)
            if greeting != READY:
                raise ConnectionError(f"unexpected greeting {greeting!r}")
            if self._closed:
                raise ConnectionError("pool closed while starting")
            self._children[slot] = _Child(process)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            if not self._closed:
                logger.warning("could not start a signature verifier process: %s", exc)
            self._failed_at[slot] = time.monotonic()
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        finally:
            self._starting[slot] = None

    async def start(self) -> None:
        """Start every child now and wait until each has started or failed to (optional: verify starts them)."""
        for slot in range(self.processes):
            if self._children[slot] is None:
                self._start_later(slot)
        await asyncio.gather(*(task for task in self._starting if task is not None))

    @property
    def running(self) -> int:
        return sum(1 for child in self._children if child is not None and not child.failed)

    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children if child is not None and not child.failed]

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(task for task in self._starting if task is not None), return_exceptions=True)
        for child in self._children:
            if child is None:
                continue
            child.closing = True
            if child.process.stdin is not None:
                child.process.stdin.close()  # the child exits at EOF once it has answered what it was sent
            try:
                await asyncio.wait_for(child.process.wait(), 5)
            except asyncio.TimeoutError:
                child.process.kill()
                await child.process.wait()
            child.fail(ConnectionError("verifier pool closed"))
            for task in child.tasks:
                task.cancel()
            await asyncio.gather(*child.tasks, return_exceptions=True)
        self._children = [None] * self.processes


def child_command() -> list[str]:
    # -I would drop PYTHONPATH; -s and -E are not used for the same reason: the child imports this package.
    return [sys.executable, "-m", "log.audit.verifier"]


def child_env() -> dict[str, str]:
    """The parent's environment, with the directory holding the `log` package first on the import path (the server
    may run from anywhere)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


# --- the child ---------------------------------------------------------------------------------------------------


def _read_exactly(stream, size: int) -> bytes | None:
    """`size` bytes, or None at end of input before the first byte; raises EOFError inside a frame."""
    data = stream.read(size)
    if not data:
        return None
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise EOFError("input ended inside a request")
        data += more
    return data


def serve(stdin, stdout) -> None:
    """The child's loop: answer each request frame on `stdin` with its verdicts on `stdout`, until end of input."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    keys: dict[bytes, VerifyKey | None] = {}

    def verdict(public_key: bytes, message: bytes, signature: bytes) -> int:
        key = keys.get(public_key, False)
        if key is False:
            if len(keys) >= _KEY_CACHE:
                keys.clear()
            try:
                key = VerifyKey(public_key)
            except (ValueError, TypeError):
                key = None
            keys[public_key] = key
        if key is None:
            return 0
        try:
            key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return 0
        return 1

    stdout.write(READY)
    stdout.flush()
    while True:
        header = _read_exactly(stdin, _HEADER.size)
        if header is None:
            return
        size, count = _HEADER.unpack(header)
        payload = _read_exactly(stdin, size) if size else b""
        if payload is None:
            raise EOFError("input ended inside a request")
        stdout.write(bytes(verdict(*job) for job in decode_request(payload, count)))
        stdout.flush()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops us
    serve(sys.stdin.buffer, sys.stdout.buffer)
