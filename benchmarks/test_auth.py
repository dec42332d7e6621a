"""(8) The credential check that runs on every request (api/server/auth.py `auth_middleware`), in process: the
middleware in front of a handler that answers at once, against the same handler alone, in the same process and
the same loop, for a public route without a credential, an entry read with the admin token and one with an API
token. The difference is what access control adds to each request's server CPU; the end-to-end HTTP figures
(3)-(5) run with a credential on every request, so they include it.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

ADMIN = "bench-admin-token-0123456789abcdef"
ROUNDS = 20_000


async def _per_call_us(call, rounds: int) -> float:
    for _ in range(rounds // 10):  # warm-up
        await call()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            await call()
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


async def _measure(config, rounds: int) -> dict[str, float]:
    from api.server.app import create_app
    from api.server.auth import auth_middleware

    app = create_app(config, admin_token=ADMIN)
    async with TestClient(TestServer(app)) as client:
        answer = await client.post("/api/v1/tokens", json={"role": "monitor", "reason": "benchmark"},
                                   headers={"Authorization": f"Bearer {ADMIN}"})
        assert answer.status == 201, await answer.text()
        api_token = json.loads(await answer.text())["secret"]
        ready = web.Response(text="ok")

        async def handler(request):
            return ready

        figures = {}
        for name, path, token in (("public_no_credential", "/checkpoint", None),
                                  ("entries_admin_token", "/api/v1/entries/0", ADMIN),
                                  ("entries_api_token", "/api/v1/entries/0", api_token)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = make_mocked_request("GET", path, headers=headers, app=app)
            match_info = await app.router.resolve(request)
            match_info.add_app(app)
            match_info.freeze()
            request._match_info = match_info

            async def checked(request=request):
                return await auth_middleware(request, handler)

            async def bare(request=request):
                return await handler(request)

            assert (await checked()) is ready  # the credential passes: the check is measured, not a refusal
            with_check = await _per_call_us(checked, rounds)
            without = await _per_call_us(bare, rounds)
            figures[name] = round(with_check - without, 2)
    return figures


def test_credential_check_per_request(benchmark, bench_mode, results, tmp_path, needs):
    from log.service import LogConfig

    needs("api.server.auth", "auth.check.public_no_credential", "auth.check.entries_admin_token",
          "auth.check.entries_api_token")
    config = LogConfig(data_dir=tmp_path / "data", origin="bench.example/log")
    rounds = ROUNDS if bench_mode.name == "full" else ROUNDS // 10
    figures = benchmark.pedantic(lambda: asyncio.run(_measure(config, rounds)), rounds=1, iterations=1)
    for name, micros in figures.items():
        results.record(f"auth.check.{name}", micros, "µs", rounds=rounds,
                       method="middleware + instant handler minus the handler alone, best of 3, same loop")
    benchmark.extra_info.update(figures)
