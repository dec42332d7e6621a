"""Access control (issue 18) on real servers: each role against each class of private route (allowed, 401 without a
credential, with a wrong, an expired or a revoked one, 403 for the wrong role), tenant scope (an auditor of acme
never sees globex's events, runs, evidence or blobs), API tokens (never stored, logged, replayed after a restart),
`serve --public`, read workers enforcing the same table, and hostile Authorization headers (401, never 500).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import exchange_raw
from tests.processes import ServerProcess

SHA = hashlib.sha256


def call(url: str, method: str, path: str, token: str | None = None, body: bytes | dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif body is not None:
        headers.setdefault("Content-Type", "application/octet-stream")
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def create_token(url: str, admin: str, role: str, tenants=None, expires_at: str | None = None) -> tuple[str, dict]:
    body = {"role": role, "reason": "test"}
    if tenants:
        body["tenants"] = tenants
    if expires_at:
        body["expires_at"] = expires_at
    status, _, answer = call(url, "POST", "/api/v1/tokens", admin, body)
    assert status == 201, answer
    document = json.loads(answer)
    return document["secret"], document


def tenant_recorder(url: str, admin: str, log_key: str, tenant: str, token: str):
    """A Recorder for a producer `agent-<tenant>` registered (with a new key) for `tenant` alone, sending with
    `token`."""
    from api.client.recorder import Recorder, generate_key

    seed, public, _ = generate_key()
    producer = f"agent-{tenant}"
    assert call(url, "POST", "/api/v1/producers", admin, {"producer": producer, "tenants": [tenant]})[0] == 201
    assert call(url, "POST", f"/api/v1/producers/{producer}/keys", admin,
                {"public_key": base64.b64encode(public).decode()})[0] == 201
    return Recorder(url, producer=producer, signing_key=seed, log_key=log_key, tenant=tenant,
                    actor={"type": "agent", "id": producer}, token=token)


def _rfc3339(ms: int) -> str:
    from log.audit.schema import format_timestamp_ms

    return format_timestamp_ms(ms)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server: producers of acme and globex with a run each, a blob each, and a token per role."""
    root = tmp_path_factory.mktemp("access")
    server = ServerProcess(root / "data", extra_args=["--verify-processes", "0"]).start()
    try:
        url = server.url
        admin = (root / "data" / "admin.token").read_text().strip()
        vkey = (root / "data" / "log.vkey").read_text().strip()
        w = {"url": url, "admin-token": admin, "root": root, "server": server}
        w["writer"], _ = create_token(url, admin, "writer", ["acme"])
        blobs = {}
        for tenant in ("acme", "globex"):
            recorder = tenant_recorder(url, admin, vkey, tenant, w["writer"])
            with recorder.action(f"run-{tenant}") as action:
                ref = recorder.put_blob(f"the {tenant} prompt".encode())
                action.record("tool_call", output=ref)
            blobs[tenant] = ref["sha256"]
            recorder.close()
        w["blobs"] = blobs
        w["admin"], _ = create_token(url, admin, "admin")
        w["auditor"], _ = create_token(url, admin, "auditor", ["acme"])
        w["monitor"], _ = create_token(url, admin, "monitor")
        w["revoked"], created = create_token(url, admin, "admin")
        assert call(url, "POST", f"/api/v1/tokens/{created['token']['token_id']}/revoke", admin, {})[0] == 200
        w["expired"], _ = create_token(url, admin, "admin", expires_at=_rfc3339(int(time.time() * 1000) + 1500))
        w["wrong"] = "alog_0123456789abcdef_" + "A" * 43
        w["no-such"] = "not-a-token-of-this-log-at-all"
        time.sleep(1.6)  # the expiring token has expired
        yield w
    finally:
        server.stop()


# Route classes: one request each, and the roles the issue lets through (written out here, not read from the
# code under test).
ROUTES = {
    "entry contents": ("GET", "/api/v1/entries/0", None, {"monitor", "admin", "admin-token"}),
    "entry bundle": ("GET", "/tile/entries/000.p/1", None, {"monitor", "admin", "admin-token"}),
    "plain append": ("POST", "/api/v1/entries", b"an entry", {"writer", "admin", "admin-token"}),
    "events": ("GET", "/api/v1/events", None, {"auditor", "admin", "admin-token"}),
    "timeline": ("GET", "/api/v1/runs/run-acme/timeline", None, {"auditor", "admin", "admin-token"}),
    "evidence": ("GET", "/api/v1/runs/run-acme/evidence", None, {"auditor", "admin", "admin-token"}),
    "blob put": ("PUT", "/api/v1/blobs/" + SHA(b"put by a test").hexdigest(), b"put by a test",
                 {"writer", "admin", "admin-token"}),
    "producers": ("GET", "/api/v1/producers", None, {"admin", "admin-token"}),
    "tokens": ("GET", "/api/v1/tokens", None, {"admin", "admin-token"}),
    "metrics": ("GET", "/metrics", None, {"monitor", "admin", "admin-token"}),
}
ROLES = ("admin", "admin-token", "auditor", "writer", "monitor")


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_role_on_each_private_route(world, name):
    method, path, body, allowed = ROUTES[name]
    url = world["url"]
    for role in ROLES:
        status, _, answer = call(url, method, path, world[role], body)
        if role in allowed:
            assert 200 <= status < 300, f"{role} on {name}: {status} {answer[:200]!r}"
        else:
            assert status == 403, f"{role} on {name}: {status} {answer[:200]!r}"
            assert json.loads(answer)["type"] == "urn:auditlog:problem:forbidden"
    for credential in (None, "wrong", "no-such", "expired", "revoked"):
        status, headers, answer = call(url, method, path, None if credential is None else world[credential], body)
        assert status == 401, f"{credential} on {name}: {status} {answer[:200]!r}"
        assert headers.get("WWW-Authenticate") == 'Bearer realm="auditlog"'
        problem = json.loads(answer)
        assert problem["type"] == "urn:auditlog:problem:unauthenticated"
        if credential is not None:
            assert world[credential] not in problem["detail"]


def test_blob_reads_admin_and_auditors_of_a_tenant_that_names_the_blob(world):
    url, acme, globex = world["url"], world["blobs"]["acme"], world["blobs"]["globex"]
    assert call(url, "GET", f"/api/v1/blobs/{acme}", world["admin"])[2] == b"the acme prompt"
    for role in ("writer", "monitor"):
        assert call(url, "GET", f"/api/v1/blobs/{acme}", world[role])[0] == 403
    for credential in (None, world["wrong"], world["expired"], world["revoked"]):
        assert call(url, "GET", f"/api/v1/blobs/{acme}", credential)[0] == 401
    # globex's blob is answered to acme's auditor as a blob that does not exist.
    assert call(url, "GET", f"/api/v1/blobs/{globex}", world["auditor"])[0] == 404
    status, _, answer = call(url, "GET", f"/api/v1/blobs/{acme}", world["auditor"])
    assert (status, answer) == (200, b"the acme prompt")


def test_admin_writes_need_an_admin(world):
    url = world["url"]
    digest = SHA(b"never stored").hexdigest()
    for role in ("auditor", "writer", "monitor"):
        assert call(url, "POST", "/api/v1/producers", world[role], {"producer": f"x-{role}", "tenants": ["a"]})[0] \
            == 403
        assert call(url, "POST", "/api/v1/tokens", world[role], {"role": "admin"})[0] == 403
        assert call(url, "DELETE", f"/api/v1/blobs/{digest}", world[role])[0] == 403
    assert call(url, "POST", "/api/v1/tokens", None, {"role": "admin"})[0] == 401
    assert call(url, "DELETE", f"/api/v1/blobs/{digest}", world["admin"])[0] == 404  # allowed, and not there


def test_an_auditor_sees_only_its_tenants(world):
    url, auditor = world["url"], world["auditor"]
    status, _, answer = call(url, "GET", "/api/v1/events", auditor)
    assert status == 200
    events = json.loads(answer)["events"]
    assert events and {e["event"]["tenant"] for e in events} == {"acme"}
    admin_events = json.loads(call(url, "GET", "/api/v1/events", world["admin"])[2])["events"]
    assert {e["event"]["tenant"] for e in admin_events} == {"acme", "globex"}
    # Filtered in the query, not after paging: a page of one is acme's first event, never an empty globex page.
    status, _, answer = call(url, "GET", "/api/v1/events?limit=1&run_id=run-globex", auditor)
    assert status == 200 and json.loads(answer) == {"events": [], "next_cursor": None}
    first = json.loads(call(url, "GET", "/api/v1/events?limit=1", auditor)[2])
    assert first["events"][0]["event"]["tenant"] == "acme"
    assert call(url, "GET", "/api/v1/events?tenant=acme", auditor)[0] == 200
    status, _, answer = call(url, "GET", "/api/v1/events?tenant=globex", auditor)
    assert status == 403 and json.loads(answer)["type"] == "urn:auditlog:problem:forbidden"
    for what in ("timeline", "evidence"):
        assert call(url, "GET", f"/api/v1/runs/run-globex/{what}", auditor)[0] == 404
        assert call(url, "GET", f"/api/v1/runs/run-globex/{what}?tenant=globex", auditor)[0] == 403
        assert call(url, "GET", f"/api/v1/runs/run-globex/{what}", world["admin"])[0] == 200
        assert call(url, "GET", f"/api/v1/runs/run-acme/{what}", auditor)[0] == 200


def test_public_routes_need_no_credential_and_refuse_a_bad_one(world):
    url = world["url"]
    for path in ("/checkpoint", "/tile/0/000.p/1", "/api/v1/proof/inclusion?index=0&tree_size=1",
                 "/api/v1/proof/consistency?first=1&second=2", "/api/v1/log", "/healthz", "/readyz",
                 "/api/v1/openapi.json", "/api/v1/schemas/auditlog.event/v1"):
        assert call(url, "GET", path)[0] == 200, path
        assert call(url, "GET", path, world["monitor"])[0] == 200, path
        assert call(url, "GET", path, world["revoked"])[0] == 401, path
    assert call(url, "GET", "/checkpoint.witnessed")[0] == 404  # no witnesses: public, and nothing there
    assert call(url, "GET", "/no/such/route")[0] == 404
    assert call(url, "GET", "/no/such/route", world["wrong"])[0] == 404


def test_hostile_authorization_headers_are_401_never_500(world):
    port = int(world["url"].rsplit(":", 1)[1])
    for value in (b"Bearer \xff\xfe" + world["admin"].encode(), b"Bearer " + world["admin"].encode() + b"\xc3\xa9",
                  b"Bearer " + b"A" * 10_000, b"Basic YWRtaW46YWRtaW4=", b"Bearer", b"Bearer a b",
                  "Bearer caf\u00e9".encode()):
        for path in (b"/api/v1/events", b"/checkpoint"):
            request = b"GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n\r\n" % (path, value)
            status, headers, body = asyncio.run(exchange_raw(port, request))
            assert status == 401, (value[:40], path, status, body[:200])
            assert json.loads(body)["type"] == "urn:auditlog:problem:unauthenticated"
    two = (b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nAuthorization: Bearer x\r\n"
           b"Connection: close\r\n\r\n" % world["admin"].encode())
    assert asyncio.run(exchange_raw(port, two))[0] == 401


def test_token_secrets_are_never_stored_and_token_changes_are_log_entries(world):
    url, admin, root = world["url"], world["admin-token"], world["root"]
    secret, created = create_token(url, admin, "monitor")
    token_id, index = created["token"]["token_id"], created["index"]
    assert secret.startswith(f"alog_{token_id}_") and len(secret) == len("alog_") + 16 + 1 + 43
    listed = json.loads(call(url, "GET", "/api/v1/tokens", admin)[2])["tokens"]
    assert token_id in {t["token_id"] for t in listed}
    assert secret not in json.dumps(listed) and "sha256" not in json.dumps(listed)
    # The creation is an entry of the log: the token's hash, never the token.
    status, _, answer = call(url, "GET", f"/api/v1/entries/{index}", admin)
    record = json.loads(base64.b64decode(json.loads(answer)["data"]))
    assert record["type"] == "auditlog.token-change/v1" and record["change"] == "token-created"
    assert record["token_id"] == token_id and record["role"] == "monitor"
    assert record["sha256"] == SHA(secret.encode()).hexdigest()
    # Nothing in the data dir holds the token (database, its WAL, anything else), once it is committed.
    for path in (root / "data").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    status, _, answer = call(url, "POST", f"/api/v1/tokens/{token_id}/revoke", admin, {"reason": "done"})
    revoked = json.loads(answer)
    assert status == 200 and revoked["token"]["revoked_at"] is not None and "secret" not in revoked
    assert call(url, "GET", "/api/v1/entries/0", secret)[0] == 401
    assert call(url, "POST", f"/api/v1/tokens/{token_id}/revoke", admin, {})[0] == 409
    assert call(url, "POST", "/api/v1/tokens/0000000000000000/revoke", admin, {})[0] == 404
    for body in ({"role": "root"}, {"role": "auditor"}, {"role": "monitor", "tenants": ["acme"]},
                 {"role": "admin", "expires_at": "2001-01-01T00:00:00.000Z"}, {"role": "admin", "bogus": 1}):
        status, _, answer = call(url, "POST", "/api/v1/tokens", admin, body)
        assert status == 400, (body, answer)


def test_tokens_are_replayed_from_the_log_after_a_restart(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--verify-processes", "0"]).start()
    try:
        admin = (tmp_path / "data" / "admin.token").read_text().strip()
        kept, _ = create_token(server.url, admin, "monitor")
        gone, created = create_token(server.url, admin, "monitor")
        call(server.url, "POST", f"/api/v1/tokens/{created['token']['token_id']}/revoke", admin, {})
        assert call(server.url, "POST", "/api/v1/entries", admin, b"x")[0] == 200
    finally:
        server.stop()
    server = ServerProcess(tmp_path / "data", extra_args=["--verify-processes", "0"]).start()
    try:
        assert call(server.url, "GET", "/api/v1/entries/0", kept)[0] == 200
        assert call(server.url, "GET", "/api/v1/entries/0", gone)[0] == 401
        assert len(json.loads(call(server.url, "GET", "/api/v1/tokens", admin)[2])["tokens"]) == 2
    finally:
        server.stop()


def test_a_public_log_lets_anyone_read_and_append_entries_and_nothing_else(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--public", "--verify-processes", "0"]).start()
    try:
        url = server.url
        status, _, answer = call(url, "POST", "/api/v1/entries", None, b"anyone")
        assert status == 200, answer
        assert call(url, "GET", "/api/v1/entries/0")[0] == 200
        assert call(url, "GET", "/tile/entries/000.p/1")[0] == 200
        digest = SHA(b"blob").hexdigest()
        for method, path, body in (("GET", "/api/v1/events", None), ("GET", "/api/v1/runs/r/timeline", None),
                                   ("GET", f"/api/v1/blobs/{digest}", None), ("PUT", f"/api/v1/blobs/{digest}", b"blob"),
                                   ("GET", "/api/v1/producers", None), ("GET", "/api/v1/tokens", None),
                                   ("GET", "/metrics", None)):
            assert call(url, method, path, None, body)[0] == 401, path
    finally:
        server.stop()


def test_metrics_public_flag(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--metrics-public", "--verify-processes", "0"]).start()
    try:
        assert call(server.url, "GET", "/metrics")[0] == 200
        assert call(server.url, "GET", "/api/v1/entries/0")[0] == 401
    finally:
        server.stop()


def test_read_workers_enforce_the_same_policy(tmp_path):
    server = ServerProcess(tmp_path / "data", extra_args=["--read-workers", "1", "--verify-processes", "0"]).start()
    try:
        url = server.url
        admin = (tmp_path / "data" / "admin.token").read_text().strip()
        monitor, _ = create_token(url, admin, "monitor")
        writer, _ = create_token(url, admin, "writer")
        revoked, created = create_token(url, admin, "monitor")
        auditor, _ = create_token(url, admin, "auditor", ["acme"])
        # Each request on a new connection: the kernel spreads them over the writer and the worker.
        for n in range(12):
            status, _, answer = call(url, "POST", "/api/v1/entries", writer, b"entry %d" % n)
            assert status == 200, answer
            assert call(url, "POST", "/api/v1/entries", None, b"anonymous")[0] == 401
            assert call(url, "POST", "/api/v1/entries", monitor, b"a monitor")[0] == 403
            assert call(url, "GET", f"/api/v1/entries/{n}", monitor)[0] == 200
            assert call(url, "GET", "/tile/entries/000.p/1", admin)[0] == 200
            assert call(url, "GET", f"/api/v1/entries/{n}")[0] == 401
            assert call(url, "GET", f"/api/v1/entries/{n}", auditor)[0] == 403
            assert call(url, "GET", "/tile/entries/000.p/1", "alog_0123456789abcdef_" + "A" * 43)[0] == 401
            assert call(url, "GET", "/api/v1/proof/inclusion?index=0")[0] == 200
            assert call(url, "GET", "/api/v1/events", writer)[0] == 403  # forwarded: the writer decides
            assert call(url, "GET", f"/api/v1/entries/{n}", revoked)[0] == 200
        call(url, "POST", f"/api/v1/tokens/{created['token']['token_id']}/revoke", admin, {})
        time.sleep(1.2)  # a worker keeps a token it found for at most 1 s
        for n in range(8):
            assert call(url, "GET", "/api/v1/entries/0", revoked)[0] == 401
        port = int(url.rsplit(":", 1)[1])
        for n in range(8):
            request = (b"GET /api/v1/entries/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff%s\r\n"
                       b"Connection: close\r\n\r\n" % admin.encode())
            assert asyncio.run(exchange_raw(port, request))[0] == 401
            request = b"GET /api/v1/entries/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n" % (
                b"A" * 10_000)
            assert asyncio.run(exchange_raw(port, request))[0] == 401
    finally:
        server.stop()


def test_every_route_of_the_writer_and_the_workers_is_in_the_policy_table(log_config):
    from aiohttp import web

    from api.server.app import create_app
    from api.server.auth import ROUTE_POLICY, rule_of
    from api.server.readers import create_worker_app

    for app in (create_app(log_config), create_worker_app(log_config)):
        missing = [(r.method, r.resource.canonical) for r in app.router.routes() if rule_of(r) is None]
        assert not missing, f"routes without an access rule in api/server/auth.py ROUTE_POLICY: {missing}"
    served = {(r.method, r.resource.canonical) for app in (create_app(log_config), create_worker_app(log_config))
              for r in app.router.routes()}
    extra = set(ROUTE_POLICY) - served - {("GET", "/api/v1/access-log")}
    assert not extra, f"rules for routes no app serves: {extra}"

    async def not_in_the_table(request):
        return web.Response(text="should never be answered")

    async def scenario():
        from aiohttp.test_utils import TestClient, TestServer

        app = create_app(log_config)
        app.router.add_get("/api/v1/unlisted", not_in_the_table)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/api/v1/unlisted", headers={"Authorization": "Bearer " + (
                Path(log_config.data_dir) / "admin.token").read_text().strip()})
            assert resp.status == 403 and "no access rule" in (await resp.json())["detail"]

    asyncio.run(scenario())


def test_the_cli_creates_lists_and_revokes_tokens(world):
    import subprocess
    import sys

    from tests.processes import REPO

    def auditlog(*argv):
        proc = subprocess.run([sys.executable, "-m", "api.cli", *argv, "--server", world["url"], "--token",
                               world["admin-token"]], cwd=REPO, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    code, out, err = auditlog("token", "create", "--role", "auditor", "--tenant", "acme", "--expires", "90d",
                              "--reason", "quarterly audit")
    assert code == 0, err
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("alog_") and "shown this once" in err
    assert call(world["url"], "GET", "/api/v1/events", secret)[0] == 200
    code, out, err = auditlog("token", "list")
    assert code == 0 and secret.split("_")[1] in out and secret not in out
    code, out, err = auditlog("token", "revoke", secret, "--reason", "done")
    assert code == 0, err
    assert call(world["url"], "GET", "/api/v1/events", secret)[0] == 401
    assert auditlog("token", "revoke", "not-a-token")[0] == 2
    assert auditlog("token", "create", "--role", "auditor")[0] == 2  # an auditor names its tenants


def test_principal_roles_and_token_records_round_trip():
    from log.access import ROLES, Principal, check_tenants
    from log.audit.canonical import canonicalize
    from log.audit.errors import InvalidEvent
    from log.audit.records import format_token_change, parse_entry, token_change
    from log.audit.tokens import check_token, new_token, token_digest, token_id_of
    from log.errors import Unauthenticated

    assert ROLES == ("admin", "auditor", "writer", "monitor", "vault-reader")
    auditor = Principal("token:x", "auditor", {"acme"})
    assert auditor.tenants == frozenset({"acme"}) and auditor.may_read_tenant("acme")
    assert not auditor.may_read_tenant("globex") and not auditor.may("entries:read") and auditor.may("events:read")
    with pytest.raises(ValueError):
        Principal("x", "root", None)
    with pytest.raises(ValueError):
        check_tenants("auditor", None)  # an auditor names its tenants
    with pytest.raises(ValueError):
        check_tenants("monitor", ["acme"])  # a monitor covers every tenant
    token_id, secret = new_token()
    assert token_id_of(secret) == token_id == token_id_of(token_id) and token_id_of("nope") is None
    change = token_change("token-created", token_id, 1_700_000_000_000, role="auditor", tenants=("acme",),
                          expires_at=None, sha256=token_digest(secret), reason="r")
    record = canonicalize(format_token_change(change))
    assert secret.encode() not in record
    kind, parsed = parse_entry(record)
    assert kind == "token-change" and parsed == change
    with pytest.raises(InvalidEvent):
        parse_entry(record.replace(b'"auditor"', b'"root"'))
    from log.audit.tokens import TokenRegistry

    registry = TokenRegistry()
    registry.apply(parsed, 7)
    assert check_token(registry.get(token_id), secret, 0) == Principal(f"token:{token_id}", "auditor",
                                                                         frozenset({"acme"}))
    with pytest.raises(Unauthenticated):
        check_token(registry.get(token_id), secret[:-1] + ("A" if secret[-1] != "A" else "B"), 0)
