"""The CLI contract (api/cli/exits.py): every command, run as a real process the way a person or a cron job runs
it, against a real log server, exits with the status its situation calls for and says why in one line on stderr,
never a traceback:

    good        0   the command does its job
    down        3   the log (or its database) is unreachable
    bad flag    2   an argument the command does not take
    bad file    2   a local input that cannot be read or parsed, found before anything is downloaded (the server
                    given is down, so a command that went to it first would exit 3 instead)
    tampered    1   the log answers through a proxy that changes the root in every signed checkpoint it passes on,
                    or the local bundle or database was changed

A command without a row for a situation has none (`producer list` verifies nothing; `keygen` talks to no log).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ServerProcess

GOOD, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3


def run(*argv: str, cwd: Path, stdin: bytes = b"", env: dict | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "api.cli", *argv], cwd=cwd, input=stdin, capture_output=True,
                          timeout=120, env=env)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A checkpoint note's size line and root line, in a note as served (real newlines) or inside JSON (escaped).
CHECKPOINT_ROOT = re.compile(rb"((?:\n|\\n)[0-9]+(?:\n|\\n))([A-Za-z0-9+/]{43}=)(?=\n|\\n)")


def _other_root(match: re.Match) -> bytes:
    root = match.group(2)
    return match.group(1) + (b"B" if root[:1] == b"A" else b"A") + root[1:]


class TamperingProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the real log and changes the root of every checkpoint in the answers: a log that
    lies. Anything that believes such a checkpoint has skipped its signature check."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, answer_headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            status, answer_headers, data = exc.code, exc.headers, exc.read()
        data = CHECKPOINT_ROOT.sub(_other_root, data)
        self.send_response(status)
        self.send_header("Content-Type", answer_headers.get("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _forward


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A log server with plain entries and one recorded run, its key in a file, good and tampered bundles."""
    from api.client.recorder import Recorder, generate_key

    root = tmp_path_factory.mktemp("contract")
    server = ServerProcess(root / "data").start()
    proxy = TamperingProxy(server.url)
    vkey = root / "data" / "log.vkey"
    w = {"root": root, "server": server.url, "proxy": proxy.url, "down": f"http://127.0.0.1:{closed_port()}",
         "vkey": str(vkey), "data": str(root / "data")}
    try:
        (root / "entry.txt").write_text("an entry\n")
        for n in range(3):
            assert run("add", str(root / "entry.txt"), "--server", server.url, "--log-key", w["vkey"],
                       cwd=root)[0] == GOOD
        seed, public, key_id = generate_key()
        w["key_id"] = key_id
        w["public"] = base64.b64encode(generate_key()[1]).decode()  # another key, for add-key
        for argv in (["register", "--producer", "agent", "--tenant", "acme"],
                     ["add-key", "--producer", "agent", "--public-key", base64.b64encode(public).decode()]):
            code, out, err = run("producer", *argv, "--server", server.url, "--data-dir", w["data"], cwd=root)
            assert code == GOOD, err
        recorder = Recorder(server.url, producer="agent", signing_key=seed, log_key=vkey.read_text().strip(),
                            tenant="acme", actor={"type": "agent", "id": "agent"})
        with recorder.action("run-1"):
            pass
        w["run"] = "run-1"
        for name, argv in (("entry.json", ["proof", "--evidence", "0", "--out"]),
                           ("run.json", ["timeline", "--run", "run-1", "--evidence"])):
            code, _, err = run(*argv, str(root / name), "--server", server.url, "--log-key", w["vkey"], cwd=root)
            assert code == GOOD, err
            bundle = json.loads((root / name).read_text())
            bundle["origin"] = "evil.example/log"
            (root / f"tampered-{name}").write_text(json.dumps(bundle))
        (root / "not-json.json").write_text("{not json")
        (root / "not-pem.pem").write_text("not a certificate\n")
        shutil.copytree(root / "data", root / "tampered-data", ignore=shutil.ignore_patterns("*.token"))
        with sqlite3.connect(root / "tampered-data" / "auditlog.db") as db:
            db.execute("UPDATE entries SET data = ? WHERE idx = 1", (b"changed\n",))
        code, _, err = run("archive", "--data-dir", w["data"], "--log-key", w["vkey"], "--out",
                           str(root / "world.tar"), cwd=root)
        assert code == GOOD, err
        tampered = bytearray((root / "world.tar").read_bytes())
        tampered[tampered.index(b"an entry")] ^= 0x01
        (root / "tampered.tar").write_bytes(bytes(tampered))
        yield w
    finally:
        proxy.shutdown()
        server.stop()


# (command line, situation, expected status). {server} is the log for a good run, the closed port for `down`, the
# tampering proxy for `tampered`; {down} is the closed port in every situation; {vkey}, {data}, {root}, {run} come
# from the world fixture.
CASES = [
    # add
    ("add {root}/entry.txt --server {server} --log-key {vkey}", "good", GOOD),
    ("add {root}/entry.txt --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("add {root}/entry.txt --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("add {root}/missing.txt --server {server} --log-key {vkey}", "bad file", USAGE),
    ("add {root}/entry.txt --server {server} --log-key {root}/missing.vkey", "bad file", USAGE),
    ("add {root}/entry.txt --server {server} --log-key {vkey}", "tampered", FAILED),
    # proof
    ("proof --index 1 --server {server} --log-key {vkey}", "good", GOOD),
    ("proof --index 1 --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("proof --index 1 --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("proof --index 1 --server {server} --log-key {root}/not-pem.pem", "bad file", USAGE),
    ("proof --index 1 --server {server} --log-key {vkey}", "tampered", FAILED),
    ("proof --index 1000000 --server {server} --log-key {vkey}", "good", USAGE),  # not in the log
    ("proof --evidence 1 --out {root}/e1.json --server {server} --log-key {vkey}", "good", GOOD),
    ("proof --evidence 1 --out {root}/e1.json --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("proof --evidence 1 --out {root}/no-dir/e1.json --server {server} --log-key {vkey}", "bad file", USAGE),
    ("proof --evidence 1 --out {root}/e2.json --server {server} --log-key {vkey}", "tampered", FAILED),
    # verify
    ("verify --server {server} --log-key {vkey} --state {root}/state.json", "good", GOOD),
    ("verify --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("verify --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("verify --server {server} --log-key {vkey} --tsa-ca {root}/not-pem.pem", "bad file", USAGE),
    ("verify --server {server} --log-key {vkey} --tsa-ca {root}/missing.pem", "bad file", USAGE),
    ("verify --server {server} --log-key {vkey} --witness-key {root}/missing.vkey", "bad file", USAGE),
    ("verify --server {server} --log-key {vkey} --ca-cert {root}/missing.pem", "bad file", USAGE),
    ("verify --server {server} --log-key {vkey}", "tampered", FAILED),
    # several servers of one log: the first down, the second answers; a bad URL among them is named
    ("verify --server {down},{server} --log-key {vkey}", "good", GOOD),
    ("add {root}/entry.txt --server {down} --server {server} --log-key {vkey}", "good", GOOD),
    ("producer list --server {down},{server}", "good", GOOD),
    ("verify --server {server},htp://typo --log-key {vkey}", "bad flag", USAGE),
    # verify-evidence (offline: no server)
    ("verify-evidence {root}/entry.json --log-key {vkey}", "good", GOOD),
    ("verify-evidence {root}/run.json --log-key {vkey}", "good", GOOD),
    ("verify-evidence {root}/entry.json --log-key {vkey} --bogus", "bad flag", USAGE),
    ("verify-evidence {root}/missing.json --log-key {vkey}", "bad file", USAGE),
    ("verify-evidence {root}/not-json.json --log-key {vkey}", "bad file", USAGE),
    ("verify-evidence {root}/entry.json --log-key {vkey} --tsa-ca {root}/not-pem.pem", "bad file", USAGE),
    ("verify-evidence {root}/tampered-entry.json --log-key {vkey}", "tampered", FAILED),
    ("verify-evidence {root}/tampered-run.json --log-key {vkey}", "tampered", FAILED),
    # timeline
    ("timeline --run {run} --server {server} --log-key {vkey}", "good", GOOD),
    ("timeline --run {run} --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("timeline --run {run} --server {server} --bogus", "bad flag", USAGE),
    ("timeline --run {run} --server {server} --log-key {root}/missing.vkey", "bad file", USAGE),
    ("timeline --run {run} --server {server} --log-key {vkey}", "tampered", FAILED),
    ("timeline --run no-such-run --server {server} --log-key {vkey}", "good", USAGE),
    ("timeline --run {run} --evidence {root}/r1.json --server {server} --log-key {vkey}", "good", GOOD),
    ("timeline --run {run} --evidence {root}/r1.json --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("timeline --run {run} --evidence {root}/no-dir/r.json --server {server} --log-key {vkey}", "bad file", USAGE),
    ("timeline --run {run} --evidence {root}/r2.json --server {server} --log-key {vkey}", "tampered", FAILED),
    # events, get
    ("events --run {run} --server {server} --log-key {vkey}", "good", GOOD),
    ("events --run {run} --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("events --run {run} --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("events --run {run} --server {server} --log-key {root}/missing.vkey", "bad file", USAGE),
    ("events --run {run} --server {server} --log-key {vkey}", "tampered", FAILED),
    ("get 1 --server {server} --log-key {vkey}", "good", GOOD),
    ("get 1000000 --server {server} --log-key {vkey}", "good", USAGE),
    ("get 1 --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("get 1 --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("get 1 --out {root}/no-dir/e --server {server} --log-key {vkey}", "bad file", USAGE),
    ("get 1 --server {server} --log-key {vkey}", "tampered", FAILED),
    # access-log (admin only: the data dir's admin token lists; a wrong credential is refused, 401)
    ("access-log --server {server} --data-dir {data}", "good", GOOD),
    ("access-log --server {server} --data-dir {data} --what entry --since 1d --json", "good", GOOD),
    ("access-log --server {server} --token wrong", "good", USAGE),
    ("access-log --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("access-log --server {server} --bogus", "bad flag", USAGE),
    ("access-log --server {server} --ca-cert {root}/missing.pem --data-dir {data}", "bad file", USAGE),
    ("access-log --server {server} --ca-cert {root}/not-pem.pem --data-dir {data}", "bad file", USAGE),
    # report (the server verifies and renders; the command writes the file and exits 1 on an INVALID chain)
    ("report --tenant acme --from 2020-01-01 --to 2100-01-01 --format json --out {root}/r.json --server {server} "
     "--data-dir {data}", "good", GOOD),
    ("report --tenant acme --from 2020-01-01 --to 2100-01-01 --out {root}/r.html --server {server} --data-dir {data}",
     "down", UNREACHABLE),
    ("report --tenant acme --from 2020-01-01 --to 2100-01-01 --out {root}/r.html --server {server} --bogus",
     "bad flag", USAGE),
    ("report --tenant acme --from yesterday --to 2100-01-01 --out {root}/r.html --server {server}", "bad flag", USAGE),
    ("report --tenant acme --from 2020-01-01 --to 2100-01-01 --out {root}/no-dir/r.html --server {server}",
     "bad file", USAGE),
    ("report --tenant acme --from 2020-01-01 --to 2100-01-01 --out {root}/r.html --server {server} --token wrong",
     "good", USAGE),
    # producer
    ("producer list --server {server}", "good", GOOD),
    ("producer list --server {server}", "down", UNREACHABLE),
    ("producer list --server {server} --bogus", "bad flag", USAGE),
    ("producer register --producer p2 --tenant acme --server {server} --data-dir {data}", "good", GOOD),
    ("producer register --producer p3 --tenant acme --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("producer register --producer p4 --tenant acme --server {server} --data-dir {root}/missing", "bad file", USAGE),
    ("producer register --producer p5 --tenant acme --server {server} --token wrong", "good", USAGE),
    ("producer add-key --producer p2 --public-key {public} --server {server} --data-dir {data}", "good", GOOD),
    ("producer add-key --producer p2 --public-key {public} --server {server} --data-dir {data}", "down",
     UNREACHABLE),
    ("producer add-key --producer p2 --public-key not-base64 --server {server} --data-dir {data}", "good", USAGE),
    ("producer retire-key --producer agent --key-id {key_id} --server {server} --data-dir {data}", "down",
     UNREACHABLE),
    ("producer retire-key --producer agent --key-id no-such-key --server {server} --data-dir {data}", "good", USAGE),
    ("producer revoke-key --producer agent --key-id {key_id} --server {server} --data-dir {data}", "down",
     UNREACHABLE),
    ("producer revoke-key --producer agent --key-id {key_id} --server {server} --bogus", "bad flag", USAGE),
    ("producer keygen --out {root}/p.seed", "good", GOOD),
    ("producer keygen --out {root}/no-dir/p.seed", "bad file", USAGE),
    # token
    ("token create --role monitor --server {server} --data-dir {data}", "good", GOOD),
    ("token create --role auditor --server {server} --data-dir {data}", "good", USAGE),  # an auditor names tenants
    ("token create --role monitor --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("token create --role monitor --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("token create --role monitor --server {server} --data-dir {root}/missing", "bad file", USAGE),
    ("token list --server {server} --data-dir {data}", "good", GOOD),
    ("token list --server {server} --token wrong", "good", USAGE),
    ("token list --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("token list --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("token list --server {server} --data-dir {root}/missing", "bad file", USAGE),
    ("token revoke 0123456789abcdef --server {server} --data-dir {data}", "good", USAGE),  # no such token
    ("token revoke not-a-token --server {server} --data-dir {data}", "good", USAGE),
    ("token revoke 0123456789abcdef --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("token revoke 0123456789abcdef --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("token revoke 0123456789abcdef --server {server} --data-dir {root}/missing", "bad file", USAGE),
    # retention (admin; a policy that keeps ten years: nothing of the world is due)
    ("retention policy set --tenant acme --class event --selector * --days 3650 --reason r --server {server} "
     "--data-dir {data}", "good", GOOD),
    ("retention policy set --tenant acme --class event --selector nope --days 1 --reason r --server {server} "
     "--data-dir {data}", "good", USAGE),
    ("retention policy set --tenant acme --class event --selector * --days 1 --reason r --server {server} "
     "--data-dir {data}", "down", UNREACHABLE),
    ("retention policy set --tenant acme --class event --selector * --days x --reason r --server {server} "
     "--data-dir {data}", "bad flag", USAGE),
    ("retention policy list --server {server} --data-dir {data}", "good", GOOD),
    ("retention policy list --server {server} --token wrong", "good", USAGE),
    ("retention policy list --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("retention policy list --server {server} --data-dir {root}/missing", "bad file", USAGE),
    ("retention run --tenant acme --server {server} --data-dir {data}", "good", GOOD),
    ("retention run --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("retention run --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("retention runs --server {server} --data-dir {data}", "good", GOOD),
    ("retention runs --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("retention runs --server {server} --data-dir {root}/missing", "bad file", USAGE),
    # vault (the data dir's admin token tokenises; detokenising is a vault-reader's alone: an admin is refused, 403)
    ("vault tokenize --tenant acme --subject cust-1 alice@example.com --server {server} --data-dir {data}", "good",
     GOOD),
    ("vault tokenize --tenant acme --subject cust-1 alice --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("vault tokenize --tenant acme --subject cust-1 alice --server {server} --bogus", "bad flag", USAGE),
    ("vault tokenize --tenant acme --subject cust-1 alice --server {server} --data-dir {root}/missing", "bad file",
     USAGE),
    ("vault detokenize --tenant acme --purpose audit vt.aaaaaaaaaaaaaaaaaaaaaaaaaa --server {server} "
     "--data-dir {data}", "good", USAGE),
    ("vault detokenize --tenant acme vt.aaaaaaaaaaaaaaaaaaaaaaaaaa --server {server} --data-dir {data}", "bad flag",
     USAGE),  # no --purpose
    ("vault detokenize --tenant acme --purpose audit vt.aaaaaaaaaaaaaaaaaaaaaaaaaa --server {server} --token t",
     "down", UNREACHABLE),
    # hold, subject (admin; a hold is placed and released by the data dir's admin token)
    ("hold place --tenant acme --run run-1 --reason litigation --reference case-17 --server {server} --data-dir {data}",
     "good", GOOD),
    ("hold place --tenant acme --context case_id --reason r --reference c --server {server} --data-dir {data}", "good",
     USAGE),  # NAME=VALUE, refused before anything is sent
    ("hold place --tenant acme --reason r --reference c --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("hold place --tenant acme --reason r --reference c --server {server} --data-dir {data} --bogus", "bad flag",
     USAGE),
    ("hold place --tenant acme --reason r --reference c --server {server} --data-dir {root}/missing", "bad file",
     USAGE),
    ("hold list --server {server} --data-dir {data}", "good", GOOD),
    ("hold list --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("hold list --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("hold release 0123456789abcdef --reason done --server {server} --data-dir {data}", "good", USAGE),  # no such hold
    ("hold release 0123456789abcdef --reason done --server {server} --data-dir {data}", "down", UNREACHABLE),
    ("hold release 0123456789abcdef --reason done --server {server} --data-dir {data} --bogus", "bad flag", USAGE),
    ("subject erase --tenant acme --subject customer-7 --reason dsr-31 --server {server} --data-dir {data}", "good",
     GOOD),
    ("subject erase --tenant acme --subject customer-7 --reason dsr-31 --server {server} --data-dir {data}", "down",
     UNREACHABLE),
    ("subject erase --tenant acme --subject c --reason r --server {server} --data-dir {data} --bogus", "bad flag",
     USAGE),
    ("subject access --tenant acme --subject customer-8 --out {root}/s.json --server {server} --data-dir {data} "
     "--log-key {vkey}", "good", USAGE),  # nothing carries its tokens: 404
    ("subject access --tenant acme --subject c --out {root}/s.json --server {server} --data-dir {data} "
     "--log-key {vkey}", "down", UNREACHABLE),
    ("subject access --tenant acme --subject c --out {root}/no-dir/s.json --server {server} --data-dir {data} "
     "--log-key {vkey}", "bad file", USAGE),
    ("subject access --tenant acme --subject c --out {root}/s.json --server {server} --data-dir {data} --bogus",
     "bad flag", USAGE),
    # drill (client-side, as an auditor; the data dir's admin token here): run-1 verifies and is complete
    ("drill --tenant acme --runs 1 --seed 1 --server {server} --log-key {vkey}", "good", GOOD),
    ("drill --tenant nobody --runs 1 --server {server} --log-key {vkey}", "good", USAGE),  # no events of the tenant
    ("drill --tenant acme --runs 1 --server {server} --log-key {vkey}", "down", UNREACHABLE),
    ("drill --tenant acme --runs 0 --server {server} --log-key {vkey}", "bad flag", USAGE),
    ("drill --tenant acme --runs 1 --server {server} --log-key {vkey} --bogus", "bad flag", USAGE),
    ("drill --tenant acme --runs 1 --server {server} --log-key {root}/missing.vkey", "bad file", USAGE),
    ("drill --tenant acme --runs 1 --server {server} --log-key {vkey}", "tampered", FAILED),
    # keygen, db
    ("keygen --origin example.com/log --out {root}/keys/log.key", "good", GOOD),
    ("keygen --origin example.com/log --out {root}/data/log.key", "bad file", USAGE),  # exists: never overwritten
    ("keygen --bogus", "bad flag", USAGE),
    ("db check --data-dir {data}", "good", GOOD),
    ("db check --database-url postgresql+psycopg://postgres@127.0.0.1:{port}/x --log-key {vkey}", "down",
     UNREACHABLE),
    ("db check --data-dir {data} --bogus", "bad flag", USAGE),
    ("db check --data-dir {root}/missing-data --log-key {vkey}", "bad file", USAGE),
    ("db check --data-dir {root}/tampered-data --log-key {vkey}", "tampered", FAILED),
    ("db copy --from sqlite:///{data}/auditlog.db --to sqlite:///{root}/copy.db --log-key {vkey}", "good", GOOD),
    ("db copy --from sqlite:///{data}/auditlog.db --to postgresql+psycopg://postgres@127.0.0.1:{port}/x "
     "--log-key {vkey}", "down", UNREACHABLE),
    ("db copy --from sqlite:///{data}/auditlog.db --to sqlite:///{root}/copy.db --bogus", "bad flag", USAGE),
    ("db copy --from sqlite:///{root}/missing.db --to sqlite:///{root}/copy-m.db --log-key {vkey}", "bad file",
     USAGE),
    ("db copy --from sqlite:///{data}/auditlog.db --to sqlite:///{root}/tampered-data/auditlog.db --log-key {vkey}",
     "bad file", USAGE),  # the destination is not empty
    ("db copy --from sqlite:///{root}/tampered-data/auditlog.db --to sqlite:///{root}/copy-t.db --log-key {vkey}",
     "tampered", FAILED),
    ("db upgrade --data-dir {root}/new-data", "good", GOOD),
    ("db upgrade --database-url postgresql+psycopg://postgres@127.0.0.1:{port}/x", "down", UNREACHABLE),
    ("db upgrade --database-url postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database_auditlog",
     "bad file", USAGE),
    ("db upgrade --bogus", "bad flag", USAGE),
    # archive: written from the database (read-only, beside the live server), verified offline
    ("archive --data-dir {data} --log-key {vkey} --out {root}/a.tar", "good", GOOD),
    ("archive --database-url postgresql+psycopg://postgres@127.0.0.1:{port}/x --log-key {vkey} --out {root}/b.tar",
     "down", UNREACHABLE),
    ("archive --data-dir {data} --out {root}/c.tar --bogus", "bad flag", USAGE),
    ("archive --data-dir {root}/missing-data --log-key {vkey} --out {root}/d.tar", "bad file", USAGE),
    ("archive --data-dir {root}/tampered-data --log-key {vkey} --out {root}/e.tar", "tampered", FAILED),
    ("archive verify {root}/world.tar --log-key {vkey}", "good", GOOD),
    ("archive verify {root}/world.tar --log-key {vkey} --bogus", "bad flag", USAGE),
    ("archive verify {root}/missing.tar --log-key {vkey}", "bad file", USAGE),
    ("archive verify {root}/tampered.tar --log-key {vkey}", "tampered", FAILED),
    ("serve --archive {root}/missing.tar --port 0 --data-dir {root}/s4", "bad file", USAGE),
    ("serve --archive {root}/tampered.tar --port 0 --data-dir {root}/s5", "tampered", FAILED),
    # serve (the refusals: a running server is the world fixture itself)
    ("serve --port 0 --data-dir {root}/s1 --database-url postgresql+psycopg://postgres@127.0.0.1:{port}/x", "down",
     UNREACHABLE),
    ("serve --bogus", "bad flag", USAGE),
    # --read-database-url: a PostgreSQL hot standby beside a PostgreSQL primary only, refused before anything starts
    ("serve --port 0 --data-dir {root}/s2 --read-database-url postgresql://postgres@127.0.0.1:{port}/x", "bad flag",
     USAGE),
    ("serve --port 0 --data-dir {root}/s3 --database-url postgresql://postgres@127.0.0.1:{port}/x "
     "--read-database-url sqlite:///{root}/s3/copy.db", "bad flag", USAGE),
    ("serve --port 0 --data-dir {root}/tampered-data", "tampered", FAILED),
    ("witness serve --bogus", "bad flag", USAGE),
    ("witness serve --port 0 --data-dir {root}/w1 --name w.example/w1", "bad file", USAGE),  # no trusted log
    ("tsa serve --bogus", "bad flag", USAGE),
]


def _command_of(line: str) -> str:
    words = []
    for word in line.split():
        if not re.fullmatch(r"[a-z][a-z-]*", word):  # a flag, a file, an index: the command's name has ended
            break
        words.append(word)
    return " ".join(words)


@pytest.mark.parametrize("line,situation,expected", CASES, ids=[f"{_command_of(c[0])} [{c[1]}]" for c in CASES])
def test_every_command_exits_with_the_status_of_its_situation_and_one_line(world, line, situation, expected):
    server = {"down": world["down"], "bad file": world["down"], "tampered": world["proxy"]}.get(situation,
                                                                                               world["server"])
    argv = line.format(server=server, port=closed_port(), **{k: v for k, v in world.items() if k != "server"})
    code, out, err = run(*argv.split(), cwd=world["root"])
    assert "Traceback" not in err + out
    assert code == expected, f"{argv}\nexit {code}\nstdout: {out}\nstderr: {err}"
    lines = [text for text in err.splitlines() if text.strip()]
    if code != GOOD:
        # The failure is said in one line that names the command; lines before it are notes, with the same prefix.
        assert lines and all(text.startswith("auditlog") for text in lines), err
        assert len(lines) <= 3, err


def test_every_command_has_a_row_for_each_situation_it_can_meet():
    """A new command must join the contract: each leaf command of the parser appears in CASES."""
    from api.cli.main import build_parser

    def leaves(parser, prefix=()):
        found = []
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    found += leaves(sub, prefix + (name,)) or [" ".join(prefix + (name,))]
        return found

    covered = {_command_of(line) for line, _, _ in CASES}
    internal = {"serve-reads"}  # started by serve itself
    missing = [cmd for cmd in leaves(build_parser()) if cmd not in covered | internal]
    assert not missing, f"commands without contract rows: {missing}"


def test_debug_shows_the_traceback_and_an_unexpected_error_says_it_is_a_bug(tmp_path, monkeypatch, capsys):
    from api.cli import client
    from api.cli.main import main

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(client, "cmd_add", broken)
    assert main(["add", "x"]) == 70
    err = capsys.readouterr().err
    assert "auditlog add: internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err
    assert "--debug" in err
    assert main(["add", "x", "--debug"]) == 70
    assert "Traceback" in capsys.readouterr().err
