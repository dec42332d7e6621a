"""The explorer's routes in process (api/server/explorer.py): the page and its files with their content types, a strict
Content-Security-Policy and revalidation; nothing outside the folder; public, and a bad credential is still a 401;
GET /api/v1/witnesses with and without witnesses. (The page itself is tested in a browser:
tests/e2e/test_explorer_browser.py.)"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server.app import Witnessing, create_app
from api.server.explorer import CONTENT_SECURITY_POLICY, FILES
from api.server.state import WITNESS_JOB
from log.note_keys import generate_signer_key, parse_verifier_key
from tests.conftest import exchange_raw
from tests.credentials import ADMIN_TOKEN
from tests.test_witness_job import ORIGIN, WitnessServer


def run(coro):
    return asyncio.run(coro)


def test_the_package_holds_the_explorers_files():
    assert {"index.html", "app.js", "verify.js", "style.css"} <= set(FILES)


def test_the_page_and_its_files(log_config):
    async def scenario():
        async with TestClient(TestServer(create_app(log_config, admin_token=ADMIN_TOKEN))) as client:
            for path, kind in (("/", "text/html"), ("/explorer/app.js", "text/javascript"),
                               ("/explorer/verify.js", "text/javascript"), ("/explorer/style.css", "text/css"),
                               ("/explorer/index.html", "text/html")):
                resp = await client.get(path)
                assert resp.status == 200, path
                assert resp.headers["Content-Type"].startswith(kind), (path, resp.headers["Content-Type"])
                assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Cache-Control"] == "no-cache" and "ETag" in resp.headers
                again = await client.get(path, headers={"If-None-Match": resp.headers["ETag"]})
                assert again.status == 304
            page = await (await client.get("/")).text()
            assert '<script type="module" src="/explorer/app.js">' in page and "<script>" not in page
            assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "connect-src 'self'" in CONTENT_SECURITY_POLICY
            assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
            for outside in ("/explorer/explorer.py", "/explorer/", "/explorer/nothing.js", "/explorer/sub/app.js"):
                resp = await client.get(outside)
                assert resp.status == 404, (outside, resp.status)
            # Dot segments sent as they are (a client library would resolve them): never a file outside the folder.
            for outside in ("/explorer/../explorer.py", "/explorer/../../app.py", "/explorer/..%2f..%2fapp.py",
                            "/explorer/%2e%2e", "/explorer/%2e%2e%2fexplorer.py", "/explorer/..%2fexplorer.py"):
                status, _, body = await exchange_raw(client.port, f"GET {outside} HTTP/1.1\r\nHost: x\r\n"
                                                                  "Connection: close\r\n\r\n".encode())
                assert status in (200, 404) and b"import" not in body, (outside, status, body[:200])
            # Public, but a credential sent is checked as everywhere.
            resp = await client.get("/", headers={"Authorization": "Bearer not-a-token"})
            assert resp.status == 401

    run(scenario())


def test_witnesses_without_witnesses(log_config):
    async def scenario():
        async with TestClient(TestServer(create_app(log_config, admin_token=ADMIN_TOKEN))) as client:
            resp = await client.get("/api/v1/witnesses")
            assert resp.status == 200 and await resp.json() == {"witnesses": [], "k": None}

    run(scenario())


def test_witnesses_list_each_ones_keys_and_latest_cosigned_size(tmp_path, log_config):
    signer_key, log_vkey = generate_signer_key(ORIGIN)
    (tmp_path / "log.key").write_text(signer_key + "\n")
    log_config.origin, log_config.key_file = ORIGIN, tmp_path / "log.key"

    async def scenario():
        up = await WitnessServer(tmp_path, "witness.test/up", parse_verifier_key(log_vkey)).start()
        down = WitnessServer(tmp_path, "witness.test/down", parse_verifier_key(log_vkey))
        try:
            settings = Witnessing(witnesses=(f"{up.url} {up.vkeys[0]}", f"http://127.0.0.1:9/ {down.vkeys[0]}"),
                                  witness_interval=3600, witness_k=1)
            app = create_app(log_config, settings, admin_token=ADMIN_TOKEN)
            async with TestClient(TestServer(app)) as client:
                listed = await (await client.get("/api/v1/witnesses")).json()
                assert listed["k"] == 1
                sizes = {w["name"]: w["latest_cosigned_size"] for w in listed["witnesses"]}
                # (the job's first round, at start, may have had the empty tree cosigned already)
                assert sizes["witness.test/up"] in (None, 0) and sizes["witness.test/down"] is None
                resp = await client.post("/api/v1/entries", data=b"one",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                assert resp.status == 200
                job = app[WITNESS_JOB]
                job.attempts, job.backoff = 1, 0
                await job.run_once()
                listed = await (await client.get("/api/v1/witnesses")).json()
                assert listed["witnesses"] == [
                    {"name": "witness.test/up", "keys": [up.vkeys[0]], "latest_cosigned_size": 1},
                    {"name": "witness.test/down", "keys": [down.vkeys[0]], "latest_cosigned_size": None}]
        finally:
            await up.stop()

    run(scenario())


@pytest.mark.parametrize("path", ["/", "/explorer/app.js", "/api/v1/witnesses"])
def test_explorer_routes_are_public(path):
    from api.server.auth import PUBLIC, ROUTE_POLICY

    template = "/explorer/{file}" if path.startswith("/explorer/") else path
    assert ROUTE_POLICY[("GET", template)] == PUBLIC
