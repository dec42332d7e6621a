"""`auditlog db check` (log/fsck.py) and the start-up check of the newest entries, on SQLite and PostgreSQL.

Each log is written by the server's own Log (several batches, so several checkpoints, full and partial tiles at
levels 0 and 1), then one stored byte is changed with plain SQL, as a bad disk or a hand in the database would.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

from api.cli.main import main
from log.errors import StorageError
from log.fsck import check_log, check_newest_entries
from log.note_keys import parse_verifier_key
from log.service import Log, LogConfig
from log.storage.engine import normalize_database_url
from log.storage.store import SqlLogStore
from tests.conftest import TEST_ORIGIN
from tests.processes import REPO, ServerProcess

# Servers and commands here take the operator's admin token (tests/conftest.py operator_token).
pytestmark = pytest.mark.usefixtures("operator_token")

ENTRIES = 1300  # level-0 tiles 0..4 full, tile 5 partial; level-1 tile 0 partial
BATCH = 100


async def _build(config: LogConfig, count: int = ENTRIES) -> str:
    log = await Log.open(config)
    try:
        for start in range(0, count, BATCH):
            await log.add_entries([b"entry %d" % i for i in range(start, min(count, start + BATCH))])
        return log.verifier_key
    finally:
        await log.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def built(request, tmp_path):
    """(config, verifier key) of a log of ENTRIES entries, on each backend."""
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            from tests.postgres import fresh_database

            url = stack.enter_context(fresh_database())
        config = LogConfig(data_dir=tmp_path / "data", database_url=url, origin=TEST_ORIGIN, batch_size=BATCH)
        vkey = asyncio.run(_build(config))
        (config.data_dir / "log.vkey").write_text(vkey + "\n")
        yield config, vkey


def _sql(config: LogConfig, statement: str, **params):
    engine = create_engine(normalize_database_url(config.resolved_database_url()))
    try:
        with engine.begin() as conn:
            return conn.execute(text(statement), params).all() if statement.startswith("SELECT") else \
                conn.execute(text(statement), params)
    finally:
        engine.dispose()


def _flip(value: bytes, at: int) -> bytes:
    value = bytearray(value)
    value[at] ^= 0x01
    return bytes(value)


def _check(config: LogConfig, capsys, *extra: str) -> tuple[int, str]:
    argv = ["db", "check", "--data-dir", str(config.data_dir), "--quiet", *extra]
    if config.database_url:
        argv += ["--database-url", config.database_url]
    code = main(argv)
    captured = capsys.readouterr()
    assert not captured.err or captured.err.startswith("auditlog db check: ")  # failures: one prefix, on stderr
    return code, captured.err.removeprefix("auditlog db check: ") + captured.out


def test_an_untouched_log_passes(built, capsys):
    config, _ = built
    code, out = _check(config, capsys)
    assert code == 0, out
    # 5 full level-0 tiles, the partial level-0 and level-1 tiles; size 0, then one checkpoint per batch of 100
    assert f"OK: 1,300 entries, 7 tiles, 14 checkpoints agree with the checkpoint signed by {TEST_ORIGIN}" in out


def _tamper_entry(config):
    (data,), = _sql(config, "SELECT data FROM entries WHERE idx = 700")
    _sql(config, "UPDATE entries SET data = :d WHERE idx = 700", d=_flip(bytes(data), 3))
    return "FAILED: entry 700: "


def _tamper_leaf_hash(config):
    (leaf,), = _sql(config, "SELECT leaf_hash FROM entries WHERE idx = 300")
    _sql(config, "UPDATE entries SET leaf_hash = :d WHERE idx = 300", d=_flip(bytes(leaf), 0))
    return "FAILED: the stored leaf hash of entry 300: "


def _tamper_tile(config):
    (data,), = _sql(config, "SELECT data FROM tiles WHERE level = 0 AND idx = 2")
    _sql(config, "UPDATE tiles SET data = :d WHERE level = 0 AND idx = 2", d=_flip(bytes(data), 32 * 17 + 5))
    return "FAILED: tile tile/0/002 (level 0, index 2) at hash 17: "


def _tamper_interior(config):
    (data,), = _sql(config, "SELECT interior FROM tiles WHERE level = 0 AND idx = 1")
    _sql(config, "UPDATE tiles SET interior = :d WHERE level = 0 AND idx = 1", d=_flip(bytes(data), 32 * 200))
    return "FAILED: the interior nodes of tile tile/0/001 (level 0, index 1) at hash 200: "


def _tamper_checkpoint_note(config):
    (note,), = _sql(config, "SELECT note FROM checkpoints WHERE size = 500")
    _sql(config, "UPDATE checkpoints SET note = :d WHERE size = 500", d=_flip(bytes(note), len(note) - 10))
    return "FAILED: checkpoint of size 500: "


def _tamper_checkpoint_root(config):
    (root,), = _sql(config, "SELECT root_hash FROM checkpoints WHERE size = 800")
    _sql(config, "UPDATE checkpoints SET root_hash = :d WHERE size = 800", d=_flip(bytes(root), 31))
    return "FAILED: checkpoint of size 800: expected a note of size 800 and root "


def _tamper_edge_tile(config):
    (data,), = _sql(config, "SELECT data FROM tiles WHERE level = 1 AND idx = 0")
    _sql(config, "UPDATE tiles SET data = :d WHERE level = 1 AND idx = 0", d=_flip(bytes(data), 32 * 4))
    return "FAILED: tile tile/1/000.p/5 (level 1, index 0) at hash 4: "


@pytest.mark.parametrize("tamper, kind", [
    (_tamper_entry, "entry"), (_tamper_leaf_hash, "leaf hash"), (_tamper_tile, "tile"),
    (_tamper_interior, "interior"), (_tamper_checkpoint_note, "checkpoint"), (_tamper_checkpoint_root, "checkpoint"),
    (_tamper_edge_tile, "tile"),
], ids=lambda value: getattr(value, "__name__", value))
def test_one_changed_byte_is_named(built, capsys, tamper, kind):
    config, vkey = built
    expected = tamper(config)
    code, out = _check(config, capsys)
    assert code == 1, out
    assert out.startswith(expected), out
    store = SqlLogStore(config.resolved_database_url(), read_only=True)
    try:
        report = check_log(store, parse_verifier_key(vkey))
    finally:
        store.close()
    assert report.first.kind == kind
    if kind not in ("entry",):  # a changed entry also changes the tiles and roots above it; the rest stand alone
        assert report.counts == {kind: 1}, report.counts
    else:
        assert report.counts["entry"] == 1 and report.counts["checkpoint"] == 6  # sizes 800 .. 1300
        assert report.counts["tile"] == 2  # level-0 tile 2, and the level-1 edge tile above it


def test_a_missing_entry_and_extra_rows_are_named(built, capsys):
    config, _ = built
    _sql(config, "DELETE FROM entries WHERE idx = 1000")
    code, out = _check(config, capsys)
    assert code == 1 and out.startswith("FAILED: entry 1000: expected a stored entry, found no entry"), out


def test_the_key_must_be_the_logs(built, capsys, tmp_path):
    config, _ = built
    from log.note_keys import generate_signer_key, parse_signer_key

    other = parse_signer_key(generate_signer_key(TEST_ORIGIN)[0]).verifier_key
    code, out = _check(config, capsys, "--log-key", other)
    assert code == 1 and out.startswith("FAILED: checkpoint of size 0: "), out  # the first, signed at start


def test_the_key_defaults_to_the_one_of_log_key(built, capsys):
    config, _ = built
    (config.data_dir / "log.vkey").unlink()
    code, out = _check(config, capsys)
    assert code == 0, out


def test_no_database_or_key_exits_2_and_an_unreachable_database_3(tmp_path, capsys, built):
    config, vkey = built
    code, out = main(["db", "check", "--data-dir", str(tmp_path / "none"), "--log-key", vkey]), capsys.readouterr()
    assert code == 2 and "no SQLite database at" in out.err and len(out.err.splitlines()) == 1, out
    assert not (tmp_path / "none").exists()  # read-only: nothing created
    code, out = main(["db", "check", "--data-dir", str(tmp_path / "none")]), capsys.readouterr()
    assert code == 2 and "no usable log key" in out.err, out
    code, out = main(["db", "check", "--log-key", vkey, "--database-url", "postgresql://u@127.0.0.1:1/x"]), \
        capsys.readouterr()
    assert code == 3 and "cannot reach" in out.err and len(out.err.splitlines()) == 1, out


def test_the_check_never_writes(built):
    config, vkey = built
    store = SqlLogStore(config.resolved_database_url(), read_only=True)
    try:
        with pytest.raises(Exception):
            store.read(lambda tx: tx.execute(text("DELETE FROM entries WHERE idx = 0")))
        assert check_log(store, parse_verifier_key(vkey)).ok
    finally:
        store.close()


def test_progress_reaches_the_total(built):
    config, vkey = built
    seen = []
    store = SqlLogStore(config.resolved_database_url(), read_only=True)
    try:
        check_log(store, parse_verifier_key(vkey), progress=lambda done, total: seen.append((done, total)))
    finally:
        store.close()
    assert seen[-1] == (ENTRIES, ENTRIES) and [done for done, _ in seen] == sorted(done for done, _ in seen)


# --- the start-up check ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [ENTRIES - 1, 1280, 1279, 1024])  # the partial tile 5 and the full tile 4
def test_start_refuses_a_changed_newest_entry(built, index):
    config, _ = built
    (data,), = _sql(config, f"SELECT data FROM entries WHERE idx = {index}")
    _sql(config, f"UPDATE entries SET data = :d WHERE idx = {index}", d=_flip(bytes(data), 0))
    with pytest.raises(StorageError, match=rf"^entry {index} was changed after it was logged"):
        asyncio.run(Log.open(config))


def test_start_refuses_a_changed_newest_leaf_hash(built):
    config, _ = built
    (leaf,), = _sql(config, f"SELECT leaf_hash FROM entries WHERE idx = {ENTRIES - 5}")
    _sql(config, f"UPDATE entries SET leaf_hash = :d WHERE idx = {ENTRIES - 5}", d=_flip(bytes(leaf), 9))
    with pytest.raises(StorageError, match=rf"^the stored leaf hash of entry {ENTRIES - 5} is "):
        asyncio.run(Log.open(config))


def test_start_accepts_a_good_log_and_an_older_change_is_left_to_db_check(built):
    config, _ = built
    (data,), = _sql(config, "SELECT data FROM entries WHERE idx = 10")
    _sql(config, "UPDATE entries SET data = :d WHERE idx = 10", d=_flip(bytes(data), 0))  # outside the newest tiles

    async def reopen():
        log = await Log.open(config)
        try:
            return log.size
        finally:
            await log.close()

    assert asyncio.run(reopen()) == ENTRIES


@pytest.mark.parametrize("size", [1, 255, 256, 257, 511, 512, 513])
def test_start_check_reads_only_the_newest_tiles(tmp_path, size):
    config = LogConfig(data_dir=tmp_path / "data", origin=TEST_ORIGIN, batch_size=BATCH)
    asyncio.run(_build(config, size))
    store = SqlLogStore(config.resolved_database_url())
    try:
        check_newest_entries(store, size)
        first = max(0, ((size - 1) >> 8) - (1 if size % 256 else 0)) << 8
        for index in (first, size - 1):  # the oldest and the newest entry it covers
            with store.engine.begin() as conn:
                (data,), = conn.execute(text(f"SELECT data FROM entries WHERE idx = {index}")).all()
                conn.execute(text(f"UPDATE entries SET data = :d WHERE idx = {index}"), {"d": _flip(bytes(data), 0)})
            with pytest.raises(StorageError, match=rf"^entry {index} "):
                check_newest_entries(store, size)
            with store.engine.begin() as conn:
                conn.execute(text(f"UPDATE entries SET data = :d WHERE idx = {index}"), {"d": bytes(data)})
        if first:
            with store.engine.begin() as conn:
                conn.execute(text(f"UPDATE entries SET data = x'00' WHERE idx = {first - 1}"))
            check_newest_entries(store, size)  # older than the newest tiles: left to db check
    finally:
        store.close()


# --- a log written by the real server ----------------------------------------------------------------------------


def test_db_check_passes_on_a_log_the_server_wrote_and_beside_the_running_server_and_start_refuses_a_change(
        tmp_path, capsys):
    import base64
    import json
    import urllib.request

    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, extra_args=["--batch-max-age-ms", "2"]) as server:
        for round_ in range(3):
            entries = [base64.b64encode(b"round %d entry %d" % (round_, i)).decode() for i in range(300)]
            body = json.dumps({"entries": entries}).encode()
            request = urllib.request.Request(server.url + "/api/v1/entries", data=body, method="POST",
                                             headers={"Content-Type": "application/json", **server.admin})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status in (200, 201)
        beside = subprocess.run([sys.executable, "-m", "api.cli", "db", "check", "--data-dir", str(data_dir)],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        assert beside.returncode == 0, beside.stdout + beside.stderr
        assert "OK: 900 entries" in beside.stdout and "signed by e2e.test/log" in beside.stdout
    config = LogConfig(data_dir=data_dir)
    code, out = _check(config, capsys)
    assert code == 0 and "OK: 900 entries, 5 tiles" in out, out
    # The newest entry changed while the server was down: the next start refuses, naming it; db check agrees.
    (data,), = _sql(config, "SELECT data FROM entries WHERE idx = 899")
    _sql(config, "UPDATE entries SET data = :d WHERE idx = 899", d=_flip(bytes(data), 2))
    code, output = ServerProcess(data_dir).run_to_exit()
    assert code == 1 and "cannot start: entry 899 was changed after it was logged" in output, output
    code, out = _check(config, capsys)
    assert code == 1 and out.startswith("FAILED: entry 899: "), out
