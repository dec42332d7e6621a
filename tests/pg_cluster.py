"""A private PostgreSQL cluster in a temporary directory, for tests that stop, restart or crash the server or that need
a streaming replica: the shared server at 127.0.0.1:5432 is never touched, nor reconfigured.

Made with Debian's tools (/usr/lib/postgresql/<version>/bin: initdb, pg_ctl), run as the `postgres` user since they
refuse root; the directory belongs to that user. It listens on 127.0.0.1 at a free port, with its socket in its own
directory, and accepts local connections without a password (trust).

`streaming_replica()` makes two: a primary (wal_level=replica, WAL senders, replication connections from 127.0.0.1
trusted) and a hot standby on its own port, made from it with `pg_basebackup -R -X stream`, which streams and
replays the primary's WAL until both are torn down.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl, if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [p for p in found if (p / "pg_ctl").exists()]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """One cluster: `start()`, `stop(mode)` ("fast": sessions ended, a clean shutdown; "immediate": a crash, WAL
    recovery at the next start), `restart(mode)`, `create_database()` (a SQLAlchemy-ready URL), `close()`.

    `settings`: more server settings, given at every start (`-c name=value`). `base_backup_of`: a running cluster to
    copy (pg_basebackup -R: the copy starts as its streaming standby) instead of a new one made with initdb."""

    def __init__(self, settings: dict[str, str] | None = None, *, base_backup_of: "PrivateCluster | None" = None):
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server tools under /usr/lib/postgresql/*/bin")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="auditlog-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_file = self.root / "server.log"
        self.port = _free_port()
        self.socket_dir.mkdir()
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.socket_dir, "postgres", "postgres")
        self.settings = dict(settings or {})
        if base_backup_of is not None:
            # --checkpoint=fast: the backup starts at once, not after a spread checkpoint on the primary.
            self._as_postgres("pg_basebackup", "-R", "-D", str(self.data), "-h", "127.0.0.1",
                              "-p", str(base_backup_of.port), "-U", "postgres", "-X", "stream",
                              "--checkpoint=fast", "--no-sync")
        else:
            self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                              "-E", "UTF8", "--locale", "C")

    def _as_postgres(self, tool: str, *args: str, timeout: float = 120) -> str:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=60 "
                   "-c shared_buffers=32MB")
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._as_postgres("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "60",
                          "-o", options)
        self.wait_reachable()

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def wait_reachable(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def allow_replication_from_loopback(self) -> None:
        """Trust replication connections from 127.0.0.1 (pg_hba.conf), read at the next start or reload."""
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("\nhost replication all 127.0.0.1/32 trust\n")

    def url(self, database: str = "auditlog") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str = "auditlog") -> str:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster():
    """A started PrivateCluster, stopped and removed afterwards."""
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


class StreamingReplica:
    """A primary PrivateCluster and a hot standby streaming from it, each on its own port. `standby` is read-only;
    `pause_replay()` / `resume_replay()` stop and restart the standby's replay of what it has received (it keeps
    receiving), and `wait_replayed()` returns once the standby has replayed everything the primary has written."""

    def __init__(self, primary: PrivateCluster, standby: PrivateCluster):
        self.primary = primary
        self.standby = standby

    def _on_standby(self, sql: str):
        with psycopg.connect(self.standby.admin_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql).fetchone()

    def pause_replay(self) -> None:
        self._on_standby("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 30
        while self._on_standby("SELECT pg_get_wal_replay_pause_state()")[0] != "paused":
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not pause its replay")
            time.sleep(0.02)

    def resume_replay(self) -> None:
        self._on_standby("SELECT pg_wal_replay_resume()")

    def wait_replayed(self, timeout: float = 30) -> None:
        with psycopg.connect(self.primary.admin_url, autocommit=True, connect_timeout=5) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        while not self._on_standby(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby did not replay up to {target} in {timeout} s")
            time.sleep(0.02)


@contextlib.contextmanager
def streaming_replica():
    """A started StreamingReplica (primary and hot standby), both stopped and removed afterwards."""
    primary = PrivateCluster({"wal_level": "replica", "max_wal_senders": "4"})
    standby = None
    try:
        primary.allow_replication_from_loopback()
        primary.start()
        standby = PrivateCluster({"hot_standby": "on"}, base_backup_of=primary)
        standby.start()
        yield StreamingReplica(primary, standby)
    finally:
        if standby is not None:
            standby.close()
        primary.close()
