"""Plain in-process counters and histograms the log keeps about itself. `api.server.metrics` renders them for Prometheus.

Updated from the event loop and from the writer thread; single int/float increments under the GIL are enough
for monitoring figures.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class Histogram:
    """Cumulative-bucket histogram with fixed upper bounds, in the Prometheus sense."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        running, out = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append((bound, running))
        return out


@dataclass
class LogStats:
    entries_integrated: int = 0
    batches_committed: int = 0
    batch_failures: int = 0
    submissions_rejected_busy: int = 0
    batch_size: Histogram = field(
        default_factory=lambda: Histogram((1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096))
    )
    integration_seconds: Histogram = field(
        default_factory=lambda: Histogram((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    )
