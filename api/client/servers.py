"""The servers of one log, as a client sees them, and which one to ask now.

Several `auditlog serve` processes on one PostgreSQL database answer every route of one log: one is the elected
sequencer, the others hand writes on to it. A client (LogClient, Recorder, the CLI) may be given all of them:

    ServerList("http://a:8080")                          # one server, as before
    ServerList(["http://a:8080", "http://b:8080"])       # several, in order of preference
    ServerList("http://a:8080,http://b:8080")            # the same, as --server and AUDITLOG_SERVER take them

Every request walks the list from the server that answered last (remembered across requests, so a client stays
with one server while it answers, and reads what it just wrote from the server that acknowledged it), and moves
on to the next server when one cannot answer:

1. Nothing was sent (connection refused, the host unreachable or unresolvable, a TCP connect or TLS handshake that
   failed or timed out): always; the request never reached that server.
2. The request was sent and its answer lost (the connection closed or reset, a read that timed out): only when the
   request is idempotent, so that a second send cannot carry it out twice: reads, a blob PUT (stored under its own
   SHA-256), an audit event POST (the log keeps one event per (producer, event_id) and answers a resend with
   `duplicate: true` and the original index). A plain POST /api/v1/entries carries no idempotency key: the server
   may have logged the entry before the answer was lost, and a resend would log it twice. The walk stops with
   `AnswerLost` (an `Unavailable`: exit 3), naming the server, and sends it nowhere else.
3. An answer that says "not now" (FAILOVER_STATUSES: 503 with Retry-After while a new sequencer is elected or a
   server is overloaded, 502 or 504 from a proxy in front, 429, 408, 500): only when the request is idempotent,
   for the same reason (a server that handed a write on to a sequencer which committed it and died answers 503,
   and the entry is logged all the same). Otherwise the answer goes back to the caller, which reports it.

A server that failed may be asked again in the same request, up to `attempts` times in all, but not before a
back-off (`backoff` seconds, doubling with each failure of that server) nor before the Retry-After it answered
(honoured up to `max_retry_after` seconds); the other servers are asked meanwhile. The walk gives up with
`ServersUnavailable` (an `Unavailable`: exit 3), naming every server and why its last try failed, once each has had
its attempts, or when the next try could not start within `deadline` seconds of the request's start.

Only the transport fails over. An answer that arrives is the caller's to check, and a verifying client checks it as
if it came from the only server there is (api/client/log_client.py). A proof that does not verify, a checkpoint
whose signature does not, a second root for one tree size: each is evidence that the log misbehaves, and raises
VerificationError (exit 1). Asking another server instead would hide that evidence, and would let a lying server
pass unnoticed for as long as one honest server answered.

The two transports share the walk: `request` (urllib, for the blocking Recorder and the CLI's admin commands) and
`arequest` (an aiohttp session, for LogClient and the async Recorder). Each tells "not sent" from "answer lost" at
the point where the connection is made, not by guessing from the error afterwards.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from email.message import Message

from log import defaults
from log.errors import InvalidInput, Unavailable
from witness.http_errors import describe_exception, summarise_body

# Answers that say "this server cannot answer now", where another server (or this one, later) may.
FAILOVER_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def check_url(text: str) -> str:
    """A log's base URL, checked before any request: http:// or https://, a host, an optional path prefix, no query
    or fragment; returned without a trailing slash. Anything else is InvalidInput naming the text."""
    from urllib.parse import urlsplit

    url = text.strip().rstrip("/") if isinstance(text, str) else text
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{text!r} is not a URL: {exc}", field="server") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f" (did you mean http://{url}?)" if "://" not in url else ""
        raise InvalidInput(f"{text!r} is not an http:// or https:// URL: the log's URL must be "
                           f"http://host[:port] or https://...{hint}", field="server")
    if parts.query or parts.fragment:
        raise InvalidInput(f"{text!r} has a query or fragment; give the log's base URL", field="server")
    return url


def parse_servers(value: str | Iterable[str]) -> tuple[str, ...]:
    """The server URLs `value` names: one URL, several separated by commas, or a sequence of either. Each is checked
    (`check_url`: InvalidInput naming the one at fault); the order is kept, a repeat dropped, empty items skipped."""
    texts = [value] if isinstance(value, str) else list(value)
    urls: list[str] = []
    for text in texts:
        if not isinstance(text, str):
            raise InvalidInput(f"a server URL must be a string, not {text!r}", field="server")
        for part in text.split(","):
            if part.strip():
                url = check_url(part)
                if url not in urls:
                    urls.append(url)
    if not urls:
        raise InvalidInput(f"no server URL in {value!r}", field="server")
    return tuple(urls)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a Retry-After header asks for, in seconds: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3);
    None without a usable value."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def client_timeout(total: float):
    """The aiohttp timeouts for a client of `total` seconds a request: the connect bounded apart (at most
    CONNECT_TIMEOUT, and below the total), so that a connect that times out is told from a request whose answer
    did not come (rule 1 of the module doc)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=total, sock_connect=min(defaults.CONNECT_TIMEOUT, total / 2))


@dataclass(frozen=True)
class Answer:
    """What one server answered: `url` is that server's base URL."""

    url: str
    status: int
    content_type: str
    body: bytes
    retry_after: float | None = None
    headers: Message | None = None  # the answer's headers, names matched in any case (the blocking client's 2xx)


class ServersUnavailable(Unavailable):
    """No server could answer a request. `failures` maps each server to why its last try failed."""

    def __init__(self, message: str, failures: dict[str, str] | None = None):
        super().__init__(message)
        self.failures = failures or {}


class AnswerLost(Unavailable):
    """A request that is not idempotent was sent to `url` and its answer was lost: it may or may not have been
    carried out, so it was not sent again, to that server or another (rule 2 of the module doc)."""

    def __init__(self, message: str, url: str = ""):
        super().__init__(message)
        self.url = url


class Walk:
    """One request's way through the servers (the rules of the module doc). `next()` names the server to ask and
    how long to wait first, None once the request has had every try it may; the transport reports each try: an
    answer to `settle`, a try without one to `lost`; `unavailable()` is the error when no server answered."""

    def __init__(self, servers: ServerList, method: str, path: str, idempotent: bool):
        self.servers = servers
        self.what = f"{method} {path.split('?')[0]}"
        self.idempotent = idempotent
        self.start = servers.clock()
        first = servers.urls.index(servers.current)
        self.order = servers.urls[first:] + servers.urls[:first]
        self.tries = dict.fromkeys(self.order, 0)
        self.ready_at = dict.fromkeys(self.order, self.start)
        self.reasons: dict[str, str] = {}
        self.after = 0  # the position in `order` to look from: the server after the one that failed last

    def next(self) -> tuple[str, float] | None:
        """(server, seconds to wait first): the first server after the last that failed that may be asked now, else
        the one that may be asked soonest; None when each has had its attempts or the wait would pass the deadline."""
        servers = self.servers
        rotated = self.order[self.after:] + self.order[:self.after]
        left = [url for url in rotated if self.tries[url] < servers.attempts]
        if not left:
            return None
        now = servers.clock()
        url = min(left, key=lambda u: max(self.ready_at[u], now))  # the first ready one, else the soonest
        wait = max(0.0, self.ready_at[url] - now)
        if self.reasons and now + wait - self.start >= servers.deadline:
            return None
        return url, wait

    def failed(self, url: str, reason: str, retry_after: float | None = None, *, again: bool = True) -> None:
        """`url` could not answer (`reason`); `again=False`: not worth asking again (a certificate that does not
        verify now will not verify in a second either)."""
        servers = self.servers
        self.tries[url] = self.tries[url] + 1 if again else servers.attempts
        self.reasons[url] = reason
        delay = servers.backoff * 2 ** (self.tries[url] - 1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, servers.max_retry_after))
        self.ready_at[url] = servers.clock() + delay
        self.after = (self.order.index(url) + 1) % len(self.order)

    def lost(self, url: str, reason: str, *, sent: bool, again: bool = True) -> None:
        """A try that ended without an answer; `sent`: the request had left (its answer was lost). Raises
        AnswerLost when that leaves a request that is not idempotent in doubt."""
        if sent and not self.idempotent:
            raise AnswerLost(f"{self.what} to {url}: the request was sent and its answer lost ({reason}); it was not "
                             f"sent again, to this server or another, because a second send could carry it out "
                             f"twice", url)
        self.failed(url, reason, again=again)

    def settle(self, answer: Answer, answers: Collection[int] = ()) -> bool:
        """True when `answer` is the request's (the caller's to read); False when it says "not now" and the request
        may be asked elsewhere (rule 3)."""
        if answer.status in FAILOVER_STATUSES and answer.status not in answers and self.idempotent:
            words = f"HTTP {answer.status}: {summarise_body(answer.body, answer.content_type)}"
            if answer.retry_after is not None:
                words += f" (Retry-After {answer.retry_after:g} s)"
            self.failed(answer.url, words, answer.retry_after)
            return False
        if answer.status not in FAILOVER_STATUSES:  # not a server that said "not now" to a request stuck with it
            self.servers.current = answer.url
        return True

    def unavailable(self) -> ServersUnavailable:
        """The error that ends a walk no server answered, naming each server and why."""
        failures = {url: self.reasons.get(url, "not tried before the deadline") for url in self.order}
        if len(self.order) == 1:
            (url, reason), = failures.items()
            tries = self.tries[url]
            method, _, path = self.what.partition(" ")
            return ServersUnavailable(f"{method} {url}{path} failed{f' after {tries} attempts' if tries > 1 else ''}: "
                                      f"{reason}", failures)
        each = "; ".join(f"{url}: {reason}" + (f" ({self.tries[url]} attempts)" if self.tries[url] > 1 else "")
                         for url, reason in failures.items())
        return ServersUnavailable(f"{self.what}: no server could answer: {each}", failures)


class ServerList:
    """The servers of one log in order of preference, the one to ask first (`current`: the last that answered),
    and the failover rules of the module doc. Thread-safe as far as a client needs: `current` is one assignment."""

    def __init__(self, servers: str | Iterable[str], *, attempts: int = defaults.FAILOVER_ATTEMPTS,
                 backoff: float = defaults.FAILOVER_BACKOFF, max_retry_after: float = defaults.FAILOVER_MAX_RETRY_AFTER,
                 deadline: float = defaults.FAILOVER_DEADLINE, clock: Callable[[], float] = time.monotonic):
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self.urls = parse_servers(servers)
        self.current = self.urls[0]
        self.attempts = attempts
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self.clock = clock

    def __len__(self) -> int:
        return len(self.urls)

    def __str__(self) -> str:
        return ",".join(self.urls)

    def __repr__(self) -> str:
        return f"ServerList({list(self.urls)!r}, current={self.current!r})"

    def walk(self, method: str, path: str, *, idempotent: bool) -> Walk:
        return Walk(self, method, path, idempotent)

    # -- blocking (urllib) --------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, idempotent: bool, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0,
                ssl_context: ssl.SSLContext | None = None, answers: Collection[int] = ()) -> Answer:
        """Send `method path` to the servers in turn (the module doc's rules) and return the first answer that is
        the request's: 2xx to 4xx, or any status for a request that is not idempotent. `answers`: statuses that are
        an answer here even though they are in FAILOVER_STATUSES (a 503 readiness report)."""
        opener = urllib.request.build_opener(_MarkingHTTPHandler(), _MarkingHTTPSHandler(context=ssl_context))
        walk = self.walk(method, path, idempotent=idempotent)
        while (step := walk.next()) is not None:
            url, wait = step
            if wait:
                time.sleep(wait)
            request = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
            try:
                answer = _read_answer(url, opener, request, timeout)
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                cause = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else exc
                not_sent = isinstance(cause, _NotSent)
                failure = cause.__cause__ if not_sent and cause.__cause__ is not None else cause
                walk.lost(url, describe_exception(failure if isinstance(failure, BaseException) else exc, timeout),
                          sent=not not_sent, again=not isinstance(failure, ssl.SSLCertVerificationError))
                continue
            if walk.settle(answer, answers):
                return answer
        raise walk.unavailable()

    # -- async (aiohttp) ----------------------------------------------------------------------------------------
    async def arequest(self, session, method: str, path: str, *, idempotent: bool, answers: Collection[int] = (),
                       timeout: float | None = None, **kwargs) -> Answer:
        """`request` through an aiohttp ClientSession (give it `client_timeout(...)`, so that a connect that times
        out is told apart); `kwargs` go to `session.request` (data, json, params, headers); `timeout` only words
        the failures."""
        import aiohttp

        walk = self.walk(method, path, idempotent=idempotent)
        while (step := walk.next()) is not None:
            url, wait = step
            if wait:
                await asyncio.sleep(wait)
            try:
                async with session.request(method, url + path, **kwargs) as response:
                    answer = Answer(url, response.status, response.content_type, await response.read(),
                                    retry_after_seconds(response.headers.get("Retry-After")))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                not_sent = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
                walk.lost(url, describe_exception(exc, timeout), sent=not not_sent,
                          again=not isinstance(exc, aiohttp.ClientConnectorCertificateError))
                continue
            if walk.settle(answer, answers):
                return answer
        raise walk.unavailable()


def _read_answer(url: str, opener, request: urllib.request.Request, timeout: float) -> Answer:
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(url, response.status, response.headers.get_content_type(), response.read(),
                          retry_after_seconds(response.headers.get("Retry-After")), response.headers)
    except urllib.error.HTTPError as exc:  # a 4xx or 5xx answer: an answer all the same
        with exc:
            return Answer(url, exc.code, exc.headers.get_content_type(), exc.read(),
                          retry_after_seconds(exc.headers.get("Retry-After")))


class _NotSent(OSError):
    """The connect (TCP, a proxy's tunnel, the TLS handshake) failed: nothing of the request left. The failure is
    its __cause__."""


_MARKED: dict[type, type] = {}


def _marked(connection_class: type) -> type:
    """`connection_class` (http.client's) with a connect whose failures are _NotSent: urllib sends the request in
    the same call that connects, and wraps both in one URLError; this mark tells them apart."""
    if connection_class not in _MARKED:
        class Marked(connection_class):
            def connect(self) -> None:
                try:
                    super().connect()
                except OSError as exc:
                    raise _NotSent(str(exc)) from exc

        _MARKED[connection_class] = Marked
    return _MARKED[connection_class]


class _MarkingHTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_marked(http_class), req, **kwargs)


class _MarkingHTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_marked(http_class), req, **kwargs)


__all__ = ["FAILOVER_STATUSES", "Answer", "AnswerLost", "ServerList", "ServersUnavailable", "Walk", "check_url",
           "client_timeout", "parse_servers", "retry_after_seconds"]
