"""OIDC end to end: a real `auditlog serve` process configured for an identity provider whose keys this test made.

An auditor's JWT for tenant acme reads acme's events and is refused globex's; an expired JWT, one signed by a key
the IdP never published and one of another issuer get 401 with a Bearer challenge and the reason; a JWT of the IdP
with no auditlog role gets 401 too. Events are written by the SDK with a registered producer for each tenant.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from api.client.recorder import Recorder, generate_key
from tests.processes import REPO, ServerProcess

ISSUER = "https://sso.example/realms/acme"
AUDIENCE = "auditlog-e2e"


def auditlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def get(url: str, bearer: str | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def idp_key():
    return ec.generate_private_key(ec.SECP256R1())


def token(key, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "auditor-1", "iat": now, "exp": now + 300,
               "auditlog_role": "auditor", "auditlog_tenants": ["acme"], **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "sso-1"})


def test_an_oidc_auditor_reads_its_tenant_and_nothing_else(tmp_path, idp_key):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**ECAlgorithm.to_jwk(idp_key.public_key(), as_dict=True),
                                          "kid": "sso-1", "use": "sig"}]}))
    data = tmp_path / "data"
    server = ServerProcess(data, extra_args=["--oidc-issuer", ISSUER, "--oidc-audience", AUDIENCE,
                                             "--oidc-jwks-file", str(jwks)]).start()
    try:
        assert any(f"OIDC: bearer JWTs of {ISSUER}" in line for line in server.output)
        vkey = (data / "log.vkey").read_text().strip()
        for tenant in ("acme", "globex"):
            seed, public, _ = generate_key()
            for argv in (["register", "--producer", f"agent-{tenant}", "--tenant", tenant],
                         ["add-key", "--producer", f"agent-{tenant}", "--public-key",
                          base64.b64encode(public).decode()]):
                done = auditlog("producer", *argv, "--server", server.url, "--data-dir", str(data))
                assert done.returncode == 0, done.stderr
            recorder = Recorder(server.url, producer=f"agent-{tenant}", signing_key=seed, log_key=vkey,
                                tenant=tenant, actor={"type": "agent", "id": tenant})
            with recorder.action(f"run-{tenant}"):
                pass

        auditor = token(idp_key)
        status, _, body = get(f"{server.url}/api/v1/events?tenant=acme", auditor)
        assert status == 200, body
        assert body["events"] and {e["event"]["tenant"] for e in body["events"]} == {"acme"}
        status, _, body = get(f"{server.url}/api/v1/events", auditor)  # no tenant: its tenants' records only
        assert status == 200 and {e["event"]["tenant"] for e in body["events"]} == {"acme"}, body
        status, _, body = get(f"{server.url}/api/v1/events?tenant=globex", auditor)
        assert status in (403, 404), body
        status, _, body = get(f"{server.url}/api/v1/runs/run-globex/timeline", auditor)
        assert status in (403, 404), body

        # the reads are in the access log under the token's issuer and subject
        admin_token = (data / "admin.token").read_text().strip()
        who = urllib.parse.quote(f"oidc:{ISSUER}#auditor-1")
        status, _, body = get(f"{server.url}/api/v1/access-log?credential={who}", admin_token)
        assert status == 200 and body["records"], body
        assert {r["role"] for r in body["records"]} == {"auditor"}, body

        now = int(time.time())
        other_key = ec.generate_private_key(ec.SECP256R1())
        for bad, reason in ((token(idp_key, exp=now - 600, iat=now - 900), "expired"),
                            (token(other_key), "bad signature"),
                            (token(idp_key, iss="https://evil.example"), "wrong issuer"),
                            (token(idp_key, auditlog_role="viewer"), "unknown role")):
            status, headers, body = get(f"{server.url}/api/v1/events?tenant=acme", bad)
            assert status == 401, body
            assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
            assert reason in body["detail"], body
    finally:
        server.stop()


def test_read_workers_check_oidc_tokens_too(tmp_path, idp_key):
    """Entry reads are served by read workers as well as the writer: each worker gets the writer's OIDC settings
    (as flags) and checks the token itself."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**ECAlgorithm.to_jwk(idp_key.public_key(), as_dict=True),
                                          "kid": "sso-1", "use": "sig"}]}))
    data = tmp_path / "data"
    server = ServerProcess(data, extra_args=["--read-workers", "2", "--oidc-issuer", ISSUER, "--oidc-audience",
                                             AUDIENCE, "--oidc-jwks-file", str(jwks), "--oidc-role-claim", "groups",
                                             "--oidc-role-map", "log-monitors=monitor"]).start()
    try:
        admin = (data / "admin.token").read_text().strip()
        request = urllib.request.Request(f"{server.url}/api/v1/entries", data=b"an entry", method="POST",
                                         headers={"Authorization": f"Bearer {admin}",
                                                  "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        monitor = token(idp_key, groups=["staff", "log-monitors"], auditlog_role=None)
        expired = token(idp_key, groups=["log-monitors"], exp=int(time.time()) - 600)
        for _ in range(30):  # spread over the writer and both workers by the kernel
            request = urllib.request.Request(f"{server.url}/api/v1/entries/0",
                                             headers={"Authorization": f"Bearer {monitor}"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert json.loads(answer.read())["data"] == base64.b64encode(b"an entry").decode()
            status, headers, body = get(f"{server.url}/api/v1/entries/0", expired)
            assert status == 401 and "expired" in body["detail"], body
        # /metrics counts the writer's own requests: fewer than the 60 sent means the workers answered the rest
        request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {admin}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            metrics = answer.read().decode()
        at_writer = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("auditlog_http_requests_total{") and "/api/v1/entries/{index}" in line)
        assert at_writer < 60, metrics
    finally:
        server.stop()
