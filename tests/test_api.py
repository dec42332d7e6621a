"""The HTTP API in process: every route's happy path, every error path as problem+json, tiles against
recomputation, the OpenAPI document against the route table, and the metrics exposition."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import datetime
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server.app import create_app
from api.server.openapi import DOCUMENT
from api.server.state import LOG
from log.checkpoint import open_checkpoint
from log.compact import CompactRange
from log.errors import SequencerLockHeld, StorageError, Unavailable
from log.hashing import hash_leaf
from log.note_keys import parse_verifier_key
from log.proofs import verify_consistency, verify_inclusion
from log.bundles import decode_entry_bundle
from log.tiles import entry_bundles_for_size, tiles_for_size
from tests.conftest import TEST_ORIGIN
from tests.credentials import ADMIN, ADMIN_TOKEN

IMMUTABLE = "public, max-age=31536000, immutable"


def run(config, scenario, *, entries: list[bytes] = ()):
    """Run scenario(client, log) against a fresh app on `config`, after adding `entries` through the API."""

    async def main():
        app = create_app(config, admin_token=ADMIN_TOKEN)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            if entries:
                resp = await client.post("/api/v1/entries",
                                         json={"entries": [base64.b64encode(e).decode() for e in entries]})
                assert resp.status == 200, await resp.text()
            return await scenario(client, app[LOG])

    return asyncio.run(main())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def open_note(text: str, log):
    return open_checkpoint(text.encode(), parse_verifier_key(log.verifier_key), TEST_ORIGIN)[0]


ENTRIES = [f"entry {i}".encode() for i in range(300)]


# --- happy paths -------------------------------------------------------------------------------------------------


def test_add_one_entry_as_raw_body(log_config):
    async def scenario(client, log):
        resp = await client.post("/api/v1/entries", data=b"hello", headers={"Content-Type": "application/octet-stream"})
        assert resp.status == 200
        body = await resp.json()
        assert body["index"] == 0 and body["tree_size"] == 1
        assert base64.b64decode(body["leaf_hash"]) == hash_leaf(b"hello")
        checkpoint = open_note(body["checkpoint"], log)
        assert checkpoint.size == 1 and checkpoint.root_hash == hash_leaf(b"hello")

    run(log_config, scenario)


def test_add_a_batch(log_config):
    async def scenario(client, log):
        resp = await client.post("/api/v1/entries", json={"entries": [b64(b"a"), b64(b"b"), b64(b"c")]})
        assert resp.status == 200
        body = await resp.json()
        assert [e["index"] for e in body["entries"]] == [0, 1, 2]
        assert [base64.b64decode(e["leaf_hash"]) for e in body["entries"]] == [hash_leaf(x) for x in (b"a", b"b", b"c")]
        assert body["tree_size"] == 3 and open_note(body["checkpoint"], log).size == 3

    run(log_config, scenario)


def test_checkpoint_is_the_signed_note_uncached(log_config):
    async def scenario(client, log):
        resp = await client.get("/checkpoint")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "no-cache" in resp.headers["Cache-Control"] or "no-store" in resp.headers["Cache-Control"]
        checkpoint = open_checkpoint(await resp.read(), parse_verifier_key(log.verifier_key))[0]
        assert checkpoint.size == 300

    run(log_config, scenario, entries=ENTRIES)


def test_every_tile_and_bundle_matches_recomputation_and_the_checkpoint(log_config):
    async def scenario(client, log):
        checkpoint = open_checkpoint(await (await client.get("/checkpoint")).read(),
                                     parse_verifier_key(log.verifier_key))[0]
        size = checkpoint.size
        tiles = {}
        for tile_id in tiles_for_size(size) + entry_bundles_for_size(size):
            resp = await client.get("/" + tile_id.path())
            assert resp.status == 200, tile_id.path()
            assert resp.headers["Content-Type"] == "application/octet-stream"
            expected_cache = "no-cache" if tile_id.is_partial else IMMUTABLE
            assert resp.headers["Cache-Control"] == expected_cache, tile_id.path()
            tiles[tile_id.path()] = await resp.read()
        assert sorted(tiles) == ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1",
                                 "tile/entries/000", "tile/entries/001.p/44"]
        leaves = tiles["tile/0/000"] + tiles["tile/0/001.p/44"]
        assert leaves == b"".join(hash_leaf(e) for e in ENTRIES)
        bundled = decode_entry_bundle(tiles["tile/entries/000"]) + decode_entry_bundle(tiles["tile/entries/001.p/44"])
        assert bundled == ENTRIES
        first_subtree = CompactRange()
        first_subtree.extend([leaves[i:i + 32] for i in range(0, 256 * 32, 32)])
        assert tiles["tile/1/000.p/1"] == first_subtree.root()
        tree = CompactRange()
        tree.extend([leaves[i:i + 32] for i in range(0, len(leaves), 32)])
        assert tree.root() == checkpoint.root_hash
        # A partial width below the edge is served as a prefix (its bytes never change).
        resp = await client.get("/tile/0/001.p/3")
        assert await resp.read() == tiles["tile/0/001.p/44"][:96]

    run(log_config, scenario, entries=ENTRIES)


def test_inclusion_proofs_by_index_and_by_leaf_hash(log_config):
    async def scenario(client, log):
        root = log.checkpoint.root_hash
        resp = await client.get("/api/v1/proof/inclusion", params={"index": "7", "tree_size": "300"})
        assert resp.status == 200
        body = await resp.json()
        assert body["index"] == 7 and body["tree_size"] == 300
        verify_inclusion(hash_leaf(ENTRIES[7]), 7, 300, [base64.b64decode(h) for h in body["hashes"]], root)

        leaf = hash_leaf(ENTRIES[123])
        spellings = [
            base64.urlsafe_b64encode(leaf).decode().rstrip("="),
            base64.urlsafe_b64encode(leaf).decode(),
            quote(base64.b64encode(leaf).decode(), safe=""),
            base64.b64encode(leaf).decode(),  # unescaped "+" arrives as a space
        ]
        for spelling in spellings:
            resp = await client.get(f"/api/v1/proof/inclusion?leaf_hash={spelling}&tree_size=300")
            assert resp.status == 200, (spelling, await resp.text())
            body = await resp.json()
            assert body["index"] == 123
            verify_inclusion(leaf, 123, 300, [base64.b64decode(h) for h in body["hashes"]], root)

        # Without tree_size: the latest tree.
        body = await (await client.get("/api/v1/proof/inclusion?index=299")).json()
        assert body["tree_size"] == 300

    run(log_config, scenario, entries=ENTRIES)


def test_consistency_proof(log_config):
    async def scenario(client, log):
        first = CompactRange()
        first.extend([hash_leaf(e) for e in ENTRIES[:100]])
        resp = await client.get("/api/v1/proof/consistency?first=100&second=300")
        assert resp.status == 200
        body = await resp.json()
        assert (body["first"], body["second"]) == (100, 300)
        verify_consistency(100, 300, [base64.b64decode(h) for h in body["hashes"]], first.root(),
                           log.checkpoint.root_hash)
        body = await (await client.get("/api/v1/proof/consistency?first=300")).json()
        assert body == {"first": 300, "second": 300, "hashes": []}

    run(log_config, scenario, entries=ENTRIES)


def test_get_entry_as_json_or_raw(log_config):
    async def scenario(client, log):
        resp = await client.get("/api/v1/entries/5")
        assert resp.status == 200
        body = await resp.json()
        assert body["index"] == 5 and base64.b64decode(body["data"]) == ENTRIES[5]
        assert base64.b64decode(body["leaf_hash"]) == hash_leaf(ENTRIES[5])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["received_at"])
        datetime.fromisoformat(body["received_at"].replace("Z", "+00:00"))
        resp = await client.get("/api/v1/entries/5", headers={"Accept": "application/octet-stream"})
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == ENTRIES[5]

    run(log_config, scenario, entries=ENTRIES[:10])


def test_log_info_and_health(log_config):
    async def scenario(client, log):
        body = await (await client.get("/api/v1/log")).json()
        assert body["origin"] == TEST_ORIGIN and body["verifier_key"] == log.verifier_key
        assert body["tree_size"] == 10 and base64.b64decode(body["root_hash"]) == log.checkpoint.root_hash
        assert open_note(body["checkpoint"], log).size == 10
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json())["status"] == "ok"

    run(log_config, scenario, entries=ENTRIES[:10])


# --- errors ------------------------------------------------------------------------------------------------------

OCTET = {"Content-Type": "application/octet-stream"}
ERROR_CASES = [
    # (method, path, request kwargs, status, problem code, field)
    ("GET", "/api/v1/proof/inclusion?index=1e3&tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/inclusion?index=-1&tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/inclusion?index=&tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", f"/api/v1/proof/inclusion?index={2**64}&tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/inclusion?index=%EF%BC%91&tree_size=3", {}, 400, "invalid-input", "index"),  # fullwidth 1
    ("GET", "/api/v1/proof/inclusion?index=3&tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/inclusion?index=0&tree_size=4", {}, 400, "invalid-input", "tree_size"),
    ("GET", "/api/v1/proof/inclusion?index=0&tree_size=0", {}, 400, "invalid-input", "tree_size"),
    ("GET", "/api/v1/proof/inclusion?tree_size=3", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/inclusion?index=0&leaf_hash=AAAA", {}, 400, "invalid-input", "leaf_hash"),
    ("GET", "/api/v1/proof/inclusion?leaf_hash=AAAA", {}, 400, "invalid-input", "leaf_hash"),
    ("GET", "/api/v1/proof/inclusion?leaf_hash=!!!!", {}, 400, "invalid-input", "leaf_hash"),
    ("GET", f"/api/v1/proof/inclusion?leaf_hash={'A' * 43}", {}, 404, "not-found", None),
    ("GET", "/api/v1/proof/inclusion?index=0&tree-size=3", {}, 400, "invalid-input", "tree-size"),
    ("GET", "/api/v1/proof/inclusion?index=0&index=1", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/proof/consistency?second=3", {}, 400, "invalid-input", "first"),
    ("GET", "/api/v1/proof/consistency?first=0&second=3", {}, 400, "invalid-input", "first"),
    ("GET", "/api/v1/proof/consistency?first=3&second=2", {}, 400, "invalid-input", "first"),
    ("GET", "/api/v1/proof/consistency?first=1&second=4", {}, 400, "invalid-input", "second"),
    ("GET", "/api/v1/proof/consistency?first=1&second=1.0", {}, 400, "invalid-input", "second"),
    ("GET", "/api/v1/entries/3", {}, 404, "not-found", None),
    ("GET", "/api/v1/entries/-1", {}, 400, "invalid-input", "index"),
    ("GET", "/api/v1/entries/0x1", {}, 400, "invalid-input", "index"),
    ("GET", "/tile/0/000", {}, 404, "not-found", None),
    ("GET", "/tile/0/000.p/4", {}, 404, "not-found", None),
    ("GET", "/tile/entries/000.p/4", {}, 404, "not-found", None),
    ("GET", "/tile/0/0", {}, 400, "invalid-input", "index"),
    ("GET", "/tile/00/000", {}, 400, "invalid-input", "level"),
    ("GET", "/tile/64/000", {}, 400, "invalid-input", "level"),
    ("GET", "/tile/0/000.p/0", {}, 400, "invalid-input", "width"),
    ("GET", "/tile/0/000.p/256", {}, 400, "invalid-input", "width"),
    ("GET", "/tile/entries/x000/001", {}, 400, "invalid-input", "index"),
    ("POST", "/api/v1/entries", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415,
     "unsupported-media-type", None),
    ("POST", "/api/v1/entries", {"data": b"x" * 65536, "headers": OCTET}, 413, "payload-too-large", None),
    ("POST", "/api/v1/entries", {"data": b"", "headers": OCTET}, 400, "invalid-input", "body"),
    ("POST", "/api/v1/entries", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400,
     "invalid-input", "body"),
    ("POST", "/api/v1/entries", {"json": ["aGk="]}, 400, "invalid-input", "body"),
    ("POST", "/api/v1/entries", {"json": {"entries": "aGk="}}, 400, "invalid-input", "entries"),
    ("POST", "/api/v1/entries", {"json": {"entries": []}}, 400, "invalid-input", "entries"),
    ("POST", "/api/v1/entries", {"json": {"entries": ["aGk="] * 4097}}, 400, "invalid-input", "entries"),
    ("POST", "/api/v1/entries", {"json": {"entries": ["aGk=", "not base64!"]}}, 400, "invalid-input", "entries[1]"),
    ("POST", "/api/v1/entries", {"json": {"entries": ["aGk=", 7]}}, 400, "invalid-input", "entries[1]"),
    ("POST", "/api/v1/entries", {"json": {"entries": [b64(b"x" * 65536)]}}, 400, "invalid-input", "entries[0]"),
    ("POST", "/api/v1/entries", {"json": {"entries": [""]}}, 400, "invalid-input", "entries[0]"),
    ("POST", "/api/v1/entries", {"json": {"entries": ["aGk="], "extra": 1}}, 400, "invalid-input", "extra"),
    ("GET", "/no/such/path", {}, 404, "not-found", None),
    ("PUT", "/checkpoint", {}, 405, "method-not-allowed", None),
    ("DELETE", "/api/v1/entries", {}, 405, "method-not-allowed", None),
]


def test_every_error_path_is_a_problem(log_config):
    async def scenario(client, log):
        failures = []
        for method, path, kwargs, status, code, field in ERROR_CASES:
            resp = await client.request(method, path, **kwargs)
            text = await resp.text()
            case = f"{method} {path[:60]} -> {resp.status} {text[:200]}"
            if resp.status != status or resp.headers.get("Content-Type") != "application/problem+json":
                failures.append(case)
                continue
            body = json.loads(text)
            if (body.get("type") != f"urn:auditlog:problem:{code}" or body.get("status") != status
                    or not body.get("title") or not body.get("detail") or body.get("field") != field):
                failures.append(case)
            if status == 405 and "Allow" not in resp.headers:
                failures.append(case + " (no Allow header)")
        assert not failures, "\n".join(failures)

    run(log_config, scenario, entries=[b"a", b"b", b"c"])


def test_a_body_too_large_by_content_length_is_refused_before_reading(log_config):
    async def scenario(client, log):
        async def body():
            yield b"x" * 70000

        resp = await client.post("/api/v1/entries", data=body(), headers=OCTET)  # chunked: counted while read
        assert resp.status == 413
        assert (await resp.json())["type"] == "urn:auditlog:problem:payload-too-large"

    run(log_config, scenario)


def test_read_body_takes_the_declared_length_or_counts_a_chunked_body_against_the_limit():
    from unittest import mock

    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web import HTTPRequestEntityTooLarge

    from api.server.routes import read_body
    from log.errors import InvalidInput

    async def read(chunks: list[bytes], headers: dict[str, str], limit: int = 100) -> bytes:
        payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2 ** 16, loop=asyncio.get_running_loop())
        for chunk in chunks:
            payload.feed_data(chunk)
        payload.feed_eof()
        return await read_body(make_mocked_request("POST", "/api/v1/entries", headers=headers, payload=payload), limit)

    async def scenario():
        assert await read([b"abc", b"defg"], {"Content-Length": "7"}) == b"abcdefg"
        assert await read([b"abc", b"defg"], {"Transfer-Encoding": "chunked"}) == b"abcdefg"
        with pytest.raises(InvalidInput, match="3 of its 7 bytes"):
            await read([b"abc"], {"Content-Length": "7"})
        with pytest.raises(HTTPRequestEntityTooLarge):
            await read([b"x" * 60, b"x" * 60], {"Transfer-Encoding": "chunked"})
        with pytest.raises(HTTPRequestEntityTooLarge):
            await read([], {"Content-Length": "101"})

    asyncio.run(scenario())


@pytest.mark.parametrize("error, status, code, retry_after", [
    (Unavailable("the sequencer is busy"), 503, "unavailable", True),
    (SequencerLockHeld("another sequencer holds the lock"), 503, "sequencer-locked", True),
    (StorageError("disk on fire"), 500, "storage-error", False),
    (RuntimeError("a bug"), 500, "internal-error", False),
])
def test_log_failures_map_to_statuses(log_config, error, status, code, retry_after):
    async def scenario(client, log):
        async def fail(*args, **kwargs):
            raise error

        log.add_entries = fail
        resp = await client.post("/api/v1/entries", data=b"x", headers=OCTET)
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/problem+json"
        body = await resp.json()
        assert body["type"] == f"urn:auditlog:problem:{code}" and body["status"] == status
        assert ("Retry-After" in resp.headers) == retry_after
        if isinstance(error, RuntimeError):
            assert "a bug" not in body["detail"]  # internals are logged, not answered

    run(log_config, scenario)


# --- OpenAPI and metrics -----------------------------------------------------------------------------------------


def test_openapi_describes_exactly_the_routes(log_config):
    async def scenario(client, log):
        resp = await client.get("/api/v1/openapi.json")
        assert resp.status == 200
        document = await resp.json()
        assert document == json.loads(json.dumps(DOCUMENT))
        assert document["openapi"].startswith("3.1")
        documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
        served = {(route.method, route.resource.canonical) for route in client.app.router.routes()}
        assert served == documented
        for path, item in document["paths"].items():
            for operation in item.values():
                # a success answer is documented (201 for the audit routes that create)
                assert any(code.startswith("2") for code in operation["responses"]), path
                names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
                assert names == set(re.findall(r"{(\w+)}", path)), path

    run(log_config, scenario)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """A strict enough reader of the text format: TYPE lines and samples; raises on any other line."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(_LABEL.findall(match.group(3) or ""))
        samples.append((match.group(1), labels, float(match.group(4))))
    return types, samples


def test_metrics_exposition(log_config):
    async def scenario(client, log):
        await client.post("/api/v1/entries", data=b"one", headers=OCTET)
        await client.get("/api/v1/entries/0")
        await client.get("/api/v1/entries/5")
        await client.get("/tile/0/000.p/2")
        await client.get("/nowhere")
        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        types, samples = parse_metrics(await resp.text())
        assert types["auditlog_entries_integrated_total"] == "counter"
        assert types["auditlog_tree_size"] == "gauge"
        for name in ("auditlog_batch_size", "auditlog_integration_latency_seconds",
                     "auditlog_http_request_duration_seconds"):
            assert types[name] == "histogram"
        for name in ("auditlog_submissions_rejected_busy_total", "auditlog_batch_failures_total",
                     "auditlog_http_requests_total"):
            assert types[name] == "counter"
        values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
        assert values[("auditlog_tree_size", ())] == 2
        assert values[("auditlog_entries_integrated_total", ())] == 2
        requests = {(l["route"], l["method"], l["status"]): v for n, l, v in samples
                    if n == "auditlog_http_requests_total"}
        assert requests[("/api/v1/entries/{index}", "GET", "200")] == 1
        assert requests[("/api/v1/entries/{index}", "GET", "404")] == 1
        assert requests[("/tile/{level}/{n}", "GET", "200")] == 1
        assert requests[("unmatched", "GET", "404")] == 1
        assert not [r for r in requests if "/0" in r[0] or "nowhere" in r[0]], "raw paths must not be labels"
        buckets = [(l["le"], v) for n, l, v in samples if n == "auditlog_batch_size_bucket"]
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
        assert buckets[-1][1] == values[("auditlog_batch_size_count", ())] == 2

    run(log_config, scenario, entries=[b"zero"])
