"""Evidence never fails open (issue 17): run bundles from a log with real witnesses and a real TSA carry the witnessed
checkpoint and its RFC 3161 token and verify with the witnesses' keys and the TSA's certificate; a bundle that cannot
satisfy a check asked of it fails that check; an edited origin fails (both kinds); waiting for cosignatures and a
timestamp returns once they cover the entries, and times out as Unavailable when the witness is down.

The log, its witnesses and its TSA run in background threads (`live_server`), so the CLI runs in this thread as a
user would run it (`api.cli.main.main`, exit statuses of api/cli/exits.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from api.cli.main import main as cli_main
from api.client.evidence import (
    EntryEvidenceError, RunEvidenceReport, verify_entry_bundle, verify_evidence, verify_run_bundle,
)
from api.client.log_client import LogClient
from api.client.waiting import wait_for_entry, wait_for_run
from api.server.app import Witnessing, create_app
from log.audit.admin import ADMIN_TOKEN_ENV
from log.audit.errors import EvidenceError
from log.audit.evidence import FORMAT_V1, FORMAT_V2
from log.errors import NotFound, Unavailable
from log.note import COSIGNATURE_ED25519, parse_note
from log.note_keys import generate_signer_key, parse_verifier_key
from tests.e2e.test_audit import TOKEN, Producer, _call, _register
from tests.credentials import ADMIN, ADMIN_TOKEN
from tests.test_witness_job import ORIGIN, WitnessServer
from tests.test_witnessed_app import zero_cosignature
from witness.cosignatures import WitnessPolicy
from witness.server import create_witness_app
from witness.tsa import CA_CERT_FILE, TimestampAuthority, TsaIdentity
from witness.tsa_server import make_tsa_app

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")

RUN = "run-17"


@pytest.fixture(scope="module")
def tsa_identity(tmp_path_factory) -> tuple[TsaIdentity, bytes]:
    directory = tmp_path_factory.mktemp("tsa")
    identity = TsaIdentity.load_or_create(directory)
    return identity, (directory / CA_CERT_FILE).read_bytes()


@dataclass
class Setup:
    url: str
    log_vkey: str
    witness_vkeys: list[str]
    ca_pem: bytes
    files: Path  # the keys and the CA certificate as files, for the CLI

    @property
    def policy(self) -> WitnessPolicy:
        return WitnessPolicy(tuple(self.witness_vkeys))

    def check_flags(self) -> list[str]:
        flags = ["--log-key", str(self.files / "log.vkey"), "--tsa-ca", str(self.files / "ca.pem")]
        for i in range(len(self.witness_vkeys)):
            flags += ["--witness-key", str(self.files / f"w{i}.vkey")]
        return flags


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def start_log(tmp_path, log_config, live_server, tsa_identity, monkeypatch, *, witnesses_up: bool) -> Setup:
    """A log with two witnesses (both up, or one that never answers) and the TSA, each on its own thread."""
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TOKEN)
    identity, ca_pem = tsa_identity
    signer_key, log_vkey = generate_signer_key(ORIGIN)
    (tmp_path / "log.key").write_text(signer_key + "\n")
    log_config.origin, log_config.key_file = ORIGIN, tmp_path / "log.key"
    verifier = parse_verifier_key(log_vkey)
    endpoints, vkeys = [], []
    for i in range(2 if witnesses_up else 1):
        witness = WitnessServer(tmp_path, f"witness.test/e{i}", verifier)
        url = live_server(create_witness_app(witness.cosigner, close_store=True)) if witnesses_up else _closed_port_url()
        endpoints.append(f"{url} {witness.vkeys[0]}")
        vkeys.append(witness.vkeys[0])
    tsa_url = live_server(make_tsa_app(TimestampAuthority(identity)))
    settings = Witnessing(witnesses=tuple(endpoints), witness_interval=0.05, tsa_url=tsa_url, tsa_ca_pem=ca_pem,
                          timestamp_interval=0.05)
    url = live_server(create_app(log_config, settings))
    files = tmp_path / "files"
    files.mkdir()
    (files / "log.vkey").write_text(log_vkey + "\n")
    (files / "ca.pem").write_bytes(ca_pem)
    for i, vkey in enumerate(vkeys):
        (files / f"w{i}.vkey").write_text(vkey + "\n")
    return Setup(url, log_vkey, vkeys, ca_pem, files)


_PRODUCERS: dict[str, Producer] = {}


def log_run(url: str, run_id: str = RUN, events: int = 3) -> list[int]:
    """Log a chain of `events` events of `run_id` (the log's producer registered the first time); their indices."""
    registered = url in _PRODUCERS
    agent = _PRODUCERS.setdefault(url, Producer("agent-17", "acme"))

    async def main() -> list[int]:
        async with aiohttp.ClientSession(headers=ADMIN) as session:
            if not registered:
                await _register(session, url, agent)
            indices, parent = [], None
            for n in range(events):
                event = agent.event(run_id=run_id, parent=parent, event_type="intent" if n == 0 else "tool_call")
                status, answer = await _call(session, "POST", f"{url}/api/v1/events", json=agent.envelope(event))
                assert status == 200, answer
                indices.append(answer["index"])
                parent = event["event_id"]
            return indices

    return asyncio.run(main())


async def _with_client(setup: Setup, work):
    async with LogClient(setup.url, setup.log_vkey, token=ADMIN_TOKEN) as client:
        return await work(client)


def _drop_cosignature(bundle: dict, name: str | None = None) -> None:
    """Remove the cosignature lines (of witness `name`, or every one) after the log's own signature."""
    text, lines = bundle["checkpoint"].split("\n\n", 1)
    kept = [line + "\n" for line in lines.rstrip("\n").split("\n")
            if line.startswith(f"— {ORIGIN} ") or (name is not None and name not in line)]
    bundle["checkpoint"] = text + "\n\n" + "".join(kept)


def _flip_token(bundle: dict) -> None:
    import base64

    data = bytearray(base64.b64decode(bundle["timestamp"]))
    data[-1] ^= 1
    bundle["timestamp"] = base64.b64encode(bytes(data)).decode()


def _as_v1(bundle: dict) -> None:
    """What a pre-issue-17 server wrote: format v1, no timestamp field, no cosignatures."""
    bundle["format"] = FORMAT_V1
    del bundle["timestamp"]
    _drop_cosignature(bundle)


# Each change to a good run bundle, and the check (log/audit/evidence.py, api/client/evidence.py) that must catch it
# when the verifier asks for both witnesses and the TSA.
RUN_MUTATIONS = {
    "origin edited": (lambda b: b.update(origin="evil.example/log"), 3),
    "origin not a string": (lambda b: b.update(origin=None), 1),
    "origin missing": (lambda b: b.pop("origin"), 1),
    "a field the format does not have": (lambda b: b.update(witnesses=["trust me"]), 1),
    "timestamp field missing": (lambda b: b.pop("timestamp"), 1),
    "format v1 with a timestamp field": (lambda b: b.update(format=FORMAT_V1), 1),
    "no events": (lambda b: b.update(events=[]), 1),
    "one cosignature dropped": (lambda b: _drop_cosignature(b, "witness.test/e1"), 9),
    "every cosignature dropped": (_drop_cosignature, 9),
    "a cosignature zeroed": (lambda bundle: zero_cosignature(bundle, "witness.test/e0"), 9),
    "token removed": (lambda b: b.update(timestamp=None), 10),
    "token byte flipped": (_flip_token, 10),
    "a v1 bundle": (_as_v1, 9),
}


def test_run_bundle_carries_cosignatures_and_timestamp_and_fails_each_missing_check(
        tmp_path, log_config, live_server, tsa_identity, monkeypatch):
    setup = start_log(tmp_path, log_config, live_server, tsa_identity, monkeypatch, witnesses_up=True)
    indices = log_run(setup.url)

    async def fetch(client: LogClient):
        coverage = await wait_for_run(client, RUN, timeout=30)
        return coverage, await client.run_evidence(RUN)

    coverage, bundle = asyncio.run(_with_client(setup, fetch))
    assert coverage.index == max(indices)
    assert coverage.witnessed_size > max(indices) and coverage.timestamped_size > max(indices)

    # The bundle carries the witnessed checkpoint (the log's signature and both cosignatures) and its token.
    assert bundle["format"] == FORMAT_V2 == "auditlog.evidence/v2"  # nothing of the run was deleted
    assert bundle["timestamp"] is not None
    signers = {s.name for s in parse_note(bundle["checkpoint"].encode()).signatures}
    assert signers == {ORIGIN, "witness.test/e0", "witness.test/e1"}
    report = verify_run_bundle(bundle, setup.log_vkey, witnesses=setup.policy, tsa_trusted=setup.ca_pem)
    assert isinstance(report, RunEvidenceReport)
    assert report.evidence.events == 3 and report.cosignatures.cosigned_by == ("witness.test/e0", "witness.test/e1")
    assert report.timestamp is not None and report.has_timestamp
    assert report.checkpoint.size > max(indices)
    assert isinstance(verify_evidence(bundle, setup.log_vkey, witnesses=setup.policy, tsa_trusted=setup.ca_pem),
                      RunEvidenceReport)

    for name, (mutate, check) in RUN_MUTATIONS.items():
        changed = copy.deepcopy(bundle)
        mutate(changed)
        with pytest.raises(EvidenceError) as caught:
            verify_run_bundle(changed, setup.log_vkey, witnesses=setup.policy, tsa_trusted=setup.ca_pem)
        assert caught.value.check == check, f"{name}: {caught.value}"
        assert str(caught.value).startswith(f"check {check} ("), f"{name}: {caught.value}"
    # A v1 bundle still verifies with the log key alone, and fails the timestamp when only that is asked.
    old = copy.deepcopy(bundle)
    _as_v1(old)
    assert verify_run_bundle(old, setup.log_vkey).evidence.format == FORMAT_V1
    with pytest.raises(EvidenceError, match=r"^check 10 \(timestamp\) failed: the bundle carries no timestamp"):
        verify_run_bundle(old, setup.log_vkey, tsa_trusted=setup.ca_pem)
    # k of n: one cosignature dropped is enough for k=1, not for the default (all).
    one = copy.deepcopy(bundle)
    _drop_cosignature(one, "witness.test/e1")
    verify_run_bundle(one, setup.log_vkey, witnesses=WitnessPolicy(tuple(setup.witness_vkeys), k=1))

    # A new entry: waiting returns once a cosigned and timestamped checkpoint covers it.
    [index] = log_run(setup.url, "run-17b", events=1)

    async def wait_entry(client: LogClient):
        return await wait_for_entry(client, index, timeout=30)

    coverage = asyncio.run(_with_client(setup, wait_entry))
    assert coverage.witnessed_size > index and coverage.timestamped_size > index


def test_witness_down_bundle_without_cosignatures_fails_when_they_are_asked_and_waiting_times_out(
        tmp_path, log_config, live_server, tsa_identity, monkeypatch):
    setup = start_log(tmp_path, log_config, live_server, tsa_identity, monkeypatch, witnesses_up=False)
    indices = log_run(setup.url, events=2)

    async def fetch(client: LogClient):
        bundle = await client.run_evidence(RUN)
        with pytest.raises(Unavailable) as run_wait:
            await wait_for_run(client, RUN, timeout=0.6)
        with pytest.raises(Unavailable) as entry_wait:
            await wait_for_entry(client, indices[0], timeout=0.3)
        with pytest.raises(NotFound):
            await wait_for_entry(client, 10**6, timeout=0.3)
        return bundle, str(run_wait.value), str(entry_wait.value)

    bundle, run_message, entry_message = asyncio.run(_with_client(setup, fetch))
    assert run_message.startswith(f"run {RUN} (entry {max(indices)}) not cosigned or timestamped after 0.6 s; "
                                  f"the witness lag is "), run_message
    assert "the timestamp lag is" in run_message and "\n" not in run_message
    assert entry_message.startswith(f"entry {indices[0]} (entry {indices[0]}) not cosigned or timestamped after "
                                    f"0.3 s"), entry_message

    # The latest checkpoint, with no cosignature and no token: fine for the log key alone, a failure when asked.
    assert bundle["timestamp"] is None and len(parse_note(bundle["checkpoint"].encode()).signatures) == 1
    verify_run_bundle(bundle, setup.log_vkey)
    with pytest.raises(EvidenceError, match=r"^check 9 \(cosignatures\) failed: cosigned by 0 of 1 witnesses "
                                            r"\(at least 1 required\); the checkpoint carries no cosignature"):
        verify_run_bundle(bundle, setup.log_vkey, witnesses=setup.policy)
    with pytest.raises(EvidenceError, match=r"^check 10 \(timestamp\) failed: the bundle carries no timestamp token"):
        verify_run_bundle(bundle, setup.log_vkey, tsa_trusted=setup.ca_pem)
    other = generate_signer_key("witness.test/other", COSIGNATURE_ED25519)[1]
    with pytest.raises(EvidenceError, match=r"^check 9 \(cosignatures\)"):
        verify_evidence(bundle, setup.log_vkey, witnesses=WitnessPolicy((other,)))


def test_a_log_without_witnesses_or_tsa_has_nothing_to_wait_for(log_config, live_server, monkeypatch):
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TOKEN)
    url = live_server(create_app(log_config))
    indices = log_run(url, events=1)

    async def main():
        async with LogClient(url, _log_vkey(url), token=ADMIN_TOKEN) as client:
            return await wait_for_run(client, RUN, timeout=0.2)

    coverage = asyncio.run(main())
    assert (coverage.index, coverage.witnessed_size, coverage.timestamped_size) == (indices[0], None, None)


def _log_vkey(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url + "/api/v1/log", timeout=10) as response:
        return json.loads(response.read())["verifier_key"]


def test_entry_bundle_origin_and_fields_are_checked(tmp_path, log_config, live_server, monkeypatch):
    """An entry bundle whose origin was edited, or which carries a field its format does not have, fails."""
    from api.client.evidence import build_entry_bundle
    from log.hashing import hash_leaf

    url = live_server(create_app(log_config))
    vkey = _log_vkey(url)

    async def main():
        async with LogClient(url, vkey, token=ADMIN_TOKEN) as client:
            [receipt] = await client.add_many([b"one entry"])
            checkpoint, note = await client.signed_checkpoint()
            proof = await client.inclusion_proof(receipt.index, checkpoint.size, leaf_hash=hash_leaf(b"one entry"))
            return build_entry_bundle(origin=checkpoint.origin, log_key=vkey, index=receipt.index,
                                      entry=b"one entry", tree_size=checkpoint.size, inclusion_proof=proof.hashes,
                                      checkpoint_note=note, timestamp=None)

    bundle = asyncio.run(main())
    verify_entry_bundle(bundle, vkey)
    for mutate, check in ((lambda b: b.update(origin="evil.example/log"), 3), (lambda b: b.pop("origin"), 1),
                          (lambda b: b.update(cosigned=True), 1)):
        changed = copy.deepcopy(bundle)
        mutate(changed)
        with pytest.raises(EntryEvidenceError) as caught:
            verify_entry_bundle(changed, vkey)
        assert caught.value.check == check, caught.value


# -- the CLI: `timeline --evidence [--wait]`, `proof --evidence [--wait]`, `verify-evidence` with every check ---------
def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _edit(path: Path, out: Path, **changes) -> Path:
    bundle = json.loads(path.read_text())
    bundle.update(changes)
    out.write_text(json.dumps(bundle))
    return out


def test_cli_waits_writes_and_verifies_both_kinds_with_witnesses_and_tsa(
        tmp_path, log_config, live_server, tsa_identity, monkeypatch, capsys):
    setup = start_log(tmp_path, log_config, live_server, tsa_identity, monkeypatch, witnesses_up=True)
    indices = log_run(setup.url)
    log_key = ["--server", setup.url, "--log-key", str(setup.files / "log.vkey")]
    run_file, entry_file = tmp_path / "run.json", tmp_path / "entry.json"

    code, out, err = run_cli(capsys, "timeline", "--run", RUN, "--evidence", str(run_file), "--wait", "--timeout",
                             "30", *log_key)
    assert code == 0, err
    assert "verified: 3 events" in out and "(2 cosignatures, a timestamp)" in out, out
    code, out, err = run_cli(capsys, "proof", "--evidence", str(indices[1]), "--out", str(entry_file), "--wait",
                             "--timeout", "30s", *log_key)
    assert code == 0, err
    assert "(2 cosignatures, a timestamp)" in err, err

    for path in (run_file, entry_file):
        code, out, err = run_cli(capsys, "verify-evidence", str(path), *setup.check_flags())
        assert code == 0, err
        assert "cosigned by 2 of 2 witnesses" in out and "timestamp VALID (genTime " in out, out
        assert err == "", err  # no more "applies to entry bundles only"
        code, out, err = run_cli(capsys, "verify-evidence", str(path), *setup.check_flags(), "--json")
        report = json.loads(out)
        assert code == 0 and report["verified"] is True, err
        assert report["cosigned_by"] == ["witness.test/e0", "witness.test/e1"] and report["timestamp"]["gen_time"]
        assert report["kind"] == ("run" if path == run_file else "entry")

        edited = _edit(path, tmp_path / "edited.json", origin="evil.example/log")
        code, out, err = run_cli(capsys, "verify-evidence", str(edited), *setup.check_flags())
        assert code == 1, out
        assert "verification failed: check 3 (checkpoint) failed: the bundle says origin 'evil.example/log'" in err


def test_cli_fails_checks_a_bundle_cannot_satisfy_and_wait_times_out_with_the_witness_down(
        tmp_path, log_config, live_server, tsa_identity, monkeypatch, capsys):
    setup = start_log(tmp_path, log_config, live_server, tsa_identity, monkeypatch, witnesses_up=False)
    indices = log_run(setup.url, events=2)
    log_key = ["--server", setup.url, "--log-key", str(setup.files / "log.vkey")]
    run_file = tmp_path / "run.json"

    code, out, err = run_cli(capsys, "timeline", "--run", RUN, "--evidence", str(run_file), *log_key)
    assert code == 0 and "(0 cosignatures, no timestamp)" in out, (out, err)
    vkey = ["--log-key", str(setup.files / "log.vkey")]
    code, out, err = run_cli(capsys, "verify-evidence", str(run_file), *vkey)
    assert code == 0, err
    code, out, err = run_cli(capsys, "verify-evidence", str(run_file), *setup.check_flags())
    assert code == 1 and out == "", out
    assert "check 9 (cosignatures) failed: cosigned by 0 of 1 witnesses" in err, err
    code, out, err = run_cli(capsys, "verify-evidence", str(run_file), *vkey, "--tsa-ca", str(setup.files / "ca.pem"))
    assert code == 1 and "check 10 (timestamp) failed: the bundle carries no timestamp token" in err, err
    # local inputs first: a missing certificate is a usage error even though the bundle would fail
    code, out, err = run_cli(capsys, "verify-evidence", str(run_file), *vkey, "--tsa-ca", str(tmp_path / "no.pem"))
    assert code == 2 and "--tsa-ca" in err, err

    code, out, err = run_cli(capsys, "timeline", "--run", RUN, "--evidence", str(tmp_path / "w.json"), "--wait",
                             "--timeout", "1", *log_key)
    assert code == 3, (out, err)
    assert f"run {RUN} (entry {max(indices)}) not cosigned or timestamped after 1 s; the witness lag is" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "w.json").exists()
    code, out, err = run_cli(capsys, "proof", "--evidence", str(indices[0]), "--wait", "--timeout", "1", *log_key)
    assert code == 3 and "not cosigned or timestamped after 1 s" in err, err
    code, out, err = run_cli(capsys, "proof", "--index", "0", "--wait", *log_key)
    assert code == 2 and "--wait goes with --evidence" in err, err
