"""The default of every setting an operator can change, named once.

The command line (api/cli), LogConfig and the Sequencer (log/service.py, log/sequencer.py), the app and its jobs
(api/server/app.py, witnessing.py, timestamping.py) all read these names instead of writing their own literals, so
`auditlog serve` with no flags and `LogConfig()` in a test describe the same log.
"""

from __future__ import annotations

import os

# --- where the log lives -----------------------------------------------------------------------------------------
DATA_DIR = "data"  # SQLite database, signing key and admin token, relative to the working directory
HOST = "127.0.0.1"
PORT = 8080
SERVER_URL = f"http://{HOST}:{PORT}"  # what the client commands talk to by default
# A client given several servers (api/client/servers.py): tries of each server within one request, the back-off
# after a server's first failed try (doubling), the longest Retry-After honoured, the time one request may take in
# all, and how long a TCP (and TLS) connect may take before it counts as failed, before anything was sent.
FAILOVER_ATTEMPTS = 2
FAILOVER_BACKOFF = 0.1
FAILOVER_MAX_RETRY_AFTER = 5.0
FAILOVER_DEADLINE = 60.0
CONNECT_TIMEOUT = 10.0

DATABASE_CONNECT_TIMEOUT = 10  # seconds a PostgreSQL connection attempt may take before it counts as failed
# A read replica (`--read-database-url`, log/replica.py): its latest checkpoint is read this often, and a request
# about a tree size the primary has committed but the replica not yet replayed waits this long before a 503
REPLICA_POLL_INTERVAL = 0.05
REPLICA_WAIT = 2.0

# --- the sequencer: a batch is committed when it is full or old enough, whichever comes first --------------------
BATCH_SIZE = 1024  # entries per commit
BATCH_MAX_AGE_MS = 50  # the oldest queued entry waits at most this long for its commit
BATCH_LINGER_MS = 0  # after the first entry, wait this long for more before committing a partial batch
BATCH_MAX_AGE = BATCH_MAX_AGE_MS / 1000  # seconds, as LogConfig and the Sequencer take them
BATCH_LINGER = BATCH_LINGER_MS / 1000
MAX_PENDING = 1 << 16  # queued entries beyond which submissions are refused as busy (503)

# --- read caches (log/service.py) --------------------------------------------------------------------------------
FOLD_CACHE_SIZE = 16_384  # proof elements over the imperfect right edge, 32 bytes each
TILE_CACHE_SIZE = 4096  # full tiles kept for tile GETs

# --- background jobs (seconds between rounds) --------------------------------------------------------------------
WITNESS_INTERVAL = 10.0
TIMESTAMP_INTERVAL = 60.0
# `--publish-dir` (api/server/publishing.py): how often the log's checkpoint is looked at, and the longest wait
# between attempts after a failed write (the waits double from PUBLISH_INTERVAL)
PUBLISH_INTERVAL = 0.1
PUBLISH_RETRY_MAX = 5.0
# `--wait` (api/client/waiting.py): how long a client waits for an entry or a run to be cosigned and timestamped
# (three default timestamp intervals), polling first after WAIT_POLL_FIRST seconds, doubling up to WAIT_POLL_MAX
EVIDENCE_WAIT_TIMEOUT = 180.0
WAIT_POLL_FIRST = 0.2
WAIT_POLL_MAX = 2.0

# --- shutdown ---------------------------------------------------------------------------------------------------
# On SIGTERM, requests in progress get this long to finish (entries already queued are committed and answered);
# then those still running, a body still trickling in, are cancelled. aiohttp may take the grace twice for a
# handler that ignores its cancellation: 3 s keeps the process's exit within 10 s.
SHUTDOWN_GRACE = 3.0

# --- processes beside the server ---------------------------------------------------------------------------------
# Several servers on one PostgreSQL log (log/service.py): the sequencer's database session is ended by PostgreSQL
# after this long without a word (a paused or cut-off process), which frees the log for another server; a live
# sequencer speaks four times per lease. Standby servers try for the sequencer lock this often; a sequencer that dies
# frees it at once, so a takeover starts within this, plus the time to reload the tree.
SEQUENCER_LEASE_SECONDS = 3.0
STANDBY_POLL_SECONDS = 0.25
# A sequencer stalled inside a statement that waits on it (a paused process in the middle of a COPY) is out of reach
# of the idle timeouts; a standby ends its session after this long. Longer than the lease: a batch's COPY may carry
# up to 64 MiB (1,024 entries of 64 KiB), which a slow link to the database takes seconds to send.
STALLED_STATEMENT_SECONDS = 15.0
LEASE_POLL_SECONDS = 0.5  # a standby re-reads where the sequencer is this often (at once after a failed forward)
FORWARD_CONNECT_TIMEOUT = 2.0  # seconds a standby waits to connect to the sequencer before answering 503
FORWARD_READ_TIMEOUT = 30.0  # seconds a forwarded request may wait for the sequencer's next byte (a paused one)

READ_WORKERS = "auto"  # extra processes serving proofs, tiles and entries: `auto` is auto_read_workers()
# The most read workers `auto` starts. Each is a whole process with its own database connections (a PostgreSQL
# server's max_connections, 100 by default, is shared by every process of every server on it) and its own tile
# cache, and every worker's writes still go through the one writer; more than 4 were never measured (the machines
# here have 2 cores). Past that many cores of reads, more servers scale further than more workers behind one writer.
MAX_AUTO_READ_WORKERS = 4


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what taskset and cgroup cpusets, e.g. docker
    --cpuset-cpus, limit; a CPU time quota such as docker --cpus is not one) where the OS reports one, else every
    core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_read_workers(cores: int | None = None) -> int:
    """`--read-workers auto`: one read worker per usable core beyond the first, which the writer keeps, at most
    MAX_AUTO_READ_WORKERS; 0 on one core, where a second process could only take turns with the writer."""
    cores = usable_cores() if cores is None else cores
    return max(0, min(MAX_AUTO_READ_WORKERS, cores - 1))


def verify_processes() -> int:
    """Processes checking signed audit events: one per core, up to 4 (more were never measured). On 2 cores two
    children beat one (an envelope costs them more CPU than it costs the server) and three add nothing
    (benchmarks/PROFILES.md)."""
    return max(1, min(4, os.cpu_count() or 1))

# --- connections (api/server/connections.py): what a client may hold, and for how long -----------------------------
HEADER_TIMEOUT = 10.0  # seconds from a request head's first byte (or the connect) until the head is complete
BODY_IDLE_TIMEOUT = 30.0  # seconds a request body may send nothing while its handler waits for it
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle connection stays open between requests
MAX_CONNECTIONS = 1024  # open at once per server process; beyond: 503 and closed
BLOB_UPLOADS = 8  # blob PUTs streaming to disk at once; beyond: 503 with Retry-After

# --- OIDC bearer tokens (api/server/oidc.py) -----------------------------------------------------------------------
OIDC_ROLE_CLAIM = "auditlog_role"  # the claim naming the role: a string or a list (the first auditlog role wins)
OIDC_TENANTS_CLAIM = "auditlog_tenants"  # the claim naming the tenants: a list or a space-separated string
OIDC_ALGORITHMS = ("RS256", "ES256", "EdDSA")  # JWS algorithms accepted; never "none", never HS*
OIDC_LEEWAY = 30.0  # seconds of clock skew allowed on exp, nbf and iat
OIDC_JWKS_REFRESH = 300.0  # seconds a fetched JWKS is used before it is fetched again
OIDC_JWKS_REFETCH_MIN = 30.0  # at most one JWKS fetch per this many seconds (unknown kids, failures)
OIDC_JWKS_TIMEOUT = 10.0  # seconds one JWKS fetch may take
OIDC_JWKS_MAX_BYTES = 1 << 20  # a JWKS larger than this is refused

# --- the access log (api/server/access_log.py): who read which contents ---------------------------------------------
# Retention (log/audit/retention.py, api/server/retention_job.py): the sequencer applies the policies this often
# (seconds; 0: only when asked over HTTP or by `auditlog retention run`). Hourly: a policy counts in days, so an hour
# late is nothing, and a run that finds nothing due costs a few index reads.
RETENTION_INTERVAL = 3600.0
ACCESS_LOG_RETENTION_DAYS = 400  # rows older than this are pruned (a year and a bit: an annual audit sees a year)
ACCESS_LOG_FLUSH_INTERVAL = 1.0  # seconds between batch writes of the buffered records (also the most a crash loses)
ACCESS_LOG_FLUSH_ROWS = 1000  # a batch written at once when this many records are buffered
ACCESS_LOG_MAX_BUFFERED = 100_000  # records held while the database cannot take them; beyond: the oldest dropped
ACCESS_LOG_PRUNE_INTERVAL = 3600.0  # seconds between pruning rounds
ACCESS_LOG_MAX_PAGE = 1000  # records per page of GET /api/v1/access-log

# --- the token vault (log/audit/vault.py) --------------------------------------------------------------------------
VAULT_MAX_VALUES = 10_000  # values per tokenise request (one write of the log's writer per request)
VAULT_MAX_VALUE_BYTES = 4096  # UTF-8 bytes of one value (or subject reference): ids, names, addresses, not documents
# Tokens per detokenise request: its log entry names each token by its SHA-256 (67 bytes of JSON each), and 500 of
# them with the longest purpose stay well inside one entry (65,535 bytes)
VAULT_MAX_DETOKENIZE = 500
VAULT_MAX_PURPOSE = 1000  # characters of a detokenisation's stated purpose
VAULT_KEY_CACHE = 10_000  # unwrapped data-subject keys kept in memory (AES-GCM contexts, about 1 KiB each)
