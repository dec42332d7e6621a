"""(11) In-browser verification in the web explorer (api/server/explorer/): headless chromium against a real server (in
process, a loopback port) holding one run of N signed events. The figure is the page's own timing (performance.now(),
in #view's data-verify-ms) of verifying what it shows: for the run's timeline, the checkpoint's Ed25519 signature and
each event's entry hashed and its inclusion proof (carried by the timeline) checked, the event matched to its entry,
and (since the producers' signatures are checked too) the run's evidence bundle's registry entries proven in its
checkpoint and each event's Ed25519 signature verified with the key they prove (the bundle is fetched beside the
timeline: what of its fetch is still outstanding when verification starts is counted); for a page of search results, the same with each proof fetched from GET /api/v1/proof/inclusion, six at a time.
Full mode: N = 100 (target <= 1 s); short mode: 20. Median of a few views; every event must say verified.
"""

from __future__ import annotations

import asyncio
import base64
import statistics

import aiohttp

RUN = "bench-explorer-run"


async def _seed(url: str, count: int) -> None:
    from tests.credentials import ADMIN
    from tests.e2e.test_audit import Producer

    agent = Producer("bench-agent", "acme")
    async with aiohttp.ClientSession(headers=ADMIN) as session:
        for path, body in (("/api/v1/producers", {"producer": agent.name, "tenants": ["acme"]}),
                           (f"/api/v1/producers/{agent.name}/keys",
                            {"public_key": base64.b64encode(agent.public).decode()})):
            async with session.post(url + path, json=body) as resp:
                assert resp.status == 201, await resp.text()
        intent = agent.event(RUN, event_type="intent")
        events = [intent] + [agent.event(RUN, parent=intent["event_id"], event_type="tool_call")
                             for _ in range(count - 1)]
        async with session.post(url + "/api/v1/events", json={"events": [agent.envelope(e) for e in events]}) as resp:
            answer = await resp.json()
            assert answer["accepted"] == count, answer


def _timed_view(driver, route: str, count: int, turn: int) -> float:
    from tests.browser import wait_ready

    # A new hash each turn (the view ignores `turn`): the same hash again would not navigate.
    driver.execute_script("document.getElementById('view').dataset.state = 'navigating'; location.hash = arguments[0]",
                          f"{route}&turn={turn}")
    state = wait_ready(driver, timeout=60)
    assert state["verified"] == str(count) and state["failed"] == "0", state
    if "/run/" in route:
        assert state["signatures"] == str(count), state
    return float(state["verifyMs"])


def test_explorer_verifies_events_in_the_browser(bench_mode, results, tmp_path):
    from api.server.app import create_app
    from log.service import LogConfig
    from tests.browser import chromium_driver
    from tests.conftest import serve_in_thread
    from tests.credentials import ADMIN_TOKEN

    count = 100 if bench_mode.name == "full" else 20
    rounds = 5 if bench_mode.name == "full" else 2
    app = create_app(LogConfig(data_dir=tmp_path / "data", origin="bench.example/explorer", batch_max_age=0.002),
                     admin_token=ADMIN_TOKEN)
    url, stop = serve_in_thread(app)
    driver = None
    try:
        asyncio.run(_seed(url, count))
        driver = chromium_driver()
        driver.get(url + "/")
        driver.execute_script("sessionStorage.setItem('auditlog.token', arguments[0])", ADMIN_TOKEN)
        figures = {}
        for name, route in (("timeline", f"#/run/{RUN}?tenant=acme"), ("search", f"#/search?run_id={RUN}&limit={count}")):
            _timed_view(driver, route, count, 0)  # once to warm the page's modules and WebCrypto
            timings = [_timed_view(driver, route, count, turn) for turn in range(1, rounds + 1)]
            figures[name] = statistics.median(timings)
            results.record(f"explorer.verify.{name}", round(figures[name], 1), "ms", events=count,
                           rounds=timings, browser="chromium --headless=new")
    finally:
        if driver is not None:
            driver.quit()
        stop()
