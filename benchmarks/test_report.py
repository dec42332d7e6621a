"""(11) A compliance report over 10^6 events (target <= 60 s): `build_report` (log/audit/report.py) over one tenant's
whole period in a log that `benchmarks/workloads.py: write_audit_log` wrote with a single tenant, so that every
event of the log is in the report: the level-0 tiles read and folded to the signed root, each event re-hashed
against its leaf, each signature re-verified in verifier processes (the engine starts its own for a report this
big), the completeness findings, gaps, reviews (with their blobs' diffs), costs and chart data. Then the same report
rendered as PDF. Full mode: 10^6 events (the log is built once and cached, ~5 min); short mode: 2,000.

The report must verify every event (VALID, nothing tampered) and find the workload's deliberate defects.
"""

from __future__ import annotations

import asyncio
import gc
import time

FULL_EVENTS = 1_000_000
SHORT_EVENTS = 2_000


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (the report's own verifier processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _report(built) -> tuple[float, dict, tuple[float, float]]:
    from log.audit.report import ReportRequest, build_report
    from log.blobs import FileBlobStore
    from log.service import Log, LogConfig

    async def main():
        log = await Log.open(LogConfig(data_dir=built.data_dir, database_url=built.database_url,
                                       origin=built.origin))
        # As `auditlog serve` does once it is set up (api/server/app.py freeze_startup_heap): what is alive now (the
        # log, and here pytest's own heap) is left out of the cyclic GC's full collections.
        gc.collect()
        gc.freeze()
        try:
            started, cpu = time.perf_counter(), _cpu()
            report = await build_report(log, FileBlobStore(built.data_dir / "blobs"),
                                        ReportRequest("acme", built.first_ms, built.last_ms + 1))
            seconds, after = time.perf_counter() - started, _cpu()
            return seconds, report, (after[0] - cpu[0], after[1] - cpu[1])
        finally:
            gc.unfreeze()
            await log.close()

    return asyncio.run(main())


def test_report_over_a_tenant(benchmark, bench_mode, results, tmp_path):
    from api.reports import render
    from benchmarks.workloads import cached_audit_log, copy_audit_log, write_audit_log

    if bench_mode.name == "full":  # the cached log is read-only: the report runs on a copy
        built = copy_audit_log(cached_audit_log(FULL_EVENTS, tenants=("acme",)), tmp_path / "data")
    else:
        built = write_audit_log(tmp_path / "data", SHORT_EVENTS, tenants=("acme",), seed=5)

    seconds, report, (cpu_here, cpu_verifiers) = benchmark.pedantic(lambda: _report(built), rounds=1, iterations=1)
    summary = report["summary"]
    assert (summary["events"], summary["integrity"], summary["tampered"]) == (built.events, "VALID", 0), summary
    assert report["verification"]["signatures"]["checked"] == built.events
    assert sum(f["count"] for f in report["findings"]) > 0 and report["review"]["reviews"] > 0

    started = time.perf_counter()
    pdf, _ = render(report, "pdf")
    pdf_seconds = time.perf_counter() - started
    assert pdf.startswith(b"%PDF")

    signatures = report["verification"]["signatures"]
    results.record("report.build", seconds, "s", events=built.events, rate_events_per_s=round(built.events / seconds),
                   signatures_in_processes=signatures["in_processes"], findings=sum(f["count"] for f in
                                                                                    report["findings"]),
                   gaps=summary["gaps"], log_size=built.size, cpu_seconds_this_process=round(cpu_here, 1),
                   cpu_seconds_verifier_processes=round(cpu_verifiers, 1),
                   note="CPU seconds in all / 2 cores is what the report takes on an idle 2-core machine")
    results.record("report.pdf", pdf_seconds, "s", events=built.events, pdf_bytes=len(pdf))
    benchmark.extra_info.update(seconds=seconds, pdf_seconds=pdf_seconds)
