"""(4) Signed audit events over HTTP: POST /api/v1/events, one signed envelope per request, 64 concurrent producers.

Set-up (untimed): a server with a known admin token; one producer registered for tenant "bench" with one Ed25519
key; N distinct events (auditlog.event/v1, unique event_id) canonicalized (RFC 8785) and signed by that key. The
load generator then sends each envelope exactly once, so every request is new work: schema validation, signature
check, idempotency lookup, index rows and the durable commit. While the route has not landed the figures are
recorded as pending, never made up.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from benchmarks.loadgen import DESCRIPTION
from benchmarks.server import Server, loadgen_with_server_cpu
from benchmarks.verify import signed_checkpoint

LOADGEN = DESCRIPTION["raw"]
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _new_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _signed_envelopes(count: int, producer: str, key, public: bytes) -> list[dict]:
    """`count` distinct events stamped now (after the key's registration, so within its validity), signed."""
    from log.audit.canonical import canonicalize
    from log.audit.registry import key_id_for

    key_id = key_id_for(public)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    run = os.urandom(6).hex()
    envelopes = []
    for n in range(count):
        event = {
            "schema": "auditlog.event/v1", "event_id": f"ev-{run}-{n}", "trace_id": f"tr-{run}-{n // 16}",
            "run_id": f"run-{run}-{n // 64}", "timestamp": stamp, "tenant": "bench",
            "actor": {"type": "agent", "id": f"agent-{n % 64}"}, "event_type": "tool_call",
        }
        signature = key.sign(canonicalize(event))
        envelopes.append({"producer": producer, "key_id": key_id,
                          "signature": base64.b64encode(signature).decode(), "event": event})
    return envelopes


BATCH = 32  # events per request in the batched variant, as a gateway forwarding its producers' events would send


@pytest.mark.parametrize("batched", [False, True], ids=["one-per-request", "batches-of-32"])
def test_signed_audit_events(benchmark, bench_mode, results, tmp_path, needs, monkeypatch, batched):
    rate_key, p99_key = ("events.batch.rate", "events.batch.p99") if batched else ("events.rate", "events.p99")
    needs("api.cli", rate_key, p99_key)
    monkeypatch.setenv("AUDITLOG_ADMIN_TOKEN", ADMIN_TOKEN)
    count = bench_mode.events
    with Server(tmp_path / "data") as server:
        status, _ = _post(f"{server.url}/api/v1/events", {})
        if status in (404, 405):
            reason = "POST /api/v1/events has not landed (the server answers 404)"
            for key in (rate_key, p99_key):
                results.record(key, None, "", status="pending", reason=reason)
            pytest.skip(f"pending: {reason}")
        producer = "bench-agent"
        key, public = _new_key()
        status, body = _post(f"{server.url}/api/v1/producers",
                             {"producer": producer, "tenants": ["bench"], "reason": "benchmark"}, ADMIN_TOKEN)
        assert status in (200, 201), body
        status, body = _post(f"{server.url}/api/v1/producers/{producer}/keys",
                             {"public_key": base64.b64encode(public).decode(), "reason": "benchmark"}, ADMIN_TOKEN)
        assert status in (200, 201), body
        time.sleep(0.01)
        envelopes = _signed_envelopes(count, producer, key, public)
        per_request = BATCH if batched else 1
        requests = count // per_request
        bodies = tmp_path / "events.json"
        if batched:
            bodies.write_text(json.dumps([{"events": envelopes[i:i + BATCH]} for i in range(0, requests * BATCH, BATCH)]))
        else:
            bodies.write_text(json.dumps(envelopes))
        concurrency = 16 if batched else 64
        before = signed_checkpoint(server.url).size
        report = benchmark.pedantic(
            loadgen_with_server_cpu, args=(server, "events"),
            kwargs=dict(concurrency=concurrency, requests=requests, bodies_file=bodies), rounds=1, iterations=1,
        )
        # Every event accepted once, with its own index, and all of them in the signed checkpoint.
        sent = requests * per_request
        assert report["ok"] == report["requests"] == requests, (report["statuses"], report["errors"])
        assert report["indices"]["distinct"] == report["indices"]["count"] == sent
        assert signed_checkpoint(server.url).size >= before + sent
    rate = report["requests_per_second"] * per_request
    results.record(rate_key, rate, "events/s", events=sent, events_per_request=per_request, concurrency=concurrency,
                   load_generator=LOADGEN, latency_ms=report["latency_ms"], seconds=report["seconds"],
                   loadgen_cpu_utilisation=report["loadgen_cpu_utilisation"],
                   server_cpu_utilisation=report["server_cpu_utilisation"],
                   note=f"{per_request} signed envelope(s) per request, ?proofs left at the server default (an inclusion "
                   "proof is built per event); every event new (distinct event_id)")
    results.record(p99_key, report["latency_ms"]["p99"], "ms", concurrency=concurrency)
    benchmark.extra_info.update(events_per_second=rate)
