"""What went wrong with an HTTP exchange with a witness, a TSA or a log, in words.

The log server's witnessing and timestamping jobs and the clients log and report these failures; an operator
reads "connection refused" or "timed out after 10 s", never the repr of an aiohttp exception or of the bytes a peer
answered. `describe_exception` turns a transport failure into such a phrase; `summarise_body` shortens what a peer
answered (text, or a note that it was binary) to one printable line.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import aiohttp

MAX_SUMMARY = 160

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the peer",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "the connection timed out",
    errno.EPIPE: "the connection closed while sending",
}


def _os_error_words(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name ({error.strerror or error})"
    words = _ERRNO_WORDS.get(error.errno or 0)
    if words is not None:
        return words
    return error.strerror or str(error) or type(error).__name__


def describe_exception(exc: BaseException, timeout: float | None = None) -> str:
    """A transport failure (aiohttp, OSError, a timeout) as a short phrase: 'connection refused', 'timed out after
    10 s', 'cannot resolve the host name (...)', 'the connection closed before an answer'."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)):
        return f"timed out after {timeout:g} s" if timeout is not None else "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {_tls_words(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {_tls_words(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _os_error_words(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before an answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer's body could not be read ({_first_line(str(exc)) or 'cut short'})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}" + (f": {_first_line(exc.message)}" if exc.message else "")
    if isinstance(exc, aiohttp.InvalidURL):
        return f"not a usable URL: {exc.url}"
    if isinstance(exc, OSError) and not isinstance(exc, aiohttp.ClientError):
        return _os_error_words(exc)
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno is not None:
        return _os_error_words(exc)
    text = _first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tls_words(error: BaseException) -> str:
    """An ssl error's own words: 'unable to get local issuer certificate', 'wrong version number'."""
    verify = getattr(error, "verify_message", None)
    if verify:
        return str(verify)
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    return _first_line(str(error)) or type(error).__name__


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= MAX_SUMMARY else line[:MAX_SUMMARY - 3] + "..."


def summarise_body(data: bytes, content_type: str = "") -> str:
    """What a peer answered, as one printable line: its text (the first non-empty line, shortened), 'an empty body',
    or 'N bytes of <content type>' for something that is not text."""
    if not data.strip():
        return "an empty body"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(not ch.isprintable() and ch not in "\r\n\t" for ch in text):
        return f"{len(data)} bytes of {content_type or 'binary data'}"
    if content_type == "application/problem+json" or content_type.endswith("+json") or content_type == \
            "application/json":
        import json

        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            detail = document.get("detail") or document.get("title") or document.get("error")
            if isinstance(detail, str) and detail.strip():
                return _first_line(detail)
    return _first_line(text)
