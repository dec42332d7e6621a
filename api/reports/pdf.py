"""A compliance report as PDF (reportlab platypus): the sections of the HTML rendering, charts as images, text in
the standard Helvetica fonts so that it can be extracted (`pdftotext` shows the summary line, the control ids and
the findings). Every value from the log is escaped for reportlab's paragraph markup."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from api.reports import control_label, event_label, finding_label
from api.reports.charts import all_charts
from log.audit.frameworks import FRAMEWORKS

LISTED = 8  # items per cell: the JSON has the full lists


def render_pdf(report: dict) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=7.5, leading=9)
    mono = styles["Code"].clone("summary", fontSize=8, leading=10, wordWrap="CJK")

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(escape(text), style)

    def cell(lines: list[str], more: int = 0) -> Paragraph:
        shown = lines[:LISTED]
        more += len(lines) - len(shown)
        text = "<br/>".join(escape(line) for line in shown) or "-"
        if more > 0:
            text += f"<br/>... and {more:,} more"
        return Paragraph(text, small)

    def table(rows: list[list], widths: list[float]) -> Table:
        t = Table(rows, colWidths=[w * cm for w in widths], repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")),
                               ("FONTSIZE", (0, 0), (-1, -1), 7.5)]))
        return t

    summary, checkpoint, verification = report["summary"], report["checkpoint"], report["verification"]
    story = [
        p(f"Compliance report: tenant {report['tenant']}", styles["Title"]),
        p(f"Period {report['period']['from']} to {report['period']['to']} (end excluded); generated "
          f"{report['generated_at']}; frameworks: {', '.join(FRAMEWORKS[f] for f in report['frameworks'])}."),
        p("Verification", styles["Heading2"]),
        p(summary["line"], mono),
        p(f"Checked against the {'witnessed' if checkpoint['witnessed'] else 'latest'} signed checkpoint of log "
          f"{report['log']['origin']} at size {checkpoint['size']:,}, root {checkpoint['root_hash']}"
          + (f", cosigned by {', '.join(checkpoint['cosigners'])}" if checkpoint["cosigners"] else
             ", with no cosignatures") + f". {verification['tree']}. Pruned by retention: {summary['pruned']:,}; "
          f"not covered by the checkpoint yet: {summary['not_covered']:,}."),
    ]
    if verification["tampered"]:
        story += [p("Tampered events", styles["Heading3"]),
                  cell([f"#{t['index']} {t['event_id'] or ''}: {t['reason']}" for t in verification["tampered"]],
                       summary["tampered"] - len(verification["tampered"]))]
    if verification["gaps"]:
        story += [p("Gaps", styles["Heading3"]),
                  cell([f"#{g['index']}: " + (g.get("detail") or f"event {g['event_id']} names parent "
                                              f"{g['parent_event_id']}, which is not in the log")
                        for g in verification["gaps"]], summary["gaps"] - len(verification["gaps"]))]
    for problem in verification["problems"]:
        story.append(p(problem))

    story.append(p("Controls", styles["Heading2"]))
    for framework in report["frameworks"]:
        rows = [[p("Control"), p("Status"), p("Evidenced by"), p("Findings")]]
        for control in (c for c in report["controls"] if c["framework"] == framework):
            evidence, findings = control["evidence"], control["findings"]
            rows.append([
                Paragraph(f"<b>{escape(control_label(control))}</b> {escape(control['name'])}", small),
                p(control["status"], small),
                cell([f"{evidence['count']:,}: {control['evidenced_by']}"]
                     + [event_label(i) for i in evidence["items"]], evidence["count"] - len(evidence["items"])),
                cell([f"{findings['count']:,}"] + [finding_label(f) for f in findings["items"]] + control["notes"]),
            ])
        story += [p(FRAMEWORKS[framework], styles["Heading3"]), table(rows, [4.2, 1.8, 5.5, 6.0])]

    story.append(p("Completeness findings", styles["Heading2"]))
    rows = [[p("Check"), p("Count"), p("Offending events")]]
    for finding in report["findings"]:
        rows.append([Paragraph(f"<b>{escape(finding['check'])}</b><br/>{escape(finding['title'])}", small),
                     p(f"{finding['count']:,}", small),
                     cell([finding_label(i) for i in finding["items"]], finding["count"] - len(finding["items"]))])
    story.append(table(rows, [5.5, 1.5, 10.5]))

    story.append(p("Producers", styles["Heading2"]))
    rows = [[p("Producer", small), p("Events", small), p("Longest silences", small), p("Broken parent links", small)]]
    for pr in report["producers"]:
        rows.append([p(pr["producer"], small), p(f"{pr['events']:,}", small),
                     cell([f"{s['from']} to {s['to']} ({s['ms'] / 1000:,.0f} s)" for s in pr["silences"]]),
                     cell([f"#{b['index']} {b['event_id']} -> {b['parent_event_id']}" for b in pr["broken_parent_links"]],
                          pr["broken_parent_link_count"] - len(pr["broken_parent_links"]))])
    story.append(table(rows, [3.7, 1.8, 6.0, 6.0]))

    r = report["review"]
    story += [p("Human review", styles["Heading2"]),
              p(f"{r['reviews']:,} reviews: " + ", ".join(
                  f"{v} {r[v]:,}" + (f" ({r['shares'][v]:.0%})" if r["shares"][v] is not None else "")
                  for v in ("approved", "edited", "rejected"))
                + f"; median dwell {'-' if r['median_dwell_ms'] is None else format(r['median_dwell_ms'] / 1000, ',.1f') + ' s'}.")]
    if r["commonest_edits"]:
        rows = [[p("Removed (AI draft)"), p("Added (final)"), p("Times")]]
        rows += [[p(x["removed"] or "-", small), p(x["added"] or "-", small), p(f"{x['count']:,}", small)]
                 for x in r["commonest_edits"]]
        story.append(table(rows, [7.5, 7.5, 2.5]))

    c = report["cost"]
    story += [p("Cost and tokens", styles["Heading2"]),
              p(f"Input tokens {c['input_tokens']:,}; output tokens {c['output_tokens']:,}; cost "
                f"{', '.join(f'{v} {k}' for k, v in c['cost'].items()) or '-'}.")]
    rows = [[p("Producer"), p("Model"), p("Events"), p("Input tokens"), p("Output tokens"), p("Cost")]]
    rows += [[p(u["producer"], small), p(u["model"], small), p(f"{u['events']:,}", small),
              p(f"{u['input_tokens']:,}", small), p(f"{u['output_tokens']:,}", small),
              p(", ".join(f"{v} {k}" for k, v in u["cost"].items()) or "-", small)] for u in c["by_producer_model"]]
    story.append(table(rows, [3.5, 3.5, 2.0, 2.8, 2.8, 2.9]))

    story.append(p("Charts", styles["Heading2"]))
    for title, png in all_charts(report):
        image = Image(io.BytesIO(png))
        scale = 16 * cm / image.imageWidth
        image.drawWidth, image.drawHeight = image.imageWidth * scale, image.imageHeight * scale
        story += [image, p(title, small), Spacer(1, 0.3 * cm)]

    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=f"Compliance report: {report['tenant']}", author="auditlog",
                      leftMargin=1.6 * cm, rightMargin=1.6 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm
                      ).build(story)
    return out.getvalue()
