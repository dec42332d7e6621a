"""Signed envelopes checked in processes of their own, so that a server's intake work does not share its GIL.

Why: the checks of an envelope (JSON, schema, RFC 8785 bytes, hashes) are pure Python, ~60-120 us each, and its
Ed25519 signature another ~65-160 us. On the event loop they hold the GIL the sequencer's writer thread needs; on
threads, libsodium runs without the GIL but must take it back after every signature, and under load that wait
dominated (a 16-signature chunk took 6.6 ms of wall time for 1.7 ms of CPU; benchmarks/PROFILES.md). A child
process does a whole request's checks and signatures without stopping; the server pays one pipe write, one read
and unpickling its answer (~4 us per envelope), less than verifying even one signature itself.

`VerifierPool(n)` runs `n` children (`python -m log.audit.verifier`, ~36 MB each), started in the background on
first use (a server that takes no signed events never starts them) and after a failure, and used in turn:

* `check(body, now)`: `intake.check_body` of a submission in the child, plus each checked envelope's signature
  with the key its key_id names, if the child has been taught that key (`learn_keys`; a key id is a hash of its
  key, so the mapping never goes stale; whether the key may sign is still the registry's call, in the server).
* `verify(jobs)`: one verdict per (public key, message, signature).

Both raise `VerifierUnavailable` when no child can answer (none running, it died, or it is stuck: no reply within
REPLY_TIMEOUT), and the caller does the work itself. Nothing is taken as checked or verified without a complete
answer from a child for it.

Wire format on the child's stdin and stdout (little-endian u32 lengths):
    request:  kind (1 byte), length, payload
      b"V" verify:  count, then per job: 32-byte key, 64-byte signature, length, message;  reply: count bytes, 1/0
      b"C" check:   u64 clock in Unix ms, then the body;  reply: a pickle (see `_check_in_child`)
      b"K" keys:    32-byte public keys to use from now on;  no reply
    reply:    length, payload (in request order)
The child writes READY once at start, so a broken interpreter or import is found before any request waits on it.
The server trusts what its own child pickles; the child never unpickles anything.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from log.audit.intake import CheckedEnvelope, check_body
from log.errors import LogError

logger = logging.getLogger(__name__)

READY = b"auditlog-verifier/2\n"
VERIFY, CHECK, KEYS = b"V", b"C", b"K"
_REQUEST = struct.Struct("<cI")
_LENGTH = struct.Struct("<I")
_CLOCK = struct.Struct("<Q")
_JOB = struct.Struct("<32s64sI")
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
RESTART_DELAY = 1.0  # seconds between a child's failure and the next start, so a broken setup does not spin
START_TIMEOUT = 30.0
REPLY_TIMEOUT = 30.0  # a child that answers nothing for this long is stuck: it is killed and replaced
_KEY_CACHE = 65_536  # parsed public keys a child keeps


class VerifierUnavailable(Exception):
    """No verifier process could answer; do the work in this process instead."""


class Checked:
    """A child's answer to `check`: `intake.check_body`'s (single, items), and per item the public key whose valid
    signature the child saw, or None (a refused item, an unknown key id, or a signature that does not verify: the
    caller tells them apart)."""

    __slots__ = ("single", "items", "signed_with")

    def __init__(self, single: bool, items: list, signed_with: list[bytes | None]):
        self.single, self.items, self.signed_with = single, items, signed_with


def frame(kind: bytes, payload: bytes) -> bytes:
    return _REQUEST.pack(kind, len(payload)) + payload


def encode_jobs(jobs: Sequence[tuple[bytes, bytes, bytes]]) -> bytes:
    """A verify request's payload for (public key, message, signature) jobs. A key or signature of the wrong size
    is sent as zeros to keep one verdict per job; `VerifierPool.verify` refuses it whatever the verdict."""
    parts = [_LENGTH.pack(len(jobs))]
    for public_key, message, signature in jobs:
        if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
            public_key, signature = bytes(PUBLIC_KEY_SIZE), bytes(SIGNATURE_SIZE)
        parts.append(_JOB.pack(public_key, signature, len(message)))
        parts.append(message)
    return b"".join(parts)


def decode_jobs(payload: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """The jobs of a verify request's payload; raises ValueError unless it holds exactly its count of jobs."""
    (count,) = _LENGTH.unpack_from(payload)
    jobs = []
    offset = _LENGTH.size
    for _ in range(count):
        if offset + _JOB.size > len(payload):
            raise ValueError("verify request ends inside a job")
        public_key, signature, length = _JOB.unpack_from(payload, offset)
        offset += _JOB.size
        message = payload[offset:offset + length]
        if len(message) != length:
            raise ValueError("verify request ends inside a message")
        offset += length
        jobs.append((public_key, message, signature))
    if offset != len(payload):
        raise ValueError("verify request has bytes after its last job")
    return jobs


class _Child:
    """One child process and the futures waiting for its replies, oldest first (it answers in order)."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.has_waiting = asyncio.Event()
        self.failed = False
        self.closing = False  # a stop we asked for is not a failure worth a warning
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._read_replies()), loop.create_task(self._watch_exit())]

    async def ask(self, request: bytes) -> bytes:
        """Send one request frame and wait for its reply's payload."""
        if self.failed:
            raise VerifierUnavailable("the verifier process has failed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(future)
        self.has_waiting.set()
        # A timer, not wait_for: no extra task per request. Stuck, the child fails every request it holds.
        timer = loop.call_later(REPLY_TIMEOUT, self._stuck)
        try:
            self.send(request)
            try:
                await self.process.stdin.drain()
            except (ConnectionError, OSError) as exc:
                self.fail(exc)
            return await future
        finally:
            timer.cancel()

    def _stuck(self) -> None:
        self.fail(TimeoutError(f"no answer within {REPLY_TIMEOUT:g} s"))

    def send(self, request: bytes) -> None:
        try:
            self.process.stdin.write(request)
        except (ConnectionError, OSError, RuntimeError) as exc:
            self.fail(exc)

    async def _read_replies(self) -> None:
        stdout = self.process.stdout
        try:
            while True:
                await self.has_waiting.wait()
                (length,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                reply = await stdout.readexactly(length)
                future = self.waiting.popleft()
                if not self.waiting:
                    self.has_waiting.clear()
                if not future.done():
                    future.set_result(reply)
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
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(VerifierUnavailable(str(cause)))
        if self.process.returncode is None:
            self.process.kill()


class VerifierPool:
    """`processes` children, each used for whole requests in turn. `close()` when done."""

    def __init__(self, processes: int):
        self.processes = processes
        self._children: list[_Child | None] = [None] * processes
        self._starting: list[asyncio.Task | None] = [None] * processes
        self._failed_at = [float("-inf")] * processes
        self._next = 0
        self._closed = False
        self._keys: set[bytes] = set()
        self.verified = 0  # signatures answered by a child
        self.checked = 0  # envelopes checked by a child

    async def check(self, body: bytes, now: int) -> Checked:
        """`intake.check_body(body, now)` in a child, with the signatures it could verify. Raises what check_body
        raises for a body that is no submission at all, or VerifierUnavailable."""
        child = self._pick()
        answer = pickle.loads(await child.ask(frame(CHECK, _CLOCK.pack(now) + body)))
        if answer[0] == "refused":
            raise answer[1]
        if answer[0] != "checked":
            raise VerifierUnavailable(f"the verifier process could not check the body: {answer[1]}")
        checked = Checked(*answer[1:])
        if len(checked.signed_with) != len(checked.items):
            raise VerifierUnavailable("the verifier process answered the wrong number of verdicts")
        self.checked += len(checked.items)
        return checked

    async def verify(self, jobs: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """One verdict per (public key, message, signature)."""
        if not jobs:
            return []
        child = self._pick()
        verdicts = await child.ask(frame(VERIFY, encode_jobs(jobs)))
        if len(verdicts) != len(jobs):
            raise VerifierUnavailable("the verifier process answered the wrong number of verdicts")
        self.verified += len(verdicts)
        return [valid == 1 and len(public_key) == PUBLIC_KEY_SIZE and len(signature) == SIGNATURE_SIZE
                for valid, (public_key, _, signature) in zip(verdicts, jobs)]

    def learn_keys(self, public_keys: Iterable[bytes]) -> None:
        """Teach every child (and every child started later) these Ed25519 public keys."""
        new = [key for key in public_keys if len(key) == PUBLIC_KEY_SIZE and key not in self._keys]
        if not new:
            return
        self._keys.update(new)
        for child in self._children:
            if child is not None and not child.failed:
                child.send(frame(KEYS, b"".join(new)))

    def _pick(self) -> _Child:
        """A running child, in turn; starts (in the background) any that is missing. A child still starting is not
        waited for: the caller does this request's work itself meanwhile."""
        if self._closed:
            raise VerifierUnavailable("the verifier pool is closed")
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
        raise VerifierUnavailable("no verifier process is running")

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
            child = _Child(process)
            if self._keys:
                child.send(frame(KEYS, b"".join(self._keys)))
            self._children[slot] = child
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
        """Start every child now and wait until each has started or failed to (optional: use starts them)."""
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


class _Keys:
    """The child's Ed25519 keys: by key id (a hash of the key) for `check`, parsed once for both requests."""

    def __init__(self) -> None:
        from nacl.signing import VerifyKey

        self._parse = VerifyKey
        self._parsed: dict[bytes, object | None] = {}
        self.by_id: dict[str, list[bytes]] = {}

    def learn(self, payload: bytes) -> None:
        from log.audit.registry import key_id_for

        for start in range(0, len(payload) - PUBLIC_KEY_SIZE + 1, PUBLIC_KEY_SIZE):
            key = payload[start:start + PUBLIC_KEY_SIZE]
            known = self.by_id.setdefault(key_id_for(key), [])
            if key not in known:
                known.append(key)  # two keys with one 64-bit id: try both, say which verified

    def verifies(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        from nacl.exceptions import BadSignatureError

        key = self._parsed.get(public_key, False)
        if key is False:
            if len(self._parsed) >= _KEY_CACHE:
                self._parsed.clear()
            try:
                key = self._parse(public_key)
            except (ValueError, TypeError):
                key = None
            self._parsed[public_key] = key
        if key is None:
            return False
        try:
            key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


def _check_in_child(keys: _Keys, payload: bytes) -> bytes:
    """The pickled answer to a check request: ("checked", single, items, signed_with), ("refused", the LogError for
    a body that is no submission), or ("failed", text) for anything unexpected."""
    (now,) = _CLOCK.unpack_from(payload)
    try:
        single, items = check_body(payload[_CLOCK.size:], now)
        signed_with = []
        for item in items:
            found = None
            if isinstance(item, CheckedEnvelope):
                for key in keys.by_id.get(item.key_id, ()):
                    if keys.verifies(key, item.event_bytes, item.signature):
                        found = key
                        break
            signed_with.append(found)
        answer = ("checked", single, items, signed_with)
    except LogError as exc:
        answer = ("refused", exc)
    except Exception as exc:  # noqa: BLE001 - the server then checks the body itself and reports it there
        answer = ("failed", f"{type(exc).__name__}: {exc}")
    return pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)


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
    """The child's loop: answer each request on `stdin` on `stdout`, in order, until end of input."""
    keys = _Keys()
    stdout.write(READY)
    stdout.flush()
    while True:
        header = _read_exactly(stdin, _REQUEST.size)
        if header is None:
            return
        kind, size = _REQUEST.unpack(header)
        payload = _read_exactly(stdin, size) if size else b""
        if payload is None:
            raise EOFError("input ended inside a request")
        if kind == KEYS:
            keys.learn(payload)
            continue
        if kind == VERIFY:
            reply = bytes(keys.verifies(*job) for job in decode_jobs(payload))
        elif kind == CHECK:
            reply = _check_in_child(keys, payload)
        else:
            raise ValueError(f"unknown request kind {kind!r}")
        stdout.write(_LENGTH.pack(len(reply)) + reply)
        stdout.flush()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops us
    serve(sys.stdin.buffer, sys.stdout.buffer)
