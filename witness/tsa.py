"""A small RFC 3161 time-stamping authority: its identity (key and certificate chain) and request handling.

Its HTTP face is witness/tsa_server.py.

The TSA exists so that the embedded default and the tests have a complete, offline chain of trust: on first start it
makes, in its data directory,

    tsa-ca.pem    the root CA certificate: the trust anchor a verifier is given (`CA_CERT_FILE`)
    tsa-ca.key    the root CA's private key (mode 0600), kept only to re-issue the TSA certificate
    tsa.pem       the TSA certificate, issued by the root: critical EKU id-kp-timeStamping only (RFC 3161 2.3)
    tsa.key       the TSA's signing key (mode 0600)

Keys are ECDSA P-256; tokens are signed with ecdsa-with-SHA256 over the DER signed attributes (RFC 5652 5.4).

A request is answered (RFC 3161 2.4.2) either with a token (status granted) or with status rejection and exactly
one failInfo bit, never with an HTTP error for a well-formed POST:

    badAlg              the imprint's hash algorithm is not SHA-256/384/512 (SHA-1 is refused on purpose)
    badRequest          version is not 1
    badDataFormat       the body is not a DER TimeStampReq, or the imprint's length is not the digest's
    unacceptedPolicy    reqPolicy names a policy other than ours
    unacceptedExtension the request carries extensions (we support none)
    systemFailure       signing failed

The token's TSTInfo (RFC 3161 2.4.2) carries version 1, our policy, the request's imprint, a random 127-bit serial
number, genTime in UTC to the second, accuracy of one second, the request's nonce when it had one,
and no extensions. The SignedData (RFC 5652 5.1) has version 3, one SignerInfo (version 1, issuerAndSerialNumber)
and, when certReq was true, the TSA certificate. Signed attributes: contentType id-ct-TSTInfo, messageDigest, and
signingCertificateV2 (RFC 5035) whose single ESSCertIDv2 holds the SHA-256 of the TSA certificate.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, univ, useful
from pyasn1_modules import rfc3161, rfc5035, rfc5280, rfc5652

from log.errors import InvalidInput
from log.secret_files import write_secret_file
from witness.rfc3161 import (
    HASH_ALGORITHMS, OID_ECDSA_WITH_SHA256, OID_SHA1, OID_SHA256,
)

logger = logging.getLogger(__name__)

CA_CERT_FILE = "tsa-ca.pem"
CA_KEY_FILE = "tsa-ca.key"
TSA_CERT_FILE = "tsa.pem"
TSA_KEY_FILE = "tsa.key"

# Our TSA policy: an OID in the UUID arc (ITU-T X.667), which anyone may allocate without registration.
DEFAULT_POLICY = "2.25.145488385094458452815446311963853052123"

# PKIFailureInfo bit positions (RFC 3161 2.4.2).
BAD_ALG = 0
BAD_REQUEST = 2
BAD_DATA_FORMAT = 5
TIME_NOT_AVAILABLE = 14
UNACCEPTED_POLICY = 15
UNACCEPTED_EXTENSION = 16
ADD_INFO_NOT_AVAILABLE = 17
SYSTEM_FAILURE = 25

STATUS_GRANTED = 0
STATUS_REJECTION = 2

MAX_REQUEST_BYTES = 16 * 1024

_OID_CONTENT_TYPE = univ.ObjectIdentifier("1.2.840.113549.1.9.3")
_OID_MESSAGE_DIGEST = univ.ObjectIdentifier("1.2.840.113549.1.9.4")


# -- identity ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TsaIdentity:
    """The TSA's signing key, its certificate, and the root CA certificate that issued it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_certificate: x509.Certificate

    @property
    def ca_pem(self) -> bytes:
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "TsaIdentity":
        """Load the four files from `data_dir`, or create all of them when none exists.

        Refuses (InvalidInput) a directory holding some of the files but not all: that is a damaged TSA, and making
        a new root beside it would silently change the trust anchor its users pinned.
        """
        data_dir = Path(data_dir)
        names = (CA_CERT_FILE, CA_KEY_FILE, TSA_CERT_FILE, TSA_KEY_FILE)
        present = [name for name in names if (data_dir / name).exists()]
        if not present:
            return cls._create(data_dir)
        if len(present) != len(names):
            missing = sorted(set(names) - set(present))
            raise InvalidInput(f"TSA data dir {data_dir} has {present} but not {missing}; restore them or use an "
                               f"empty directory", field="data_dir")
        key = serialization.load_pem_private_key((data_dir / TSA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidInput(f"{data_dir / TSA_KEY_FILE} is not an ECDSA key", field="data_dir")
        certificate = x509.load_pem_x509_certificate((data_dir / TSA_CERT_FILE).read_bytes())
        ca_certificate = x509.load_pem_x509_certificate((data_dir / CA_CERT_FILE).read_bytes())
        if certificate.public_key() != key.public_key():
            raise InvalidInput(f"{data_dir / TSA_CERT_FILE} does not hold the public key of {TSA_KEY_FILE}",
                               field="data_dir")
        return cls(key, certificate, ca_certificate)

    @classmethod
    def _create(cls, data_dir: Path) -> "TsaIdentity":
        data_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        key = ec.generate_private_key(ec.SECP256R1())
        ca_certificate, certificate = make_tsa_chain(ca_key, key, not_before=now - datetime.timedelta(hours=1),
                                                     ca_days=20 * 365, tsa_days=10 * 365)
        # Keys first, each created 0600 from the start; the CA certificate last, so that a crash in between leaves
        # a partial directory that load_or_create refuses rather than a trust anchor without its keys.
        write_secret_file(data_dir / CA_KEY_FILE, _pem_key(ca_key))
        write_secret_file(data_dir / TSA_KEY_FILE, _pem_key(key))
        _write_public(data_dir / TSA_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM))
        _write_public(data_dir / CA_CERT_FILE, ca_certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, ca_certificate)


def make_tsa_chain(
    ca_key, tsa_key, *, not_before: datetime.datetime, ca_days: int, tsa_days: int,
    ca_name: str = "auditlog TSA root", tsa_name: str = "auditlog TSA",
    eku: list[x509.ObjectIdentifier] | None = None, eku_critical: bool = True,
) -> tuple[x509.Certificate, x509.Certificate]:
    """A root CA certificate and a TSA certificate it issues. `eku`/`eku_critical` exist so tests can forge."""
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, tsa_name)])).issuer_name(ca_subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(days=tsa_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku if eku is not None else [ExtendedKeyUsageOID.TIME_STAMPING]),
                       critical=eku_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_certificate, tsa_certificate


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- tokens -----------------------------------------------------------------------------------------------------------
class Rejection(Exception):
    """A request the TSA refuses: `fail_bit` is the PKIFailureInfo bit, the message goes into statusString."""

    def __init__(self, fail_bit: int, message: str):
        super().__init__(message)
        self.fail_bit = fail_bit


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    """The parts of a TimeStampReq the TSA acts on."""

    hash_oid: str
    hashed_message: bytes
    nonce: int | None
    cert_req: bool
    policy: str | None


def parse_request(der: bytes) -> ParsedRequest:
    """Decode and check a DER TimeStampReq (RFC 3161 2.4.1); raises Rejection naming the failInfo bit."""
    try:
        request, rest = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampReq())
    except (PyAsn1Error, ValueError, TypeError) as exc:
        raise Rejection(BAD_DATA_FORMAT, f"the body is not a DER TimeStampReq: {exc}") from None
    if rest:
        raise Rejection(BAD_DATA_FORMAT, f"{len(rest)} bytes follow the TimeStampReq")
    if int(request["version"]) != 1:
        raise Rejection(BAD_REQUEST, f"version must be 1, not {int(request['version'])}")
    algorithm = request["messageImprint"]["hashAlgorithm"]
    oid = str(algorithm["algorithm"])
    if oid == OID_SHA1:
        raise Rejection(BAD_ALG, "SHA-1 message imprints are not accepted: use SHA-256 or stronger")
    if oid not in HASH_ALGORITHMS:
        raise Rejection(BAD_ALG, f"hash algorithm {oid} is not accepted: use SHA-256, SHA-384 or SHA-512")
    parameters = algorithm["parameters"]
    if parameters.isValue and bytes(parameters.asOctets()) not in (b"", b"\x05\x00"):
        raise Rejection(BAD_ALG, "hash algorithm parameters must be absent or NULL")
    hashed = bytes(request["messageImprint"]["hashedMessage"])
    name, size = HASH_ALGORITHMS[oid]
    if len(hashed) != size:
        raise Rejection(BAD_DATA_FORMAT, f"a {name} imprint is {size} bytes, not {len(hashed)}")
    if request["extensions"].isValue and len(request["extensions"]):
        raise Rejection(UNACCEPTED_EXTENSION, "this TSA supports no request extensions")
    policy = str(request["reqPolicy"]) if request["reqPolicy"].isValue else None
    nonce = int(request["nonce"]) if request["nonce"].isValue else None
    return ParsedRequest(oid, hashed, nonce, bool(request["certReq"]), policy)


def _generalized_time(when: datetime.datetime) -> useful.GeneralizedTime:
    """DER GeneralizedTime in UTC, whole seconds (the token states an accuracy of one second).

    No fraction on purpose: pyasn1's DER encoder (0.6) deletes every '0' digit of a fraction, not only trailing
    ones, so "42.505Z" would go out as "42.55Z".
    """
    return useful.GeneralizedTime(when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ"))


def _attribute(oid: univ.ObjectIdentifier, value_der: bytes) -> rfc5652.Attribute:
    attribute = rfc5652.Attribute()
    attribute["attrType"] = oid
    attribute["attrValues"].append(univ.Any(value_der))
    return attribute


def signed_attributes_der(signed_attrs) -> bytes:
    """The bytes a CMS signature covers: the signed attributes DER-encoded with an explicit SET OF tag (RFC 5652
    5.4), i.e. the [0] IMPLICIT encoding with its first byte replaced by 0x31."""
    encoded = der_encoder.encode(signed_attrs)
    return b"\x31" + encoded[1:]


def build_token(
    identity: TsaIdentity,
    *,
    hash_oid: str,
    hashed_message: bytes,
    nonce: int | None,
    cert_req: bool,
    gen_time: datetime.datetime,
    serial: int,
    policy: str = DEFAULT_POLICY,
    tst_info_hook: Callable[[bytes], bytes] | None = None,
) -> rfc3161.TimeStampToken:
    """Build and sign a TimeStampToken. `tst_info_hook` lets tests alter the TSTInfo bytes before signing."""
    tst_info = rfc3161.TSTInfo()
    tst_info["version"] = 1
    tst_info["policy"] = univ.ObjectIdentifier(policy)
    imprint = tst_info["messageImprint"]
    imprint["hashAlgorithm"]["algorithm"] = univ.ObjectIdentifier(hash_oid)
    imprint["hashedMessage"] = hashed_message
    tst_info["serialNumber"] = serial
    tst_info["genTime"] = _generalized_time(gen_time)
    tst_info["accuracy"]["seconds"] = 1
    if nonce is not None:
        tst_info["nonce"] = nonce
    tst_der = der_encoder.encode(tst_info)
    if tst_info_hook is not None:
        tst_der = tst_info_hook(tst_der)

    cert_der = identity.certificate.public_bytes(serialization.Encoding.DER)
    signing_certificate = rfc5035.SigningCertificateV2()
    cert_id = rfc5035.ESSCertIDv2()
    cert_id["certHash"] = hashlib.sha256(cert_der).digest()  # hashAlgorithm is its DEFAULT, SHA-256: omitted
    signing_certificate["certs"].append(cert_id)

    signer_info = rfc5652.SignerInfo()
    signer_info["version"] = 1
    issuer, _ = der_decoder.decode(identity.certificate.issuer.public_bytes(), asn1Spec=rfc5280.Name())
    sid = signer_info["sid"]["issuerAndSerialNumber"]
    sid["issuer"] = issuer
    sid["serialNumber"] = identity.certificate.serial_number
    signer_info["digestAlgorithm"]["algorithm"] = univ.ObjectIdentifier(OID_SHA256)
    attrs = signer_info["signedAttrs"]
    attrs.append(_attribute(_OID_CONTENT_TYPE, der_encoder.encode(rfc3161.id_ct_TSTInfo)))
    attrs.append(_attribute(_OID_MESSAGE_DIGEST, der_encoder.encode(univ.OctetString(hashlib.sha256(tst_der)
                                                                                     .digest()))))
    attrs.append(_attribute(rfc5035.id_aa_signingCertificateV2, der_encoder.encode(signing_certificate)))
    signer_info["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(OID_ECDSA_WITH_SHA256)
    signer_info["signature"] = identity.key.sign(signed_attributes_der(attrs), ec.ECDSA(hashes.SHA256()))

    signed_data = rfc5652.SignedData()
    signed_data["version"] = 3  # eContentType is not id-data (RFC 5652 5.1)
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = univ.ObjectIdentifier(OID_SHA256)
    signed_data["digestAlgorithms"].append(algorithm)
    signed_data["encapContentInfo"]["eContentType"] = rfc3161.id_ct_TSTInfo
    signed_data["encapContentInfo"]["eContent"] = tst_der
    if cert_req:
        choice = rfc5652.CertificateChoices()
        choice["certificate"], _ = der_decoder.decode(cert_der, asn1Spec=rfc5280.Certificate())
        signed_data["certificates"].append(choice)
    signed_data["signerInfos"].append(signer_info)

    token = rfc3161.TimeStampToken()
    token["contentType"] = rfc5652.id_signedData
    token["content"] = univ.Any(der_encoder.encode(signed_data))
    return token


def granted_response(token: rfc3161.TimeStampToken) -> bytes:
    response = rfc3161.TimeStampResp()
    response["status"]["status"] = STATUS_GRANTED
    response["timeStampToken"] = token
    return der_encoder.encode(response)


def rejection_response(fail_bit: int, message: str) -> bytes:
    """A TimeStampResp with status rejection, the one failInfo bit, and `message` as its statusString."""
    response = rfc3161.TimeStampResp()
    status = response["status"]
    status["status"] = STATUS_REJECTION
    status["statusString"].append(char.UTF8String(message[:200]))
    # A named bit list in DER ends at its last set bit.
    status["failInfo"] = rfc3161.PKIFailureInfo(binValue="0" * fail_bit + "1")
    return der_encoder.encode(response)


class TimestampAuthority:
    """Answers DER TimeStampReqs with DER TimeStampResps. `respond` never raises for anything a client sends."""

    def __init__(self, identity: TsaIdentity, *, policy: str = DEFAULT_POLICY,
                 clock: Callable[[], datetime.datetime] | None = None):
        self.identity = identity
        self.policy = policy
        self._clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.issued = 0
        self.rejected = 0

    def respond(self, request_der: bytes) -> bytes:
        try:
            request = parse_request(request_der)
            if request.policy is not None and request.policy != self.policy:
                raise Rejection(UNACCEPTED_POLICY, f"this TSA issues only under policy {self.policy}")
        except Rejection as rejection:
            self.rejected += 1
            return rejection_response(rejection.fail_bit, str(rejection))
        try:
            token = build_token(
                self.identity, hash_oid=request.hash_oid, hashed_message=request.hashed_message,
                nonce=request.nonce, cert_req=request.cert_req, gen_time=self._clock(),
                serial=secrets.randbits(127) | 1, policy=self.policy,
            )
            response = granted_response(token)
        except Exception:  # noqa: BLE001 - a signing failure is answered, RFC 3161 style, and logged
            logger.exception("issuing a timestamp token failed")
            self.rejected += 1
            return rejection_response(SYSTEM_FAILURE, "the TSA could not issue a token")
        self.issued += 1
        return response
