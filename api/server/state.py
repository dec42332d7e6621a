"""Typed application state shared by the app factory, the handlers and the middlewares."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.server.metrics import HttpMetrics
from api.server.publishing import TilePublisher
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


class ServingRole:
    """Whether this server answers as the sequencer now, and where the sequencer is when it does not.

    `sequencing` turns True only once the server is ready to sequence (the log took over, the audit registries were
    reloaded from the database, the jobs started), and False at once when it steps down. `sequencer_url` is the URL
    in the lease, re-read every LEASE_POLL seconds while standing by and at once after a failed forward; None when
    no sequencer is known (none yet, or the one in the lease is this server)."""

    def __init__(self, own_url: str | None):
        self.own_url = own_url
        self.sequencing = False
        self.sequencer_url: str | None = None
        self.lease_epoch: int | None = None
        self.changed = asyncio.Event()  # set to cut a wait between two reads of the lease short

    def describe(self) -> dict:
        """For /healthz and /readyz: this server's role and the sequencer it sends writes to."""
        return {"role": "sequencer" if self.sequencing else "standby",
                "sequencer": self.own_url if self.sequencing else self.sequencer_url}


# Where several servers share the log (api/server/standby.py): whether this one answers as the sequencer now.
ROLE = web.AppKey("serving_role", ServingRole)
PUBLISHER = web.AppKey("publisher", TilePublisher)  # `--publish-dir` (api.server.publishing)
