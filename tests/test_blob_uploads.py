"""Blob reads scoped by uploader (audit_blob_uploads): an auditor of T reads a blob only when an event of T names it
AND a credential covering T uploaded it, so under `serve --public` (hashes public) a producer of acme naming
globex's blob shows acme's auditors nothing. Real server processes; the in-process rule with its fallback for blobs
stored before migration 0011 (no upload rows: the citation rule alone), migrated on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from log.storage.engine import downgrade_schema, normalize_database_url, schema_revision, upgrade_schema
from tests.processes import ServerProcess
from tests.test_access_control import call, create_token, tenant_recorder
from tests.test_audit_blobs import Producer, _event, _ref, _run, _setup, _submit, database_url, digest  # noqa: F401

SHA = hashlib.sha256


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """A `--public` server with producers of acme and globex, writers of acme, of globex and of every tenant, and an
    auditor of each tenant."""
    root = tmp_path_factory.mktemp("uploads")
    server = ServerProcess(root / "data", extra_args=["--public", "--verify-processes", "0"]).start()
    try:
        url = server.url
        admin = (root / "data" / "admin.token").read_text().strip()
        vkey = (root / "data" / "log.vkey").read_text().strip()
        w = {"url": url, "admin": admin, "db": root / "data" / "auditlog.db"}
        for tenant in ("acme", "globex"):
            w[f"writer-{tenant}"], _ = create_token(url, admin, "writer", [tenant])
            w[f"auditor-{tenant}"], _ = create_token(url, admin, "auditor", [tenant])
        w["writer-all"], _ = create_token(url, admin, "writer")
        recorders = {}
        for tenant in ("acme", "globex"):
            recorders[tenant] = tenant_recorder(url, admin, vkey, tenant, w[f"writer-{tenant}"])
        w["recorders"] = recorders
        yield w
        for recorder in recorders.values():
            recorder.close()
    finally:
        server.stop()


def _put(w, credential: str, data: bytes) -> str:
    sha = SHA(data).hexdigest()
    status, _, answer = call(w["url"], "PUT", f"/api/v1/blobs/{sha}", w[credential], data)
    assert status in (200, 201), answer
    return sha


def _name(w, tenant: str, sha: str, data: bytes, run: str) -> None:
    """An event of `tenant` naming blob `sha` (any hash a producer knows; under --public every event's are)."""
    with w["recorders"][tenant].action(run) as action:
        action.record("tool_call", output={"sha256": sha, "size": len(data)})


def _uploads(w, sha: str) -> list[tuple]:
    """The server's audit_blob_uploads rows for `sha` (its SQLite file, read beside it)."""
    engine = sa.create_engine(f"sqlite:///{w['db']}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT sha256, tenant FROM audit_blob_uploads WHERE sha256 = ? ORDER BY tenant", (sha,))]
    finally:
        engine.dispose()


def _get(w, credential: str, sha: str) -> tuple[int, bytes]:
    status, _, answer = call(w["url"], "GET", f"/api/v1/blobs/{sha}", w[credential])
    return status, answer


def test_a_producer_naming_another_tenants_blob_shows_its_auditors_nothing(public):
    data = b"globex's secret prompt"
    sha = _put(public, "writer-globex", data)
    _name(public, "globex", sha, data, "run-globex-own")
    _name(public, "acme", sha, data, "run-acme-steals")  # the hash is public under --public
    assert _get(public, "auditor-acme", sha)[0] == 404
    assert _get(public, "auditor-globex", sha) == (200, data)
    assert _get(public, "admin", sha) == (200, data)


def test_a_blob_uploaded_by_an_all_tenant_writer_is_read_by_the_tenant_that_names_it(public):
    data = b"uploaded by a writer of every tenant"
    sha = _put(public, "writer-all", data)
    _name(public, "acme", sha, data, "run-acme-all")
    assert _get(public, "auditor-acme", sha) == (200, data)
    assert _get(public, "auditor-globex", sha)[0] == 404  # no globex event names it
    assert _uploads(public, sha) == [(sha, "*")]  # the writer's scope, every tenant, as the server recorded it


def test_the_same_content_put_again_by_the_naming_tenants_writer_opens_it_to_that_tenant(public):
    data = b"both tenants happen to have this content"
    sha = _put(public, "writer-globex", data)
    _name(public, "acme", sha, data, "run-acme-same")
    assert _get(public, "auditor-acme", sha)[0] == 404
    status, _, answer = call(public["url"], "PUT", f"/api/v1/blobs/{sha}", public["writer-acme"], data)
    assert status == 200, answer  # already stored: not created again, but acme's upload is remembered
    assert _get(public, "auditor-acme", sha) == (200, data)
    assert _uploads(public, sha) == [(sha, "acme"), (sha, "globex")]


def test_the_upload_rule_in_process(tmp_path):
    producer = Producer()

    async def work(log, audit):
        await _setup(audit, producer)
        await _submit(audit, producer, _event(1, "acme", input=_ref("p"), output=_ref("q")),
                      _event(2, "globex", input=_ref("p"), output=_ref("r")))
        assert await audit.blob_tenants(digest("p")) == {"acme", "globex"}  # no upload rows: citation alone
        await audit.record_blob_upload(digest("p"), frozenset({"globex", "initech"}))
        await audit.record_blob_upload(digest("p"), frozenset({"globex"}))  # again: nothing more, no error
        assert await audit.blob_tenants(digest("p")) == {"globex"}
        await audit.record_blob_upload(digest("q"), None)
        assert await audit.blob_tenants(digest("q")) == {"acme"}
        await audit.record_blob_upload(digest("r"), frozenset({"acme"}))
        assert await audit.blob_tenants(digest("r")) == set()
        rows = await log.read(lambda tx: sorted(tuple(r) for r in tx.execute(
            sa.text("SELECT sha256, tenant FROM audit_blob_uploads"))))
        assert rows == sorted([(digest("p"), "globex"), (digest("p"), "initech"), (digest("q"), "*"),
                               (digest("r"), "acme")])

    _run(tmp_path, work)


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_blobs_and_events_from_before_the_migration_keep_the_citation_rule(database_url, tmp_path):  # noqa: F811
    """A log with blobs and events, taken back to before 0011 (no upload table), then upgraded: the table is there,
    empty, and the blobs read by citation alone, as they did; an upload recorded after it scopes again."""
    producer = Producer()

    async def before(log, audit):
        await _setup(audit, producer)
        await audit.put_blob(digest("old"), b"old")
        await _submit(audit, producer, _event(1, "acme", output=_ref("old")), _event(2, "globex", input=_ref("old")))

    _run(tmp_path, before, database_url)
    head = schema_revision(database_url)
    downgrade_schema(database_url, "0010")
    assert "audit_blob_uploads" not in _tables(database_url)
    upgrade_schema(database_url)
    assert schema_revision(database_url) == head
    assert "audit_blob_uploads" in _tables(database_url)

    async def after(log, audit):
        assert await audit.get_blob(digest("old")) == b"old"
        assert await audit.blob_tenants(digest("old")) == {"acme", "globex"}
        await audit.record_blob_upload(digest("old"), frozenset({"acme"}))
        assert await audit.blob_tenants(digest("old")) == {"acme"}

    _run(tmp_path, after, database_url)
