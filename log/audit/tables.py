"""The audit personality's query-index tables, as SQLAlchemy Core tables (alembic/versions/0004_audit.py creates
them and later migrations change them; the two must agree, which tests/test_migrations.py checks).

Rows are written only through the sequencer (`RowInsert`), in the same transaction as the entry they index, so the
tables never disagree with the log: `idx` is the entry's index. They hold nothing that is not in the entry itself,
so they can be rebuilt from the log. Times are Unix milliseconds.
"""

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

from log.storage.schema import ROWID_KEY, pruned_entries  # noqa: F401 - re-exported (see its comment below)

metadata = MetaData()

# One row per accepted audit envelope.
audit_events = Table(
    "audit_events",
    metadata,
    Column("idx", ROWID_KEY, primary_key=True, autoincrement=False),
    Column("tenant", String(128), nullable=False),
    Column("producer", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("run_id", String(128), nullable=False),
    Column("trace_id", String(128), nullable=False),
    Column("parent_event_id", String(128)),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(128), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Index("ix_audit_events_run", "run_id", "idx"),
    Index("ix_audit_events_trace", "trace_id", "idx"),
    Index("ix_audit_events_tenant_ts", "tenant", "ts", "idx"),
    # Migration 0017: a tenant's events, and an actor's, in index order with what searches filter them on beside
    # (service.py events_statement): a page of them over a time range, of an event type, of one tenant (an actor id
    # such as a policy engine's may be every tenant's) is read from the index alone.
    Index("ix_audit_events_tenant_idx", "tenant", "idx", "ts", "event_type"),
    Index("ix_audit_events_actor", "actor_id", "idx", "tenant", "ts", "event_type"),
    Index("ix_audit_events_type", "event_type", "idx"),
    Index("ix_audit_events_producer", "producer", "idx"),
)

# audit_events' columns after idx, in the order RowInserts give them.
EVENT_COLUMNS = ("tenant", "producer", "event_id", "run_id", "trace_id", "parent_event_id", "actor_type",
                 "actor_id", "event_type", "ts")

# One row per (entry, context id): context ids are what an auditor starts from ("case Y").
audit_event_context = Table(
    "audit_event_context",
    metadata,
    Column("idx", BigInteger, nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", String(128), nullable=False),
    Index("ix_audit_event_context_lookup", "name", "value", "idx"),
    Index("ix_audit_event_context_idx", "idx"),  # migration 0014: a pruned event's rows go by index
)

# One row per (audit event entry, blob it refers to): which tenants' events name a blob, so that an auditor of those
# tenants may read it (a blob two tenants' events name is each one's). Every place the event schema admits a
# reference counts (schema.CONTENT_REF_PATHS); a blob named twice by one event has one row. The index answers
# "which tenants" from the index alone.
audit_event_blobs = Table(
    "audit_event_blobs",
    metadata,
    Column("sha256", String(64), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("idx", BigInteger, nullable=False),
    # The reference's media_type where the event gave one (from migration 0013 on; NULL for older rows): retention
    # policies for blobs may be set per media type.
    Column("media_type", String(255), nullable=True),
    Index("ix_audit_event_blobs_sha256", "sha256", "tenant"),
    Index("ix_audit_event_blobs_idx", "idx"),  # migration 0014
)

# One row per (blob, tenant scope of a credential that uploaded it): "*" for an uploader covering every tenant (an
# admin, the admin token, a writer or OIDC principal without tenants). An auditor of T reads a blob only when an
# event of T names it AND an uploader covered T, so a producer naming another tenant's hash shows nothing. Not an
# entry index: written by the blob PUT through the log's writer (`Log.write`), insert-or-ignore. A blob with no
# rows (stored before migration 0011) falls back to the citation rule alone.
audit_blob_uploads = Table(
    "audit_blob_uploads",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("tenant", String(128), primary_key=True),
)

# One row per registry-change entry, with its canonical JSON: replayed on start to rebuild the registry.
audit_registry = Table(
    "audit_registry",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("producer", String(128), nullable=False),
    Column("key_id", String(16)),
    Column("change", String(32), nullable=False),
    Column("record", Text, nullable=False),
    Index("ix_audit_registry_producer_key", "producer", "key_id", "idx"),
)

# One row per API token change (created, revoked), with its canonical JSON: the log entry holds the same, so the
# table can be rebuilt from the log. Never a token's secret: `sha256` is the SHA-256 of the whole token
# (log/audit/tokens.py says why that is enough). Replayed on start; a read worker looks tokens up by token_id.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("token_id", String(16), nullable=False),
    Column("change", String(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("role", String(16)),
    Column("tenants", Text),
    Column("expires_at", BigInteger),
    Column("sha256", String(64)),
    Column("record", Text, nullable=False),
    Index("ix_access_tokens_token", "token_id", "idx"),
)

# --- Records lifecycle (migration 0013): the token vault, retention, legal holds, pruning ----------------------------
# The vault's tables are NOT an index of log entries: they hold the mappings from tokens to values, which must never
# enter the log (the log is forever; a mapping must be destroyable). They are written through `Log.write`. Each
# value is encrypted (AES-256-GCM) under its data subject's key; each subject key, and each tenant's tokenisation
# key, is stored wrapped by the operator's vault master key (log/audit/vault.py). Erasing a subject deletes its
# wrapped key (crypto-shredding): its rows in vault_tokens become ciphertext nobody can open.

# One row per tenant: the key that makes a value's token (HMAC-SHA-256 of the value), wrapped by the master key.
vault_tenant_keys = Table(
    "vault_tenant_keys",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("master_key_id", String(64), nullable=False),  # which master key wrapped it (rotation, a KMS key id)
    Column("created_at", BigInteger, nullable=False),
)

# One row per (tenant, data subject). The subject is named by its token (`subject` is the token of the subject
# reference the caller gave, never the reference). `wrapped_key` is NULL once erased; `erasure_idx` is then the
# log entry that records the erasure.
vault_subject_keys = Table(
    "vault_subject_keys",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("master_key_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("erased_at", BigInteger, nullable=True),
    Column("erasure_idx", BigInteger, nullable=True),
)

# One row per (tenant, token, subject): the value, AES-256-GCM under the subject's key (nonce || ciphertext+tag),
# the associated data binding it to (tenant, token, subject). The same value in one tenant has one token; two
# subjects may share a value (a shared address), hence the subject in the key.
vault_tokens = Table(
    "vault_tokens",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("token", String(64), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_vault_tokens_subject", "tenant", "subject"),
)

# One row per (audit event entry, vault token it contains anywhere in its event): written with the entry, so that a
# data subject's events (access requests, legal holds on a subject) are found from the index alone.
audit_event_tokens = Table(
    "audit_event_tokens",
    metadata,
    Column("token", String(64), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Index("ix_audit_event_tokens_token", "token", "tenant", "idx"),
    Index("ix_audit_event_tokens_idx", "idx"),  # migration 0014
)

# One row per retention-policy entry (`auditlog.retention-policy/v1`), with its canonical JSON: the policy in force
# for (tenant, record_class, selector) is the row with the highest idx; `retain_days` NULL means the policy was
# removed. record_class: "event" (event entries, selector an event type or "*"), "blob" (selector "event_type:<t>",
# "media_type:<m>" or "*"), "subject" (vault subjects, selector "*").
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(128), nullable=False),
    Column("record_class", String(16), nullable=False),
    Column("selector", String(300), nullable=False),
    Column("retain_days", Integer, nullable=True),
    Column("record", Text, nullable=False),
    Index("ix_retention_policies_scope", "tenant", "record_class", "selector", "idx"),
)

# One row per retention run: `idx` is the run's log entry (`auditlog.retention-run/v1`, written BEFORE anything is
# deleted: the policy, the counts and the SHA-256 of the list below). `finished_at` NULL: the run was interrupted
# and is resumed (its list is complete; what of it is already gone is skipped).
retention_runs = Table(
    "retention_runs",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(128), nullable=False),
    Column("list_sha256", String(64), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
)

# The list each retention run (or data-subject erasure) deletes, committed with its log entry: kind "entry" (item:
# the entry index, decimal), "blob" (item: sha256 hex), "subject" (item: tenant/subject token). Served so that a
# verifier recomputes the hash its log entry commits to.
deletion_items = Table(
    "deletion_items",
    metadata,
    Column("deletion_idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(8), primary_key=True),
    Column("item", String(200), primary_key=True),
)

# One row per pruned entry: its contents are gone (entries.data is empty), its leaf hash and every tile stay.
# `deletion_idx` is the log entry that authorised it (a retention run). Declared with the log's own tables
# (log/storage/schema.py), since the core serves entries and must know which were pruned (log/prune.py).

# One row per legal hold, from its `auditlog.legal-hold/v1` entries (placed, then perhaps released). `scope` is the
# canonical JSON of the hold's scope (tenant; run ids; context ids; subject tokens; actor; time range).
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("hold_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("placed_idx", BigInteger, nullable=False),
    Column("placed_at", BigInteger, nullable=False),
    Column("released_idx", BigInteger, nullable=True),
    Column("released_at", BigInteger, nullable=True),
    Index("ix_legal_holds_tenant", "tenant", "released_idx"),
)

# One row per data-subject erasure (`auditlog.subject-erasure/v1`, log/audit/subjects.py), written with its entry
# (its deletion list is in deletion_items under the same idx). `finished_at` NULL: what the list names is not all
# destroyed yet (a crash after the entry); the server finishes it at start. Migration 0015.
subject_erasures = Table(
    "subject_erasures",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(128), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Index("ix_subject_erasures_subject", "tenant", "subject", "idx"),
)

# One row per audit drill (`auditlog.audit-drill/v1`, log/audit/drills.py), written with its entry: who drilled which
# tenant when (the record's `by` and `at`: `by` is an SQL keyword, and the writer's INSERTs name columns bare) and the
# counts an auditor scans for (runs drilled, passed, failed, findings), so GET /api/v1/drills lists a tenant's drills
# newest first from the index. `record` is the entry's canonical JSON. Migration 0016.
audit_drills = Table(
    "audit_drills",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant", String(128), nullable=False),
    Column("drilled_at", BigInteger, nullable=False),
    Column("drilled_by", Text, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("findings", Integer, nullable=False),
    Column("record", Text, nullable=False),
    Index("ix_audit_drills_tenant", "tenant", "idx"),
)
