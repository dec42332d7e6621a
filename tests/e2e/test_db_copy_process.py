"""Moving a log with `auditlog db copy`, SQLite -> PostgreSQL -> SQLite, between real `auditlog serve` processes.

The log is witnessed (a real `auditlog witness serve`) and timestamped (a real `auditlog tsa serve`), holds entries
over several tiles, signed audit events and access-log records. After each copy a server started on the copy with
the same data dir serves it, `auditlog verify` with the witness key and the TSA certificate passes, and the copy
takes new entries, cosignatures, timestamps and access-log records (the ids PostgreSQL's sequences give are past the
copied ones). Every table holds the same rows as the source. A copy onto the non-empty database is refused.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from api.cli.main import main
from api.client.recorder import Recorder, generate_key
from log.storage.copy import NOT_COPIED
from log.storage.engine import normalize_database_url, sqlite_url_for
from tests.credentials import ADMIN
from tests.e2e.test_witnessed_log import Command, add, get, wait_for
from tests.postgres import fresh_database
from tests.processes import ServerProcess

pytestmark = pytest.mark.usefixtures("operator_token")

ORIGIN = "e2e.test/log"  # ServerProcess's --origin


@pytest.fixture
def cli(capsys):
    """`auditlog ARGS...` in this process (a subprocess per command costs seconds here; tests/test_cli_contract.py
    runs `db copy` as one): (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def rows_by_table(url: str) -> dict[str, int]:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            return {table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                    for table in sa.inspect(conn).get_table_names() if table not in NOT_COPIED}
    finally:
        engine.dispose()


def size_of(server: ServerProcess) -> int:
    return int(get(server.url + "/checkpoint")[2].split(b"\n")[1])


def read_entry(server: ServerProcess, index: int) -> None:
    with urllib.request.urlopen(urllib.request.Request(f"{server.url}/api/v1/entries/{index}", headers=ADMIN),
                                timeout=10) as response:
        assert response.status == 200


def test_a_log_moved_to_postgresql_and_back_is_served_verified_and_appended_to(tmp_path, processes, cli):
    data = tmp_path / "log"
    code, out, err = cli("keygen", "--origin", ORIGIN, "--out", str(data / "log.key"))
    assert code == 0, err
    log_vkey = (data / "log.vkey").read_text().strip()
    tsa = Command(tmp_path / "tsa", None, argv=["tsa", "serve", "--port", "0", "--data-dir", str(tmp_path / "tsa")])
    witness = Command(tmp_path / "w1", None, argv=["witness", "serve", "--port", "0", "--data-dir",
                                                   str(tmp_path / "w1"), "--name", "witness.test/w1", "--log", log_vkey])
    processes += [tsa, witness]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: p.start(), [tsa, witness]))
    witness_vkey = (tmp_path / "w1" / "witness-ed25519.vkey").read_text().strip()
    tsa_ca = str(tmp_path / "tsa" / "tsa-ca.pem")
    flags = ["--witness", f"{witness.url} {witness_vkey}", "--witness-interval", "0.2", "--tsa-url", tsa.url,
             "--tsa-ca", tsa_ca, "--timestamp-interval", "0.3"]
    verify = ["verify", "--log-key", log_vkey, "--witness-key", witness_vkey, "--tsa-ca", tsa_ca, "--quiet"]

    def witnessed_and_stamped(server: ServerProcess, size: int):
        def done():
            status, _, body = get(server.url + "/api/v1/timestamps/latest")
            return status == 200 and json.loads(body)["tree_size"] == size
        wait_for(f"the checkpoint of size {size} cosigned and timestamped", done)

    def serve(database_url: str | None) -> ServerProcess:
        server = ServerProcess(data, database_url, flags)
        processes.append(server)
        return server.start()

    # -- the log on SQLite: entries over several tiles, signed audit events, access-log records ------------------
    source = serve(None)
    for start in range(0, 600, 200):
        add(source.url, [f"entry {i}".encode() for i in range(start, start + 200)])
    seed, public, _ = generate_key()
    for argv in (["register", "--producer", "agent", "--tenant", "acme"],
                 ["add-key", "--producer", "agent", "--public-key", base64.b64encode(public).decode()]):
        code, out, err = cli("producer", *argv, "--server", source.url, "--data-dir", str(data))
        assert code == 0, err
    recorder = Recorder(source.url, producer="agent", signing_key=seed, log_key=log_vkey, tenant="acme",
                        actor={"type": "agent", "id": "agent"})
    with recorder.action("run-1"):
        pass
    recorder.close()
    for index in (1, 2, 3):
        read_entry(source, index)
    size = size_of(source)
    assert size > 600
    witnessed_and_stamped(source, size)
    source.stop()  # the access log is flushed on the way out
    sqlite_source = sqlite_url_for(data / "auditlog.db")
    source_rows = rows_by_table(sqlite_source)
    for table in ("entries", "tiles", "checkpoints", "audit_events", "audit_registry", "checkpoint_cosignatures",
                  "timestamps", "access_log"):
        assert source_rows[table] > 0, table

    with fresh_database() as postgres:
        # -- SQLite -> PostgreSQL --------------------------------------------------------------------------------
        code, out, err = cli("db", "copy", "--from", sqlite_source, "--to", postgres, "--data-dir", str(data))
        assert code == 0, err
        assert out.startswith(f"OK: copied {size:,} entries") and f"signed by {ORIGIN}" in out, out
        assert rows_by_table(postgres) == source_rows

        moved = serve(postgres)
        code, out, err = cli(*verify, "--server", moved.url)
        assert code == 0, out + err
        assert f"Verified {size} entries" in out and "cosigned by 1 of 1 witnesses" in out, out
        add(moved.url, [f"after the move {i}".encode() for i in range(300)])
        read_entry(moved, size + 1)
        grown = size_of(moved)
        assert grown == size + 300
        witnessed_and_stamped(moved, grown)  # the witness takes the copy's checkpoints as consistent with its own
        code, out, err = cli(*verify, "--server", moved.url)
        assert code == 0 and f"Verified {grown} entries" in out, out + err
        moved.stop()
        moved_rows = rows_by_table(postgres)
        assert moved_rows["entries"] == grown
        assert moved_rows["access_log"] > source_rows["access_log"]  # ids from the sequence, past the copied ones
        assert moved_rows["timestamps"] > source_rows["timestamps"]

        # -- a copy onto the non-empty database is refused, naming what it holds ---------------------------------
        code, out, err = cli("db", "copy", "--from", sqlite_source, "--to", postgres, "--data-dir", str(data))
        assert code == 2 and "is not empty" in err and f"entries {grown:,} rows" in err, err
        assert rows_by_table(postgres) == moved_rows

        # -- PostgreSQL -> SQLite --------------------------------------------------------------------------------
        back = sqlite_url_for(tmp_path / "back" / "auditlog.db")
        code, out, err = cli("db", "copy", "--from", postgres, "--to", back, "--data-dir", str(data))
        assert code == 0 and out.startswith(f"OK: copied {grown:,} entries"), err
        assert rows_by_table(back) == moved_rows

    returned = serve(back)
    code, out, err = cli(*verify, "--server", returned.url)
    assert code == 0 and f"Verified {grown} entries" in out, out + err
    add(returned.url, [b"back on SQLite"])
    assert size_of(returned) == grown + 1
    returned.stop()
