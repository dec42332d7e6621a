"""The monitor's verdicts (api/client/monitor.py): integrity failures, outages and not-ready, and bad local inputs
told apart; local inputs checked before any request; freshness limits on the witnessed checkpoint and the timestamp.

Each case runs against a real log app on a loopback port (tests/conftest.py serve_app); a middleware counts the
requests it gets, so "before any download" is checked, not assumed."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import socket
import time

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from api.client.log_client import LogClient
from api.client.monitor import INTEGRITY, Monitor, verify_log
from api.server.app import Witnessing, create_app
from log.checkpoint import Checkpoint, sign_checkpoint
from log.errors import InvalidInput, Unavailable, VerificationError
from log.keys import read_signer_key
from log.note_keys import generate_signer_key, parse_signer_key, parse_verifier_key
from tests.conftest import TEST_ORIGIN, fill_log
from tests.credentials import ADMIN_TOKEN
from tests.test_witness_job import WitnessServer
from witness.cosignatures import WitnessPolicy
from witness.tsa import CA_CERT_FILE, TimestampAuthority, TsaIdentity
from witness.tsa_server import make_tsa_app

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")


def _free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _counted(app: web.Application, seen: list[str], rewrite=None) -> web.Application:
    @web.middleware
    async def count(request, handler):
        seen.append(request.path)
        response = await handler(request)
        changed = rewrite(request.path, response.body) if rewrite and response.status == 200 else None
        if changed is not None:
            response.body = changed
        return response

    app.middlewares.append(count)
    return app


@pytest.fixture(scope="module")
def tsa(tmp_path_factory) -> tuple[TsaIdentity, bytes]:
    directory = tmp_path_factory.mktemp("tsa")
    identity = TsaIdentity.load_or_create(directory)
    return identity, (directory / CA_CERT_FILE).read_bytes()


def test_a_url_without_a_scheme_is_invalid_input_naming_it_before_any_request():
    key = generate_signer_key(TEST_ORIGIN)[1]
    for url in ("127.0.0.1:18080", "localhost", "ftp://example.com/log", "http://"):
        with pytest.raises(InvalidInput) as caught:
            LogClient(url, key)
        assert repr(url) in str(caught.value) and "http://" in str(caught.value)
    with pytest.raises(InvalidInput, match=r"did you mean http://127\.0\.0\.1:18080\?"):
        LogClient("127.0.0.1:18080", key)
    assert LogClient("http://127.0.0.1:18080/", key).base_url == "http://127.0.0.1:18080"


def test_a_server_that_is_down_is_unavailable_not_an_integrity_failure():
    async def main():
        async with LogClient(_free_url(), generate_signer_key(TEST_ORIGIN)[1]) as client:
            return await verify_log(client)

    report = asyncio.run(main())
    assert report.status == "unavailable" and not report.integrity_failures
    error = report.error()
    assert isinstance(error, Unavailable) and "connection refused" in str(error), error
    assert "integrity UNKNOWN" in report.summary()


def test_a_wrong_url_path_is_invalid_input(log_config, live_server):
    fill_log(log_config, 3)
    url = live_server(create_app(log_config))
    key = read_signer_key(log_config.resolved_key_file()).verifier_key

    async def main():
        async with LogClient(url + "/not-the-log", key, token=ADMIN_TOKEN) as client:
            await verify_log(client)

    with pytest.raises(InvalidInput, match="no log at .*/not-the-log.*HTTP 404"):
        asyncio.run(main())


def test_bad_local_inputs_are_refused_before_any_request(log_config, live_server, tmp_path, tsa):
    _, ca_pem = tsa
    fill_log(log_config, 300)
    seen: list[str] = []
    url = live_server(_counted(create_app(log_config), seen))
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    other = parse_signer_key(generate_signer_key(TEST_ORIGIN)[0])
    states = {
        "not JSON": "{",
        "not an object": "[1, 2]",
        "a checkpoint that is not a string": json.dumps({"checkpoint": 5}),
        "size that is not an int": json.dumps({"checkpoint": "x", "size": "7"}),
        "another key's checkpoint": json.dumps(
            {"checkpoint": sign_checkpoint(Checkpoint(TEST_ORIGIN, 1, b"\1" * 32), other).decode()}),
    }

    async def attempt(**kwargs):
        async with LogClient(url, key, token=ADMIN_TOKEN) as client:
            await verify_log(client, **kwargs)

    for name, text in states.items():
        path = tmp_path / "state.json"
        path.write_text(text)
        with pytest.raises(InvalidInput, match="state"):
            asyncio.run(attempt(state_path=path))
    for bad in (b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b""):
        with pytest.raises(InvalidInput, match="TSA certificate"):
            asyncio.run(attempt(tsa_trusted=bad))
    with pytest.raises(InvalidInput, match="needs witness keys"):
        asyncio.run(attempt(max_witness_lag=10))
    with pytest.raises(InvalidInput, match="needs the TSA"):
        asyncio.run(attempt(max_timestamp_age=60.0))
    assert seen == []  # nothing was downloaded for any of them

    # A DER certificate is as good as PEM: accepted (the log has no TSA: the timestamp is not ready).
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(Encoding.DER)

    async def with_der():
        async with LogClient(url, key, token=ADMIN_TOKEN) as client:
            return await verify_log(client, tsa_trusted=der)

    report = asyncio.run(with_der())
    assert report.status == "unavailable" and report.entries_checked == 300
    assert "timestamp not ready" in str(report.error()) and "timestamp UNAVAILABLE" in report.summary()


def test_no_timestamp_yet_is_unavailable(log_config, live_server, tsa):
    _, ca_pem = tsa
    fill_log(log_config, 300)
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    waiting = create_app(log_config, Witnessing(tsa_url=_free_url() + "/", tsa_ca_pem=ca_pem,
                                                 timestamp_interval=3600))
    url = live_server(waiting)

    async def run(url):
        async with LogClient(url, key, token=ADMIN_TOKEN) as client:
            return await verify_log(client, tsa_trusted=ca_pem)

    report = asyncio.run(run(url))
    assert report.status == "unavailable" and isinstance(report.error(), Unavailable)
    assert "no checkpoint has been timestamped yet" in str(report.error())
    assert "integrity VALID" in report.summary()


def test_a_tampered_tile_is_an_integrity_failure(log_config, live_server):
    fill_log(log_config, 300)
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    seen: list[str] = []
    url = live_server(_counted(create_app(log_config), seen,
                               lambda path, body: b"\0" * len(body) if path == "/tile/0/000" else None))

    async def main():
        async with LogClient(url, key, token=ADMIN_TOKEN) as client:
            return await verify_log(client)

    report = asyncio.run(main())
    assert report.status == "invalid" and isinstance(report.error(), VerificationError)
    assert all(p.kind == INTEGRITY for p in report.problems)


@pytest.fixture
def witnessed(tmp_path, log_config, live_server, tsa):
    """A log cosigned by one witness and timestamped by a TSA, in a background thread: (url, log key, policy, ca,
    stop the witness)."""
    identity, ca_pem = tsa
    signer_key, log_vkey = generate_signer_key(TEST_ORIGIN)
    (tmp_path / "log.key").write_text(signer_key + "\n")
    log_config.key_file = tmp_path / "log.key"
    box = {}

    def start_witness_and_tsa():
        loop = asyncio.new_event_loop()
        box["loop"] = loop

        async def start():
            witness = WitnessServer(tmp_path, "witness.test/w1", parse_verifier_key(log_vkey))
            await witness.start()
            runner = web.AppRunner(make_tsa_app(TimestampAuthority(identity)), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return witness, f"http://127.0.0.1:{runner.addresses[0][1]}/", runner

        import threading

        ready = threading.Event()

        def run():
            asyncio.set_event_loop(loop)
            box["witness"], box["tsa_url"], box["tsa_runner"] = loop.run_until_complete(start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(30)

    start_witness_and_tsa()
    witness = box["witness"]
    settings = Witnessing(witnesses=(f"{witness.url} {witness.vkeys[0]}",), witness_interval=0.05,
                          tsa_url=box["tsa_url"], tsa_ca_pem=ca_pem, timestamp_interval=0.05)
    url = live_server(create_app(log_config, settings))

    def stop_witness():
        asyncio.run_coroutine_threadsafe(witness.stop(), box["loop"]).result(30)

    yield url, log_vkey, WitnessPolicy((witness.vkeys[0],)), ca_pem, stop_witness
    loop = box["loop"]
    asyncio.run_coroutine_threadsafe(witness.stop(), loop).result(30)
    asyncio.run_coroutine_threadsafe(box["tsa_runner"].cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


async def _until(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def test_witness_lag_in_entries_beyond_the_limit_fails_naming_both_figures(witnessed):
    url, log_vkey, policy, ca_pem, stop_witness = witnessed

    async def main():
        async with LogClient(url, log_vkey, token=ADMIN_TOKEN) as client:
            await client.add_many([b"first %d" % i for i in range(3)])

            async def cosigned():
                try:
                    checkpoint, _ = await client.witnessed_checkpoint()
                    stamped, _, _ = await client.latest_timestamp()
                except Exception:  # noqa: BLE001 - 404 until cosigned and stamped
                    return False
                return checkpoint.size == 3 and stamped.size == 3

            await _until(cosigned)
            stop_witness()  # from now on nothing more is cosigned
            await client.add_many([b"more %d" % i for i in range(20)])

            within = await verify_log(client, witnesses=policy, max_witness_lag=20)
            assert within.valid, within.failures
            assert within.witness_lag_entries == 20 and ", 20 entries behind" in within.summary()
            beyond = await verify_log(client, witnesses=policy, max_witness_lag=10)
            assert beyond.status == "invalid" and isinstance(beyond.error(), VerificationError)
            assert beyond.failures == ["witnessed checkpoint 3 lags the log 23 by 20 entries, limit 10"]

            # As a duration: the monitor first saw size 23 at t0; at t0 + 100 s, with 60 s allowed, that is a breach.
            # The TSA stamped size 3 only (the timestamp job stamps the witnessed checkpoint), so it bounds nothing.
            clock = [time.time()]
            monitor = Monitor(client, witnesses=policy, tsa_trusted=ca_pem, max_witness_lag=60.0,
                              clock=lambda: clock[0])
            first = await monitor.run()
            assert first.valid, first.failures
            assert first.witness_lag_seconds == 0.0
            clock[0] += 100
            second = await monitor.run()
            assert second.status == "invalid"
            [message] = second.failures
            assert message.startswith("witnessed checkpoint 3 lags the log 23: entries have waited for cosignatures "
                                      "at least 1m 40s (since a checkpoint of size 23 was first seen by this "
                                      "monitor), limit 1m"), message

            # The newest timestamp's age: within 1 h now; beyond it 2 h from now.
            fresh = await verify_log(client, tsa_trusted=ca_pem, max_timestamp_age=datetime.timedelta(hours=1))
            assert fresh.valid and fresh.timestamp_age_seconds < 60
            stale = await verify_log(client, tsa_trusted=ca_pem, max_timestamp_age=3600.0,
                                     clock=lambda: time.time() + 7200)
            [message] = stale.failures
            assert stale.status == "invalid" and message.startswith("the newest timestamp (checkpoint 3, genTime ")
            assert re.search(r" is 2h( [0-9]+s)? old, limit 1h$", message), message

    asyncio.run(main())


def test_the_witness_lag_duration_survives_in_the_state_file(witnessed, tmp_path):
    url, log_vkey, policy, ca_pem, stop_witness = witnessed
    state = tmp_path / "monitor.json"

    async def main():
        async with LogClient(url, log_vkey, token=ADMIN_TOKEN) as client:
            await client.add_many([b"first"])

            async def cosigned():
                try:
                    return (await client.witnessed_checkpoint())[0].size == 1
                except Exception:  # noqa: BLE001
                    return False

            await _until(cosigned)
            stop_witness()
            await client.add_many([b"second"])
        t0 = time.time()
        for offset, ok in ((0, True), (30, True), (120, False)):
            async with LogClient(url, log_vkey, token=ADMIN_TOKEN) as client:  # a new process each time, as cron runs it
                report = await verify_log(client, state, witnesses=policy, max_witness_lag=60.0,
                                          clock=lambda: t0 + offset)
            assert report.valid is ok, report.failures
        assert json.loads(state.read_text())["seen"] == [[2, t0]]
        assert "at least 2m (since a checkpoint of size 2 was first seen" in report.failures[0]

    asyncio.run(main())


# -- `auditlog verify`: exit statuses (api/cli/exits.py) -------------------------------------------------------------

def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from api.cli.main import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_verify_exit_statuses_tell_tampering_from_outages_from_typos(log_config, live_server, tmp_path, capsys, tsa):
    _, ca_pem = tsa
    fill_log(log_config, 300)
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    seen: list[str] = []
    url = live_server(_counted(create_app(log_config), seen))
    host_port = url.removeprefix("http://")

    # 2, before any request: no scheme; a TSA certificate that is not one; a state file that is not JSON.
    code, _, err = _cli(capsys, "verify", "--server", host_port, "--log-key", key)
    assert code == 2 and repr(host_port) in err and "http://" in err, err
    (tmp_path / "bad.pem").write_bytes(b"not a certificate\n")
    code, _, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--tsa-ca", str(tmp_path / "bad.pem"))
    assert code == 2 and "bad.pem" in err and "TSA certificate" in err, err
    (tmp_path / "state.json").write_text("{not json")
    code, _, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--state", str(tmp_path / "state.json"))
    assert code == 2 and "state.json is not JSON" in err, err
    code, _, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--max-witness-lag", "10")
    assert code == 2 and "needs witness keys" in err, err
    code, _, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--max-witness-lag", "10 minutes")
    assert code == 2 and "is neither a number of entries (10) nor a duration" in err, err
    assert seen == []

    # 2: a URL path where there is no log.
    code, _, err = _cli(capsys, "verify", "--server", url + "/wrong", "--log-key", key)
    assert code == 2 and "no log at " in err and "/wrong" in err, err

    # 3: the server is down; the log has no timestamp (yet).
    code, out, err = _cli(capsys, "verify", "--server", _free_url(), "--log-key", key)
    assert code == 3 and "connection refused" in err and "integrity UNKNOWN" in out, (out, err)
    code, out, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--tsa-ca", str(_pem_file(tmp_path,
                                                                                                           ca_pem)))
    assert code == 3 and "UNAVAILABLE: timestamp not ready" in err and "integrity VALID" in out, (out, err)

    # 0, and with --json one object.
    code, out, _ = _cli(capsys, "verify", "--server", url, "--log-key", key, "--json")
    document = json.loads(out)
    assert code == 0 and document["status"] == "valid" and document["exit_status"] == 0
    assert document["checkpoint"]["size"] == 300 and document["entries_checked"] == 300


def _pem_file(tmp_path, pem: bytes):
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    return path


def test_verify_exits_1_for_a_tampered_tile(log_config, live_server, capsys):
    fill_log(log_config, 300)
    key = read_signer_key(log_config.resolved_key_file()).verifier_key
    url = live_server(_counted(create_app(log_config), [],
                               lambda path, body: b"\0" * len(body) if path == "/tile/0/001.p/44" else None))
    code, out, err = _cli(capsys, "verify", "--server", url, "--log-key", key, "--json")
    document = json.loads(out)
    assert code == 1 and document["status"] == "invalid" and document["exit_status"] == 1
    assert all(p["kind"] == "integrity" for p in document["problems"]) and document["problems"]


def test_verify_max_witness_lag_from_the_command_line(witnessed, tmp_path, capsys):
    url, log_vkey, policy, ca_pem, stop_witness = witnessed

    async def setup():
        async with LogClient(url, log_vkey, token=ADMIN_TOKEN) as client:
            await client.add_many([b"first %d" % i for i in range(3)])

            async def cosigned():
                try:
                    return (await client.witnessed_checkpoint())[0].size == 3
                except Exception:  # noqa: BLE001
                    return False

            await _until(cosigned)
            stop_witness()
            await client.add_many([b"more %d" % i for i in range(20)])

    asyncio.run(setup())
    witness_key = policy.keys[0]
    base = ["verify", "--server", url, "--log-key", log_vkey, "--witness-key", witness_key, "--quiet"]
    code, out, err = _cli(capsys, *base, "--max-witness-lag", "10")
    assert code == 1, (out, err)
    assert "witnessed checkpoint 3 lags the log 23 by 20 entries, limit 10" in err
    code, out, err = _cli(capsys, *base, "--max-witness-lag", "20")
    assert code == 0 and "cosigned by 1 of 1 witnesses at size 3, 20 entries behind" in out, (out, err)
    code, out, err = _cli(capsys, *base, "--max-witness-lag", "15m")
    assert code == 0, (out, err)
