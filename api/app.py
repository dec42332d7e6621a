"""The app factory: `create_app(config)` opens the log when the app starts and closes it when the app stops."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.audit import add_audit_routes
from api.metrics import HttpMetrics, metrics_middleware
from api.openapi import document_bytes
from api.problems import problem_middleware
from api.routes import MAX_JSON_BODY, ROUTES
from api.state import CONFIG, HTTP_METRICS, LOG, METRIC_SOURCES, OPENAPI
from log.service import Log, LogConfig


async def _log_lifetime(app: web.Application) -> AsyncIterator[None]:
    app[LOG] = await Log.open(app[CONFIG])
    try:
        yield
    finally:
        await app[LOG].close()


def create_app(config: LogConfig) -> web.Application:
    """The whole HTTP API over the log `config` describes. The log opens in the app's startup (cleanup_ctx)."""
    http_metrics = HttpMetrics()
    # Middlewares run outside-in: metrics see the final status of every response, problems included.
    app = web.Application(
        middlewares=[metrics_middleware(http_metrics), problem_middleware],
        client_max_size=MAX_JSON_BODY,
    )
    app[CONFIG] = config
    app[HTTP_METRICS] = http_metrics
    app[OPENAPI] = document_bytes()
    app[METRIC_SOURCES] = []
    app.cleanup_ctx.append(_log_lifetime)
    app.router.add_routes(ROUTES)
    add_audit_routes(app, data_dir=config.data_dir)  # after the log's lifetime: the service opens over it
    return app
