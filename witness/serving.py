"""Running one of the witness-side HTTP services (the witness, the TSA) as a process until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable

from aiohttp import HttpVersion11, web
from aiohttp.web_urldispatcher import _default_expect_handler as _aiohttp_expect


async def serve_until_signalled(app: web.Application, host: str, port: int, banner: Iterable[str] = ()) -> int:
    """Serve `app`; once bound, print the banner lines and then `listening on http://<host>:<port>`, the last
    startup line (what tests and scripts wait for: everything else is out by then); stop cleanly on SIGINT or
    SIGTERM. Returns the exit status."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        for line in banner:
            print(line, flush=True)
        print(f"listening on http://{shown}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


async def expect_continue(request: web.Request) -> web.Response | None:
    """`Expect: 100-continue` as aiohttp answers it; any other expectation 417. aiohttp's own handler failed building
    its 417 for an expectation of bytes that are not UTF-8 (a bare 500)."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11 or expect.lower() == "100-continue":
        return await _aiohttp_expect(request)
    return web.Response(status=417,
                        text=f"the only expectation this server meets is 100-continue, not {expect[:40]!r}\n")
