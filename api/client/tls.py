"""The clients' TLS trust: an https:// log is verified against the system's trust store, or against the CA
certificate(s) the caller names (`--ca-cert PEM`, `AUDITLOG_CA_CERT`, `LogClient(..., ca_cert=...)`,
`Recorder(..., ca_cert=...)`) for a log whose certificate a private CA issued.

Either way the certificate chain and the host name (or IP address) are checked: there is no "insecure" switch. A
certificate that does not verify fails the connection, which the clients report as unreachable (exit 3) with
OpenSSL's reason ('certificate verify failed: unable to get local issuer certificate').
"""

from __future__ import annotations

import ssl
from pathlib import Path

from log.errors import InvalidInput


def client_context(ca_cert: str | Path | None) -> ssl.SSLContext | None:
    """An SSLContext trusting only the PEM certificate(s) in `ca_cert`; None (the HTTP library's default, the system
    trust store) without one. A file that cannot be read or holds no certificate is InvalidInput, before any
    connection."""
    if ca_cert is None:
        return None
    try:
        pem = Path(ca_cert).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise InvalidInput(f"cannot read the CA certificate {ca_cert}: {exc.strerror or exc}", field="ca_cert") \
            from None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidInput(f"the CA file {ca_cert} holds no usable PEM certificate: {exc}", field="ca_cert") \
            from None
    return context
