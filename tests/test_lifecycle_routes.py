"""Legal holds and data-subject requests over HTTP, in process (api/server/lifecycle_routes.py, the real app): place,
list and release holds, a blob DELETE a hold refuses (409 naming the hold, the refusal logged) and allows once the
hold is released.

What each would catch:
- test_holds_over_http: a hold placed without its entry, a release that leaves the hold active, bad input answered
  other than 400 naming the field, a second release or an unknown hold not answered 409 / 404.
- test_a_held_blob_is_not_deleted_until_the_hold_is_released: a blob deleted while an event citing it is held, a
  refusal not in the log, a problem body that does not name the hold, a blob still refused after the release.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.server.app import create_app
from api.server.audit_routes import AUDIT
from log.audit.canonical import canonicalize
from log.audit.holds import parse_hold_change
from log.audit.registry import key_id_for

ADMIN_TOKEN = "lifecycle-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STAMP = "2026-03-01T10:00:00.000Z"


class Producer:
    def __init__(self, name: str = "gateway"):
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def envelope(self, event: dict) -> dict:
        return {"producer": self.name, "key_id": key_id_for(self.public), "event": event,
                "signature": base64.b64encode(self.key.sign(canonicalize(event))).decode()}


def event(n: int, *, tenant="acme", run_id="run-1", **extra) -> dict:
    return {"schema": "auditlog.event/v1", "event_id": f"ev-{n}", "trace_id": "tr-1", "run_id": run_id,
            "timestamp": STAMP, "tenant": tenant, "actor": {"type": "agent", "id": "agent-1"},
            "event_type": "model_call", **extra}


def ref(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "media_type": "text/plain"}


async def setup_world(app, producer: Producer, *events: dict, blobs: tuple[bytes, ...] = ()) -> None:
    audit = app[AUDIT]
    await audit.register_producer(producer.name, ["acme", "globex"])
    await audit.add_key(producer.name, producer.public, not_before=0)
    for data in blobs:
        await audit.put_blob(hashlib.sha256(data).hexdigest(), data)
    result = await audit.submit(json.dumps({"events": [producer.envelope(e) for e in events]}).encode())
    assert all(type(r).__name__ == "Receipt" for r in result.results), result.results


def _serve(log_config, work):
    async def main():
        app = create_app(log_config, admin_token=ADMIN_TOKEN)
        async with TestClient(TestServer(app)) as client:
            return await work(app, client)

    return asyncio.run(main())


async def _entry(app, index: int) -> dict:
    return json.loads((await app[AUDIT].log.entry(index)).data)


def test_holds_over_http(log_config):
    async def work(app, client):
        scope = {"tenant": "acme", "run_ids": ["run-1"], "context": [{"name": "case_id", "value": "C-7"}]}
        placed = await client.post("/api/v1/holds", json={"scope": scope, "reason": "litigation",
                                                          "reference": "case 2026-17"}, headers=ADMIN)
        assert placed.status == 201, await placed.text()
        answer = await placed.json()
        hold_id = answer["hold"]["hold_id"]
        assert answer["hold"]["active"] and answer["hold"]["scope"] == scope
        record = parse_hold_change(await _entry(app, answer["index"]))
        assert (record.change, record.hold_id, record.reference) == ("placed", hold_id, "case 2026-17")

        for body, field in (({"scope": {"tenant": "acme"}, "reason": "x"}, "reference"),
                            ({"scope": {"tenant": "acme", "run_ids": "run-1"}, "reason": "x", "reference": "r"},
                             "scope.run_ids"),
                            ({"scope": {"run_ids": ["r"]}, "reason": "x", "reference": "r"}, "scope.tenant"),
                            ({"scope": {"tenant": "acme"}, "reason": " ", "reference": "r"}, "reason"),
                            ({"scope": {"tenant": "acme"}, "reason": "x", "reference": "r", "until": 1}, "until")):
            refused = await client.post("/api/v1/holds", json=body, headers=ADMIN)
            problem = await refused.json()
            assert (refused.status, problem.get("field")) == (400, field), problem

        await client.post("/api/v1/holds", json={"scope": {"tenant": "globex"}, "reason": "audit",
                                                 "reference": "r-2"}, headers=ADMIN)
        listed = await (await client.get("/api/v1/holds?tenant=acme", headers=ADMIN)).json()
        assert [h["hold_id"] for h in listed["holds"]] == [hold_id]

        bad = await client.post(f"/api/v1/holds/{hold_id}/release", json={}, headers=ADMIN)
        assert (bad.status, (await bad.json())["field"]) == (400, "reason")
        released = await client.post(f"/api/v1/holds/{hold_id}/release", json={"reason": "settled"}, headers=ADMIN)
        assert released.status == 200
        answer = await released.json()
        assert not answer["hold"]["active"] and answer["hold"]["released_index"] == answer["index"]
        assert parse_hold_change(await _entry(app, answer["index"])).change == "released"
        again = await client.post(f"/api/v1/holds/{hold_id}/release", json={"reason": "x"}, headers=ADMIN)
        assert again.status == 409
        unknown = await client.post(f"/api/v1/holds/{'0' * 16}/release", json={"reason": "x"}, headers=ADMIN)
        assert unknown.status == 404
        malformed = await client.post("/api/v1/holds/HOLD/release", json={"reason": "x"}, headers=ADMIN)
        assert (malformed.status, (await malformed.json())["field"]) == (400, "hold_id")

        active = await (await client.get("/api/v1/holds?active=true", headers=ADMIN)).json()
        assert [h["tenant"] for h in active["holds"]] == ["globex"]
        assert (await client.get("/api/v1/holds")).status == 401

    _serve(log_config, work)


def test_a_held_blob_is_not_deleted_until_the_hold_is_released(log_config):
    producer = Producer()
    held, free = b"prompt under hold", b"prompt of another case"
    sha_held, sha_free = (hashlib.sha256(d).hexdigest() for d in (held, free))

    async def work(app, client):
        await setup_world(app, producer, event(1, context={"case_id": "C-7"}, input=ref(held)),
                          event(2, context={"case_id": "C-8"}, input=ref(free)), blobs=(held, free))
        placed = await client.post("/api/v1/holds", json={
            "scope": {"tenant": "acme", "context": [{"name": "case_id", "value": "C-7"}]},
            "reason": "litigation", "reference": "case 2026-17"}, headers=ADMIN)
        hold_id = (await placed.json())["hold"]["hold_id"]

        refused = await client.delete(f"/api/v1/blobs/{sha_held}?reason=cleanup", headers=ADMIN)
        problem = await refused.json()
        assert refused.status == 409, problem
        assert problem["type"] == "urn:auditlog:problem:legal-hold" and problem["hold_id"] == hold_id
        assert hold_id in problem["detail"]
        refusal = parse_hold_change(await _entry(app, problem["index"]))
        assert (refusal.change, refusal.hold_id, refusal.refused, refusal.reason) == (
            "deletion-refused", hold_id, ("blob", sha_held), "cleanup")
        assert await app[AUDIT].get_blob(sha_held) == held

        deleted = await client.delete(f"/api/v1/blobs/{sha_free}?reason=cleanup", headers=ADMIN)
        assert deleted.status == 200  # not in the hold's scope

        await client.post(f"/api/v1/holds/{hold_id}/release", json={"reason": "settled"}, headers=ADMIN)
        deleted = await client.delete(f"/api/v1/blobs/{sha_held}?reason=cleanup", headers=ADMIN)
        assert deleted.status == 200, await deleted.text()
        assert (await client.get(f"/api/v1/blobs/{sha_held}", headers=ADMIN)).status == 404

    _serve(log_config, work)
