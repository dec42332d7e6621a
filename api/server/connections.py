"""Time and number limits on the server's connections, against clients that hold them without using them.

aiohttp bounds only the keep-alive idle time (`keepalive_timeout`). A client that sends a request head one byte a
second (slowloris), or a body one byte a second, or opens connections and sends nothing, holds a connection (and
its memory) for as long as it likes. `ConnectionLimits` names the bounds; `GuardedRunner` is an `AppRunner` whose
connections keep them:

    header_timeout     a request head (request line and headers) must be complete within this many seconds of
                       its first byte; the first request of a connection within this many seconds of the connect.
                       Otherwise: 408 and the connection is closed.
    body_idle_timeout  while a handler runs and its request body is not complete, some body bytes must arrive at
                       least this often (seconds); otherwise the connection is closed (the handler's read fails, so
                       nothing of that body is stored). Time the server itself stops reading (its buffer is full)
                       does not count.
    keepalive_timeout  an idle connection between two requests is closed after this many seconds (aiohttp's own).
    max_connections    connections open at once in this process; one more is answered 503 with Retry-After and
                       closed at once. (Each read worker is a process with its own count.)

How: `GuardedHandler` is aiohttp's `RequestHandler` plus three fields that `data_received` keeps (when the current
head began, how many heads were complete then, when bytes last came); one timer per server (`GuardedServer`) looks
at every connection a few times per timeout and closes those over a bound. That keeps the per-request cost to a
clock read and two assignments, and no timer per request. It reads a few private fields of aiohttp's
RequestHandler (`_current_request`, `_messages`, `_request_count`, `_reading_paused`, `_force_close`): the
end-to-end tests (tests/e2e/test_hostile_clients.py) fail if an aiohttp upgrade changes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from api.server.metrics import render_dict_metrics
from api.server.state import METRIC_SOURCES
from log import defaults

_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 32\r\n\r\nthe request head took too long.\n")
_TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 37\r\n\r\nthis server has too many connections\n")


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds above, in seconds and connections; the defaults are log/defaults.py's."""

    header_timeout: float = defaults.HEADER_TIMEOUT
    body_idle_timeout: float = defaults.BODY_IDLE_TIMEOUT
    keepalive_timeout: float = defaults.KEEPALIVE_TIMEOUT
    max_connections: int = defaults.MAX_CONNECTIONS

    def __post_init__(self):
        for name in ("header_timeout", "body_idle_timeout", "keepalive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {getattr(self, name)!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections!r}")

    def as_flags(self) -> list[str]:
        """The `serve`/`serve-reads` flags that give these limits (a read worker gets its writer's)."""
        return ["--header-timeout", f"{self.header_timeout:g}", "--body-idle-timeout", f"{self.body_idle_timeout:g}",
                "--keepalive-timeout", f"{self.keepalive_timeout:g}", "--max-connections", str(self.max_connections)]


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, which notes when each request head began and when bytes last came."""

    __slots__ = ("_head_since", "_head_count", "_last_read")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._last_read = self._head_since = self._loop.time()  # the first head's clock starts at the connect
        self._head_count = self._request_count
        server = self._manager
        if len(server._connections) > server.limits.max_connections:
            server.refused += 1
            transport.write(_TOO_MANY)
            self.force_close()

    def data_received(self, data: bytes) -> None:
        now = self._last_read = self._loop.time()
        # Between requests, the first bytes of a head start its clock (a head complete in these bytes ends it at
        # once: the parser below counts it).
        if (self._current_request is None and not self._messages
                and (self._head_since is None or self._request_count != self._head_count)):
            self._head_since, self._head_count = now, self._request_count
        super().data_received(data)


class GuardedServer(web.Server):
    """aiohttp's Server making `GuardedHandler`s, with the one timer that enforces `limits` on all of them."""

    def __init__(self, *args, limits: ConnectionLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.refused = 0  # connections refused over max_connections
        self.timed_out = {"header": 0, "body": 0}
        self._interval = min(1.0, max(0.05, min(limits.header_timeout, limits.body_idle_timeout) / 4))
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> GuardedHandler:
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._sweep)
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def _sweep(self) -> None:
        now = self._loop.time()
        header_deadline = now - self.limits.header_timeout
        body_deadline = now - self.limits.body_idle_timeout
        for handler in list(self._connections):
            if handler._force_close or handler.transport is None:
                continue
            request = handler._current_request
            if request is not None:
                if request.content.is_eof():
                    continue  # the body is all here: a slow handler is not an idle client
                if handler._reading_paused:
                    handler._last_read = now  # the server is not reading: the client is not idle
                elif handler._last_read < body_deadline:
                    self.timed_out["body"] += 1
                    handler.force_close()
            elif (not handler._messages and handler._head_since is not None
                  and handler._request_count == handler._head_count and handler._head_since < header_deadline):
                self.timed_out["header"] += 1
                handler.transport.write(_TIMED_OUT)
                handler.force_close()
        self._timer = self._loop.call_later(self._interval, self._sweep)

    def metrics(self) -> dict[str, float]:
        """For /metrics (api.server.metrics.render_dict_metrics): open connections, and those the limits ended."""
        return {
            "http_connections": float(len(self._connections)),
            "http_connections_refused_total": float(self.refused),
            'http_connections_timed_out_total{reason="header"}': float(self.timed_out["header"]),
            'http_connections_timed_out_total{reason="body_idle"}': float(self.timed_out["body"]),
        }

    async def shutdown(self, timeout: float | None = None) -> None:
        try:
            await super().shutdown(timeout)  # the limits hold while requests finish: a stalled body is still cut
        finally:
            if self._timer is not None:
                self._timer.cancel()


MAX_HEADER_FIELD = 16 << 10


class GuardedRunner(web.AppRunner):
    """`web.AppRunner(app, ...)` whose server is a `GuardedServer` keeping `limits` (keepalive_timeout included)."""

    def __init__(self, app: web.Application, limits: ConnectionLimits | None = None, **kwargs):
        self.limits = limits or ConnectionLimits()
        # A header line of up to 16 KiB reaches the app (aiohttp's default, 8190 bytes, answered a longer one 400
        # itself): so an overlong Authorization header is refused by access control as what it is, a 401.
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD)
        super().__init__(app, keepalive_timeout=self.limits.keepalive_timeout, **kwargs)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the app's startup, as AppRunner does it
        server = GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                               handler_cancellation=plain.handler_cancellation, loop=plain._loop, limits=self.limits,
                               **plain._kwargs)
        sources = self.app.get(METRIC_SOURCES)
        if sources is not None:  # /metrics shows what the limits did
            sources.append(lambda: render_dict_metrics(server.metrics()))
        return server
