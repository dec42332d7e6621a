"""Which tenants' events refer to a blob (audit_event_blobs, `AuditService.blob_tenants`): written with the event in
its own transaction, at every place of the event schema a reference can be, and back-filled by migration 0008 for
events logged before it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from log.audit.canonical import canonicalize
from log.audit.registry import key_id_for
from log.audit.schema import (
    CONTENT_REF_PATHS,
    EVENT_SCHEMA,
    SHA256_PATTERN,
    content_references,
    validate_event,
)
from log.audit.service import AuditService
from log.blobs import FileBlobStore
from log.errors import InvalidInput
from log.service import Log, LogConfig
from log.storage.engine import (
    downgrade_schema,
    normalize_database_url,
    schema_revision,
    upgrade_schema,
)
from tests.postgres import fresh_database

ORIGIN = "example.com/blobs"
STAMP = "2026-12-07T10:00:00.000Z"


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _ref(name: str) -> dict:
    return {"sha256": digest(name), "size": len(name), "media_type": "text/plain"}


def _event(n: int, tenant: str, **extra) -> dict:
    return {"schema": "auditlog.event/v1", "event_id": f"ev-{n}", "trace_id": "tr-1", "run_id": f"run-{tenant}",
            "timestamp": STAMP, "tenant": tenant, "actor": {"type": "agent", "id": "a-1"},
            "event_type": "model_call", **extra}


class Producer:
    def __init__(self, name: str = "gateway"):
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def envelope(self, event: dict) -> dict:
        return {"producer": self.name, "key_id": key_id_for(self.public), "event": event,
                "signature": base64.b64encode(self.key.sign(canonicalize(event))).decode()}


def _clock() -> float:
    return datetime.datetime(2026, 12, 7, 10, 0, 1, tzinfo=datetime.timezone.utc).timestamp()


async def _open(config: LogConfig, tmp_path) -> tuple[Log, AuditService]:
    log = await Log.open(config)
    return log, await AuditService.open(log, FileBlobStore(tmp_path / "blobs"), clock=_clock)


async def _close(log: Log, audit: AuditService) -> None:
    await audit.close()
    await log.close()


async def _setup(audit: AuditService, producer: Producer, tenants=("acme", "globex")) -> None:
    await audit.register_producer(producer.name, tenants)
    await audit.add_key(producer.name, producer.public, not_before=0)


async def _submit(audit: AuditService, producer: Producer, *events: dict) -> None:
    body = json.dumps({"events": [producer.envelope(e) for e in events]}).encode()
    result = await audit.submit(body)
    assert [type(r).__name__ for r in result.results] == ["Receipt"] * len(events), result.results


def _run(tmp_path, work, database_url: str | None = None):
    config = LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002, database_url=database_url)

    async def main():
        log, audit = await _open(config, tmp_path)
        try:
            return await work(log, audit)
        finally:
            await _close(log, audit)

    return asyncio.run(main())


def test_a_blob_is_visible_to_the_tenants_whose_events_refer_to_it(tmp_path):
    producer = Producer()

    async def work(log, audit):
        await _setup(audit, producer)
        await _submit(audit, producer, _event(1, "acme", input=_ref("prompt"), output=_ref("answer-a")),
                      _event(2, "globex", input=_ref("prompt"), output=_ref("answer-g")))
        await _submit(audit, producer, _event(3, "acme", output=_ref("answer-a")))  # the same tenant again
        assert await audit.blob_tenants(digest("prompt")) == {"acme", "globex"}
        assert await audit.blob_tenants(digest("answer-a")) == {"acme"}
        assert await audit.blob_tenants(digest("answer-g")) == {"globex"}
        assert await audit.blob_tenants(digest("never referred to")) == set()
        with pytest.raises(InvalidInput):
            await audit.blob_tenants(digest("prompt").upper())

    _run(tmp_path, work)


def test_an_event_that_names_one_blob_twice_indexes_it_once_and_refused_or_repeated_events_add_nothing(tmp_path):
    producer = Producer()

    async def rows(log) -> list[tuple]:
        return await log.read(lambda tx: [tuple(r) for r in tx.execute(
            sa.text("SELECT sha256, tenant, idx FROM audit_event_blobs ORDER BY idx, sha256"))])

    async def work(log, audit):
        await _setup(audit, producer, tenants=("acme",))
        event = _event(1, "acme", input=_ref("same"), output=_ref("same"))
        await _submit(audit, producer, event)
        first = await rows(log)
        assert [(sha, tenant) for sha, tenant, _ in first] == [(digest("same"), "acme")]
        await _submit(audit, producer, event)  # a retry: the original receipt, no new entry, no new row
        forbidden = await audit.submit(json.dumps(producer.envelope(
            _event(2, "globex", input=_ref("other")))).encode())  # a tenant this producer may not write for
        assert forbidden.results[0].code == "tenant-forbidden"
        assert await rows(log) == first
        assert await audit.blob_tenants(digest("other")) == set()

    _run(tmp_path, work)


def test_every_place_the_schema_admits_a_reference_is_found():
    # Each content reference of the schema is one object with a sha256 property of this pattern: a new reference
    # field is a new path here (and so indexed), whatever it is called and however deep.
    assert json.dumps(EVENT_SCHEMA).count(json.dumps(SHA256_PATTERN)) == len(CONTENT_REF_PATHS)
    assert set(CONTENT_REF_PATHS) == {("input",), ("output",)}
    event = _event(1, "acme", input=_ref("in"), output=_ref("out"), extensions={"input": _ref("not a reference")})
    assert content_references(validate_event(event)) == (digest("in"), digest("out"))
    assert content_references(_event(1, "acme")) == ()


def test_references_at_nested_places_are_found(monkeypatch):
    """The reader follows maps, lists and nesting, for a schema that grows references there."""
    from log.audit import schema

    ref = {"type": "object", "properties": {"sha256": {"type": "string", "pattern": SHA256_PATTERN}}}
    grown = {"properties": {
        "input": ref,
        "approval": {"type": "object", "properties": {"evidence": ref}},
        "attachments": {"type": "array", "items": ref},
        "artifacts": {"type": "object", "additionalProperties": ref},
        "maybe": {"anyOf": [ref, {"type": "null"}]},
    }}
    paths = schema._content_ref_paths(grown)
    assert paths == [("input",), ("approval", "evidence"), ("attachments", "[]"), ("artifacts", "*"), ("maybe",)]
    monkeypatch.setattr(schema, "CONTENT_REF_PATHS", tuple(paths))
    event = {"input": {"sha256": "1" * 64}, "approval": {"evidence": {"sha256": "2" * 64}},
             "attachments": [{"sha256": "3" * 64}, {"sha256": "1" * 64}], "artifacts": {"a": {"sha256": "4" * 64}},
             "maybe": None}
    assert schema.content_references(event) == ("1" * 64, "2" * 64, "3" * 64, "4" * 64)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auditlog.db'}"
    else:
        with fresh_database() as url:
            yield url


def _blob_rows(url: str) -> list[tuple]:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT sha256, tenant, idx FROM audit_event_blobs ORDER BY idx, sha256")]
    finally:
        engine.dispose()


def test_the_migration_back_fills_the_blobs_of_events_logged_before_it_both_ways(database_url, tmp_path):
    """Events logged, then the schema taken back to before 0008 (the table gone), then upgraded again: the rows the
    back-fill makes from the stored entries are those the sequencer wrote, over more than one chunk."""
    chunk = _migration_module().CHUNK
    producer = Producer()
    events = [_event(n, ("acme", "globex")[n % 2],
                     **({"input": _ref(f"prompt-{n // 4}")} if n % 3 else {}),
                     **({"output": _ref(f"answer-{n}")} if n % 5 else {}))
              for n in range(chunk + 100)]

    async def work(log, audit):
        await _setup(audit, producer)
        await _submit(audit, producer, *events[:10])
        await log.add_entries([b"a plain entry among the events"])
        for start in range(10, len(events), 1000):
            await _submit(audit, producer, *events[start:start + 1000])

    _run(tmp_path, work, database_url)
    written = _blob_rows(database_url)
    assert len(written) == sum(len(content_references(event)) for event in events)
    head = schema_revision(database_url)

    downgrade_schema(database_url, _migration_module().down_revision)
    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        assert "audit_event_blobs" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    upgrade_schema(database_url)
    assert schema_revision(database_url) == head
    assert _blob_rows(database_url) == written

    async def read(log, audit):
        assert await audit.blob_tenants(digest("prompt-0")) == {"acme", "globex"}
        assert await audit.blob_tenants(digest(f"answer-{chunk + 99}")) == {"globex"}
        assert await audit.blob_tenants(digest("answer-5")) == set()  # n % 5 == 0: no output

    _run(tmp_path, read, database_url)


def _migration_module():
    """The revision that made audit_event_blobs, as alembic loads it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from log.storage.engine import ALEMBIC_DIR

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    scripts = ScriptDirectory.from_config(config)
    (script,) = [s for s in scripts.walk_revisions() if s.path.endswith("_audit_event_blobs.py")]
    return script.module
