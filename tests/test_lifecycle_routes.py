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


def test_subject_access_and_erasure_over_http(log_config):
    """The reference goes in the body and never comes back; access answers a bundle the offline verifier accepts
    (before and after the erasure) and is in the access log under the subject's token; erasure is logged."""
    from api.client.evidence import verify_evidence

    producer = Producer()
    prompt = b"a prompt about the customer"

    async def work(app, client):
        audit = app[AUDIT]
        subject = (await audit.vault.tokenize("acme", "carol@example.com", ["carol@example.com"])).subject
        await setup_world(app, producer, event(1, context={"customer_id": subject}, input=ref(prompt)),
                          event(2, run_id="run-2"), blobs=(prompt,))
        body = {"tenant": "acme", "subject": "carol@example.com"}

        answer = await client.post("/api/v1/subjects/access", json=body, headers=ADMIN)
        assert answer.status == 200, await answer.text()
        bundle = await answer.json()
        assert bundle["subject"]["subject"] == subject and len(bundle["events"]) == 1
        verify_evidence(bundle, audit.log.verifier_key)
        nobody = await client.post("/api/v1/subjects/access", json={"tenant": "acme", "subject": "dan"},
                                   headers=ADMIN)
        assert nobody.status == 404 and b"dan" not in await nobody.read()
        records = await (await client.get("/api/v1/access-log?what=subject-access", headers=ADMIN)).json()
        targets = [r["target"] for r in records["records"]]
        assert len(targets) == 2 and targets[0] == f"acme/{subject}" and targets[1].startswith("acme/vt.")
        assert [r["status"] for r in records["records"]] == [200, 404]

        for bad, field in (({**body}, "reason"), ({**body, "reason": "r", "extra": 1}, "extra"),
                           ({"tenant": "acme", "reason": "r"}, "subject"), ({**body, "reason": ""}, "reason")):
            refused = await client.post("/api/v1/subjects/erase", json=bad, headers=ADMIN)
            assert (refused.status, (await refused.json()).get("field")) == (400, field)
        erased = await client.post("/api/v1/subjects/erase", json={**body, "reason": "DSR 7"}, headers=ADMIN)
        text = await erased.read()
        assert erased.status == 200 and b"carol" not in text
        answer = json.loads(text)
        assert (answer["subject"], answer["complete"], answer["blobs_deleted"]) == (subject, True, 1)
        record = json.loads((await audit.log.entry(answer["index"])).data)
        assert record["type"] == "auditlog.subject-erasure/v1"
        listed = await (await client.get(f"/api/v1/deletions/{answer['index']}", headers=ADMIN)).json()
        assert sorted(map(tuple, listed["items"])) == [("blob", hashlib.sha256(prompt).hexdigest()),
                                                       ("subject", f"acme/{subject}")]
        assert listed["list_sha256"] == record["list_sha256"] == answer["list_sha256"]  # anyone recomputes it

        after = await (await client.post("/api/v1/subjects/access", json=body, headers=ADMIN)).json()
        verify_evidence(after, audit.log.verifier_key)  # the erased subject and deleted blob stated, and proven
        assert after["format"] == "auditlog.evidence/v3"

    _serve(log_config, work)
