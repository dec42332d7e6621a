"""The HTTP load generator, in its own process so it never shares a GIL with the server.

    python -m benchmarks.loadgen --url http://127.0.0.1:8080 --kind single --concurrency 64 --seconds 10

Several --url spread the workers over several servers (of one log), one fixed server per worker.

Kinds:
  single  POST /api/v1/entries, one random entry as the raw octet-stream body per request
  batch   POST /api/v1/entries, {"entries": [base64, ...]} with --batch entries per request
  get     GET the paths listed (JSON array) in --paths-file, round robin
  events  POST /api/v1/events with the JSON bodies listed (JSON array) in --bodies-file, round robin
  post    POST --path with the JSON bodies listed (JSON array) in --bodies-file, round robin, with --token (the
          token vault's routes)

--token (env AUDITLOG_TOKEN) is sent as a bearer credential with every request but signed events (which their
signature authenticates). Each of --concurrency workers sends its next request as soon as the previous one is answered (closed loop, one
keep-alive connection each). The default client (--client raw) is a minimal HTTP/1.1 client on asyncio protocols:
requests are pre-encoded bytes, answers are read by Content-Length; it costs about a third of the CPU per request
of aiohttp's client (--client aiohttp), which at 4,000-5,000 requests/s took most of the second core from the
server it was measuring. With --seconds the run lasts that long after --warmup seconds whose requests are not
counted; with --requests it stops after that many requests. Prints one JSON object: counts, statuses, latency
percentiles (ms, request sent to full response read), the indices acknowledged (count, distinct, min, max), and
the CPU seconds this process used, so a reader can tell whether the load generator was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import resource
import sys
import time
import urllib.parse


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


DESCRIPTION = {
    "raw": "benchmarks/loadgen.py (raw HTTP/1.1 client on asyncio, own process, closed loop, keep-alive)",
    "aiohttp": "benchmarks/loadgen.py (aiohttp client, own process, closed loop, keep-alive)",
}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; answers must carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            try:
                answer = self._answer()
            except ValueError as exc:
                self._waiter.set_exception(exc)
                return
            if answer is not None:
                self._waiter.set_result(answer)

    def connection_lost(self, exc) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc!r}"))

    def _answer(self) -> tuple[int, bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if not head.startswith(b"http/1.1 ") or at < 0:
            raise ValueError(f"not an HTTP/1.1 answer with Content-Length: {head[:200]!r}")
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:line_end if line_end >= 0 else len(head)])
        if len(self._buffer) < end + 4 + length:
            return None
        body = bytes(self._buffer[end + 4:end + 4 + length])
        del self._buffer[:end + 4 + length]
        return int(head[9:12]), body

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter


def _raw_request(method: str, target: str, host: str, body: bytes | None, headers: dict) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _indices_of(body: dict) -> list[int]:
    """Entry indices in an answer to POST /api/v1/entries or /api/v1/events, whichever shape it has."""
    if "entries" in body and isinstance(body["entries"], list):
        return [item["index"] for item in body["entries"] if isinstance(item, dict) and "index" in item]
    if "results" in body and isinstance(body["results"], list):  # POST /api/v1/events with {"events": [...]}
        return [item["index"] for item in body["results"] if isinstance(item, dict) and "index" in item]
    if "index" in body:
        return [body["index"]]
    return []


async def run(args) -> dict:
    import aiohttp

    urls = [url.rstrip("/") for url in args.url]
    # Every request carries the credential given, public reads too: the server checks it on each (issue 18).
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    if args.kind == "single":
        def make_request():
            return "POST", "/api/v1/entries", os.urandom(args.entry_size), \
                {"Content-Type": "application/octet-stream", **auth}
    elif args.kind == "batch":
        def make_request():
            body = {"entries": [base64.b64encode(os.urandom(args.entry_size)).decode()
                                for _ in range(args.batch)]}
            return "POST", "/api/v1/entries", json.dumps(body).encode(), {"Content-Type": "application/json",
                                                                          **auth}
    elif args.kind == "get":
        with open(args.paths_file) as f:
            paths = itertools.cycle(json.load(f))

        def make_request():
            return "GET", next(paths), None, auth
    elif args.kind == "events":
        with open(args.bodies_file) as f:
            bodies = itertools.cycle([json.dumps(b).encode() for b in json.load(f)])

        def make_request():
            return "POST", "/api/v1/events", next(bodies), {"Content-Type": "application/json"}  # signed
    elif args.kind == "post":
        with open(args.bodies_file) as f:
            bodies = itertools.cycle([json.dumps(b).encode() for b in json.load(f)])

        def make_request():
            return "POST", args.path, next(bodies), {"Content-Type": "application/json", **auth}
    else:
        raise SystemExit(f"unknown kind {args.kind!r}")

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    indices: list[int] = []
    entries_done = 0
    counting = args.seconds is None
    stop = False
    sent = 0
    per_request = args.batch if args.kind == "batch" else 1

    opened: list[_Connection] = []

    async def raw_sender(url: str):
        parsed = urllib.parse.urlsplit(url)
        host, port = parsed.hostname, parsed.port or 80
        connection: _Connection | None = None

        async def send(method, path, body, headers):
            nonlocal connection
            if connection is None or connection.transport is None or connection.transport.is_closing():
                _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
                opened.append(connection)
            try:
                return await connection.request(_raw_request(method, path or "/", parsed.netloc, body, headers))
            except BaseException:
                connection.transport.close()
                connection = None
                raise

        return send

    async def aiohttp_sender(url: str):
        async def send(method, path, body, headers):
            async with session.request(method, url + path, data=body, headers=headers) as response:
                return response.status, await response.read()

        return send

    session = None
    if args.client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))
    try:
        async def worker(url: str):
            nonlocal entries_done, sent
            send = await (aiohttp_sender(url) if session is not None else raw_sender(url))
            while not stop:
                if args.requests is not None:
                    if sent >= args.requests:
                        return
                    sent += 1
                method, target, body, headers = make_request()
                started = time.perf_counter()
                try:
                    status, payload = await send(method, target, body, headers)
                except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                    if counting and len(errors) < 5:
                        errors.append(repr(exc))
                    status = -1
                    payload = b""
                elapsed = time.perf_counter() - started
                if not counting:
                    continue
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(elapsed)
                if 200 <= status < 300:
                    if method == "POST":
                        got = _indices_of(json.loads(payload))
                        indices.extend(got)
                        entries_done += len(got)
                elif len(errors) < 5:
                    errors.append(f"{status}: {payload[:300]!r}")

        tasks = [asyncio.create_task(worker(urls[number % len(urls)])) for number in range(args.concurrency)]
        if args.seconds is not None:
            await asyncio.sleep(args.warmup)
            counting = True
        cpu_start, wall_start, epoch_start = _cpu_seconds(), time.perf_counter(), time.time()
        if args.seconds is not None:
            await asyncio.sleep(args.seconds)
            stop = True
            wall = time.perf_counter() - wall_start
            cpu = _cpu_seconds() - cpu_start
            await asyncio.gather(*tasks)  # in-flight requests finish but are not counted beyond the window
        else:
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - wall_start
            cpu = _cpu_seconds() - cpu_start
    finally:
        if session is not None:
            await session.close()
        for connection in opened:
            if connection.transport is not None:
                connection.transport.close()

    ordered = sorted(latencies)
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {
        "kind": args.kind,
        "urls": len(urls),
        "client": DESCRIPTION[args.client],
        "concurrency": args.concurrency,
        "seconds": wall,
        "requests": len(latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "requests_per_second": len(latencies) / wall if wall else None,
        "entries": entries_done if args.kind != "get" else None,
        "entries_per_second": entries_done / wall if wall and args.kind != "get" else None,
        "entries_per_request": per_request,
        "latency_ms": {name: (None if v is None else v * 1000) for name, v in (
            ("p50", _percentile(ordered, 0.50)), ("p90", _percentile(ordered, 0.90)),
            ("p99", _percentile(ordered, 0.99)), ("max", ordered[-1] if ordered else None),
        )},
        "indices": {"count": len(indices), "distinct": len(set(indices)),
                    "min": min(indices) if indices else None, "max": max(indices) if indices else None},
        "window_epoch": [epoch_start, epoch_start + wall],  # the measured window, for server-side sampling
        "loadgen_cpu_seconds": cpu,
        "loadgen_cpu_utilisation": cpu / wall if wall else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, action="append",
                        help="a server's base URL; repeat it to spread the workers over several (worker n sends to "
                             "URL n mod the number given)")
    parser.add_argument("--kind", required=True, choices=["single", "batch", "get", "events", "post"])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--entry-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--paths-file")
    parser.add_argument("--bodies-file")
    parser.add_argument("--path", help="the route of --kind post")
    parser.add_argument("--client", choices=sorted(DESCRIPTION), default="raw")
    parser.add_argument("--token", default=os.environ.get("AUDITLOG_TOKEN"),
                        help="a bearer credential sent with every request (env AUDITLOG_TOKEN)")
    args = parser.parse_args(argv)
    if (args.seconds is None) == (args.requests is None):
        parser.error("give exactly one of --seconds and --requests")
    json.dump(asyncio.run(run(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
