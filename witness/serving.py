"""Running one of the witness-side HTTP services (the witness, the TSA) as a process until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable

from aiohttp import web


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
