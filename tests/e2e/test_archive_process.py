"""Archive and restore between real processes: a live log with plain entries and a recorded run that cites a blob;
`auditlog archive` of a period of it from its database while it runs; `auditlog archive verify`; `auditlog serve
--archive` of the archive, against which the verifying client proves an event's inclusion and finds the run's
events, and which refuses writes. (Cosignatures and timestamp tokens in archives, real ones, are
tests/test_archive.py's: a witness and a TSA process here would double this test's time.)
"""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.request

import pytest

from api.cli.main import main
from api.client.evidence import verify_run_bundle
from api.client.log_client import LogClient
from api.client.recorder import Recorder, generate_key
from tests.credentials import ADMIN, ADMIN_TOKEN
from tests.e2e.test_witnessed_log import add, get
from tests.processes import ServerProcess

pytestmark = pytest.mark.usefixtures("operator_token")


def test_a_period_archived_from_a_live_log_verifies_and_is_served_for_proofs_and_queries(tmp_path, processes,
                                                                                           capsys):
    def cli(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    data = tmp_path / "log"
    assert cli("keygen", "--origin", "e2e.test/log", "--out", str(data / "log.key"))[0] == 0
    log_vkey = (data / "log.vkey").read_text().strip()
    live = ServerProcess(data)
    processes.append(live)
    live.start()

    add(live.url, [f"entry {i}".encode() for i in range(600)])
    seed, public, _ = generate_key()
    for argv in (["register", "--producer", "agent", "--tenant", "acme"],
                 ["add-key", "--producer", "agent", "--public-key", base64.b64encode(public).decode()]):
        code, out = cli("producer", *argv, "--server", live.url, "--data-dir", str(data))
        assert code == 0, out
    recorder = Recorder(live.url, producer="agent", signing_key=seed, log_key=log_vkey, tenant="acme",
                        actor={"type": "agent", "id": "agent"}, token=ADMIN_TOKEN)
    with recorder.action("run-archived", context={"case_id": "case-7"}) as action:
        action.record("tool_call", output=recorder.put_blob(b"the tool's answer"))
    recorder.close()
    size = int(get(live.url + "/checkpoint")[2].split(b"\n")[1])

    # -- archive [300, size) from the database while the log runs, and verify it offline ----------------------
    out_file = tmp_path / "period.tar.gz"
    code, out = cli("archive", "--data-dir", str(data), "--from-size", "300", "--out", str(out_file), "--quiet")
    assert code == 0, out
    assert f"[256, {size:,})" in out and ", 1 blobs" in out, out
    code, out = cli("archive", "verify", str(out_file), "--log-key", log_vkey, "--quiet")
    assert code == 0 and "VALID" in out, out

    # -- serve the archive and prove against it with the verifying client --------------------------------------
    archive = ServerProcess(tmp_path / "auditor", None, ["--archive", str(out_file)])
    processes.append(archive)
    archive.start()
    live.stop()  # the archive server needs nothing of the live log

    async def audit():
        async with LogClient(archive.url, log_vkey, token=ADMIN_TOKEN) as client:
            page = await client.events({"run_id": "run-archived"})
            assert [e.envelope.event["event_type"] for e in page.events] == ["intent", "tool_call", "outcome"]
            by_case = await client.events({"case_id": "case-7"})
            assert [e.index for e in by_case.events] == [page.events[0].index, page.events[2].index]
            first = page.events[0]
            proof = await client.inclusion_proof(first.index)
            assert proof.tree_size == size
            assert await client.entry(450) == b"entry 450"  # proven included in the archived checkpoint
            blob = page.events[1].envelope.event["output"]["sha256"]
            bundle = await client.run_evidence("run-archived")  # the run's evidence, from the archive alone
            report = verify_run_bundle(bundle, log_vkey)
            assert report.evidence.events == 3 and report.checkpoint.size == size
            return blob

    blob = asyncio.run(audit())
    assert get(f"{archive.url}/api/v1/blobs/{blob}")[2] == b"the tool's answer"
    assert get(f"{archive.url}/api/v1/entries/10")[0] == 404
    request = urllib.request.Request(archive.url + "/api/v1/entries", data=b"x", method="POST", headers=ADMIN)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and b"read-only-archive" in refused.value.read()
    archive.stop()
    assert archive.proc.returncode == 0
