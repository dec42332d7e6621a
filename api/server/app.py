"""The app factory: `create_app(config, witnessing)` opens the log when the app starts and closes it when it stops.

Between the two, and only when `witnessing` asks for them, run the background jobs of witness/: `WitnessJob` (send
each checkpoint to the witnesses, keep their cosignatures) and `TimestampJob` (get an RFC 3161 token for the latest
witnessed checkpoint, or the latest checkpoint when there are no witnesses); and with `publish_dir`, `TilePublisher`
(api/server/publishing.py: the tlog-tiles read API as files). They start after the log opens and stop before it
closes (cleanup contexts unwind in reverse order).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from api.server import access_log, auth, standby
from api.server.audit_routes import AUDIT, AUDIT_ADMIN_TOKEN, add_audit_routes
from api.server.drills_routes import add_drill_routes
from api.server.explorer import EXPLORER_ROUTES
from api.server.lifecycle_routes import add_lifecycle_routes
from api.server.report_routes import add_report_routes
from api.server.retention_job import add_retention
from api.server.vault_routes import add_vault_routes
from api.server.metrics import HttpMetrics, metrics_middleware, render_dict_metrics
from api.server.openapi import document_bytes
from api.server.problems import problem_middleware
from api.server.routes import MAX_JSON_BODY, ROUTES
from api.server.publishing import TilePublisher
from api.server.state import (
    CONFIG, HTTP_METRICS, LOG, METRIC_SOURCES, OPENAPI, PUBLISHER, ROLE, TIMESTAMP_JOB, WITNESS_JOB, ServingRole,
)
from log.audit.tokens import read_token
from log.blobs import FileBlobStore
from log import defaults
from log.errors import InvalidInput
from log.service import Log, LogConfig
from api.server.witnessing import KOfN, WitnessEndpoint, WitnessJob
from api.server.timestamping import TimestampJob
from witness.rfc3161 import load_certificates


def freeze_startup_heap() -> None:
    """Once the app is set up: collect start-up garbage, then exempt everything alive from the cyclic GC.

    Full collections then walk only what serving allocated since: under signed-event load they stalled every
    request for 80-105 ms (one or two a minute) and take ~2 ms this way.
    """
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class Witnessing:
    """What to run beside the log. Empty (the default): neither job.

    witnesses           `"<url> <verifier key> [<verifier key> ...]"` per witness (WitnessEndpoint.from_config)
    witness_k           cosignatures a checkpoint needs to count as witnessed (default: all witnesses)
    tsa_url, tsa_ca_pem the RFC 3161 TSA and the PEM certificate(s) its tokens must chain to; both or neither
    """

    witnesses: tuple[str, ...] = ()
    witness_interval: float = defaults.WITNESS_INTERVAL
    witness_k: int | None = None
    tsa_url: str | None = None
    tsa_ca_pem: bytes | None = None
    timestamp_interval: float = defaults.TIMESTAMP_INTERVAL

    @classmethod
    def from_options(cls, *, witnesses=(), witness_interval=defaults.WITNESS_INTERVAL, witness_k=None, tsa_url=None,
                     tsa_ca=None, timestamp_interval=defaults.TIMESTAMP_INTERVAL) -> "Witnessing":
        """From command-line style options: `tsa_ca` is a path to a PEM file."""
        pem = None
        if tsa_ca is not None:
            try:
                pem = Path(tsa_ca).read_bytes()
            except OSError as exc:
                raise InvalidInput(f"cannot read the TSA certificate {tsa_ca}: {exc}", field="tsa_ca") from None
        return cls(tuple(witnesses), witness_interval, witness_k, tsa_url, pem, timestamp_interval)

    def endpoints(self) -> list[WitnessEndpoint]:
        return [WitnessEndpoint.from_config(text) for text in self.witnesses]

    def check(self) -> None:
        """Refuse a configuration the jobs would refuse, before anything starts (InvalidInput naming the field)."""
        endpoints = self.endpoints()
        if self.witness_k is not None and not (endpoints and 1 <= self.witness_k <= len(endpoints)):
            raise InvalidInput(f"witness k must be in [1, {len(endpoints)}] (the witnesses given), not "
                               f"{self.witness_k}", field="witness_k")
        if len({e.name for e in endpoints}) != len(endpoints):
            raise InvalidInput("two witnesses have the same key name", field="witness")
        if self.witness_interval <= 0 or self.timestamp_interval <= 0:
            raise InvalidInput("the witness and timestamp intervals must be positive", field="interval")
        if (self.tsa_url is None) != (self.tsa_ca_pem is None):
            raise InvalidInput("give both the TSA URL and its CA certificate, or neither", field="tsa_url")
        if self.tsa_ca_pem is not None and not load_certificates(self.tsa_ca_pem):
            raise InvalidInput("the TSA CA file holds no certificate", field="tsa_ca")


async def _log_lifetime(app: web.Application) -> AsyncIterator[None]:
    app[LOG] = await Log.open(app[CONFIG])
    try:
        yield
    finally:
        await app[LOG].close()


def _access_log_sink(app: web.Application):
    app[METRIC_SOURCES].append(lambda: app[access_log.ACCESS_LOG].metrics())
    return access_log.database_sink(app[LOG])


def _jobs_lifetime(settings: Witnessing, publish_dir: Path | None = None, publish_entry_bundles: bool = False):
    """The witness and timestamp jobs and the static publisher run on the sequencer only, so once per log however
    many servers share it: started when this server sequences (at start, or when it takes over), stopped when it
    steps down."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        log = app[LOG]
        witness_job = timestamp_job = publisher = None

        async def stop() -> None:
            if publisher is not None:
                await publisher.stop()
            if timestamp_job is not None:
                await timestamp_job.stop()
            if witness_job is not None:
                await witness_job.stop()

        try:
            if settings.witnesses:
                endpoints = settings.endpoints()
                witness_job = WitnessJob(log, endpoints, interval=settings.witness_interval,
                                         policy=KOfN(settings.witness_k or len(endpoints)))
                app[WITNESS_JOB] = witness_job
                app[METRIC_SOURCES].append(lambda: render_dict_metrics(witness_job.metrics()))
            if settings.tsa_url is not None:
                # Stamp what the witnesses vouched for when there are witnesses; the log's latest otherwise.
                source = witness_job.witnessed_checkpoint if witness_job is not None else None
                timestamp_job = TimestampJob(log, settings.tsa_url, settings.tsa_ca_pem,
                                             interval=settings.timestamp_interval, source=source)
                app[TIMESTAMP_JOB] = timestamp_job
                app[METRIC_SOURCES].append(lambda: render_dict_metrics(timestamp_job.metrics()))
            if publish_dir is not None:
                # The checkpoint file carries what /checkpoint does: the cosignatures too, when there are witnesses.
                publisher = TilePublisher(log, publish_dir, entry_bundles=publish_entry_bundles,
                                          note_for=witness_job.cosigned_note if witness_job is not None else None)
                app[PUBLISHER] = publisher
                app[METRIC_SOURCES].append(lambda: render_dict_metrics(publisher.metrics()))

            async def follow(role: str) -> None:
                if role == "sequencer":
                    if witness_job is not None:
                        await witness_job.start()
                    if timestamp_job is not None:
                        timestamp_job.start()
                    if publisher is not None:
                        await publisher.start()
                else:
                    await stop()

            if log.role == "sequencer":
                await follow("sequencer")
            log.on_role_change(follow)
            yield
        finally:
            await stop()

    return lifetime


def _role_lifetime(first: bool):
    """Where several servers share the log (api/server/standby.py): `ROLE.sequencing` follows the log's role. The
    context added `first` (right after the log's) turns it off before anything else hears of a step-down; the one
    added last turns it on once every other listener (jobs, audit registries) has heard of a takeover."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        role, log = app[ROLE], app[LOG]

        async def follow(now: str) -> None:
            if (now == "sequencer") != first:
                role.sequencing = now == "sequencer"
                role.changed.set()

        if not first:
            role.sequencing = log.role == "sequencer"
        log.on_role_change(follow)
        yield

    return lifetime


def create_app(config: LogConfig, witnessing: Witnessing | None = None, *, verify_processes: int = 0,
               blob_uploads: int = defaults.BLOB_UPLOADS,
               access_log_retention_days: float = defaults.ACCESS_LOG_RETENTION_DAYS,
               access: auth.AccessSettings | None = None, authenticators=(),
               admin_token: str | None = None, blob_dir: Path | None = None, publish_dir: str | Path | None = None,
               publish_entry_bundles: bool = False,
               retention_interval: float = defaults.RETENTION_INTERVAL,
               vault_key_file: str | Path | None = None) -> web.Application:
    """The whole HTTP API over the log `config` describes. The log opens in the app's startup (cleanup_ctx).
    `verify_processes`: child processes that check signed audit events (0: this process does); `blob_uploads`:
    blob PUTs streamed to disk at once (more: 503); `access_log_retention_days`: how long the access log
    (api/server/access_log.py) keeps a record of a read. `access`: `--public`, `--metrics-public`
    (api/server/auth.py); `authenticators`: more than the admin token and API tokens (OIDC), tried after them;
    `admin_token`: instead of AUDITLOG_ADMIN_TOKEN or `<data dir>/admin.token`. `publish_dir`: keep the tlog-tiles
    read API there as files (api/server/publishing.py), the entry bundles too with `publish_entry_bundles` (which
    hold the entries' contents: for a public log). `retention_interval`: seconds between the sequencer's retention
    runs (api/server/retention_job.py; 0: only when asked). `vault_key_file`: the token vault's master key (else
    AUDITLOG_VAULT_MASTER_KEY, else `<data dir>/vault-master.key`, log/audit/vault_keys.py)."""
    witnessing = witnessing or Witnessing()
    witnessing.check()
    http_metrics = HttpMetrics()
    # Middlewares run outside-in: metrics see the final status of every response, problems included, and access
    # control's refusals are problems.
    app = web.Application(
        middlewares=[metrics_middleware(http_metrics, access_log.finished), problem_middleware,
                     auth.auth_middleware, standby.standby_middleware],
        client_max_size=MAX_JSON_BODY,
    )

    stored_tokens = auth.CachedTokenLookup(lambda token_id: read_token(app[LOG], token_id))

    async def api_token(token_id: str):
        if not app[ROLE].sequencing:  # a standby's registries are not kept up to date: the database is
            return await stored_tokens(token_id)
        return app[AUDIT].tokens.get(token_id) if AUDIT in app else None

    auth.install(app, access, [auth.AdminTokenAuthenticator(lambda: app.get(AUDIT_ADMIN_TOKEN)),
                               auth.ApiTokenAuthenticator(api_token), *authenticators])
    app[CONFIG] = config
    app[HTTP_METRICS] = http_metrics
    app[OPENAPI] = document_bytes()
    app[METRIC_SOURCES] = []
    app[ROLE] = ServingRole(config.advertise_url)
    app.cleanup_ctx.append(_log_lifetime)
    app.cleanup_ctx.append(_role_lifetime(first=True))
    app.cleanup_ctx.append(standby.lifetime(LOG, lambda app: lambda: app.get(AUDIT_ADMIN_TOKEN)))
    app.cleanup_ctx.append(_jobs_lifetime(witnessing, Path(publish_dir) if publish_dir is not None else None,
                                          publish_entry_bundles))  # after the log opens, stopped before it closes
    # After the log opens; closed (its last records written) before the log closes.
    app.cleanup_ctx.append(access_log.lifetime(_access_log_sink, retention_days=access_log_retention_days))
    app.router.add_routes(ROUTES)
    app.router.add_routes(EXPLORER_ROUTES)  # the web explorer at / and the witnesses it shows
    # After the log's lifetime: the service opens over it.
    add_audit_routes(app, data_dir=config.data_dir, admin_token=admin_token, verify_processes=verify_processes,
                     blob_uploads=blob_uploads, blobs=FileBlobStore(blob_dir) if blob_dir is not None else None,
                     vault_key_file=Path(vault_key_file) if vault_key_file is not None else None)
    add_lifecycle_routes(app)  # legal holds, data-subject requests: over app[AUDIT]
    add_retention(app, retention_interval)  # retention policies, runs, deletion lists: over app[AUDIT]
    add_vault_routes(app)
    add_drill_routes(app)  # audit drills' results, logged and listed
    add_report_routes(app)  # compliance reports: over app[AUDIT] and app[LOG]
    app.cleanup_ctx.append(_role_lifetime(first=False))  # last: after every other context that follows the role
    return app
