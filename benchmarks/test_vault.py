"""(10) The token vault over HTTP (api/server/vault_routes.py), through benchmarks/loadgen.py in its own process.

Tokenise: every request carries 1,000 values never tokenised before, of a data subject never seen before (the worst
case: the subject's key is made and wrapped, every value is HMACed, sealed with AES-256-GCM and stored, in one
write of the log's writer, before the answer). Detokenise: tokens made untimed beforehand, 100 per request, each
request a vault-access entry committed in the log before its values are read and answered. Asserted: every request
answered 200, every detokenisation its own log entry, and a sample of answers equal to the values tokenised.
"""

from __future__ import annotations

import json
import os
import urllib.request

from benchmarks.loadgen import DESCRIPTION
from benchmarks.server import Server, loadgen_with_server_cpu

LOADGEN = DESCRIPTION["raw"]
TOKENIZE_BATCH = 1000
DETOKENIZE_BATCH = 100
# (tokenise requests, detokenise requests) per mode: the short mode runs in CI in seconds
SIZES = {"short": (20, 40), "full": (300, 600)}


def _post(url: str, path: str, body: dict, token: str) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def _values(run: str, request: int, count: int) -> list[str]:
    return [f"customer-{run}-{request}-{n}@example.com" for n in range(count)]


def test_vault_tokenize_and_detokenize(benchmark, bench_mode, results, tmp_path, needs):
    needs("api.server.vault_routes", "vault.tokenize", "vault.detokenize")
    tokenize_requests, detokenize_requests = SIZES.get(bench_mode.name, SIZES["short"])
    run = os.urandom(4).hex()
    with Server(tmp_path / "data") as server:
        admin = server.admin_token
        reader = _post(server.url, "/api/v1/tokens", {"role": "vault-reader", "tenants": ["bench"],
                                                      "reason": "benchmark"}, admin)["secret"]

        bodies = tmp_path / "tokenize.json"
        bodies.write_text(json.dumps([{"tenant": "bench", "subject": f"subject-{run}-{n}",
                                       "values": _values(run, n, TOKENIZE_BATCH)} for n in range(tokenize_requests)]))
        tokenized = benchmark.pedantic(
            loadgen_with_server_cpu, args=(server, "post"),
            kwargs=dict(path="/api/v1/vault/tokenize", bodies_file=bodies, concurrency=4,
                        requests=tokenize_requests, token=admin), rounds=1, iterations=1)
        assert tokenized["ok"] == tokenized["requests"] == tokenize_requests, (tokenized["statuses"],
                                                                             tokenized["errors"])

        # Untimed: the tokens to detokenise (the same values again: the same tokens, nothing new stored).
        values = [v for n in range(min(tokenize_requests, 4)) for v in _values(run, n, TOKENIZE_BATCH)]
        tokens = []
        for n in range(min(tokenize_requests, 4)):
            again = _post(server.url, "/api/v1/vault/tokenize", {"tenant": "bench", "subject": f"subject-{run}-{n}",
                                                                 "values": _values(run, n, TOKENIZE_BATCH)}, admin)
            assert again["created"] == 0
            tokens += again["tokens"]
        asks = [{"tenant": "bench", "purpose": f"benchmark request {n}",
                 "tokens": tokens[(n * DETOKENIZE_BATCH) % len(tokens):][:DETOKENIZE_BATCH]}
                for n in range(len(tokens) // DETOKENIZE_BATCH)]
        sample = _post(server.url, "/api/v1/vault/detokenize", asks[0], reader)
        assert [v["value"] for v in sample["values"]] == values[:DETOKENIZE_BATCH]
        bodies = tmp_path / "detokenize.json"
        bodies.write_text(json.dumps(asks))
        detokenized = loadgen_with_server_cpu(server, "post", path="/api/v1/vault/detokenize", bodies_file=bodies,
                                              concurrency=8, requests=detokenize_requests, token=reader)
        assert detokenized["ok"] == detokenized["requests"] == detokenize_requests, (detokenized["statuses"],
                                                                                   detokenized["errors"])
        # every detokenisation is its own log entry
        assert detokenized["indices"]["distinct"] == detokenized["indices"]["count"] == detokenize_requests

    for key, report, per_request in (("vault.tokenize", tokenized, TOKENIZE_BATCH),
                                     ("vault.detokenize", detokenized, DETOKENIZE_BATCH)):
        rate = report["requests_per_second"] * per_request
        results.record(key, rate, "values/s", values=report["requests"] * per_request,
                       values_per_request=per_request, concurrency=report["concurrency"], load_generator=LOADGEN,
                       latency_ms=report["latency_ms"], seconds=round(report["seconds"], 2),
                       loadgen_cpu_utilisation=report["loadgen_cpu_utilisation"],
                       server_cpu_utilisation=report["server_cpu_utilisation"])
        benchmark.extra_info[key] = rate
