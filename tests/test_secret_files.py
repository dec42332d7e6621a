"""log/secret_files.py: 0600 whatever the umask, never overwriting, no partial file, file and directory fsynced."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from log import secret_files
from log.disk import fsync_directory
from log.secret_files import write_secret_file


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_mode_is_0600_even_under_a_permissive_umask(tmp_path, permissive_umask):
    path = tmp_path / "key"
    write_secret_file(path, b"secret")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"secret"


def test_str_is_written_as_utf8_verbatim(tmp_path):
    path = tmp_path / "token"
    write_secret_file(path, "PRIVATE+KEY+é\n")
    assert path.read_bytes() == "PRIVATE+KEY+é\n".encode()


def test_refuses_to_overwrite_an_existing_file(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    with pytest.raises(FileExistsError):
        write_secret_file(path, b"new")
    assert path.read_bytes() == b"old"
    assert _mode(path) == 0o644


def test_of_two_racing_writers_exactly_one_wins(tmp_path):
    path = tmp_path / "key"
    barrier = threading.Barrier(8)
    outcomes = []

    def write(i: int) -> None:
        barrier.wait()
        try:
            write_secret_file(path, f"writer {i}")
            outcomes.append(i)
        except FileExistsError:
            outcomes.append(None)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1 and len(outcomes) == 8
    assert path.read_text() == f"writer {winners[0]}"


def test_missing_parent_raises_unless_asked_to_make_it(tmp_path):
    path = tmp_path / "a" / "b" / "key"
    with pytest.raises(FileNotFoundError):
        write_secret_file(path, b"x")
    write_secret_file(path, b"x", make_parents=True)
    assert path.read_bytes() == b"x"
    assert _mode(path) == 0o600


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "key"
    real_write = os.write

    def short_then_fail(fd, data):
        if len(data) > 3:
            return real_write(fd, bytes(data[:3]))  # a short write: the helper must loop ...
        raise OSError(28, "No space left on device")  # ... and then the disk fills

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_secret_file(path, b"0123456789")
    assert not path.exists()


def test_a_failed_fsync_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "key"

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_secret_file(path, b"secret")
    assert not path.exists()


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:2])))
    path = tmp_path / "key"
    write_secret_file(path, b"0123456789")
    assert path.read_bytes() == b"0123456789"


def _record_fsyncs(monkeypatch) -> list[tuple[str, str]]:
    """Record each fsync as (kind, path) where kind is 'file' or 'dir', resolved from the fd before syncing."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        synced.append((kind, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name the fsynced fds")
def test_the_file_then_its_directory_are_fsynced(tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    path = tmp_path / "key"
    write_secret_file(path, b"secret")
    assert synced == [("file", str(path)), ("dir", str(tmp_path))]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name the fsynced fds")
def test_new_parent_directories_are_fsynced_into_their_parents(tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    path = tmp_path / "a" / "b" / "key"
    write_secret_file(path, b"secret", make_parents=True)
    assert synced == [
        ("dir", str(tmp_path)),           # the name "a"
        ("dir", str(tmp_path / "a")),     # the name "b"
        ("file", str(path)),
        ("dir", str(tmp_path / "a" / "b")),  # the name "key"
    ]


def test_fsync_directory_syncs_the_directory(tmp_path, monkeypatch):
    seen = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    fsync_directory(tmp_path)
    assert seen == [True]


def test_fsync_directory_raises_where_it_cannot_open_the_directory_unless_best_effort(tmp_path, monkeypatch):
    """Blobs and the signed history must not acknowledge a name they could not make durable; a secret file, already
    written and synced, is kept rather than failed over its name alone."""
    def refuse(path, flags, *args):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError):
        fsync_directory(tmp_path)
    fsync_directory(tmp_path, best_effort=True)


def test_the_callers_use_the_one_writer():
    """The five places that write secrets go through write_secret_file (no private O_EXCL copies left)."""
    import inspect

    import api.cli.audit
    import log.audit.admin
    import log.keys
    import witness.cli
    import witness.tsa

    for module in (log.keys, log.audit.admin, api.cli.audit, witness.cli, witness.tsa):
        source = inspect.getsource(module)
        assert "O_EXCL" not in source, module.__name__
        assert "write_secret_file" in source, module.__name__
    assert secret_files.SECRET_FILE_MODE == 0o600


# -- the callers keep what they did: their file, its newline, 0600, never overwriting ---------------------------------
def test_admin_token_is_made_once_0600_with_a_trailing_newline(tmp_path, permissive_umask, monkeypatch):
    from log.audit.admin import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE, load_or_create_admin_token

    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    token, created = load_or_create_admin_token(tmp_path / "data")
    path = tmp_path / "data" / ADMIN_TOKEN_FILE
    assert created and path.read_text() == token + "\n" and _mode(path) == 0o600
    assert load_or_create_admin_token(tmp_path / "data") == (token, False)


def test_producer_keygen_writes_a_0600_seed_and_never_overwrites(tmp_path, permissive_umask, capsys):
    import base64

    from api.cli.main import main

    out = tmp_path / "producer.seed"
    assert main(["producer", "keygen", "--out", str(out)]) == 0
    assert f"secret seed written to {out}" in capsys.readouterr().out
    text = out.read_text()
    assert text.endswith("\n") and len(base64.b64decode(text)) == 32 and _mode(out) == 0o600
    assert main(["producer", "keygen", "--out", str(out)]) == 2  # refused: a local input error
    assert "File exists" in capsys.readouterr().err
    assert out.read_text() == text


def test_a_made_admin_token_never_starts_with_a_dash(tmp_path, monkeypatch):
    """`auditlog verify --token -x...` would read the token as a flag: a draw starting with '-' is drawn again."""
    import secrets

    from log.audit.admin import load_or_create_admin_token

    monkeypatch.delenv("AUDITLOG_ADMIN_TOKEN", raising=False)
    draws = iter(["-starts-with-a-dash-0123456789abcdef", "fine-token-0123456789abcdef0123"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(draws))
    token, created = load_or_create_admin_token(tmp_path)
    assert created and token == "fine-token-0123456789abcdef0123"
