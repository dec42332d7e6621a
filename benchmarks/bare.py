"""A bare aiohttp GET handler in a process of its own: the yardstick the proof figures are judged against.

    python -m benchmarks.bare --port 0 --hashes 20

Every GET, whatever its path, is answered 200 with one fixed body shaped and sized like an inclusion proof of
`--hashes` hashes (the JSON the log's handler writes), built once at startup: no routing beyond aiohttp's own, no
middleware, no access log, nothing read. What is left is aiohttp's per-request cost on one core, which a server
process cannot go below; the log's proof figure divided by this one says how close it comes, on the same host, with
the same load generator, in the same run. Prints "listening on http://HOST:PORT" when ready; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal

from aiohttp import web


def proof_shaped_body(hashes: int) -> bytes:
    """An answer of GET /api/v1/proof/inclusion's shape with `hashes` 32-byte hashes (api/server/routes.py)."""
    listed = b",".join(b'"%s"' % base64.b64encode(bytes([i]) * 32) for i in range(hashes))
    return b'{"index":%d,"tree_size":%d,"hashes":[%s]}' % (123_456, 1 << hashes, listed)


async def serve(host: str, port: int, hashes: int) -> None:
    body = proof_shaped_body(hashes)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hashes", type=int, default=20, help="hashes in the proof-shaped answer")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.hashes))


if __name__ == "__main__":
    main()
