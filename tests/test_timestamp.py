"""verify_timestamp: tokens from our TSA and from `openssl ts -reply` verify; a table of mutated and forged responses
is rejected, each by the check it names."""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc3161, rfc5652

from log.errors import VerificationError
from witness.rfc3161 import (
    OID_SHA1, OID_SHA256, TimestampError, TimestampRejected, UntrustedTimestamp, build_request, verify_timestamp,
)
from witness.tsa import (
    TimestampAuthority, TsaIdentity, build_token, granted_response, make_tsa_chain, rejection_response,
)

MESSAGE = b"test.example/log\n3\nK2Jf5m2qbl1y7iPE5rkp6gzm1m7Qy6QJ2w2ZjvpeNWQ=\n\n\xe2\x80\x94 test.example/log abcd\n"
UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)


def _identity(*, eku=None, eku_critical=True, not_before=None, days=30, ca=None) -> TsaIdentity:
    """A TSA identity for forging: its own root unless `ca` (a TsaIdentity) is given to reuse its root."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ca._ca_key if ca is not None else ec.generate_private_key(ec.SECP256R1())
    ca_cert, tsa_cert = make_tsa_chain(ca_key, key, not_before=not_before or NOW - datetime.timedelta(days=1),
                                       ca_days=3650, tsa_days=days, eku=eku, eku_critical=eku_critical)
    if ca is not None:
        ca_cert = ca.ca_certificate
    identity = TsaIdentity(key, tsa_cert, ca_cert)
    object.__setattr__(identity, "_ca_key", ca_key)
    return identity


@pytest.fixture(scope="module")
def good() -> TsaIdentity:
    return _identity()


def _issue(identity, message=MESSAGE, *, hash_oid=OID_SHA256, nonce=42, gen_time=None, cert_req=True, hook=None):
    hashed = hashlib.new({OID_SHA1: "sha1", OID_SHA256: "sha256"}[hash_oid], message).digest()
    token = build_token(identity, hash_oid=hash_oid, hashed_message=hashed, nonce=nonce, cert_req=cert_req,
                        gen_time=gen_time or NOW, serial=7, tst_info_hook=hook)
    return granted_response(token)


def _rewrite_signed_data(response: bytes, change) -> bytes:
    """Decode the response, let `change(signed_data)` alter the SignedData, re-encode everything."""
    decoded, _ = der_decoder.decode(response, asn1Spec=rfc3161.TimeStampResp())
    token = decoded["timeStampToken"]
    signed_data, _ = der_decoder.decode(bytes(token["content"]), asn1Spec=rfc5652.SignedData())
    change(signed_data)
    token["content"] = univ.Any(der_encoder.encode(signed_data))
    return der_encoder.encode(decoded)


def _flip_signature(signed_data) -> None:
    signature = bytearray(bytes(signed_data["signerInfos"][0]["signature"]))
    signature[-1] ^= 0x01
    signed_data["signerInfos"][0]["signature"] = bytes(signature)


def _flip_tst_info(signed_data) -> None:
    content = bytearray(bytes(signed_data["encapContentInfo"]["eContent"]))
    content[-5] ^= 0x01
    signed_data["encapContentInfo"]["eContent"] = bytes(content)


def _swap_embedded_cert(other: x509.Certificate):
    def change(signed_data) -> None:
        choice = rfc5652.CertificateChoices()
        from pyasn1_modules import rfc5280

        choice["certificate"], _ = der_decoder.decode(other.public_bytes(serialization.Encoding.DER),
                                                      asn1Spec=rfc5280.Certificate())
        signed_data["certificates"][0] = choice
    return change


def _same_key_same_serial_other_cert(identity: TsaIdentity) -> x509.Certificate:
    """A second certificate for the TSA's key with the same issuer and serial (so the sid still names it) but other
    contents: the signature still verifies, only the ESSCertID tells the certificates apart."""
    certificate = identity.certificate
    return (
        x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=another TSA name"))
        .issuer_name(certificate.issuer).public_key(identity.key.public_key())
        .serial_number(certificate.serial_number)
        .not_valid_before(certificate.not_valid_before_utc).not_valid_after(certificate.not_valid_after_utc)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(identity._ca_key, certificate.signature_hash_algorithm)
    )


def test_our_token_verifies_and_reports_its_fields(good):
    info = verify_timestamp(_issue(good), MESSAGE, good.ca_pem, nonce=42)
    assert info.serial == 7 and info.nonce == 42 and info.hash_alg == "SHA-256"
    assert info.gen_time == NOW.replace(microsecond=0)
    assert info.tsa_name == "CN=auditlog TSA"


def test_bare_token_and_pinned_leaf_verify(good):
    decoded, _ = der_decoder.decode(_issue(good), asn1Spec=rfc3161.TimeStampResp())
    token = der_encoder.encode(decoded["timeStampToken"])
    assert verify_timestamp(token, MESSAGE, good.ca_pem).serial == 7
    assert verify_timestamp(token, MESSAGE, [good.certificate]).serial == 7


def _expect(check: int, cls=TimestampError):
    return check, cls


other_ca = _identity()
MUTATIONS = {
    # name: (make response(good), message, nonce, trusted(good), expected check, expected class)
    "changed_message": (lambda g: _issue(g), MESSAGE + b"x", 42, None, *_expect(11)),
    "sha1_imprint": (lambda g: _issue(g, hash_oid=OID_SHA1), MESSAGE, 42, None, *_expect(10)),
    "wrong_nonce": (lambda g: _issue(g), MESSAGE, 43, None, *_expect(12)),
    "nonce_missing": (lambda g: _issue(g, nonce=None), MESSAGE, 42, None, *_expect(12)),
    "eku_client_auth": (lambda g: _issue(_identity(eku=[ExtendedKeyUsageOID.CLIENT_AUTH], ca=g)), MESSAGE, 42,
                        None, *_expect(13, UntrustedTimestamp)),
    "eku_not_critical": (lambda g: _issue(_identity(eku_critical=False, ca=g)), MESSAGE, 42, None,
                         *_expect(13, UntrustedTimestamp)),
    "eku_with_extra_usage": (lambda g: _issue(_identity(eku=[ExtendedKeyUsageOID.TIME_STAMPING,
                                                             ExtendedKeyUsageOID.CODE_SIGNING], ca=g)),
                             MESSAGE, 42, None, *_expect(13, UntrustedTimestamp)),
    "cert_from_another_ca": (lambda g: _issue(other_ca), MESSAGE, 42, None, *_expect(15, UntrustedTimestamp)),
    "tampered_signature": (lambda g: _rewrite_signed_data(_issue(g), _flip_signature), MESSAGE, 42, None,
                           *_expect(5)),
    "tampered_tst_info": (lambda g: _rewrite_signed_data(_issue(g), _flip_tst_info), MESSAGE, 42, None,
                          *_expect(7)),
    "tsa_signed_another_nonce": (  # the TSTInfo's last byte is the nonce's: 42 becomes 43 before signing
        lambda g: _issue(g, hook=lambda der: der[:-1] + bytes([der[-1] ^ 1])), MESSAGE, 42, None, *_expect(12)),
    "ess_cert_id_names_another_cert": (
        lambda g: _rewrite_signed_data(_issue(g), _swap_embedded_cert(_same_key_same_serial_other_cert(g))),
        MESSAGE, 42, None, *_expect(8)),
    "status_rejection": (lambda g: rejection_response(0, "SHA-1 is not accepted"), MESSAGE, 42, None,
                         *_expect(1, TimestampRejected)),
    "expired_signer_at_gen_time": (lambda g: _issue(_identity(not_before=NOW - datetime.timedelta(days=40),
                                                              days=30, ca=g)),
                                   MESSAGE, 42, None, *_expect(14, UntrustedTimestamp)),
    "signer_not_yet_valid_at_gen_time": (lambda g: _issue(g, gen_time=NOW - datetime.timedelta(days=2)), MESSAGE,
                                         42, None, *_expect(14, UntrustedTimestamp)),
    "no_cert_and_only_the_ca_trusted": (lambda g: _issue(g, cert_req=False), MESSAGE, 42, None, *_expect(3)),
    "trusted_leaf_of_another_tsa": (lambda g: _issue(g), MESSAGE, 42, lambda g: [other_ca.certificate],
                                    *_expect(15, UntrustedTimestamp)),
    "garbage": (lambda g: b"\x30\x03\x02\x01\x00", MESSAGE, 42, None, *_expect(2)),
    "trailing_garbage": (lambda g: _issue(g) + b"\x00", MESSAGE, 42, None, *_expect(2)),
    "truncated": (lambda g: _issue(g)[:-10], MESSAGE, 42, None, *_expect(2)),
    "empty": (lambda g: b"", MESSAGE, 42, None, *_expect(1)),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutated_responses_are_rejected_by_the_named_check(good, name):
    make, message, nonce, trusted, check, cls = MUTATIONS[name]
    with pytest.raises(cls) as caught:
        verify_timestamp(make(good), message, trusted(good) if trusted else good.ca_pem, nonce=nonce)
    assert isinstance(caught.value, VerificationError)
    assert caught.value.check == check, str(caught.value)
    assert str(caught.value).startswith(f"check {check} ("), str(caught.value)


def test_a_rejection_names_its_fail_info(good):
    with pytest.raises(TimestampRejected, match="badAlg.*SHA-1 is not accepted"):
        verify_timestamp(rejection_response(0, "SHA-1 is not accepted"), MESSAGE, good.ca_pem)


# -- an independent TSA: openssl ts -reply ----------------------------------------------------------------------------
def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stderr}"


@pytest.fixture(scope="module")
def openssl_tsa(tmp_path_factory) -> Path:
    """A root CA and an RSA TSA certificate made by openssl, and an openssl TSA configuration per ESS variant."""
    d = tmp_path_factory.mktemp("openssl-tsa")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "30", "-subj", "/CN=openssl test root",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
         "-subj", "/CN=openssl test TSA", cwd=d)
    (d / "tsa.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                               "extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n"
                               "authorityKeyIdentifier=keyid\n")
    _run("openssl", "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "30", "-extfile", "tsa.ext", "-out", "tsa.pem", cwd=d)
    (d / "serial").write_text("01\n")
    for ess in ("sha1", "sha256"):
        (d / f"tsa-{ess}.cnf").write_text(textwrap.dedent(f"""\
            [ tsa ]
            default_tsa = tsa_config
            [ tsa_config ]
            dir = {d}
            serial = $dir/serial
            crypto_device = builtin
            signer_cert = $dir/tsa.pem
            certs = $dir/ca.pem
            signer_key = $dir/tsa.key
            signer_digest = sha256
            default_policy = 1.2.3.4.1
            digests = sha256, sha384, sha512
            accuracy = secs:1, millisecs:500
            ordering = yes
            tsa_name = yes
            ess_cert_id_chain = no
            ess_cert_id_alg = {ess}
            """))
    return d


@pytest.mark.parametrize("ess", ["sha1", "sha256"], ids=["ESSCertID", "ESSCertIDv2"])
def test_openssl_tokens_verify_with_ours(openssl_tsa, ess, tmp_path):
    request = build_request(MESSAGE)
    (tmp_path / "q.tsq").write_bytes(request.der)
    _run("openssl", "ts", "-reply", "-config", str(openssl_tsa / f"tsa-{ess}.cnf"), "-queryfile",
         str(tmp_path / "q.tsq"), "-out", str(tmp_path / "r.tsr"), cwd=tmp_path)
    response = (tmp_path / "r.tsr").read_bytes()
    ca = (openssl_tsa / "ca.pem").read_bytes()
    info = verify_timestamp(response, MESSAGE, ca, nonce=request.nonce)
    assert info.tsa_name == "CN=openssl test TSA" and info.policy == "1.2.3.4.1" and info.hash_alg == "SHA-256"
    with pytest.raises(TimestampError, match="check 11"):
        verify_timestamp(response, MESSAGE + b"!", ca, nonce=request.nonce)
    with pytest.raises(UntrustedTimestamp, match="check 15"):
        verify_timestamp(response, MESSAGE, other_ca.ca_pem, nonce=request.nonce)


def test_our_tsa_over_an_openssl_query(tmp_path):
    """The other direction: openssl builds the query (its own nonce), our TSA answers, openssl verifies."""
    identity = _identity()
    authority = TimestampAuthority(identity)
    (tmp_path / "data").write_bytes(MESSAGE)
    (tmp_path / "ca.pem").write_bytes(identity.ca_pem)
    _run("openssl", "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "q.tsq", cwd=tmp_path)
    (tmp_path / "r.tsr").write_bytes(authority.respond((tmp_path / "q.tsq").read_bytes()))
    _run("openssl", "ts", "-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "ca.pem", cwd=tmp_path)
    verify_timestamp((tmp_path / "r.tsr").read_bytes(), MESSAGE, identity.ca_pem)
