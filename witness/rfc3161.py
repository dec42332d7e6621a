"""RFC 3161 timestamps of checkpoints: building the request, asking a TSA, and verifying the token (no storage).

The log server's job that stamps its checkpoints and keeps the tokens is api/server/timestamping.py.

What is stamped is a checkpoint note, byte for byte as served: the request's message imprint is SHA-256 of the note
bytes, with a fresh 64-bit random nonce and certReq true. Requests are built with rfc3161ng (given the digest: its
`data=` path hashes with SHA-1 whatever `hashname` says). Nothing of rfc3161ng is used to verify: it checks neither
the certificate chain nor the key usage.

`verify_timestamp` is our own checklist over pyasn1-modules' RFC 5652/3161/5035 ASN.1 definitions and
`cryptography` (signatures; the chain through `cryptography.x509.verification`). The checks run in this order and
the first that fails raises a `TimestampError` (a `log.errors.VerificationError`) whose message starts with its
number and name:

     1 status           the TimeStampResp's PKIStatus is granted (0) or grantedWithMods (1) (RFC 3161 2.4.2)
     2 token            a ContentInfo holding SignedData whose eContentType is id-ct-TSTInfo, with one SignerInfo
     3 signer           the SignerInfo's sid names a certificate in the token (or one pinned by the caller)
     4 digest alg       the SignerInfo's digest algorithm is SHA-256, SHA-384 or SHA-512
     5 signature        the signature verifies over the DER signed attributes with the signer's key (RFC 5652 5.4)
     6 content type     the contentType signed attribute is id-ct-TSTInfo (RFC 5652 11.1)
     7 message digest   the messageDigest signed attribute equals the digest of the encapsulated TSTInfo
     8 signing cert     signingCertificate (ESSCertID, RFC 2634) or signingCertificateV2 (ESSCertIDv2, RFC 5035 /
                        RFC 5816) names the signer certificate: its hash, and its issuer and serial when present
     9 tstinfo          the TSTInfo decodes and has version 1
    10 hash alg         the message imprint's hash is SHA-256, SHA-384 or SHA-512: SHA-1 is refused
    11 imprint          the imprint equals the hash of `message`
    12 nonce            the TSTInfo's nonce equals the caller's, when the caller gives one
    13 eku              the signer certificate has a critical extended key usage of id-kp-timeStamping only
                        (RFC 3161 2.3)
    14 validity         genTime lies within the signer certificate's validity
    15 chain            the signer certificate chains to one of the trusted certificates, every certificate
                        valid at genTime; a trusted certificate that *is* the signer certificate pins it
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import secrets
from collections.abc import Sequence

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality, ExtensionPolicy, PolicyBuilder, Store,
)
from cryptography.x509.verification import VerificationError as ChainError

# pyasn1, its RFC modules and rfc3161ng are imported where a request is built or a token read, not here: they are
# about a third of a server's start-up (0.2-0.3 s of CPU), and most servers and commands never timestamp.
from log.errors import InvalidInput, VerificationError
from witness.http_errors import summarise_body

logger = logging.getLogger(__name__)

TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
NONCE_BITS = 64
MAX_RESPONSE_BYTES = 64 * 1024

OID_SHA1 = "1.3.14.3.2.26"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"

# The hash algorithms we accept for imprints and CMS digests: OID -> (name, digest size).
HASH_ALGORITHMS = {OID_SHA256: ("SHA-256", 32), OID_SHA384: ("SHA-384", 48), OID_SHA512: ("SHA-512", 64)}
_HASHES = {OID_SHA256: hashes.SHA256, OID_SHA384: hashes.SHA384, OID_SHA512: hashes.SHA512, OID_SHA1: hashes.SHA1}

# Signature algorithms in a SignerInfo: OID -> (key kind, hash OID or None for "the SignerInfo's digest algorithm").
_SIGNATURE_ALGORITHMS = {
    "1.2.840.10045.4.3.2": ("ec", OID_SHA256),
    "1.2.840.10045.4.3.3": ("ec", OID_SHA384),
    "1.2.840.10045.4.3.4": ("ec", OID_SHA512),
    "1.2.840.10045.2.1": ("ec", None),  # id-ecPublicKey, as some signers write it
    "1.2.840.113549.1.1.1": ("rsa", None),  # rsaEncryption: PKCS #1 v1.5 with the digest algorithm
    "1.2.840.113549.1.1.11": ("rsa", OID_SHA256),
    "1.2.840.113549.1.1.12": ("rsa", OID_SHA384),
    "1.2.840.113549.1.1.13": ("rsa", OID_SHA512),
    "1.3.101.112": ("ed25519", None),
}

_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"  # RFC 2634 id-aa-signingCertificate
_OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"  # RFC 5035 id-aa-signingCertificateV2
_OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"  # RFC 3161 id-ct-TSTInfo
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"  # RFC 5652 id-signedData

_FAIL_INFO_NAMES = {
    0: "badAlg", 2: "badRequest", 5: "badDataFormat", 14: "timeNotAvailable", 15: "unacceptedPolicy",
    16: "unacceptedExtension", 17: "addInfoNotAvailable", 25: "systemFailure",
}


# -- errors -----------------------------------------------------------------------------------------------------------
class TimestampError(VerificationError):
    """A timestamp response or token did not verify. The message starts with the number and name of the check."""

    code = "invalid-timestamp"

    def __init__(self, check: int, name: str, detail: str):
        super().__init__(f"check {check} ({name}) failed: {detail}")
        self.check = check
        self.check_name = name


class TimestampRejected(TimestampError):
    """The TSA answered without a token (PKIStatus rejection, waiting, revocation...)."""

    code = "timestamp-rejected"


class UntrustedTimestamp(TimestampError):
    """The token verifies, but its signer is not a TSA we trust at genTime (EKU, validity or chain)."""

    code = "untrusted-timestamp"


# -- parsed results ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says. `tsa_name` is the signer certificate's subject (RFC 4514), the identity the
    chain check authenticated; `serial` is the TSA's serial number for the token; `hash_alg` the imprint's."""

    gen_time: datetime.datetime
    serial: int
    tsa_name: str
    policy: str
    hash_alg: str
    nonce: int | None = None


@dataclasses.dataclass(frozen=True)
class TimestampRequest:
    """A DER TimeStampReq and what its answer must echo."""

    der: bytes
    nonce: int
    digest: bytes


def load_certificates(pem: bytes | str | x509.Certificate | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates from PEM text (one or many), one DER certificate, or passed through."""
    if isinstance(pem, x509.Certificate):
        return [pem]
    if isinstance(pem, str):
        pem = pem.encode()
    if isinstance(pem, bytes):
        if b"-----BEGIN" not in pem:
            try:
                return [x509.load_der_x509_certificate(pem)]
            except ValueError:
                raise InvalidInput("the TSA certificate is neither PEM nor a DER X.509 certificate",
                                   field="tsa_certificate") from None
        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise InvalidInput(f"the TSA certificate is not PEM: {exc}", field="tsa_certificate") from None
        return certificates
    return list(pem)


def build_request(message: bytes) -> TimestampRequest:
    """A TimeStampReq for SHA-256(message) with a fresh random nonce and certReq true (RFC 3161 2.4.1)."""
    import rfc3161ng

    digest = hashlib.sha256(message).digest()
    nonce = 1 + secrets.randbits(NONCE_BITS)
    request = rfc3161ng.make_timestamp_request(
        digest=digest, hashname="sha256", include_tsa_certificate=True, nonce=nonce,
    )
    return TimestampRequest(rfc3161ng.encode_timestamp_request(request), nonce, digest)


async def request_timestamp(session: aiohttp.ClientSession, url: str, request: TimestampRequest) -> bytes:
    """POST the request (RFC 3161 3.4) and return the reply's bytes, unverified. Raises aiohttp/timeout errors."""
    async with session.post(url, data=request.der, headers={"Content-Type": TIMESTAMP_QUERY}) as response:
        if response.status != 200:
            answer = await response.content.read(4096)
            raise aiohttp.ClientResponseError(response.request_info, response.history, status=response.status,
                                              message=summarise_body(answer, response.content_type))
        body = await response.content.read(MAX_RESPONSE_BYTES + 1)
        if len(body) > MAX_RESPONSE_BYTES:
            raise aiohttp.ClientPayloadError(f"the TSA's answer is over {MAX_RESPONSE_BYTES} bytes")
        return body


# -- verification -----------------------------------------------------------------------------------------------------
def _decode(data: bytes, spec, check: int, name: str, what: str):
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.error import PyAsn1Error

    try:
        value, rest = der_decoder.decode(data, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError) as exc:
        raise TimestampError(check, name, f"{what} is not valid DER: {exc}") from None
    if rest:
        raise TimestampError(check, name, f"{len(rest)} bytes follow the {what}")
    return value


def _status_detail(status_info) -> str:
    status = int(status_info["status"])
    parts = [f"PKIStatus is {status}, not granted"]
    if status_info["failInfo"].isValue:
        bits = [i for i, bit in enumerate(status_info["failInfo"]) if bit]
        parts.append("failInfo " + ", ".join(_FAIL_INFO_NAMES.get(i, f"bit {i}") for i in bits))
    if status_info["statusString"].isValue:
        parts.append("statusString " + "; ".join(repr(str(s)) for s in status_info["statusString"]))
    return ": ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if parts[1:] else "")


def _token_bytes(data: bytes) -> bytes:
    """Check 1: a TimeStampResp must be granted; a bare TimeStampToken is taken as it is. Returns the token DER."""
    from pyasn1.codec.der import decoder as der_decoder, encoder as der_encoder
    from pyasn1.error import PyAsn1Error
    from pyasn1_modules import rfc3161

    if not isinstance(data, (bytes, bytearray)) or len(data) < 2:
        raise TimestampError(1, "status", "no response bytes")
    try:
        response, rest = der_decoder.decode(bytes(data), asn1Spec=rfc3161.TimeStampResp())
    except (PyAsn1Error, ValueError, TypeError):
        response, rest = None, b""
    if response is None or rest:
        # Not a TimeStampResp: perhaps a TimeStampToken on its own (a ContentInfo), checked from step 2 on.
        return bytes(data)
    status = int(response["status"]["status"])
    if status not in (0, 1):
        raise TimestampRejected(1, "status", _status_detail(response["status"]))
    if not response["timeStampToken"].isValue:
        raise TimestampRejected(1, "status", "the response is granted but carries no timeStampToken")
    return der_encoder.encode(response["timeStampToken"])


def _signed_attributes(signer_info) -> tuple[bytes, dict[str, list]]:
    from pyasn1.codec.der import encoder as der_encoder

    attrs = signer_info["signedAttrs"]
    if not attrs.isValue or not len(attrs):
        raise TimestampError(5, "signature", "the SignerInfo has no signed attributes")
    by_type: dict[str, list] = {}
    for attribute in attrs:
        by_type.setdefault(str(attribute["attrType"]), []).append(attribute["attrValues"])
    covered = der_encoder.encode(attrs)
    return b"\x31" + covered[1:], by_type


def _single_value(by_type: dict[str, list], oid: str, check: int, name: str) -> bytes:
    values = by_type.get(oid)
    if not values:
        raise TimestampError(check, name, f"the signed attribute {oid} is missing")
    if len(values) != 1 or len(values[0]) != 1:
        raise TimestampError(check, name, f"the signed attribute {oid} must occur once with one value")
    return bytes(values[0][0])


def _find_signer(signer_info, candidates: list[x509.Certificate]) -> x509.Certificate:
    from pyasn1.codec.der import encoder as der_encoder

    sid = signer_info["sid"]
    if sid.getName() == "issuerAndSerialNumber":
        issuer = der_encoder.encode(sid["issuerAndSerialNumber"]["issuer"])
        serial = int(sid["issuerAndSerialNumber"]["serialNumber"])
        for certificate in candidates:
            if certificate.serial_number == serial and certificate.issuer.public_bytes() == issuer:
                return certificate
        raise TimestampError(3, "signer", f"no certificate has the signer's issuer and serial number {serial}")
    key_id = bytes(sid["subjectKeyIdentifier"])
    for certificate in candidates:
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            continue
        if ski == key_id:
            return certificate
    raise TimestampError(3, "signer", f"no certificate has the signer's key identifier {key_id.hex()}")


def _verify_signature(signer_info, certificate: x509.Certificate, covered: bytes, digest_oid: str) -> None:
    algorithm = str(signer_info["signatureAlgorithm"]["algorithm"])
    if algorithm not in _SIGNATURE_ALGORITHMS:
        raise TimestampError(5, "signature", f"signature algorithm {algorithm} is not supported")
    kind, hash_oid = _SIGNATURE_ALGORITHMS[algorithm]
    hash_oid = hash_oid or digest_oid
    signature = bytes(signer_info["signature"])
    key = certificate.public_key()
    try:
        if kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, covered, ec.ECDSA(_HASHES[hash_oid]()))
        elif kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, covered, padding.PKCS1v15(), _HASHES[hash_oid]())
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, covered)
        else:
            raise TimestampError(5, "signature", f"signature algorithm {algorithm} does not fit the signer's key")
    except InvalidSignature:
        raise TimestampError(5, "signature", "the signature over the signed attributes does not verify") from None


def _check_signing_certificate(by_type: dict[str, list], certificate: x509.Certificate) -> None:
    """Check 8: the first ESSCertID(v2) names the signer certificate (RFC 2634 5.4, RFC 5035 5.4)."""
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1_modules import rfc2634, rfc5035

    cert_der = certificate.public_bytes(Encoding.DER)
    if _OID_SIGNING_CERTIFICATE_V2 in by_type:
        value = _decode(_single_value(by_type, _OID_SIGNING_CERTIFICATE_V2, 8, "signing cert"),
                        rfc5035.SigningCertificateV2(), 8, "signing cert", "signingCertificateV2")
        cert_id = value["certs"][0] if len(value["certs"]) else None
        hash_oid = str(cert_id["hashAlgorithm"]["algorithm"]) if cert_id is not None else OID_SHA256
        if hash_oid not in _HASHES:
            raise TimestampError(8, "signing cert", f"ESSCertIDv2 hash algorithm {hash_oid} is not supported")
    elif _OID_SIGNING_CERTIFICATE in by_type:
        value = _decode(_single_value(by_type, _OID_SIGNING_CERTIFICATE, 8, "signing cert"),
                        rfc2634.SigningCertificate(), 8, "signing cert", "signingCertificate")
        cert_id = value["certs"][0] if len(value["certs"]) else None
        hash_oid = OID_SHA1  # ESSCertID is SHA-1 by definition; it binds the certificate, the signature binds it
    else:
        raise TimestampError(8, "signing cert", "neither signingCertificate nor signingCertificateV2 is signed")
    if cert_id is None:
        raise TimestampError(8, "signing cert", "the signing certificate attribute lists no certificate")
    digest = hashes.Hash(_HASHES[hash_oid]())
    digest.update(cert_der)
    if bytes(cert_id["certHash"]) != digest.finalize():
        raise TimestampError(8, "signing cert", "the ESSCertID hash does not match the signer certificate")
    issuer_serial = cert_id["issuerSerial"]
    if issuer_serial.isValue:
        if int(issuer_serial["serialNumber"]) != certificate.serial_number:
            raise TimestampError(8, "signing cert", "the ESSCertID serial number is not the signer certificate's")
        names = [name for name in issuer_serial["issuer"] if name.getName() == "directoryName"]
        issuer = certificate.issuer.public_bytes()
        if not names or all(der_encoder.encode(name["directoryName"]) != issuer for name in names):
            raise TimestampError(8, "signing cert", "the ESSCertID issuer is not the signer certificate's issuer")


def _check_eku(certificate: x509.Certificate) -> None:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise UntrustedTimestamp(13, "eku", "the signer certificate has no extended key usage") from None
    if not extension.critical:
        raise UntrustedTimestamp(13, "eku", "the signer certificate's extended key usage is not critical")
    if list(extension.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        usages = ", ".join(oid.dotted_string for oid in extension.value)
        raise UntrustedTimestamp(13, "eku", f"the signer certificate's extended key usage is {usages}, "
                                            f"not id-kp-timeStamping alone")


def _eku_validator(_policy, _certificate, value: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.TIME_STAMPING not in value:
        raise ValueError("the leaf is not a time-stamping certificate")


def _check_chain(certificate: x509.Certificate, intermediates: list[x509.Certificate],
                 trusted: list[x509.Certificate], gen_time: datetime.datetime) -> None:
    if any(certificate == anchor for anchor in trusted):
        return  # pinned: the caller trusts this very certificate (EKU and validity were checked above)
    ee_policy = ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, Criticality.CRITICAL, _eku_validator)
    try:
        verifier = (
            PolicyBuilder().store(Store(trusted)).time(gen_time)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
            .build_client_verifier()
        )
        verifier.verify(certificate, intermediates)
    except (ChainError, ValueError) as exc:
        raise UntrustedTimestamp(15, "chain", f"the signer certificate does not chain to a trusted certificate "
                                              f"at genTime {gen_time.isoformat()}: {exc}") from None


def verify_timestamp(
    token_or_response: bytes,
    message: bytes,
    trusted: bytes | str | x509.Certificate | Sequence[x509.Certificate],
    nonce: int | None = None,
) -> TimestampInfo:
    """Verify a DER TimeStampResp or TimeStampToken over `message` against trusted TSA/CA certificates.

    `trusted`: PEM text or certificates, each a trust anchor (a root or intermediate CA), or the TSA certificate
    itself to pin it. Certificates inside the token serve as untrusted intermediates. Runs the checklist in the
    module docstring in order; raises `TimestampError` (or a subclass) naming the first check that failed.
    """
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1.error import PyAsn1Error
    from pyasn1.type import univ
    from pyasn1_modules import rfc3161, rfc5652

    trusted_certs = load_certificates(trusted)
    if not trusted_certs:
        raise InvalidInput("give at least one trusted certificate", field="trusted")

    # 1. status
    token_der = _token_bytes(token_or_response)

    # 2. token: ContentInfo -> SignedData -> TSTInfo, one SignerInfo
    content_info = _decode(token_der, rfc5652.ContentInfo(), 2, "token", "TimeStampToken")
    if str(content_info["contentType"]) != _OID_SIGNED_DATA:
        raise TimestampError(2, "token", f"content type is {content_info['contentType']}, not signedData")
    signed_data = _decode(bytes(content_info["content"]), rfc5652.SignedData(), 2, "token", "SignedData")
    encap = signed_data["encapContentInfo"]
    if str(encap["eContentType"]) != _OID_TST_INFO:
        raise TimestampError(2, "token", f"eContentType is {encap['eContentType']}, not id-ct-TSTInfo")
    if not encap["eContent"].isValue:
        raise TimestampError(2, "token", "the SignedData does not encapsulate its TSTInfo")
    tst_der = bytes(encap["eContent"])
    if len(signed_data["signerInfos"]) != 1:
        raise TimestampError(2, "token", f"a token has one SignerInfo, not {len(signed_data['signerInfos'])}")
    signer_info = signed_data["signerInfos"][0]

    # 3. signer: the certificate the SignerInfo names, from the token or the caller's
    embedded = []
    if signed_data["certificates"].isValue:
        for choice in signed_data["certificates"]:
            if choice.getName() == "certificate":
                try:
                    embedded.append(x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"])))
                except ValueError as exc:
                    raise TimestampError(3, "signer", f"an embedded certificate does not parse: {exc}") from None
    signer = _find_signer(signer_info, embedded + trusted_certs)

    # 4. digest alg
    digest_oid = str(signer_info["digestAlgorithm"]["algorithm"])
    if digest_oid not in HASH_ALGORITHMS:
        name = "SHA-1" if digest_oid == OID_SHA1 else digest_oid
        raise TimestampError(4, "digest alg", f"the SignerInfo digest algorithm {name} is not SHA-256 or stronger")

    # 5. signature over the signed attributes
    covered, by_type = _signed_attributes(signer_info)
    _verify_signature(signer_info, signer, covered, digest_oid)

    # 6. content type attribute
    content_type = _decode(_single_value(by_type, _OID_CONTENT_TYPE, 6, "content type"), univ.ObjectIdentifier(),
                           6, "content type", "contentType attribute")
    if str(content_type) != _OID_TST_INFO:
        raise TimestampError(6, "content type", f"the contentType attribute is {content_type}, not id-ct-TSTInfo")

    # 7. message digest attribute
    message_digest = _decode(_single_value(by_type, _OID_MESSAGE_DIGEST, 7, "message digest"), univ.OctetString(),
                             7, "message digest", "messageDigest attribute")
    h = hashes.Hash(_HASHES[digest_oid]())
    h.update(tst_der)
    if bytes(message_digest) != h.finalize():
        raise TimestampError(7, "message digest", "the messageDigest attribute does not match the TSTInfo")

    # 8. signing certificate attribute
    _check_signing_certificate(by_type, signer)

    # 9. tstinfo
    tst_info = _decode(tst_der, rfc3161.TSTInfo(), 9, "tstinfo", "TSTInfo")
    if int(tst_info["version"]) != 1:
        raise TimestampError(9, "tstinfo", f"TSTInfo version is {int(tst_info['version'])}, not 1")
    try:
        gen_time = tst_info["genTime"].asDateTime.astimezone(datetime.timezone.utc)
    except (PyAsn1Error, ValueError) as exc:
        raise TimestampError(9, "tstinfo", f"genTime does not parse: {exc}") from None

    # 10. hash alg
    imprint = tst_info["messageImprint"]
    hash_oid = str(imprint["hashAlgorithm"]["algorithm"])
    if hash_oid == OID_SHA1:
        raise TimestampError(10, "hash alg", "the message imprint is SHA-1; SHA-256 or stronger is required")
    if hash_oid not in HASH_ALGORITHMS:
        raise TimestampError(10, "hash alg", f"the message imprint's hash algorithm {hash_oid} is not accepted")

    # 11. imprint
    h = hashes.Hash(_HASHES[hash_oid]())
    h.update(message)
    if bytes(imprint["hashedMessage"]) != h.finalize():
        raise TimestampError(11, "imprint", f"the message imprint is not the {HASH_ALGORITHMS[hash_oid][0]} of "
                                            f"the message")

    # 12. nonce
    token_nonce = int(tst_info["nonce"]) if tst_info["nonce"].isValue else None
    if nonce is not None and token_nonce != nonce:
        raise TimestampError(12, "nonce", "the token's nonce is not the request's" if token_nonce is not None
                             else "the token has no nonce but the request had one")

    # 13. eku, 14. validity at genTime, 15. chain
    _check_eku(signer)
    if not signer.not_valid_before_utc <= gen_time <= signer.not_valid_after_utc:
        raise UntrustedTimestamp(14, "validity", f"genTime {gen_time.isoformat()} is outside the signer "
                                                 f"certificate's validity [{signer.not_valid_before_utc.isoformat()},"
                                                 f" {signer.not_valid_after_utc.isoformat()}]")
    _check_chain(signer, [c for c in embedded if c != signer], trusted_certs, gen_time)

    return TimestampInfo(
        gen_time=gen_time,
        serial=int(tst_info["serialNumber"]),
        tsa_name=signer.subject.rfc4514_string(),
        policy=str(tst_info["policy"]),
        hash_alg=HASH_ALGORITHMS[hash_oid][0],
        nonce=token_nonce,
    )


def format_gen_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
