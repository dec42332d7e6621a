"""The report's charts as PNG bytes (matplotlib's Agg canvas, no pyplot state: safe on a server's threads): events
per day by type (stacked bars) and the approval latency distribution (a histogram over the report's buckets)."""

from __future__ import annotations

import io

WIDTH, HEIGHT, DPI = 7.0, 3.2, 110


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, bbox_inches="tight")
    return out.getvalue()


def events_per_day(report: dict) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    data = report["charts"]["events_per_day"]
    days, types = data["days"], data["types"]
    figure = Figure(figsize=(WIDTH, HEIGHT))
    axes = figure.add_subplot()
    bottom = [0] * len(days)
    for kind, counts in sorted(types.items()):
        axes.bar(range(len(days)), counts, bottom=bottom, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts)]
    step = max(1, len(days) // 12)
    axes.set_xticks(range(0, len(days), step), [days[i] for i in range(0, len(days), step)], rotation=30,
                    ha="right", fontsize=7)
    axes.set_ylabel("events")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("Events per day by type")
    if types:
        axes.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "more"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def approval_latency(report: dict) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    buckets = report["charts"]["approval_latency_ms"]["buckets"]
    labels, previous = [], None
    for bucket in buckets:
        bound = bucket["below_ms"]
        labels.append(f"< {_duration(bound)}" if previous is None else
                      f"{_duration(previous)} - {_duration(bound)}" if bound is not None else f">= {_duration(previous)}")
        previous = bound
    figure = Figure(figsize=(WIDTH, HEIGHT))
    axes = figure.add_subplot()
    axes.bar(range(len(buckets)), [b["count"] for b in buckets], color="#4a6fa5")
    axes.set_xticks(range(len(buckets)), labels, rotation=20, ha="right", fontsize=7)
    axes.set_ylabel("approvals")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("Approval latency (from the event approved to the approval)")
    return _png(figure)


def all_charts(report: dict) -> list[tuple[str, bytes]]:
    """(title, PNG) of each chart, in the order the renderings show them."""
    return [("Events per day by type", events_per_day(report)),
            ("Approval latency", approval_latency(report))]
