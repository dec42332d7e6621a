"""The OpenAPI document's security declarations, walked on a real server (issue 18): every operation the document
lists is sent with no credential, an unknown one, an expired one, a revoked one, another tenant's (an auditor of
globex; for routes its role does not cover, simply the wrong role) and the right one, and each answer must be what
the declaration says: a public operation (`security: []`) answers everyone with a valid or no credential; a
private one answers 401 without a valid credential, 403 (or 404, for a tenant's record out of scope) to the wrong
principal, and neither to the right one. Which roles are right comes from the permission the document names and
the issue's role table, written out here."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.test_access_control import call, create_token, world  # noqa: F401 - world is the server fixture

# The roles per permission, written out here rather than read from log/access.py.
RIGHT_ROLE = {"entries:read": "monitor", "entries:append": "writer", "events:read": "auditor",
              "blobs:read": "auditor", "blobs:write": "writer", "metrics": "monitor", "admin": "admin",
              "vault:tokenize": "writer", "vault:read": "vault-reader", "drills:record": "auditor"}
TENANT_SCOPED = {"events:read", "blobs:read", "drills:record"}  # an auditor of another tenant is refused these for acme's records


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete"):
                yield method.upper(), path, operation


def _concrete(path: str, w: dict, size: int) -> str:
    """A real request path for the template: acme's records, the log's own tiles and entries."""
    width = f"000.p/{size}" if size < 256 else "000"
    values = {"{level}": "0", "{n}": width, "{index}": "0", "{size}": str(size), "{run_id}": "run-acme",
              "{sha256}": w["blobs"]["acme"], "{producer}": "agent-acme", "{key_id}": "0000000000000000",
              "{token_id}": w["walk-token-id"], "{hold_id}": "0" * 16, "{file}": "app.js"}
    if path == "/tile/entries/{n}":
        return f"/tile/entries/{width}"
    for name, value in values.items():
        path = path.replace(name, value)
    return path + {"/api/v1/events": "?tenant=acme", "/api/v1/drills": "?tenant=acme",
                   "/api/v1/reports": "?tenant=acme&from=2020-01-01&to=2100-01-01"}.get(path, "")


@pytest.fixture(scope="module")
def walk(world):  # noqa: F811 - the imported fixture
    w = dict(world)
    w["other-tenant"], _ = create_token(w["url"], w["admin-token"], "auditor", ["globex"])
    w["vault-reader"], _ = create_token(w["url"], w["admin-token"], "vault-reader", ["acme"])
    _, created = create_token(w["url"], w["admin-token"], "writer", ["acme"])  # revoked by the walk's admin
    w["walk-token-id"] = created["token"]["token_id"]
    status, _, body = call(w["url"], "GET", "/api/v1/openapi.json")
    assert status == 200
    w["document"] = json.loads(body)
    throwaway = b"a blob the walk's admin erases"
    w["throwaway"] = hashlib.sha256(throwaway).hexdigest()
    assert call(w["url"], "PUT", f"/api/v1/blobs/{w['throwaway']}", w["writer"], throwaway)[0] in (200, 201)
    status, _, body = call(w["url"], "GET", "/api/v1/log")
    w["size"] = json.loads(body)["tree_size"]
    return w


def _body(method: str, path: str = "") -> bytes | None:
    if (method, path) == ("POST", "/api/v1/drills"):
        return b'{"tenant":"acme"}'  # acme's drill: another tenant's auditor is refused it
    return b"{}" if method in ("POST", "PUT") else None


def test_every_operation_declares_its_security_from_the_route_policy(walk):
    operations = list(_operations(walk["document"]))
    assert len(operations) > 30
    for method, path, operation in operations:
        assert "security" in operation, f"{method} {path} declares no security"
        if operation["security"]:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert operation["x-auditlog-permission"] in RIGHT_ROLE, (method, path)
    public = {(m, p) for m, p, o in operations if o["security"] == []}
    assert ("GET", "/checkpoint") in public and ("GET", "/api/v1/proof/inclusion") in public
    assert ("GET", "/api/v1/events") not in public and ("GET", "/tile/entries/{n}") not in public


@pytest.mark.parametrize("who", ["none", "unknown", "expired", "revoked", "other", "right"])
def test_each_operation_answers_each_credential_as_declared(walk, who):
    wrong = []
    for method, path, operation in _operations(walk["document"]):
        target = _concrete(path, walk, walk["size"])
        permission = operation.get("x-auditlog-permission")
        token = {"none": None, "unknown": walk["wrong"], "expired": walk["expired"], "revoked": walk["revoked"],
                 "other": walk["other-tenant"]}.get(who)
        if who == "right":
            token = walk[RIGHT_ROLE[permission]] if permission else None
        if (method, path) == ("DELETE", "/api/v1/blobs/{sha256}"):
            target = f"/api/v1/blobs/{walk['throwaway']}?reason=walk"  # acme's blob stays for the other rows
        status, _, body = call(walk["url"], method, target, token, _body(method, path))
        if who in ("unknown", "expired", "revoked"):
            expected = {401}
        elif who == "none":
            expected = None if permission is None else {401}
        elif who == "other":
            if permission is None:
                expected = None
            elif permission in TENANT_SCOPED:
                expected = {403, 404}
            else:
                expected = {403}
        else:
            expected = None
        if expected is None:
            ok = status not in (401, 403) and status < 500
        else:
            ok = status in expected
        if not ok:
            wrong.append(f"{method} {target} as {who}: {status} {body[:120]!r}")
    assert not wrong, "\n".join(wrong)
