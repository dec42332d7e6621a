"""The log app with witnessing and timestamping (api/server/app.py `Witnessing`), in process: routes, metrics, the monitor's
cosignature and timestamp checks, and entry evidence bundles (api/client/evidence.py) against a table of mutations."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.server.app import Witnessing, create_app
from api.client.log_client import LogClient
from api.server.metrics import render_dict_metrics
from api.client.monitor import verify_log
from log.errors import InvalidInput
from log.hashing import hash_leaf
from log.note import COSIGNATURE_ED25519, NoteSignature, parse_note
from log.note_keys import generate_signer_key, parse_verifier_key
from tests.conftest import serve_app
from tests.credentials import ADMIN_TOKEN
from tests.test_witness_job import ORIGIN, WitnessServer
from api.client.evidence import EntryEvidenceError, build_entry_bundle, verify_entry_bundle
from witness.cosignatures import WitnessPolicy, check_cosignatures
from witness.tsa import CA_CERT_FILE, TimestampAuthority, TsaIdentity
from witness.tsa_server import make_tsa_app

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")


def test_dict_metrics_render_counters_gauges_and_skip_the_rest():
    text = render_dict_metrics({
        "witness_rounds_total": 3.0,
        'witness_requests_total{witness="a"}': 2.0,
        'witness_cosigned_size{witness="a"}': 7.0,
        'witness_requests_total{witness="b"}': 1.0,
        "seconds_since_last_timestamp": None,
        "timestamp_last_error": "boom",
        "timestamped_size": 5,
    })
    assert text.splitlines() == [
        "# TYPE auditlog_witness_rounds_total counter",
        "auditlog_witness_rounds_total 3.0",
        "# TYPE auditlog_witness_requests_total counter",
        'auditlog_witness_requests_total{witness="a"} 2.0',
        'auditlog_witness_requests_total{witness="b"} 1.0',
        "# TYPE auditlog_witness_cosigned_size gauge",
        'auditlog_witness_cosigned_size{witness="a"} 7.0',
        "# TYPE auditlog_timestamped_size gauge",
        "auditlog_timestamped_size 5",
    ]
    assert render_dict_metrics({"x": None}) == ""


@pytest.mark.parametrize("settings, field", [
    (Witnessing(witnesses=("http://w.example/ bad-key",)), "key"),
    (Witnessing(tsa_url="http://tsa.example/"), "tsa_url"),
    (Witnessing(witness_k=1), "witness_k"),
    (Witnessing(witness_interval=0), "interval"),
])
def test_bad_witnessing_settings_are_refused_before_anything_starts(log_config, settings, field):
    with pytest.raises(InvalidInput):
        create_app(log_config, settings)


def test_routes_answer_404_problems_when_nothing_is_configured(log_config):
    async def main():
        async with TestClient(TestServer(create_app(log_config))) as client:
            for path in ("/checkpoint.witnessed", "/api/v1/timestamps/latest", "/api/v1/timestamps/1"):
                resp = await client.get(path)
                assert resp.status == 404, path
                assert resp.content_type == "application/problem+json"
                assert "configured" in (await resp.json())["detail"]
            resp = await client.get("/checkpoint")
            assert resp.status == 200 and len(parse_note(await resp.read()).signatures) == 1

    asyncio.run(main())


async def _wait(what: str, check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


@pytest.fixture(scope="module")
def tsa_identity(tmp_path_factory) -> tuple[TsaIdentity, bytes]:
    directory = tmp_path_factory.mktemp("tsa")
    identity = TsaIdentity.load_or_create(directory)
    return identity, (directory / CA_CERT_FILE).read_bytes()


def test_witnessed_and_timestamped_log_in_process(tmp_path: Path, log_config, tsa_identity):
    """Two witnesses and the TSA in this loop; the log's key is made first so the witnesses can trust it."""
    identity, ca_pem = tsa_identity
    signer_key, log_vkey = generate_signer_key(ORIGIN)
    (tmp_path / "log.key").write_text(signer_key + "\n")
    log_config.origin, log_config.key_file = ORIGIN, tmp_path / "log.key"

    async def main():
        witnesses = [WitnessServer(tmp_path, f"witness.test/u{i}", parse_verifier_key(log_vkey)) for i in (1, 2)]
        for witness in witnesses:
            await witness.start()
        async with serve_app(make_tsa_app(TimestampAuthority(identity))) as tsa_url:
            settings = Witnessing(witnesses=tuple(f"{w.url} {w.vkeys[0]}" for w in witnesses),
                                  witness_interval=0.05, tsa_url=tsa_url, tsa_ca_pem=ca_pem,
                                  timestamp_interval=0.05)
            app = create_app(log_config, settings)
            async with serve_app(app) as url:
                try:
                    return await scenario(app, url, witnesses, log_vkey, ca_pem)
                finally:
                    for witness in witnesses:
                        await witness.stop()

    asyncio.run(main())


async def scenario(app, url, witnesses, log_vkey, ca_pem):
    policy = WitnessPolicy(tuple(w.vkeys[0] for w in witnesses))
    async with LogClient(url, log_vkey, token=ADMIN_TOKEN) as client:
        receipts = await client.add_many([b"alpha", b"beta", b"gamma"])
        size = receipts[0].tree_size

        async def witnessed():
            try:
                checkpoint, note = await client.witnessed_checkpoint()
            except Exception:  # noqa: BLE001 - 404 until the witnesses answered
                return None
            return checkpoint.size == size and note

        note = await _wait("the witnessed checkpoint", witnessed)
        assert check_cosignatures(note, policy).cosigned_by == ("witness.test/u1", "witness.test/u2")

        async def stamped():
            try:
                found = await client.latest_timestamp()
            except Exception:  # noqa: BLE001
                return None
            return found[0].size == size and found

        _, stamped_note, token = await _wait("the timestamp", stamped)
        assert stamped_note == note

        # the monitor: all holds; an unknown third witness or k beyond the cosigners fails
        report = await verify_log(client, witnesses=policy, tsa_trusted=ca_pem)
        assert report.valid, report.failures
        assert "cosigned by 2 of 2 witnesses at size 3 · timestamp VALID (genTime " in report.summary()
        third = generate_signer_key("witness.test/u3", COSIGNATURE_ED25519)[1]
        report = await verify_log(client, witnesses=WitnessPolicy(policy.keys + (third,)))
        assert not report.valid and "cosigned by 2 of 3 witnesses" in report.summary()
        report = await verify_log(client, witnesses=WitnessPolicy(policy.keys + (third,), k=2))
        assert report.valid, report.failures

        # metrics from both jobs
        async with client._http().get(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            metrics = await resp.text()
        assert 'auditlog_witness_cosigned_size{witness="witness.test/u1"} 3.0' in metrics
        assert "# TYPE auditlog_timestamps_stored_total counter" in metrics
        assert "auditlog_ready 1\n" in metrics and "auditlog_witness_lag_entries 0\n" in metrics
        assert "auditlog_timestamp_lag_entries 0\n" in metrics and "auditlog_timestamp_age_seconds " in metrics

        # readiness: writes can be taken, and neither job is behind
        async with client._http().get(url + "/readyz") as resp:
            assert resp.status == 200
            ready = await resp.json()
        assert ready["status"] == "ready" and ready["tree_size"] == size
        assert ready["witness"] == {"k": 2, "latest_size": size, "witnessed_size": size, "lag_entries": 0,
                                    "lag_seconds": 0.0}
        assert ready["timestamp"]["timestamped_size"] == size and ready["timestamp"]["lag_entries"] == 0
        assert 0 <= ready["timestamp"]["age_seconds"] < 60

        # an entry bundle and its mutations
        proof = await client.inclusion_proof(1, size, leaf_hash=hash_leaf(b"beta"))
    bundle = build_entry_bundle(origin=ORIGIN, log_key=log_vkey, index=1, entry=b"beta", tree_size=size,
                                inclusion_proof=proof.hashes, checkpoint_note=note, timestamp=token)
    report = verify_entry_bundle(bundle, log_vkey, witnesses=policy, tsa_trusted=ca_pem)
    assert report.timestamp is not None and len(report.cosignatures.cosigned_by) == 2
    check_mutations(bundle, log_vkey, policy, ca_pem)
    other_log_key = generate_signer_key(ORIGIN)[1]
    with pytest.raises(EntryEvidenceError, match=r"check 2 \(log key\)"):
        verify_entry_bundle(bundle, other_log_key)


def _flip(text: str, position: int) -> str:
    data = bytearray(base64.b64decode(text))
    data[position] ^= 1
    return base64.b64encode(bytes(data)).decode()


def _drop_cosignature(bundle: dict) -> None:
    text, lines = bundle["checkpoint"].split("\n\n", 1)
    kept = [line + "\n" for line in lines.rstrip("\n").split("\n") if "witness.test/u2" not in line]
    bundle["checkpoint"] = text + "\n\n" + "".join(kept)


def zero_cosignature(bundle: dict, name: str = "witness.test/u1") -> None:
    """Zero all but the first 8 bytes of witness `name`'s signature on the bundle's checkpoint note."""
    text, lines = bundle["checkpoint"].split("\n\n", 1)
    out = []
    for line in lines.rstrip("\n").split("\n"):
        sig = NoteSignature.from_line(line)
        if sig.name == name:
            sig = NoteSignature(sig.name, sig.key_id, sig.signature[:8] + bytes(len(sig.signature) - 8))
        out.append(sig.to_line())
    bundle["checkpoint"] = text + "\n\n" + "".join(out)


# Each mutation of a valid bundle, and the check that must catch it.
MUTATIONS = {
    "format changed": (lambda b: b.update(format="auditlog.evidence/v1"), 1),
    "index not an integer": (lambda b: b.update(index="1"), 1),
    "entry not base64": (lambda b: b.update(entry="!!"), 1),
    "log key of another log named": (lambda b: b.update(log_key=generate_signer_key(ORIGIN)[1]), 2),
    "origin of another log": (lambda b: b.update(origin="evil.example/log"), 3),
    "origin missing": (lambda b: b.pop("origin"), 1),
    "a field the format does not have": (lambda b: b.update(witnessed=True), 1),
    "tree size plus one": (lambda b: b.update(tree_size=b["tree_size"] + 1), 3),
    "log signature changed": (lambda b: b.update(checkpoint=b["checkpoint"].replace("\n\n— ", "\n\n— x", 1)), 3),
    "index plus one": (lambda b: b.update(index=b["index"] + 1), 4),
    "entry byte flipped": (lambda b: b.update(entry=_flip(b["entry"], 0)), 4),
    "proof hash flipped": (lambda b: b["inclusion_proof"].__setitem__(0, _flip(b["inclusion_proof"][0], 5)), 4),
    "proof hash dropped": (lambda b: b["inclusion_proof"].pop(), 4),
    "index past the tree": (lambda b: b.update(index=b["tree_size"]), 4),
    "a cosignature dropped": (_drop_cosignature, 5),
    "a cosignature zeroed": (zero_cosignature, 5),
    "token missing": (lambda b: b.update(timestamp=None), 6),
    "token byte flipped": (lambda b: b.update(timestamp=_flip(b["timestamp"], -1)), 6),
    "token truncated": (lambda b: b.update(timestamp=base64.b64encode(base64.b64decode(b["timestamp"])[:-20])
                                           .decode()), 6),
}


def check_mutations(bundle: dict, log_vkey: str, policy: WitnessPolicy, ca_pem: bytes) -> None:
    for name, (mutate, check) in MUTATIONS.items():
        changed = json.loads(json.dumps(bundle))
        mutate(changed)
        with pytest.raises(EntryEvidenceError) as caught:
            verify_entry_bundle(changed, log_vkey, witnesses=policy, tsa_trusted=ca_pem)
        assert caught.value.check == check, f"{name}: {caught.value}"
