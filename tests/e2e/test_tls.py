"""`auditlog serve --tls-cert/--tls-key` against real processes, with certificates the test makes (tests/tls_certs.py):
a CA and a server certificate for 127.0.0.1.

What it holds the server and the clients to:
1. the listening line says https://, and `auditlog verify --ca-cert ca.pem` verifies the log over TLS; without
   --ca-cert the system trust store does not know the test CA: exit 3, one line naming the certificate
   verification failure, no traceback;
2. plain HTTP to the TLS port gets no answer; TLS below 1.2 is refused;
3. read workers share the port and serve TLS too: every one of many fresh connections (the kernel spreads them
   over writer and workers) handshakes and answers, and none answers plain HTTP;
4. the CLI's urllib path (producer register) and the SDK's Recorder(ca_cert=...) work over https;
5. TLS files that are half given, unreadable, unparsable or a key that is not the certificate's: exit 2, one line,
   nothing served.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import ssl
import subprocess
import sys
import uuid
import warnings

import aiohttp
import pytest
from nacl.signing import SigningKey

from api.client.log_client import LogClient
from api.client.recorder import Recorder
from tests.processes import REPO, ServerProcess
from tests.tls_certs import make_tls_files


def auditlog(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def tls(tmp_path):
    return make_tls_files(tmp_path / "tls")


def _serve(tmp_path, tls, *extra: str) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", None, ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), *extra])
    return server.start()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _plain_http_fails(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/v1/log")
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return True
    finally:
        connection.close()
    return False


def test_verify_over_tls_and_trust(tmp_path, tls):
    server = _serve(tmp_path, tls)
    try:
        assert server.url.startswith("https://127.0.0.1:"), server.output
        assert any("TLS: 1.2 or newer" in line for line in server.output)
        vkey = str(tmp_path / "data" / "log.vkey")
        ok = auditlog("verify", "--server", server.url, "--ca-cert", str(tls.ca_cert), "--log-key", vkey,
                      "--state", str(tmp_path / "state.json"), "--quiet")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        # The CA from the environment, as --ca-cert.
        ok = auditlog("verify", "--server", server.url, "--log-key", vkey, "--quiet",
                      env={"AUDITLOG_CA_CERT": str(tls.ca_cert)})
        assert ok.returncode == 0, ok.stdout + ok.stderr

        untrusted = auditlog("verify", "--server", server.url, "--log-key", vkey, "--quiet",
                             env={"AUDITLOG_CA_CERT": ""})
        assert untrusted.returncode == 3, untrusted.stdout + untrusted.stderr
        assert "certificate verif" in untrusted.stderr, untrusted.stderr
        assert "Traceback" not in untrusted.stderr
        assert len(untrusted.stderr.strip().splitlines()) == 1, untrusted.stderr

        missing = auditlog("verify", "--server", server.url, "--log-key", vkey, "--ca-cert",
                           str(tmp_path / "nope.pem"))
        assert missing.returncode == 2 and "nope.pem" in missing.stderr, missing.stderr

        # 2. Plain HTTP to the TLS port gets no HTTP answer; neither does TLS 1.1.
        assert _plain_http_fails(_port(server.url))
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(tls.ca_cert))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            old = None
        if old is not None:
            connection = http.client.HTTPSConnection("127.0.0.1", _port(server.url), context=old, timeout=5)
            with pytest.raises((ssl.SSLError, OSError)):
                connection.request("GET", "/api/v1/log")
                connection.getresponse()
            connection.close()
    finally:
        server.stop()


def test_sdk_and_cli_over_tls(tmp_path, tls):
    server = _serve(tmp_path, tls)
    data_dir = tmp_path / "data"
    try:
        seed = b"\x07" * 32
        public = base64.b64encode(bytes(SigningKey(seed).verify_key)).decode()
        for args in (["register", "--producer", "tls-agent", "--tenant", "acme", "--reason", "tls"],
                     ["add-key", "--producer", "tls-agent", "--public-key", public]):
            done = auditlog("producer", *args, "--server", server.url, "--ca-cert", str(tls.ca_cert),
                            "--data-dir", str(data_dir))
            assert done.returncode == 0, done.stdout + done.stderr
        log_key = (data_dir / "log.vkey").read_text().strip()
        recorder = Recorder(server.url, producer="tls-agent", signing_key=seed, log_key=log_key, tenant="acme",
                            actor={"type": "agent", "id": "tls-agent"}, retries=1, backoff=0.05, timeout=10,
                            ca_cert=tls.ca_cert)
        acknowledged = recorder.record("intent", run_id=f"tls-{uuid.uuid4().hex[:8]}")
        assert acknowledged.index >= 2

        async def async_record():
            try:
                return await recorder.arecord("intent", run_id=f"tls-{uuid.uuid4().hex[:8]}")
            finally:
                await recorder.aclose()

        assert asyncio.run(async_record()).index > acknowledged.index

        untrusting = Recorder(server.url, producer="tls-agent", signing_key=seed, log_key=log_key, tenant="acme",
                              actor={"type": "agent", "id": "tls-agent"}, retries=3, backoff=0.05, timeout=10)
        with pytest.raises(Exception) as refused:
            untrusting.record("intent", run_id="tls-untrusted")
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) or "certificate verify" in str(refused.value)

        async def client_checkpoint():
            async with LogClient(server.url, log_key, ca_cert=tls.ca_cert) as client:
                return await client.checkpoint()

        assert asyncio.run(client_checkpoint()).size >= 3
    finally:
        server.stop()


def test_read_workers_serve_tls(tmp_path, tls):
    server = _serve(tmp_path, tls, "--read-workers", "2")
    try:
        assert server.url.startswith("https://")
        port = _port(server.url)
        context = ssl.create_default_context(cafile=str(tls.ca_cert))

        async def fresh_connections(count: int) -> list[int]:
            statuses = []
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                             headers=server.admin) as session:
                async with session.post(f"{server.url}/api/v1/entries", data=b"over tls") as resp:
                    assert resp.status == 200, await resp.text()
            for _ in range(count):  # a new connection each: a new source port, spread over the 3 listeners
                connector = aiohttp.TCPConnector(ssl=context, force_close=True)
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with session.get(f"{server.url}/api/v1/proof/inclusion?index=0&tree_size=1") as resp:
                        statuses.append(resp.status)
            return statuses

        assert asyncio.run(fresh_connections(60)) == [200] * 60
        assert all(_plain_http_fails(port) for _ in range(30))
        assert sum("read worker" in line and "listening on" in line for line in server.output) == 2
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["cert-only", "key-only", "unreadable", "not-pem", "mismatch"])
def test_bad_tls_files_refuse_to_start(tmp_path, tls, case):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    args = {
        "cert-only": ["--tls-cert", str(tls.cert)],
        "key-only": ["--tls-key", str(tls.key)],
        "unreadable": ["--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", str(tls.key)],
        "not-pem": ["--tls-cert", str(garbage), "--tls-key", str(tls.key)],
        "mismatch": ["--tls-cert", str(tls.cert), "--tls-key", str(tls.other_key)],
    }[case]
    status, output = ServerProcess(tmp_path / "data", None, args).run_to_exit()
    assert status == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auditlog serve: "), output
    assert "Traceback" not in output
    assert {"cert-only": "--tls-key", "key-only": "--tls-cert", "unreadable": "absent.pem",
            "not-pem": "garbage.pem", "mismatch": "is not the key"}[case] in output
    assert not (tmp_path / "data").exists()
