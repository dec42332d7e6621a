"""Prometheus text exposition (format 0.0.4) of the log's own statistics and of the HTTP layer's.

The log keeps its counters and histograms in `log.stats.LogStats`; this module only renders them. The HTTP layer's
figures (requests by route template, method and status; request duration by route) live in `HttpMetrics`, updated
by `metrics_middleware`. Route labels are route templates such as `/api/v1/entries/{index}`, never raw paths, so
the number of series stays bounded; requests that match no route are labelled `unmatched`.
"""

from __future__ import annotations

from collections.abc import Callable

import math
import time
from collections import defaultdict

from aiohttp import web

from log.stats import Histogram, LogStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "unmatched"
DURATION_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """Request counts by (route, method, status) and request durations by route. Event-loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.durations: dict[str, Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = Histogram(DURATION_BOUNDS)
        histogram.observe(seconds)


def route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def metrics_middleware(metrics: HttpMetrics, finished: Callable[[web.Request, int], None] | None = None):
    """Count every request by route, method and final status. `finished(request, status)`, when given, is told
    each request's status too (the access log completes its records with it: api/server/access_log.py); 500 for a
    request that ended without an answer."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.observe(route_label(request), request.method, status, time.perf_counter() - started)
            if finished is not None:
                finished(request, status)

    return middleware


# --- text format -------------------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(str(value))}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def histogram(self, name: str, histogram: Histogram, labels: dict[str, str] | None = None) -> None:
        labels = labels or {}
        for bound, count in histogram.cumulative():
            self.sample(f"{name}_bucket", count, {**labels, "le": _number(float(bound))})
        self.sample(f"{name}_sum", float(histogram.total), labels)
        self.sample(f"{name}_count", histogram.count, labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(stats: LogStats, http: HttpMetrics, *, tree_size: int, storage_bytes: int | None) -> str:
    out = _Writer()
    out.family("auditlog_tree_size", "gauge", "Entries in the latest published checkpoint.")
    out.sample("auditlog_tree_size", tree_size)
    out.family("auditlog_entries_integrated_total", "counter", "Entries integrated into the tree by this process.")
    out.sample("auditlog_entries_integrated_total", stats.entries_integrated)
    out.family("auditlog_batches_committed_total", "counter", "Batches committed by this process.")
    out.sample("auditlog_batches_committed_total", stats.batches_committed)
    out.family("auditlog_batch_failures_total", "counter", "Batches whose commit failed.")
    out.sample("auditlog_batch_failures_total", stats.batch_failures)
    out.family("auditlog_submissions_rejected_busy_total", "counter",
               "Submissions refused because the sequencer queue was full (HTTP 503).")
    out.sample("auditlog_submissions_rejected_busy_total", stats.submissions_rejected_busy)
    out.family("auditlog_batch_size", "histogram", "Entries per committed batch.")
    out.histogram("auditlog_batch_size", stats.batch_size)
    out.family("auditlog_integration_latency_seconds", "histogram",
               "Time from cutting a batch to its durable commit.")
    out.histogram("auditlog_integration_latency_seconds", stats.integration_seconds)
    if storage_bytes is not None:
        out.family("auditlog_storage_bytes", "gauge", "Bytes the database uses, as the database reports it.")
        out.sample("auditlog_storage_bytes", storage_bytes)
    out.family("auditlog_http_requests_total", "counter", "HTTP requests by route template, method and status.")
    for (route, method, status), count in sorted(http.requests.items()):
        out.sample("auditlog_http_requests_total", count, {"route": route, "method": method, "status": str(status)})
    out.family("auditlog_http_request_duration_seconds", "histogram", "HTTP request duration by route template.")
    for route, histogram in sorted(http.durations.items()):
        out.histogram("auditlog_http_request_duration_seconds", histogram, {"route": route})
    return out.text()


def render_dict_metrics(values: dict, prefix: str = "auditlog_") -> str:
    """Prometheus text for a job's `metrics()` dict: `{"name" or 'name{label="v"}': number}`.

    Each name is prefixed; a name ending in `_total` is a counter, any other a gauge. Labels in a key are kept as
    written. None and non-numbers (an error message, say) are skipped. Samples of one name are written together,
    under one TYPE line, in the order their names first appear.
    """
    families: dict[str, list[str]] = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name, brace, labels = key.partition("{")
        families.setdefault(name, []).append(f"{prefix}{name}{brace}{labels} {_number(value)}")
    lines = []
    for name, samples in families.items():
        lines.append(f"# TYPE {prefix}{name} {'counter' if name.endswith('_total') else 'gauge'}")
        lines.extend(samples)
    return "\n".join(lines) + "\n" if lines else ""
