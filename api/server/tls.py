"""TLS for `auditlog serve --tls-cert PEM --tls-key PEM`: bearer credentials must not cross the network in clear
when no proxy terminates TLS in front of the log.

`server_context` is built once, when serve starts, before the log opens: a certificate or key that cannot be read,
does not parse, or a key that is not the certificate's, is one `InvalidInput` line (exit 2) and nothing starts. The
read workers (api/server/readers.py) share the port through SO_REUSEPORT, so each builds the same context from the
same two files: a connection the kernel hands to a worker is TLS like one the writer takes.

The protocol floor is TLS 1.2; the cipher suites and the rest are Python's `ssl.create_default_context` server
defaults (OpenSSL's secure defaults as Python configures them: no SSLv3, no compression, forward-secret suites
first), which follow the Python and OpenSSL in use rather than a list kept here.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from log.errors import InvalidInput

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def check_pair(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(cert, key) when both are given, None when neither; one without the other is InvalidInput."""
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if cert is not None else ("--tls-key", "--tls-cert")
        raise InvalidInput(f"{given} needs {missing} too (env AUDITLOG_TLS_CERT and AUDITLOG_TLS_KEY): give both "
                           "or neither", field="tls")
    return None if cert is None else (cert, key)


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server SSLContext holding the certificate chain in `cert` and its private key in `key` (PEM files)."""
    for path, what in ((cert, "certificate"), (key, "key")):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the TLS {what} {path}: {exc.strerror or exc}", field="tls") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        reason = (exc.reason or "").upper()
        if "MISMATCH" in reason:
            raise InvalidInput(f"the TLS key {key} is not the key of the certificate {cert}", field="tls") from None
        raise InvalidInput(f"cannot use the TLS certificate {cert} and key {key}: {_words(exc)}",
                           field="tls") from None
    except ValueError as exc:  # e.g. an encrypted key (no password prompt in a server)
        raise InvalidInput(f"cannot use the TLS key {key}: {exc}", field="tls") from None
    return context


def _words(exc: ssl.SSLError) -> str:
    """OpenSSL's reason ('PEM lib', 'NO_START_LINE', 'KEY_VALUES_MISMATCH') in lower case, else the message."""
    reason = exc.reason or ""
    return reason.replace("_", " ").lower() if reason else (str(exc) or type(exc).__name__)
