"""No accidental forks, on real `auditlog serve` processes: a data dir whose key has signed a log refuses a database
that is empty, behind (restored from an older backup) or another log's, and a refused start leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid

import aiohttp
import psycopg

from log.keys import write_signer_key
from log.storage.engine import sqlite_url_for
from tests.postgres import ADMIN_URL, fresh_database
from tests.processes import ServerProcess


def _files(directory) -> dict[str, bytes]:
    """Every file and directory under `directory`, with the files' bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
            for p in sorted(directory.rglob("*"))}


def _tables(url: str) -> list[str]:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as db:
        return [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


async def _post_entries(url: str, count: int, tag: str, headers: dict) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(count):
            async with session.post(f"{url}/api/v1/entries", data=f"{tag} {i}".encode(),
                                    headers={"Content-Type": "application/octet-stream"}) as resp:
                assert resp.status == 200, await resp.text()


def _serve_entries(server: ServerProcess, count: int, tag: str) -> None:
    server.start()
    asyncio.run(_post_entries(server.url, count, tag, server.admin))
    server.stop()
    assert server.proc.returncode == 0, "".join(server.output)


def _refused(server: ServerProcess) -> str:
    code, output = server.run_to_exit()
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_a_sqlite_data_dir_with_entries_refuses_an_empty_postgresql_database(tmp_path):
    data_dir = tmp_path / "data"
    _serve_entries(ServerProcess(data_dir), 40, "sqlite")
    before = _files(data_dir)
    assert "log.state" in before
    with fresh_database() as url:
        line = _refused(ServerProcess(data_dir, url))
        assert "signed e2e.test/log at size 40" in line and "is empty" in line, line
        assert "--data-dir" in line and "copy the database" in line, line
        assert _files(data_dir) == before, "a refused start changed the data dir"
        assert _tables(url) == [], "a refused start created the schema"


def test_a_data_dir_from_before_log_state_is_refused_too(tmp_path):
    """The case that forked: an older data dir (no log.state) whose own SQLite log has entries."""
    data_dir = tmp_path / "data"
    _serve_entries(ServerProcess(data_dir), 5, "old")
    (data_dir / "log.state").unlink()
    with fresh_database() as url:
        line = _refused(ServerProcess(data_dir, url))
        assert "at size 5" in line and "is empty" in line, line
        assert not (data_dir / "log.state").exists()


@contextlib.contextmanager
def _backup(database_url, data_dir):
    """A copy of the log's database as it is now (the server stopped); yields the URL of the copy."""
    if database_url is None:
        copy = data_dir.parent / "backup.db"
        with sqlite3.connect(data_dir / "auditlog.db") as source, sqlite3.connect(copy) as target:
            source.backup(target)
        yield sqlite_url_for(copy)
        return
    name = f"auditlog_backup_{uuid.uuid4().hex[:12]}"
    source = database_url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_restored_to_an_older_state_is_refused(tmp_path, database_url):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, database_url)
    _serve_entries(server, 10, "before the backup")
    with _backup(database_url, data_dir) as backup_url:
        _serve_entries(server, 10, "after the backup")
        before = _files(data_dir)
        line = _refused(ServerProcess(data_dir, backup_url))
        assert "at size 20" in line and "holds only size 10" in line and "older backup" in line, line
        assert _files(data_dir) == before


def test_another_key_against_an_existing_database_is_refused(tmp_path, database_url):
    first_dir = tmp_path / "data"
    _serve_entries(ServerProcess(first_dir, database_url), 3, "first")
    url = database_url or sqlite_url_for(first_dir / "auditlog.db")

    second_dir = tmp_path / "second"
    line = _refused(ServerProcess(second_dir, url))
    assert "already holds the log e2e.test/log of size 3" in line and "does not exist" in line, line
    assert not second_dir.exists(), "a refused start created the data dir"

    # A data dir that has a key of its own (from keygen) is refused as well, and keeps its key as it was.
    other = tmp_path / "other"
    write_signer_key(other / "log.key", "e2e.test/log")
    before = _files(other)
    line = _refused(ServerProcess(other, url))
    assert "did not sign" in line, line
    assert _files(other) == before


def test_a_normal_restart_starts(tmp_path, database_url):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, database_url)
    _serve_entries(server, 4, "one")
    _serve_entries(server, 4, "two")
    server.start()
    try:
        assert any("tree size: 8" in line for line in server.output), server.output
    finally:
        server.stop()
