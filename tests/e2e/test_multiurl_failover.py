"""The SDK and the CLI given both servers of a two-server PostgreSQL log (real `auditlog serve` processes), while
the sequencer is SIGKILLed: the Recorder, its outbox, and `auditlog add` and `verify` carry on through the standby
once it has taken over, and nothing is logged twice. The failover rules themselves are tested against loopback
servers in tests/test_servers.py; this is the scenario they exist for.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import requests

from api.client.recorder import Recorder, generate_key
from tests.postgres import fresh_database
from tests.ha_cluster import Cluster
from tests.processes import REPO


def test_the_sdk_and_the_cli_move_on_to_the_standby_when_the_sequencer_is_killed(tmp_path):
    with fresh_database() as url:
        common = ["--blob-dir", str(tmp_path / "blobs"), "--batch-max-age-ms", "2", "--verify-processes", "0"]
        with Cluster(tmp_path, url, count=2, extra_args=common) as cluster:
            first, second = cluster.servers
            both = f"{first.url},{second.url}"
            log_key = requests.get(f"{first.url}/api/v1/log", timeout=10).json()["verifier_key"]
            seed, public, _ = generate_key()
            for path, body in (("/api/v1/producers", {"producer": "ha-agent", "tenants": ["acme"]}),
                               ("/api/v1/producers/ha-agent/keys", {"public_key": base64.b64encode(public).decode()})):
                assert requests.post(first.url + path, json=body, headers=first.admin, timeout=10).status_code == 201
            recorder = Recorder(both, producer="ha-agent", signing_key=seed, log_key=log_key, tenant="acme",
                                actor={"type": "agent", "id": "ha-agent"}, outbox=tmp_path / "spool", timeout=10)
            before = recorder.record("intent", run_id="run-ha")
            assert recorder.url == first.url

            first.kill()
            # The first server refuses connections; the second answers 503 until it has taken over, then logs.
            after = [recorder.record("tool_call", run_id="run-ha") for _ in range(3)]
            assert recorder.url == second.url and recorder.outbox.pending() == []
            assert [ack.index for ack in after] == sorted({ack.index for ack in after})
            assert after[0].index > before.index and not any(ack.duplicate for ack in after)
            recorder.close()

            def auditlog(*argv: str) -> subprocess.CompletedProcess:
                return subprocess.run([sys.executable, "-m", "api.cli", *argv, "--server", both, "--log-key",
                                       log_key, "--token", first.admin_token], cwd=REPO, capture_output=True,
                                      text=True, timeout=120)

            entry = tmp_path / "entry.txt"
            entry.write_text("after the failover\n")
            added = auditlog("add", str(entry))
            assert added.returncode == 0, added.stderr
            verified = auditlog("verify", "--quiet")
            assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout + verified.stderr
            events = requests.get(f"{second.url}/api/v1/events", params={"run_id": "run-ha"}, headers=first.admin,
                                  timeout=10).json()["events"]
            assert [e["index"] for e in events] == [before.index] + [ack.index for ack in after]
