"""Renderings of a compliance report (log/audit/report.py's dict): charts.py (matplotlib, PNG), html.py (one
self-contained HTML file), pdf.py (reportlab). The JSON form is the engine's dict itself. `render(report, format)`
gives (bytes, content type); both renderers show the same sections, in the order of `SECTIONS`."""

from __future__ import annotations

FORMATS = ("json", "html", "pdf")
CONTENT_TYPES = {"json": "application/json", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def render(report: dict, format: str) -> tuple[bytes, str]:
    """The report as `format` ("json", "html" or "pdf"): (bytes, content type). Blocking (matplotlib, reportlab):
    call it on a thread from a server."""
    if format == "json":
        import json

        return json.dumps(report, indent=1).encode(), CONTENT_TYPES["json"]
    if format == "html":
        from api.reports.html import render_html

        return render_html(report), CONTENT_TYPES["html"]
    if format == "pdf":
        from api.reports.pdf import render_pdf

        return render_pdf(report), CONTENT_TYPES["pdf"]
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")


def control_label(control: dict) -> str:
    """A control's id as a report shows it: `A.12.4.1 (2022: A.8.15)` for an ISO 27001 control."""
    return control["id"] + (f" (2022: {control['iso2022']})" if control.get("iso2022") else "")


def event_label(item: dict) -> str:
    """An evidencing event or record as listed: `#12 run-1.3 (approval)`, `#4 key-added ...`."""
    if "record" in item:
        return f"#{item['index']} {item['record']}"
    return f"#{item['index']} {item['event_id']} ({item['event_type']})"


def finding_label(item: dict) -> str:
    where = f"#{item['index']} {item['event_id']} (run {item['run_id']}): " if item.get("index") is not None else ""
    return where + item["detail"]
