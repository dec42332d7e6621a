"""The built-in TSA: its identity on disk, its answers to good and bad requests, HTTP, and the standalone process.

Its tokens are checked by `openssl ts -verify` (an independent RFC 3161 implementation) as well as by our verifier.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import rfc3161ng
from aiohttp import ClientSession, web
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc3161

from log.errors import InvalidInput
from witness import tsa_cli
from witness.rfc3161 import (
    TIMESTAMP_QUERY, TIMESTAMP_REPLY, TimestampRejected, build_request, verify_timestamp,
)
from witness.tsa import (
    BAD_ALG, BAD_DATA_FORMAT, BAD_REQUEST, CA_CERT_FILE, CA_KEY_FILE, TSA_KEY_FILE,
    UNACCEPTED_EXTENSION, UNACCEPTED_POLICY, TimestampAuthority, TsaIdentity,
)
from witness.tsa_server import make_tsa_app
from tests.conftest import exchange_raw

REPO = Path(__file__).resolve().parents[1]
MESSAGE = b"test.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


@pytest.fixture(scope="module")
def tsa_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tsa")


@pytest.fixture(scope="module")
def authority(tsa_dir) -> TimestampAuthority:
    return TimestampAuthority(TsaIdentity.load_or_create(tsa_dir))


def _status(response: bytes) -> tuple[int, list[int]]:
    decoded, rest = der_decoder.decode(response, asn1Spec=rfc3161.TimeStampResp())
    assert not rest
    info = decoded["status"]
    bits = [i for i, bit in enumerate(info["failInfo"]) if bit] if info["failInfo"].isValue else []
    return int(info["status"]), bits


def _request(message: bytes = MESSAGE, *, hashname="sha256", nonce=1234, cert=True, policy=None) -> bytes:
    digest = hashlib.new(hashname, message).digest()
    request = rfc3161ng.make_timestamp_request(digest=digest, hashname=hashname, include_tsa_certificate=cert,
                                               nonce=nonce, tsa_policy_id=policy)
    return rfc3161ng.encode_timestamp_request(request)


# -- identity ---------------------------------------------------------------------------------------------------------
def test_identity_is_made_once_with_private_keys_0600(tmp_path):
    first = TsaIdentity.load_or_create(tmp_path / "d")
    for name in (CA_KEY_FILE, TSA_KEY_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / "d" / name).st_mode) == 0o600, name
    again = TsaIdentity.load_or_create(tmp_path / "d")
    assert again.certificate == first.certificate and again.ca_certificate == first.ca_certificate
    assert (tmp_path / "d" / CA_CERT_FILE).read_bytes() == first.ca_pem


def test_identity_certificate_profile(authority):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    eku = authority.identity.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    authority.identity.certificate.verify_directly_issued_by(authority.identity.ca_certificate)


def test_partial_identity_dir_is_refused(tmp_path):
    TsaIdentity.load_or_create(tmp_path)
    (tmp_path / TSA_KEY_FILE).unlink()
    with pytest.raises(InvalidInput, match="tsa.key"):
        TsaIdentity.load_or_create(tmp_path)


# -- answers ----------------------------------------------------------------------------------------------------------
def test_token_verifies_with_openssl_and_ours(authority, tsa_dir, tmp_path):
    request = build_request(MESSAGE)
    response = authority.respond(request.der)
    (tmp_path / "data").write_bytes(MESSAGE)
    (tmp_path / "resp.tsr").write_bytes(response)
    (tmp_path / "req.tsq").write_bytes(request.der)
    ca = str(tsa_dir / CA_CERT_FILE)
    for args in (["-data", str(tmp_path / "data")], ["-queryfile", str(tmp_path / "req.tsq")]):
        done = subprocess.run(["openssl", "ts", "-verify", *args, "-in", str(tmp_path / "resp.tsr"), "-CAfile", ca],
                              capture_output=True, text=True)
        assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr
    info = verify_timestamp(response, MESSAGE, authority.identity.ca_pem, nonce=request.nonce)
    assert info.hash_alg == "SHA-256" and info.nonce == request.nonce
    assert info.tsa_name == "CN=auditlog TSA" and info.policy == authority.policy


@pytest.mark.parametrize("hashname", ["sha384", "sha512"])
def test_stronger_hashes_are_granted(authority, hashname):
    response = authority.respond(_request(hashname=hashname))
    assert _status(response) == (0, [])
    assert verify_timestamp(response, MESSAGE, authority.identity.ca_pem).hash_alg == hashname.upper()[:3] + "-" \
        + hashname[3:]


def test_nonce_and_cert_req_are_honoured(authority):
    without = authority.respond(_request(nonce=None, cert=False))
    info = verify_timestamp(without, MESSAGE, authority.identity.certificate)  # no cert inside: pinned leaf
    assert info.nonce is None
    with pytest.raises(Exception, match="check 3"):  # the CA alone cannot name the signer: no cert in the token
        verify_timestamp(without, MESSAGE, authority.identity.ca_pem)
    assert verify_timestamp(authority.respond(_request(nonce=2**70 + 5)), MESSAGE, authority.identity.ca_pem,
                            nonce=2**70 + 5).nonce == 2**70 + 5


def _with_extension(der: bytes) -> bytes:
    request, _ = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampReq())
    from pyasn1.codec.der import encoder
    from pyasn1_modules import rfc5280

    extension = rfc5280.Extension()
    extension["extnID"] = rfc5280.id_ce_keyUsage
    extension["extnValue"] = b"\x03\x02\x07\x80"
    request["extensions"].append(extension)
    return encoder.encode(request)


def _with_version(der: bytes, version: int) -> bytes:
    request, _ = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampReq())
    from pyasn1.codec.der import encoder

    request["version"] = version
    return encoder.encode(request)


def _with_hash_oid(der: bytes, oid: str) -> bytes:
    request, _ = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampReq())
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    request["messageImprint"]["hashAlgorithm"]["algorithm"] = univ.ObjectIdentifier(oid)
    return encoder.encode(request)


def _with_imprint(der: bytes, imprint: bytes) -> bytes:
    request, _ = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampReq())
    from pyasn1.codec.der import encoder

    request["messageImprint"]["hashedMessage"] = imprint
    return encoder.encode(request)


REJECTIONS = [
    ("sha1_imprint", lambda: _request(hashname="sha1"), BAD_ALG),
    ("sha3_256_imprint", lambda: _with_hash_oid(_request(), "2.16.840.1.101.3.4.2.8"), BAD_ALG),
    ("short_imprint", lambda: _with_imprint(_request(), b"\x01" * 20), BAD_DATA_FORMAT),
    ("garbage", lambda: b"\x00garbage", BAD_DATA_FORMAT),
    ("empty_body", lambda: b"", BAD_DATA_FORMAT),
    ("trailing_bytes", lambda: _request() + b"\x00", BAD_DATA_FORMAT),
    ("truncated", lambda: _request()[:-3], BAD_DATA_FORMAT),
    ("version_2", lambda: _with_version(_request(), 2), BAD_REQUEST),
    ("other_policy", lambda: _request(policy="1.2.3.4"), UNACCEPTED_POLICY),
    ("with_extension", lambda: _with_extension(_request()), UNACCEPTED_EXTENSION),
]


@pytest.mark.parametrize("make, bit", [(m, b) for _, m, b in REJECTIONS], ids=[n for n, _, _ in REJECTIONS])
def test_bad_requests_get_a_rejection_with_fail_info(authority, make, bit):
    response = authority.respond(make())
    assert _status(response) == (2, [bit])
    with pytest.raises(TimestampRejected, match="check 1 \\(status\\)"):
        verify_timestamp(response, MESSAGE, authority.identity.ca_pem)


def test_rejection_parses_in_openssl(authority, tmp_path):
    (tmp_path / "r.tsr").write_bytes(authority.respond(_request(hashname="sha1")))
    out = subprocess.run(["openssl", "ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text"],
                         capture_output=True, text=True)
    assert "Rejected" in out.stdout and "unrecognized or unsupported algorithm" in out.stdout, out.stdout


# -- HTTP -------------------------------------------------------------------------------------------------------------
def test_http_query_and_reply(authority):
    async def scenario():
        runner = web.AppRunner(make_tsa_app(authority))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            async with ClientSession() as session:
                request = build_request(MESSAGE)
                async with session.post(url, data=request.der, headers={"Content-Type": TIMESTAMP_QUERY}) as r:
                    assert r.status == 200 and r.content_type == TIMESTAMP_REPLY
                    verify_timestamp(await r.read(), MESSAGE, authority.identity.ca_pem, nonce=request.nonce)
                async with session.post(url, data=b"junk", headers={"Content-Type": TIMESTAMP_QUERY}) as r:
                    assert r.status == 200 and _status(await r.read()) == (2, [BAD_DATA_FORMAT])
                async with session.post(url, data=b"junk", headers={"Content-Type": "text/plain"}) as r:
                    assert r.status == 415
                # aiohttp's own Content-Type parser raises IndexError on this one: still a 415, not a 500
                async with session.post(url, data=b"junk", headers={"Content-Type": "0;0*"}) as r:
                    assert r.status == 415
                async with session.post(url, data=request.der,
                                        headers={"Content-Type": "Application/Timestamp-Query; x=y"}) as r:
                    assert r.status == 200
                async with session.get(url + "ca.pem") as r:
                    assert await r.read() == authority.identity.ca_pem
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_hostile_http_requests_get_plain_4xx_answers_not_500(authority):
    """An Expect header of bytes that are not UTF-8 broke aiohttp's own 417, and a body its Content-Encoding cannot
    decode raised from the read: both were bare 500s (issue 16)."""
    async def raw(port: int, request: bytes) -> tuple[int, bytes]:
        status, _, body = await exchange_raw(port, request, timeout=10)
        return status, body

    async def scenario():
        runner = web.AppRunner(make_tsa_app(authority))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        head = b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: %s\r\n" % TIMESTAMP_QUERY.encode()
        try:
            status, body = await raw(port, head + b"Expect: \xff\r\nContent-Length: 1\r\n\r\nx")
            assert status == 417 and b"100-continue" in body
            status, body = await raw(port, head + b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\njunk")
            assert status == 400 and body.startswith(b"the body cannot be read")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_standalone_process_serves_and_writes_the_trust_anchor(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "witness.tsa_cli", "serve", "--port", "0",
                             "--data-dir", str(tmp_path / "tsa")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        banner = proc.stdout.readline()  # the trust anchor's path, then the listening line, last of all
        assert banner.strip() == f"trust anchor: {tmp_path / 'tsa' / CA_CERT_FILE}", banner
        assert tsa_cli.TRUST_ANCHOR_FILE == CA_CERT_FILE  # the name `tsa serve --help` gives, without the TSA loaded
        line = proc.stdout.readline()
        match = re.match(r"listening on (http://127\.0\.0\.1:\d+)$", line.strip())
        assert match, line
        ca_pem = (tmp_path / "tsa" / CA_CERT_FILE).read_bytes()

        async def ask():
            request = build_request(MESSAGE)
            async with ClientSession() as session:
                async with session.post(match.group(1), data=request.der,
                                        headers={"Content-Type": TIMESTAMP_QUERY}) as r:
                    return verify_timestamp(await r.read(), MESSAGE, ca_pem, nonce=request.nonce)

        assert asyncio.run(ask()).hash_alg == "SHA-256"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
