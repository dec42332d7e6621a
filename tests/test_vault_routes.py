"""The token vault over HTTP (api/server/vault_routes.py) in the real app, in process: who may tokenise and
detokenise (roles, tenants), purpose required, problems naming the field, the vault-access entry and the access
log's record, an erased subject (410), and no answer without the log entry (503)."""

from __future__ import annotations

import asyncio
import base64
import json

from aiohttp.test_utils import TestClient, TestServer

from api.server.access_log import ACCESS_LOG
from api.server.app import create_app
from api.server.audit_routes import AUDIT
from api.server.state import LOG
from log.access import Principal
from log.audit.canonical import parse_json
from log.audit.lifecycle_names import token_sha256
from log.audit.vault import VAULT_ACCESS_TYPE
from log.audit.vault_keys import LocalMasterKey
from log.errors import StorageUnavailable

PRINCIPALS = {
    "writer-acme": Principal("token:w1", "writer", frozenset({"acme"})),
    "writer-any": Principal("token:w2", "writer", None),
    "admin": Principal("token:a1", "admin", None),
    "reader-acme": Principal("token:r1", "vault-reader", frozenset({"acme"})),
    "auditor-acme": Principal("token:au1", "auditor", frozenset({"acme"})),
}


class _Authenticator:
    async def authenticate(self, bearer: str):
        return PRINCIPALS.get(bearer)


def _as(name: str) -> dict:
    return {"Authorization": f"Bearer {name}"}


def _run(log_config, work, tmp_path=None):
    async def main():
        key_file = log_config.data_dir.parent / "vault.key"
        key_file.write_text(LocalMasterKey(b"m" * 32).encoded() + "\n")
        app = create_app(log_config, authenticators=[_Authenticator()], vault_key_file=key_file)
        async with TestClient(TestServer(app)) as client:
            return await work(app, client)

    return asyncio.run(main())


async def _post(client, path: str, who: str | None, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post(path, data=data, headers={**(_as(who) if who else {}),
                                                       "Content-Type": "application/json"})
    return resp.status, await resp.json(content_type=None)


def test_tokenise_is_for_writers_of_the_tenant(log_config):
    async def work(app, client):
        body = {"tenant": "acme", "subject": "cust-1", "values": ["alice@example.com", "alice@example.com"]}
        status, out = await _post(client, "/api/v1/vault/tokenize", "writer-acme", body)
        assert status == 200, out
        assert out["tokens"][0] == out["tokens"][1] and out["created"] == 2 and out["tenant"] == "acme"
        assert (await _post(client, "/api/v1/vault/tokenize", "writer-any", body))[1]["tokens"] == out["tokens"]
        assert (await _post(client, "/api/v1/vault/tokenize", "admin", body))[0] == 200
        status, problem = await _post(client, "/api/v1/vault/tokenize", "writer-acme", {**body, "tenant": "globex"})
        assert status == 403 and "globex" in problem["detail"]
        assert (await _post(client, "/api/v1/vault/tokenize", "reader-acme", body))[0] == 403
        assert (await _post(client, "/api/v1/vault/tokenize", "auditor-acme", body))[0] == 403
        assert (await _post(client, "/api/v1/vault/tokenize", None, body))[0] == 401
        for bad, field in [({**body, "values": "x"}, "values"), ({"tenant": "acme", "values": ["x"]}, "subject"),
                           ({**body, "extra": 1}, "extra"), ({**body, "values": ["x" * 4097]}, "values[0]"),
                           (b"not json", "$"), ([1], "$")]:
            status, problem = await _post(client, "/api/v1/vault/tokenize", "writer-acme", bad)
            assert (status, problem.get("field")) == (400, field), problem
            assert problem["type"] == "urn:auditlog:problem:invalid-input"

    _run(log_config, work)


def test_detokenise_needs_the_vault_reader_role_a_purpose_and_is_logged_first(log_config):
    async def work(app, client):
        _, out = await _post(client, "/api/v1/vault/tokenize", "writer-acme",
                             {"tenant": "acme", "subject": "cust-1", "values": ["alice", "bob"]})
        tokens = out["tokens"]
        ask = {"tenant": "acme", "tokens": [tokens[1], tokens[0]], "purpose": "chargeback dispute 77"}
        status, answer = await _post(client, "/api/v1/vault/detokenize", "reader-acme", ask)
        assert status == 200, answer
        assert answer["values"] == [{"token": tokens[1], "status": "found", "value": "bob"},
                                    {"token": tokens[0], "status": "found", "value": "alice"}]
        entry = await app[LOG].entry(answer["index"])
        record = parse_json(entry.data).value
        assert record["type"] == VAULT_ACCESS_TYPE and record["purpose"] == "chargeback dispute 77"
        assert record["credential"] == "token:r1" and record["role"] == "vault-reader"
        assert record["token_sha256"] == sorted(token_sha256(t) for t in tokens)
        assert b"alice" not in entry.data and b"bob" not in entry.data
        size = app[LOG].size

        refusals = [
            ("admin", ask, 403, None), ("writer-acme", ask, 403, None), ("auditor-acme", ask, 403, None),
            (None, ask, 401, "Authorization"),
            ("reader-acme", {**ask, "tenant": "globex"}, 403, None),
            ("reader-acme", {"tenant": "acme", "tokens": tokens}, 400, "purpose"),
            ("reader-acme", {**ask, "purpose": ""}, 400, "purpose"),
            ("reader-acme", {**ask, "purpose": 5}, 400, "purpose"),
            ("reader-acme", {**ask, "tokens": ["alice"]}, 400, "tokens[0]"),
            ("reader-acme", {**ask, "tokens": []}, 400, "tokens"),
        ]
        for who, body, status, field in refusals:
            got, problem = await _post(client, "/api/v1/vault/detokenize", who, body)
            assert (got, problem.get("field")) == (status, field), (who, body, problem)
            assert "alice" not in json.dumps(problem)
        assert app[LOG].size == size  # nothing refused was logged

    _run(log_config, work)


def test_detokenise_is_in_the_access_log(log_config):
    async def work(app, client):
        _, out = await _post(client, "/api/v1/vault/tokenize", "writer-acme",
                             {"tenant": "acme", "subject": "cust-1", "values": ["alice"]})
        await _post(client, "/api/v1/vault/detokenize", "reader-acme",
                    {"tenant": "acme", "tokens": out["tokens"], "purpose": "support case 1"})
        await app[ACCESS_LOG].flush()
        resp = await client.get("/api/v1/access-log", params={"what": "vault"}, headers=_as("admin"))
        return (await resp.json())["records"]

    records = _run(log_config, work)
    assert [(r["credential"], r["role"], r["what"], r["target"], r["status"]) for r in records] == [
        ("token:r1", "vault-reader", "vault", "acme: 1 tokens", 200)]


def test_an_erased_subject_and_a_log_that_cannot_take_the_entry(log_config):
    async def work(app, client):
        _, out = await _post(client, "/api/v1/vault/tokenize", "writer-acme",
                             {"tenant": "acme", "subject": "cust-1", "values": ["alice"]})
        log = app[LOG]

        async def refuse(*args, **kwargs):
            raise StorageUnavailable("storage is unavailable: database unreachable; retry later",
                                     "database unreachable")

        log.add_entries = refuse
        try:
            status, problem = await _post(client, "/api/v1/vault/detokenize", "reader-acme",
                                          {"tenant": "acme", "tokens": out["tokens"], "purpose": "p"})
        finally:
            del log.add_entries
        assert status == 503 and "alice" not in json.dumps(problem), problem

        await app[AUDIT].vault.shred_subject("acme", out["subject"], 1)
        status, problem = await _post(client, "/api/v1/vault/tokenize", "writer-acme",
                                      {"tenant": "acme", "subject": "cust-1", "values": ["alice again"]})
        assert status == 410 and problem["type"] == "urn:auditlog:problem:subject-erased", problem
        status, answer = await _post(client, "/api/v1/vault/detokenize", "reader-acme",
                                     {"tenant": "acme", "tokens": out["tokens"], "purpose": "p"})
        assert status == 200 and answer["values"] == [{"token": out["tokens"][0], "status": "erased"}]

    _run(log_config, work)


def test_the_master_key_file_is_the_one_used(log_config):
    """A server given --vault-key-file wraps with that key (and creates no key file of its own)."""
    async def work(app, client):
        await _post(client, "/api/v1/vault/tokenize", "writer-acme",
                    {"tenant": "acme", "subject": "cust-1", "values": ["alice"]})
        return app[AUDIT].vault.master_key.key_id

    key_id = _run(log_config, work)
    assert key_id == LocalMasterKey(b"m" * 32).key_id
    assert not (log_config.data_dir / "vault-master.key").exists()
    assert base64.b64decode((log_config.data_dir.parent / "vault.key").read_text()) == b"m" * 32
