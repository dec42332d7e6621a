"""Two real `auditlog serve` processes on one PostgreSQL log: what a standby does for every kind of client.

The standby answers the stored tree's reads itself and passes everything else to the sequencer (api/server/
standby.py), so through the standby alone: an admin creates and revokes an API token (the standby then lets the
token in, and refuses it once revoked, from the database); a producer is registered and its signed event logged
once however often it is sent; a monitor's read of an entry the standby served lands in the access log. When the
sequencer is killed the standby takes over, and the registry it reloads from the database admits the producer that
was registered through the old sequencer while it stood by.
"""

from __future__ import annotations

import uuid

import requests

from tests.e2e.test_audit_process import Producer
from tests.e2e.test_witnessed_log import wait_for
from tests.ha_cluster import Cluster
from tests.postgres import fresh_database


def test_a_standby_serves_every_client_and_takes_over_with_the_registry_the_sequencer_left(tmp_path):
    with fresh_database() as url:
        blobs = tmp_path / "blobs"
        common = ["--blob-dir", str(blobs), "--batch-max-age-ms", "2", "--verify-processes", "0"]
        with Cluster(tmp_path, url, count=2, extra_args=common) as cluster:
            first, second = cluster.servers
            health = requests.get(f"{second.url}/healthz", timeout=10).json()
            assert (health["role"], health["sequencer"]) == ("standby", first.url)
            admin = first.admin

            # A monitor's token, created through the standby (passed on), works on the standby (from the database).
            created = requests.post(f"{second.url}/api/v1/tokens", json={"role": "monitor"},
                                    headers=admin, timeout=10)
            assert created.status_code == 201, created.text
            monitor = {"Authorization": f"Bearer {created.json()['secret']}"}
            token_id = created.json()["token"]["token_id"]

            # A producer registered and its signed event logged, all through the standby; sent three times, once.
            agent = Producer(f"agent-{uuid.uuid4().hex[:8]}")
            assert requests.post(f"{second.url}/api/v1/producers", headers=admin, timeout=10,
                                 json={"producer": agent.name, "tenants": [agent.tenant]}).status_code == 201
            assert requests.post(f"{second.url}/api/v1/producers/{agent.name}/keys", headers=admin, timeout=10,
                                 json={"public_key": agent.public_b64}).status_code == 201
            envelope = agent.envelope(agent.event("run-1"))
            answers = [requests.post(f"{second.url}/api/v1/events", json=envelope, headers=admin, timeout=10)
                       for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
            indices = {a.json()["index"] for a in answers}
            assert len(indices) == 1 and [a.json()["duplicate"] for a in answers] == [False, True, True]
            index = indices.pop()

            # The monitor reads that entry at the standby, which serves it itself and records the read.
            read = requests.get(f"{second.url}/api/v1/entries/{index}", headers=monitor, timeout=10)
            assert read.status_code == 200, read.text
            records = wait_for("the standby's access record", lambda: [r for r in requests.get(
                f"{second.url}/api/v1/access-log", headers=admin, params={"credential": f"token:{token_id}"},
                timeout=10).json()["records"] if r["target"] == str(index)])
            assert records[0]["status"] == 200

            # Revoked through the standby: the standby refuses the token within its 1 s cache.
            assert requests.post(f"{second.url}/api/v1/tokens/{token_id}/revoke", json={}, headers=admin,
                                 timeout=10).status_code == 200
            wait_for("the revocation at the standby", lambda: requests.get(
                f"{second.url}/api/v1/entries/{index}", headers=monitor, timeout=10).status_code == 401)

            # The sequencer dies: the standby takes over, and its registry (reloaded from the database) admits the
            # producer registered through the first server while it stood by.
            first.kill()
            wait_for("the takeover", lambda: requests.get(f"{second.url}/healthz", timeout=10).json()["role"]
                     == "sequencer")
            later = requests.post(f"{second.url}/api/v1/events", json=agent.envelope(agent.event("run-2")),
                                  headers=admin, timeout=10)
            assert later.status_code == 200 and later.json()["index"] > index, later.text
            again = requests.post(f"{second.url}/api/v1/events", json=envelope, headers=admin, timeout=10)
            assert again.status_code == 200 and again.json() == {**again.json(), "index": index, "duplicate": True}
