"""A compliance report as ONE self-contained HTML file: inline CSS, charts as data: URIs, no script, no external
resource of any kind (an auditor opens it offline, years later). Every value from the log is escaped."""

from __future__ import annotations

import base64
from html import escape

from api.reports import control_label, event_label, finding_label
from api.reports.charts import all_charts
from log.audit.frameworks import FRAMEWORKS

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;color:#1b1f24;
line-height:1.4;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccd;padding-bottom:.2rem}
h3{font-size:1.05rem}
.summary{font-family:ui-monospace,monospace;background:#f3f5f8;border:1px solid #ccd;padding:.8rem;font-size:.95rem}
.VALID{color:#176a2a;font-weight:bold}.INVALID{color:#a11;font-weight:bold}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccd;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f5}
.status-evidenced{color:#176a2a}.status-findings{color:#a11;font-weight:bold}.status-no.evidence{color:#666}
ul.events{margin:0;padding-left:1.1rem}code{font-size:.85rem;word-break:break-all}img{max-width:100%}
"""


def _list(items: list[str], more: int = 0) -> str:
    if not items:
        return ""
    out = "<ul class=events>" + "".join(f"<li>{escape(i)}</li>" for i in items)
    if more > 0:
        out += f"<li>... and {more:,} more</li>"
    return out + "</ul>"


def render_html(report: dict) -> bytes:
    e = escape
    summary, checkpoint = report["summary"], report["checkpoint"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           "<meta name=viewport content='width=device-width, initial-scale=1'>",
           f"<title>Compliance report: {e(report['tenant'])}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Compliance report: tenant {e(report['tenant'])}</h1>",
           f"<p>Period {e(report['period']['from'])} to {e(report['period']['to'])} (end excluded); generated "
           f"{e(report['generated_at'])}; frameworks: {e(', '.join(FRAMEWORKS[f] for f in report['frameworks']))}.</p>",
           "<h2>Verification</h2>",
           f"<p class=summary>{e(summary['line'])}</p>",
           f"<p>Chain integrity: <span class={e(summary['integrity'])}>{e(summary['integrity'])}</span>. Checked "
           f"against the {'witnessed' if checkpoint['witnessed'] else 'latest'} signed checkpoint of log "
           f"<code>{e(report['log']['origin'])}</code> at size {checkpoint['size']:,}, root "
           f"<code>{e(checkpoint['root_hash'])}</code>"
           + (f", cosigned by {e(', '.join(checkpoint['cosigners']))}" if checkpoint["cosigners"] else
              ", with no cosignatures") + f". {e(report['verification']['tree'])}. "
           f"Pruned by retention (leaf hash kept, contents deleted): {summary['pruned']:,}; events of the period "
           f"above the checkpoint (not covered yet): {summary['not_covered']:,}.</p>"]
    verification = report["verification"]
    if verification["tampered"]:
        out.append("<h3>Tampered events</h3>" + _list(
            [f"#{t['index']} {t['event_id'] or ''}: {t['reason']}" for t in verification["tampered"]],
            summary["tampered"] - len(verification["tampered"])))
    if verification["gaps"]:
        out.append("<h3>Gaps</h3>" + _list(
            [f"#{g['index']}: " + (g.get("detail") or f"event {g['event_id']} names parent {g['parent_event_id']}, "
                                   "which is not in the log") for g in verification["gaps"]],
            summary["gaps"] - len(verification["gaps"])))
    if verification["problems"]:
        out.append("<h3>Problems</h3>" + _list(verification["problems"]))

    out.append("<h2>Controls</h2>")
    for framework in report["frameworks"]:
        out.append(f"<h3>{e(FRAMEWORKS[framework])}</h3><table><tr><th>Control</th><th>Status</th>"
                   "<th>Evidenced by</th><th>Findings</th></tr>")
        for control in (c for c in report["controls"] if c["framework"] == framework):
            evidence, findings = control["evidence"], control["findings"]
            out.append(
                f"<tr><td><b>{e(control_label(control))}</b> {e(control['name'])}<br><small>"
                f"{e(control['description'])}</small></td>"
                f"<td class='status-{e(control['status'])}'>{e(control['status'])}</td>"
                f"<td>{evidence['count']:,}: <small>{e(control['evidenced_by'])}</small>"
                f"{_list([event_label(i) for i in evidence['items']], evidence['count'] - len(evidence['items']))}"
                f"</td><td>{findings['count']:,}"
                f"{_list([finding_label(f) for f in findings['items']] + control['notes'])}</td></tr>")
        out.append("</table>")

    out.append("<h2>Completeness findings</h2><table><tr><th>Check</th><th>Count</th><th>Offending events</th></tr>")
    for finding in report["findings"]:
        out.append(f"<tr><td><b>{e(finding['check'])}</b><br>{e(finding['title'])}</td><td>{finding['count']:,}</td>"
                   f"<td>{_list([finding_label(i) for i in finding['items']], finding['count'] - len(finding['items']))}"
                   "</td></tr>")
    out.append("</table>")

    out.append("<h2>Producers</h2><table><tr><th>Producer</th><th>Events</th><th>Median interval</th>"
               "<th>Longest silences</th><th>Broken parent links</th></tr>")
    for p in report["producers"]:
        silences = [f"{s['from']} to {s['to']} ({s['ms'] / 1000:,.0f} s"
                    + (f", {s['times_median']}x the median)" if s["times_median"] else ")") for s in p["silences"]]
        links = [f"#{b['index']} {b['event_id']} -> {b['parent_event_id']}" for b in p["broken_parent_links"]]
        median = "-" if p["median_interval_ms"] is None else f"{p['median_interval_ms'] / 1000:,.1f} s"
        out.append(f"<tr><td>{e(p['producer'])}</td><td>{p['events']:,}</td><td>{e(median)}</td>"
                   f"<td>{_list(silences)}</td><td>{_list(links, p['broken_parent_link_count'] - len(links))}</td></tr>")
    out.append("</table>")

    r = report["review"]
    shares = ", ".join(f"{v} {r[v]:,} ({r['shares'][v]:.0%})" for v in ("approved", "edited", "rejected")
                       if r["shares"][v] is not None)
    out.append(f"<h2>Human review</h2><p>{r['reviews']:,} reviews{': ' + e(shares) if shares else ''}; median dwell "
               f"{'-' if r['median_dwell_ms'] is None else format(r['median_dwell_ms'] / 1000, ',.1f') + ' s'}.</p>")
    if r["commonest_edits"]:
        out.append("<table><tr><th>Removed (AI draft)</th><th>Added (final)</th><th>Times</th></tr>" + "".join(
            f"<tr><td>{e(x['removed']) or '-'}</td><td>{e(x['added']) or '-'}</td><td>{x['count']:,}</td></tr>"
            for x in r["commonest_edits"]) + "</table>")

    c = report["cost"]
    out.append(f"<h2>Cost and tokens</h2><p>Input tokens {c['input_tokens']:,}; output tokens "
               f"{c['output_tokens']:,}; cost {e(', '.join(f'{v} {k}' for k, v in c['cost'].items()) or '-')}.</p>"
               "<table><tr><th>Producer</th><th>Model</th><th>Events</th><th>Input tokens</th><th>Output tokens</th>"
               "<th>Cost</th></tr>")
    for u in c["by_producer_model"]:
        out.append(f"<tr><td>{e(u['producer'])}</td><td>{e(u['model'])}</td><td>{u['events']:,}</td>"
                   f"<td>{u['input_tokens']:,}</td><td>{u['output_tokens']:,}</td>"
                   f"<td>{e(', '.join(f'{v} {k}' for k, v in u['cost'].items()) or '-')}</td></tr>")
    out.append("</table><h2>Charts</h2>")
    for title, png in all_charts(report):
        out.append(f"<figure><img alt='{e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                   f"<figcaption>{e(title)}</figcaption></figure>")
    out.append(f"<h2>Checkpoint</h2><pre><code>{e(checkpoint['note'])}</code></pre></body></html>")
    return "\n".join(out).encode()
