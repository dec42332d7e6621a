"""Readiness: whether the log can take writes now, and how far behind its witnesses and timestamps are.

`/healthz` is liveness (the process serves; 503 only once the writer has stopped for good). `/readyz` is readiness:

    200 {"status": "ready", "origin", "tree_size", "witness": {...}, "timestamp": {...}}
    503 {"status": "unavailable", "reason": "disk full", ...}      (also with Retry-After)

`reason` is `Log.write_unavailable`: "disk full", "disk I/O error", "database unreachable: ...", "shutting down",
"stopped: ...", and whatever the sequencer names for a lost lock. Lag is reported, never a reason to be unready:
`replica` (with `--read-database-url`) has the size the read replica has replayed against the primary's, the entries
and seconds it lags, the age of its last replayed transaction (pg_last_xact_replay_timestamp(): it grows on an idle
log too), whether its replay is paused, and `error` when it cannot be read (reads then answer 503; writes go on).
`witness` (when witnesses are configured) has the latest checkpoint size, the latest size cosigned by k witnesses,
the entries between them and the seconds the log has been ahead of its witnessed checkpoint; `timestamp` (when a
TSA is configured) the size of the newest timestamped checkpoint, the entries since, and the token's age in seconds.
The same figures go to /metrics (`readiness_metrics`).
"""

from __future__ import annotations

from aiohttp import web

from api.server.state import LOG, ROLE, TIMESTAMP_JOB, WITNESS_JOB


def serving_role(app: web.Application) -> dict:
    """{"role", "sequencer"} where servers share the log (api/server/standby.py); {} for a read worker."""
    role = app.get(ROLE)
    return {} if role is None else role.describe()


def readiness(app: web.Application) -> dict:
    """The /readyz body (without the HTTP status): status, reason when unavailable, and lag where measured."""
    log = app[LOG]
    role = app.get(ROLE)
    standing_by = role is not None and not role.sequencing
    reason = log.write_unavailable
    if standing_by and log.failure is None:
        # A standby takes writes by passing them on: ready while it knows a sequencer to pass them to.
        reason = None if role.sequencer_url else "standby: no server sequences the log right now"
    report: dict = {"status": "ready" if reason is None else "unavailable"}
    if reason is not None:
        report["reason"] = reason
    report["origin"] = log.origin
    report["tree_size"] = log.committed_checkpoint.size
    replica = log.replica_status()
    if replica is not None:
        report["replica"] = {
            "reachable": replica.error is None,
            "replayed_size": replica.replayed_size,
            "primary_size": replica.primary_size,
            "lag_entries": replica.lag_entries,
            "lag_seconds": None if replica.lag_seconds is None else round(replica.lag_seconds, 3),
            "replay_age_seconds": None if replica.replay_age_seconds is None else round(replica.replay_age_seconds, 3),
            "replay_paused": replica.replay_paused,
        }
        if replica.error is not None:
            report["replica"]["error"] = replica.error
    report.update(serving_role(app))
    witness_job = None if standing_by else app.get(WITNESS_JOB)
    if witness_job is not None:
        figures = witness_job.metrics()
        witnessed = int(figures["witness_witnessed_size"])
        report["witness"] = {
            "k": witness_job.policy.k,
            "latest_size": int(figures["witness_latest_size"]),
            "witnessed_size": witnessed if witnessed >= 0 else None,
            "lag_entries": int(figures["witness_backlog_entries"]),
            "lag_seconds": round(figures["witness_backlog_seconds"], 3),
        }
    timestamp_job = None if standing_by else app.get(TIMESTAMP_JOB)
    if timestamp_job is not None:
        figures = timestamp_job.metrics()
        stamped = figures["timestamped_size"]
        age = figures["seconds_since_last_timestamp"]
        report["timestamp"] = {
            "timestamped_size": stamped,
            "lag_entries": report["tree_size"] - (stamped or 0),
            "age_seconds": None if age is None else round(age, 3),
        }
    return report


def readiness_metrics(report: dict) -> str:
    """Prometheus text for a `readiness` report: `auditlog_ready` 1 or 0, `auditlog_write_unavailable{reason}` 1 for
    the kind of reason (the text before its first colon, so the label's values stay few), and the lag gauges."""
    lines = ["# TYPE auditlog_ready gauge", f"auditlog_ready {1 if report['status'] == 'ready' else 0}",
             "# TYPE auditlog_write_unavailable gauge"]
    reason = report.get("reason")
    if reason is not None:
        kind = reason.split(":", 1)[0].replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        lines.append(f'auditlog_write_unavailable{{reason="{kind}"}} 1')
    replica = report.get("replica")
    if replica is not None:
        lines += ["# TYPE auditlog_replica_reachable gauge", f"auditlog_replica_reachable {int(replica['reachable'])}"]
        for name in ("replayed_size", "lag_entries", "lag_seconds", "replay_age_seconds"):
            if replica[name] is not None:
                lines += [f"# TYPE auditlog_replica_{name} gauge", f"auditlog_replica_{name} {replica[name]}"]
    witness = report.get("witness")
    if witness is not None:
        lines += ["# TYPE auditlog_witness_lag_entries gauge", f"auditlog_witness_lag_entries {witness['lag_entries']}",
                  "# TYPE auditlog_witness_lag_seconds gauge", f"auditlog_witness_lag_seconds {witness['lag_seconds']}"]
    timestamp = report.get("timestamp")
    if timestamp is not None:
        lines += ["# TYPE auditlog_timestamp_lag_entries gauge",
                  f"auditlog_timestamp_lag_entries {timestamp['lag_entries']}"]
        if timestamp["age_seconds"] is not None:
            lines += ["# TYPE auditlog_timestamp_age_seconds gauge",
                      f"auditlog_timestamp_age_seconds {timestamp['age_seconds']}"]
    return "\n".join(lines) + "\n"
