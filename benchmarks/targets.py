"""Every figure the suite reports, in report order, with its description and the target it is judged against.

A figure key is `<id>` or `<id>@<size>` (e.g. `hash.ours@1000000`); the target belongs to `<id>`. Targets are
for the 2-core machine the issue names; they are reported beside the figures and never asserted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<=", or "" for a figure reported without a target
    bound: float
    text: str

    def met_by(self, value: float) -> bool | None:
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        return None


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    target: Target | None = None


def _ge(bound: float, text: str) -> Target:
    return Target(">=", bound, text)


def _le(bound: float, text: str) -> Target:
    return Target("<=", bound, text)


FIGURES: list[Figure] = [
    Figure("hash.ours", "(1) leaf hashing + CompactRange/EdgeTiles integration, in memory",
           _ge(300_000, "≥ 300,000 entries/s")),
    Figure("hash.pymerkle", "(1) the same work in pymerkle 7 InmemoryTree, same process"),
    Figure("hash.ratio", "(1) ours ÷ pymerkle", _ge(5, "≥ 5×")),
    Figure("durable.sqlite", "(2) Sequencer → SQLite, batches of 1024, entries+tiles+checkpoint committed",
           _ge(60_000, "≥ 60,000 entries/s")),
    Figure("durable.postgresql", "(2) Sequencer → PostgreSQL (COPY), batches of 1024",
           _ge(40_000, "≥ 40,000 entries/s")),
    Figure("http.single.rate", "(3) HTTP single-entry POSTs, 64 concurrent clients, SQLite",
           _ge(4_000, "≥ 4,000 entries/s")),
    Figure("http.single.p50", "(3) single-entry POST latency to acknowledgement, p50"),
    Figure("http.single.p99", "(3) single-entry POST latency to acknowledgement, p99", _le(100, "≤ 100 ms")),
    Figure("http.batch.sqlite", "(3) HTTP batch API (JSON, 1024 entries/request), SQLite",
           _ge(40_000, "≥ 40,000 entries/s")),
    Figure("http.batch.postgresql", "(3) HTTP batch API (JSON, 1024 entries/request), PostgreSQL"),
    Figure("events.rate", "(4) signed audit events over HTTP", _ge(6_000, "≥ 6,000 events/s")),
    Figure("events.p99", "(4) signed audit event latency to acknowledgement, p99"),
    Figure("events.batch.rate", "(4) signed audit events over HTTP, 32 per request, 16 clients",
           _ge(6_000, "≥ 6,000 events/s")),
    Figure("events.batch.p99", "(4) latency of a 32-event request to acknowledgement, p99"),
    Figure("proof.inclusion.inproc", "(5) inclusion proof via Log.inclusion_proof, in process, mean"),
    Figure("proof.consistency.inproc", "(5) consistency proof via Log.consistency_proof, in process, mean"),
    Figure("proof.inclusion.http", "(5) GET /api/v1/proof/inclusion, 64 clients, serve --read-workers 1",
           _ge(4_000, "≥ 4,000 req/s")),
    Figure("proof.inclusion.http.p99", "(5) GET /api/v1/proof/inclusion latency p99, --read-workers 1",
           _le(50, "≤ 50 ms")),
    Figure("proof.inclusion.http.one_process", "(5) GET /api/v1/proof/inclusion, 64 clients, one server process"),
    Figure("proof.inclusion.http.one_process.p99", "(5) inclusion proof latency p99, one server process"),
    Figure("proof.inclusion.http.default", "(5) GET /api/v1/proof/inclusion, 64 clients, `auditlog serve` as it "
           "starts by default (--read-workers auto)"),
    Figure("proof.inclusion.http.default.p99", "(5) inclusion proof latency p99, --read-workers auto"),
    Figure("read.bare_get.http", "(5) a bare aiohttp GET handler answering a proof-sized body, one process, the same "
           "64 clients in the same run"),
    Figure("proof.inclusion.http.default.vs_bare", "(5) inclusion proofs with --read-workers auto ÷ the bare aiohttp "
           "GET handler, same run, same load generator", _ge(0.5, "≥ 0.5×")),
    Figure("proof.consistency.http", "(5) GET /api/v1/proof/consistency, 64 clients, --read-workers 1"),
    Figure("proof.consistency.http.p99", "(5) GET /api/v1/proof/consistency latency p99, --read-workers 1"),
    Figure("proof.consistency.http.one_process", "(5) GET /api/v1/proof/consistency, one server process"),
    Figure("proof.consistency.http.one_process.p99", "(5) consistency proof latency p99, one server process"),
    Figure("read.tile.http", "(5) GET /tile/<L>/<N>[.p/<W>], 64 clients, --read-workers 1"),
    Figure("read.tile.http.p99", "(5) tile GET latency p99, --read-workers 1"),
    Figure("read.tile.http.one_process", "(5) GET /tile/<L>/<N>[.p/<W>], one server process"),
    Figure("read.tile.http.one_process.p99", "(5) tile GET latency p99, one server process"),
    Figure("read.checkpoint.http", "(5) GET /checkpoint, 64 clients, one server process (a worker forwards it)"),
    Figure("read.checkpoint.http.p99", "(5) checkpoint GET latency p99"),
    Figure("memory.server_peak_rss", "(6) server peak RSS (VmHWM) while ingesting over HTTP, SQLite",
           _le(200, "≤ 200 MB, flat")),
    Figure("memory.db_bytes_per_entry", "(6) SQLite database bytes per 256-byte entry"),
    Figure("memory.blob_puts_peak_rss", "(6) server peak RSS (VmHWM) under eight concurrent blob PUTs, streamed",
           _le(250, "≤ 250 MB")),
    Figure("check.sqlite", "(7) auditlog db check: entries re-hashed, tiles rebuilt and compared, every checkpoint "
           "checked, SQLite"),
    Figure("check.postgresql", "(7) auditlog db check, PostgreSQL"),
    Figure("auth.check.public_no_credential", "(8) credential check per request: a public route, no credential"),
    Figure("auth.check.entries_admin_token", "(8) credential check per request: entry read, the admin token"),
    Figure("auth.check.entries_api_token", "(8) credential check per request: entry read, an API token"),
    Figure("copy.sqlite_to_postgresql", "(9) auditlog db copy: every table copied in one snapshot and one "
           "transaction, then db check's verification before the commit, SQLite to PostgreSQL"),
    Figure("copy.postgresql_to_sqlite", "(9) auditlog db copy, PostgreSQL to SQLite"),
    Figure("ha.single.1", "(9) HTTP single-entry POSTs, PostgreSQL, one server, 64 clients"),
    Figure("ha.single.2", "(9) the same, two servers on one database, the clients spread across them"),
    Figure("ha.single.3", "(9) the same, three servers on one database"),
    Figure("ha.single.ratio.2", "(9) single-entry POSTs, two servers ÷ one"),
    Figure("ha.single.ratio.3", "(9) single-entry POSTs, three servers ÷ one"),
    Figure("ha.batch.1", "(9) HTTP batch API (JSON, 1024 entries/request), PostgreSQL, one server, 6 clients"),
    Figure("ha.batch.2", "(9) the same, two servers on one database, the clients spread across them"),
    Figure("ha.batch.3", "(9) the same, three servers on one database"),
    Figure("ha.batch.ratio.2", "(9) batch ingest, two servers ÷ one"),
    Figure("ha.batch.ratio.3", "(9) batch ingest, three servers ÷ one"),
    Figure("ha.failover.median", "(9) SIGKILL of the sequencer of three servers under 32 writers to the next "
           "acknowledged write, median", _le(5, "≤ 5 s")),
    Figure("ha.failover.max", "(9) the same, the slowest failover", _le(5, "≤ 5 s")),
    Figure("retention.run.sqlite", "(10) a retention run over 10^6 event entries with 10^5 due: found, its entry "
           "and deletion list written, every due entry pruned (one transaction per 2,000), SQLite",
           _le(60, "≤ 60 s")),
    Figure("retention.run.postgresql", "(10) the same retention run, PostgreSQL", _le(60, "≤ 60 s")),
    Figure("archive.write", "(10) auditlog archive: every tile, entry bundle and the checkpoint of a SQLite log to a "
           ".tar in one snapshot, each entry checked against its leaf hash", _le(60, "≤ 60 s at 10^6 entries")),
    Figure("archive.verify", "(10) auditlog archive verify of that .tar: every file hashed, tiles and root "
           "recomputed, every entry re-hashed", _le(60, "≤ 60 s at 10^6 entries")),
    Figure("vault.tokenize", "(10) token vault: values tokenised over HTTP, 1,000 new values of a new data subject "
                             "per request, each sealed and stored before the answer, SQLite",
           _ge(20_000, "≥ 20,000 values/s")),
    Figure("vault.detokenize", "(10) token vault: values detokenised over HTTP, 100 tokens per request, each request's "
                               "auditlog.vault-access/v1 entry committed before the values are read, SQLite",
           _ge(2_000, "≥ 2,000 values/s")),
    Figure("report.build", "(11) a compliance report over one tenant's period (log/audit/report.py, all frameworks): "
           "every event re-hashed against the tiles folded to the signed root, every signature re-verified (verifier "
           "processes), findings, gaps, reviews, costs; JSON, SQLite", _le(60, "≤ 60 s at 10^6 events")),
    Figure("report.pdf", "(11) the same report rendered as PDF with its charts (api/reports/pdf.py)"),
    Figure("explorer.verify.timeline", "(11) the web explorer in headless chromium: a run's events verified in the "
           "browser (the checkpoint's Ed25519 signature, each event's entry hashed and its inclusion proof from the "
           "timeline checked, the event matched to its entry; the run's evidence bundle's registry entries proven "
           "and each producer's Ed25519 signature checked with the key they prove), the page's own performance.now() "
           "timing",
           _le(1_000, "≤ 1 s for 100 events")),
    Figure("explorer.verify.search", "(11) the same for a page of search results: each event's inclusion proof "
           "fetched from GET /api/v1/proof/inclusion (six at a time) and checked, the page's own timing",
           _le(1_000, "≤ 1 s for 100 events")),
    Figure("search.sqlite", "(11) explorer search: GET /api/v1/events over 10^6 signed audit events, pages of 50, "
                            "an auditor's tenant-scoped token, every query shape the explorer offers, one request at "
                            "a time, p95 over all shapes (each shape's p50/p95/max in details), SQLite",
           _le(300, "≤ 300 ms")),
    Figure("search.postgresql", "(11) the same explorer searches, PostgreSQL", _le(300, "≤ 300 ms")),
]


class _Targets:
    def __init__(self, figures: list[Figure]):
        self._by_id = {figure.id: figure for figure in figures}
        self._order = {figure.id: position for position, figure in enumerate(figures)}

    @staticmethod
    def _split(key: str) -> tuple[str, int]:
        base, _, size = key.partition("@")
        return base, int(size) if size.isdigit() else 0

    def figure(self, key: str) -> Figure | None:
        return self._by_id.get(self._split(key)[0])

    def get(self, key: str) -> Target | None:
        figure = self.figure(key)
        return figure.target if figure else None

    def order(self, key: str) -> tuple[int, int]:
        base, size = self._split(key)
        return self._order.get(base, len(self._order)), size


TARGETS = _Targets(FIGURES)
