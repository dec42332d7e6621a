"""Typed application state shared by the app factory, the handlers and the middlewares."""

from __future__ import annotations

from aiohttp import web

from api.server.metrics import HttpMetrics
from log.service import Log, LogConfig
from api.server.witnessing import WitnessJob
from api.server.timestamping import TimestampJob

LOG = web.AppKey("log", Log)
CONFIG = web.AppKey("config", LogConfig)
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
OPENAPI = web.AppKey("openapi", bytes)
# Extra Prometheus text for /metrics from the parts of the server that have their own figures (audit, witnessing,
# timestamping): each is called on every scrape and returns complete exposition lines.
METRIC_SOURCES = web.AppKey("metric_sources", list)
# The background jobs, present only while the app runs and only when configured (api.server.app.Witnessing).
WITNESS_JOB = web.AppKey("witness_job", WitnessJob)
TIMESTAMP_JOB = web.AppKey("timestamp_job", TimestampJob)
