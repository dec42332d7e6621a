"""The audit personality's query-index tables, as SQLAlchemy Core tables (alembic/versions/0004_audit.py creates
them and later migrations change them; the two must agree, which tests/test_migrations.py checks).

Rows are written only through the sequencer (`RowInsert`), in the same transaction as the entry they index, so the
tables never disagree with the log: `idx` is the entry's index. They hold nothing that is not in the entry itself,
so they can be rebuilt from the log. Times are Unix milliseconds.
"""

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text

from log.storage.schema import ROWID_KEY

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
    Index("ix_audit_events_actor", "actor_id", "idx"),
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
    Index("ix_audit_event_blobs_sha256", "sha256", "tenant"),
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
