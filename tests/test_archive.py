"""Archives of a log period (log/archive.py, api/client/archive.py, `auditlog archive [verify]`).

One log, written by the server's own Log: plain entries and envelope-shaped entries that cite blobs (one of them
gone from the blob store), two entries pruned the way a retention run prunes (contents emptied, `pruned_entries`
and `deletion_items` rows, the deletion's entry committing to its list), a witness cosignature and an RFC 3161
token for the final checkpoint. Each archive is verified; then one byte of each kind of file is changed, alone (the
manifest's hash catches it) and with the manifest re-hashed (the check of that kind catches it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from api.cli.main import main
from api.client.archive import verify_archive
from api.server.problems import problem_body
from log.archive import ArchiveFiles, MANIFEST_FILE, verify_archive as verify_structure
from log.archive_writer import write_archive
from log.audit.archive import AUDIT_RECORDS
from log.audit.drills import drill_entry, parse_submission
from log.audit.lifecycle_names import deletion_list_sha256
from log.blobs import FileBlobStore
from log.errors import InvalidInput, StorageError
from log.note import COSIGNATURE_ED25519
from log.note_keys import CosignatureSigner, generate_signer_key
from log.service import Log, LogConfig
from log.storage.engine import normalize_database_url
from log.storage.store import SqlLogStore
from tests.conftest import TEST_ORIGIN
from witness.cosignatures import WitnessPolicy

PLAIN = 600  # plain entries: level-0 tiles 0 and 1 full, 2 partial
PRUNED = (5, 300)  # pruned later, as a retention run would: one in the first bundle, one in the second
BLOBS = [b"prompt one", b"output two", b"never stored"]


# An audit drill's entry (log/audit/drills.py): a served archive lists the period's drills as the log did.
DRILL = drill_entry({**parse_submission({"tenant": "acme", "seed": 7, "scenario": "random", "runs": [], "checks": [],
                                         "period": {"since": None, "until": None}}), "at": 0, "by": "admin-token"})


def _envelope(digest: str) -> bytes:
    """An entry shaped as an audit envelope that cites a blob (what the archive reads of one: its references)."""
    return json.dumps({"type": "auditlog.envelope/v1", "event": {"input": {"sha256": digest}}},
                      separators=(",", ":")).encode()


async def _build(config: LogConfig) -> tuple[str, int, int]:
    """(log key, size before the deletion entry, final size)."""
    log = await Log.open(config)
    try:
        for start in range(0, PLAIN, 100):
            await log.add_entries([b"entry %d" % i for i in range(start, start + 100)])
        await log.add_entries([_envelope(hashlib.sha256(b).hexdigest()) for b in BLOBS] + [DRILL])
        middle = log.size
        items = [("entry", str(i)) for i in PRUNED]
        deletion = json.dumps({"type": "auditlog.retention-run/v1", "list_sha256": deletion_list_sha256(items)},
                              separators=(",", ":")).encode()
        await log.add_entries([deletion])
        return log.verifier_key, middle, log.size
    finally:
        await log.close()


def _sql(url: str, statement: str, **params):
    engine = create_engine(normalize_database_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else None
    finally:
        engine.dispose()


def _make_log(root: Path, url: str | None = None) -> dict:
    config = LogConfig(data_dir=root / "data", database_url=url, origin=TEST_ORIGIN, batch_size=100)
    vkey, middle, size = asyncio.run(_build(config))
    url = config.resolved_database_url()
    deletion = size - 1
    for index in PRUNED:  # what a retention run leaves: the contents gone, the leaf hash and tiles kept
        _sql(url, "UPDATE entries SET data = :empty WHERE idx = :i", empty=b"", i=index)
        _sql(url, "INSERT INTO pruned_entries (idx, deletion_idx, pruned_at) VALUES (:i, :d, 1)", i=index, d=deletion)
        _sql(url, "INSERT INTO deletion_items (deletion_idx, kind, item) VALUES (:d, 'entry', :i)", d=deletion,
             i=str(index))
    # Entry 300 stands for a pruned event: the prune keeps its index row, so its run still shows it existed.
    _sql(url, "INSERT INTO audit_events (idx, tenant, producer, event_id, run_id, trace_id, parent_event_id, "
              "actor_type, actor_id, event_type, ts) VALUES (300, 'acme', 'agent', 'ev-300', 'run-pruned', 'trace', "
              "NULL, 'agent', 'agent', 'tool_call', 1)")
    blobs = FileBlobStore(root / "data" / "blobs")
    for data in BLOBS[:2]:
        blobs.put(hashlib.sha256(data).hexdigest(), data)
    # A witness cosignature of the final checkpoint, and an RFC 3161 token of it from a TSA of the test's own.
    witness_skey, witness_vkey = generate_signer_key("witness.example/w1", COSIGNATURE_ED25519)
    (note,) = _sql(url, "SELECT note FROM checkpoints WHERE size = :s", s=size)[0]
    body = bytes(note)[: bytes(note).index(b"\n\n") + 1].decode()
    line = CosignatureSigner(witness_skey).cosign(body, int(time.time())).to_line()
    _sql(url, "INSERT INTO checkpoint_cosignatures (size, witness, key_id, signature_line, timestamp, created_at) "
              "VALUES (:s, 'witness.example/w1', 1, :line, 1, 1)", s=size, line=line)
    tsa_pem = _stamp(root, url, size, bytes(note))
    return {"root": root, "config": config, "url": url, "vkey": vkey, "size": size, "middle": middle,
            "blobs": blobs, "witness": witness_vkey, "tsa_pem": tsa_pem, "deletion": deletion}


def _stamp(root: Path, url: str, size: int, note: bytes) -> bytes:
    from witness.tsa import TsaIdentity, build_token, granted_response
    from witness.rfc3161 import OID_SHA256

    identity = TsaIdentity.load_or_create(root / "tsa")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    response = granted_response(build_token(identity, hash_oid=OID_SHA256, hashed_message=hashlib.sha256(note).digest(),
                                            nonce=1, cert_req=True, gen_time=now, serial=7))
    _sql(url, "INSERT INTO timestamps (size, note, response, gen_time, serial, tsa_name, created_at) VALUES "
              "(:s, :n, :r, 1, '7', 'test tsa', 1)", s=size, n=note, r=response)
    return identity.ca_pem


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _make_log(tmp_path_factory.mktemp("archive"))


def _write(world, out: Path, **kwargs):
    store = SqlLogStore(world["url"], read_only=True)
    try:
        kwargs.setdefault("from_size", 300)
        return write_archive(store, out, log_key=world["vkey"], blobs=world["blobs"], records=AUDIT_RECORDS,
                             pruned_body=problem_body, **kwargs)
    finally:
        store.close()


def _verify(world, path: Path, **kwargs):
    return verify_archive(path, world["vkey"], **kwargs)


@pytest.fixture(scope="module")
def archived(world):
    """A directory archive of [300, final size)."""
    return _write(world, world["root"] / "period")


@pytest.mark.parametrize("name", ["period.tar", "period.tar.gz"])
def test_a_tar_archive_holds_the_same_files_and_verifies(world, archived, name):
    summary = _write(world, world["root"] / name)
    assert summary.files == archived.files and summary.entries == archived.entries
    with ArchiveFiles.open(summary.path) as tar, ArchiveFiles.open(archived.path) as directory:
        assert sorted(tar.names) == sorted(directory.names)
        assert tar.read("checkpoint") == directory.read("checkpoint")
    report = _verify(world, summary.path, witnesses=WitnessPolicy((world["witness"],)),
                     tsa_trusted=world["tsa_pem"])
    assert report.ok, report.failures


def test_an_archive_of_a_period_verifies_with_its_witness_and_timestamp(world, archived):
    size = world["size"]
    assert (archived.from_size, archived.to_size, archived.entries_from) == (300, size, 256)
    assert (archived.pruned, archived.blobs, archived.blobs_gone) == (1, 2, 1)  # entry 5 lies before bundle 1
    assert (archived.cosignatures, archived.timestamps) == (1, 1)
    assert archived.hash_tiles == 4  # tile/0/000, 001, 002.p/N and tile/1/000.p/2
    files = set(ArchiveFiles.open(archived.path).names)
    deletion = world["deletion"]
    assert {"tile/entries/001.pruned.json", f"api/v1/deletions/{deletion}",
            "tile/entries/002.p/" + str(size - 512)} - files == set()
    assert "tile/entries/000" not in files  # [300, size) is whole bundles from 256
    assert "tile/entries/001" not in files  # the log answers it 410: in its place, that answer, as static copies have
    problem = json.loads((archived.path / "tile/entries/001.pruned.json").read_text())
    assert problem["status"] == 410 and problem["pruned"] == [{"index": 300, "deletion_index": deletion}]
    kept = json.loads((archived.path / "pruned-rows.json").read_text())["rows"]
    assert [(row["idx"], row["run_id"]) for row in kept] == [(300, "run-pruned")]
    listed = json.loads((archived.path / f"api/v1/deletions/{deletion}").read_text())
    assert listed["items"] == [["entry", "300"], ["entry", "5"]] and listed["type"] == "auditlog.retention-run/v1"

    report = _verify(world, archived.path, witnesses=WitnessPolicy((world["witness"],)),
                     tsa_trusted=world["tsa_pem"])
    assert report.ok, report.failures
    assert sorted(report.passed) == list(range(1, 11))
    assert "cosigned by 1 of 1" in report.passed[5] and "genTime" in report.passed[6]
    assert "1 of them proven in the archive's tree" in report.passed[9] and "1 of them pruned" in report.passed[8]
    assert report.entries == size - 256 and report.blobs == 2 and report.blobs_gone == 1


def test_the_default_end_is_the_latest_checkpoint_a_third_party_vouched_for(world, tmp_path):
    summary = _write(world, tmp_path / "default", from_size=0)
    assert summary.to_size == world["size"]  # stamped and cosigned, though not the newest checkpoint made
    summary = _write(world, tmp_path / "middle", from_size=0, to_size=world["middle"])
    assert summary.to_size == world["middle"] and summary.pruned == 2 and summary.cosignatures == 0
    report = _verify(world, summary.path)
    assert report.ok, report.failures
    assert "0 of them proven" in report.passed[9]  # the deletion entry lies beyond this archive's tree
    witnessed = _verify(world, summary.path, witnesses=WitnessPolicy((world["witness"],)),
                        tsa_trusted=world["tsa_pem"])
    assert {f.check for f in witnessed.failures} == {5, 6}  # asked for, and this checkpoint has neither


def test_an_archive_is_refused_for_a_range_the_log_cannot_give_and_leaves_nothing(world, tmp_path):
    with pytest.raises(InvalidInput, match=r"no checkpoint of size 150: the nearest are 100 and 200"):
        _write(world, tmp_path / "x", to_size=150)
    with pytest.raises(InvalidInput, match="holds no entry"):
        _write(world, tmp_path / "x", from_size=200, to_size=200)
    with pytest.raises(InvalidInput, match="does not verify with the log key"):
        store = SqlLogStore(world["url"], read_only=True)
        try:
            write_archive(store, tmp_path / "x", log_key=generate_signer_key(TEST_ORIGIN)[1], from_size=0)
        finally:
            store.close()
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidInput, match="exists"):
        _write(world, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary left behind


def test_a_database_that_disagrees_with_itself_is_not_archived(world, tmp_path):
    copy = tmp_path / "copy.db"
    shutil.copy(world["config"].data_dir / "auditlog.db", copy)
    url = f"sqlite:///{copy}"
    _sql(url, "UPDATE entries SET data = :d WHERE idx = 400", d=b"changed")
    store = SqlLogStore(url, read_only=True)
    try:
        with pytest.raises(StorageError, match="entry 400 does not hash to its leaf hash"):
            write_archive(store, tmp_path / "out.tar", log_key=world["vkey"], from_size=0, records=AUDIT_RECORDS,
                          pruned_body=problem_body)
    finally:
        store.close()
    assert not [p for p in tmp_path.iterdir() if "out" in p.name]


def _flip(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_cosignature(path: Path) -> None:
    """One bit of the signature in the last note line (the witness's), the line still well-formed."""
    text = path.read_text()
    head, _, last = text.rstrip("\n").rpartition("\n")
    prefix, _, b64 = last.rpartition(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    path.write_text(f"{head}\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n")


def _rehash(archive: Path, name: str) -> None:
    manifest = json.loads((archive / MANIFEST_FILE).read_text())
    manifest["files"][name] = hashlib.sha256((archive / name).read_bytes()).hexdigest()
    (archive / MANIFEST_FILE).write_text(json.dumps(manifest))


def _blob_name(world) -> str:
    return "blobs/" + hashlib.sha256(BLOBS[0]).hexdigest()


# (name, the file changed, the byte changed, the check that must catch it once the manifest is re-hashed)
MUTATIONS = [
    ("checkpoint signature", lambda w: "checkpoint", 120, 4),
    ("checkpoint cosignature", lambda w: "checkpoint", _flip_cosignature, 5),
    ("hash tile, level 0", lambda w: "tile/0/001", 0, 7),
    ("hash tile, level 1", lambda w: "tile/1/000.p/2", 0, 7),
    ("partial hash tile", lambda w: f"tile/0/002.p/{w['size'] - 512}", 5, 7),
    ("entry bundle", lambda w: f"tile/entries/002.p/{w['size'] - 512}", -1, 8),
    ("pruned bundle", lambda w: "tile/entries/001.pruned.json", -5, 8),
    ("deletion list", lambda w: f"api/v1/deletions/{w['deletion']}", 40, 9),
    ("blob", lambda w: _blob_name(w), 0, 10),
    ("timestamp token", lambda w: "timestamps/1.tsr", -40, 6),
    ("timestamped note", lambda w: "timestamps/1.note", 100, 6),
]


@pytest.mark.parametrize("name,target,at,check", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_one_changed_byte_in_any_file_makes_the_archive_invalid(world, archived, tmp_path, name, target, at, check):
    copy = tmp_path / "copy"
    shutil.copytree(archived.path, copy)
    file = target(world)
    _flip(copy / file, at) if isinstance(at, int) else at(copy / file)
    options = {"witnesses": WitnessPolicy((world["witness"],)), "tsa_trusted": world["tsa_pem"]}
    report = _verify(world, copy, **options)
    assert not report.ok and report.failed(2), report.failures  # the manifest's hash names the file
    _rehash(copy, file)
    report = _verify(world, copy, **options)
    assert not report.ok and report.failed(check), (name, report.failures)
    assert not report.failed(2)


def test_missing_extra_and_linked_files_and_a_changed_manifest_are_invalid(world, archived, tmp_path):
    cases = {
        "missing bundle": (lambda d: (d / "tile/entries/001.pruned.json").unlink(), {2, 8, 9}),
        "extra file": (lambda d: (d / "notes.txt").write_text("x"), {2}),
        "symlink": (lambda d: (d / "link").symlink_to(d / "checkpoint"), {2}),
        "manifest range": (lambda d: _edit_manifest(d, to_size=world["size"] - 1), {4, 7, 8}),
        "manifest forged size": (lambda d: _edit_manifest(d, to_size=10**15), {1}),  # refused before listing tiles
        "manifest log key": (lambda d: _edit_manifest(d, log_key=generate_signer_key(TEST_ORIGIN)[1]), {3}),
        "manifest gone blob": (lambda d: _edit_manifest(d, blobs_gone=[]), {10}),
        "kept row of an entry not pruned": (lambda d: _edit_rows(d, idx=301), {2, 9}),
        "manifest not json": (lambda d: _flip(d / MANIFEST_FILE, 0), {1}),
    }
    for name, (change, checks) in cases.items():
        copy = tmp_path / name.replace(" ", "-")
        shutil.copytree(archived.path, copy)
        change(copy)
        report = _verify(world, copy)
        assert not report.ok and checks <= set(report.failure_counts), (name, report.failures)


def _edit_rows(archive: Path, **changes) -> None:
    kept = json.loads((archive / "pruned-rows.json").read_text())
    kept["rows"][0].update(changes)
    (archive / "pruned-rows.json").write_text(json.dumps(kept))


def _edit_manifest(archive: Path, **changes) -> None:
    manifest = json.loads((archive / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (archive / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_changed_byte_in_a_tar_member_is_invalid(world, tmp_path):
    summary = _write(world, tmp_path / "a.tar")
    data = bytearray(summary.path.read_bytes())
    data[data.index(b"entry 590")] ^= 0x01
    (tmp_path / "b.tar").write_bytes(bytes(data))
    report = verify_structure(tmp_path / "b.tar", world["vkey"], records=AUDIT_RECORDS)
    assert {f.check for f in report.failures} == {2, 8}
    with tarfile.open(tmp_path / "c.tar", "w") as tar:  # a member that leaves the archive
        tar.add(summary.path, arcname="../escape")
    report = verify_structure(tmp_path / "c.tar", world["vkey"])
    assert not report.ok and report.failures[0].check == 1  # no manifest
    assert "outside the archive" in str(ArchiveFiles.open(tmp_path / "c.tar").problems)


def test_the_archive_commands_exit_with_the_status_of_their_situation(world, archived, tmp_path, capsys):
    data = str(world["config"].data_dir)
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(world["vkey"] + "\n")
    out = tmp_path / "cli.tar.gz"
    assert main(["archive", "--data-dir", data, "--log-key", str(vkey_file), "--from-size", "10", "--out", str(out),
                 "--quiet"]) == 0
    assert "OK: archived entries [0, " in capsys.readouterr().out
    assert main(["archive", "verify", str(out), "--log-key", str(vkey_file), "--quiet", "--tsa-ca",
                 str(world["root"] / "tsa" / "tsa-ca.pem")]) == 0
    shown = capsys.readouterr().out
    assert "VALID" in shown and " 5 cosignatures  not asked" in shown
    assert main(["archive", "verify", str(out), "--log-key", str(vkey_file), "--json", "--witness-key",
                 world["witness"]]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    copy = tmp_path / "bad"
    shutil.copytree(archived.path, copy)
    _flip(copy / "checkpoint", 120)
    assert main(["archive", "verify", str(copy), "--log-key", str(vkey_file), "--quiet"]) == 1
    assert "auditlog archive verify: INVALID: check 2 (files): checkpoint" in capsys.readouterr().err
    assert main(["archive", "--data-dir", data, "--log-key", str(vkey_file), "--to-size", "150", "--out",
                 str(tmp_path / "x")]) == 2
    assert main(["archive", "verify", str(tmp_path / "missing"), "--log-key", str(vkey_file)]) == 2


def test_an_archive_of_a_postgresql_log_verifies(tmp_path):
    from tests.postgres import fresh_database

    with fresh_database() as url:
        world = _make_log(tmp_path, url)
        summary = _write(world, tmp_path / "pg.tar", from_size=0)
        assert summary.to_size == world["size"] and summary.pruned == 2
        report = _verify(world, summary.path, witnesses=WitnessPolicy((world["witness"],)),
                         tsa_trusted=world["tsa_pem"])
        assert report.ok, report.failures
        with contextlib.suppress(Exception):
            SqlLogStore(url).close()


def test_a_served_archive_answers_reads_as_the_log_did_and_refuses_writes(world, archived, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from api.server.archive import create_archive_app
    from log.audit.archive_restore import restore_archive
    from log.checkpoint import open_checkpoint
    from log.hashing import hash_leaf
    from log.note_keys import parse_verifier_key
    from log.proofs import verify_inclusion
    from log.storage.engine import sqlite_url_for
    from tests.credentials import ADMIN, ADMIN_TOKEN

    url = sqlite_url_for(tmp_path / "restored.db")
    restored = restore_archive(archived.path, url, FileBlobStore(tmp_path / "blobs"), log_key=world["vkey"])
    assert (restored.entries_from, restored.to_size) == (256, world["size"])
    live = SqlLogStore(world["url"], read_only=True)

    async def scenario():
        app = create_archive_app(LogConfig(data_dir=tmp_path, database_url=url, migrate=False),
                                 verifier_key=restored.log_key, origin=restored.origin, entries_from=256,
                                 to_size=world["size"], blob_dir=tmp_path / "blobs", admin_token=ADMIN_TOKEN)
        async with TestClient(TestServer(app), headers=ADMIN) as client:
            note = await (await client.get("/checkpoint")).read()
            assert note == (archived.path / "checkpoint").read_bytes()  # with the witness's cosignature
            checkpoint, _ = open_checkpoint(note, parse_verifier_key(world["vkey"]))
            for path in ("tile/0/000", "tile/1/000.p/2", "tile/entries/002.p/" + str(world["size"] - 512)):
                answer = await client.get("/" + path)
                assert answer.status == 200 and await answer.read() == (archived.path / path).read_bytes()
            entry = await client.get("/api/v1/entries/400", headers={"Accept": "application/octet-stream"})
            assert entry.status == 200 and await entry.read() == b"entry 400"
            proof = await (await client.get("/api/v1/proof/inclusion", params={"index": "400"})).json()
            verify_inclusion(hash_leaf(b"entry 400"), 400, checkpoint.size,
                             [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root_hash)
            consistency = await client.get("/api/v1/proof/consistency", params={"first": "100"})
            assert consistency.status == 200  # every tile of the tree is archived: proofs from any size
            listed = await (await client.get("/api/v1/events", params={"run_id": "run-pruned"})).json()
            assert [(p["index"], p["event_id"], p["deletion_index"]) for p in listed["pruned"]] == \
                [(300, "ev-300", world["deletion"])]  # the run still shows its pruned event, as on the live log
            pruned = await client.get("/api/v1/entries/300")  # as the live log answers it: 410, naming the deletion
            assert pruned.status == 410 and str(world["deletion"]) in (await pruned.json())["detail"]
            before = await client.get("/api/v1/entries/10")
            assert before.status == 404 and (await before.json())["type"].endswith("before-archive")
            assert (await client.get("/tile/entries/000")).status == 404
            for method, path in (("POST", "/api/v1/entries"), ("PUT", "/api/v1/blobs/" + "0" * 64),
                                 ("DELETE", "/api/v1/blobs/" + "0" * 64), ("POST", "/api/v1/producers")):
                refused = await client.request(method, path, data=b"x")
                assert refused.status == 405 and refused.headers["Allow"] == "GET, HEAD", (method, path)
                assert (await refused.json())["type"].endswith("read-only-archive")
            drills = (await (await client.get("/api/v1/drills")).json())["drills"]
            assert [(d["tenant"], d["seed"], d["index"]) for d in drills] == [("acme", 7, world["middle"] - 1)]
            assert (await client.post("/api/v1/drills", json={"tenant": "acme"})).status == 405
            blob = await client.get("/api/v1/blobs/" + hashlib.sha256(BLOBS[0]).hexdigest())
            assert blob.status == 200 and await blob.read() == BLOBS[0]
            ready = await (await client.get("/readyz")).json()
            assert "read-only archive" in ready["reason"] and ready["tree_size"] == world["size"]

    try:
        asyncio.run(scenario())
    finally:
        live.close()
    tampered = tmp_path / "tampered"
    shutil.copytree(archived.path, tampered)
    _flip(tampered / "tile/0/001", 3)
    from log.errors import VerificationError

    with pytest.raises(VerificationError, match="check 2"):
        restore_archive(tampered, sqlite_url_for(tmp_path / "no.db"), FileBlobStore(tmp_path / "b2"))


def test_an_archive_directory_behind_any_static_web_server_passes_the_monitor(world, tmp_path, capsys):
    """The archive is the layout of a static copy of the log (`--publish-dir`), pruned bundles included: `auditlog
    verify` checks it from a plain file server as it checks the live log."""
    import functools
    import http.server
    import threading

    summary = _write(world, tmp_path / "static", from_size=0)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(summary.path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        vkey_file = tmp_path / "log.vkey"
        vkey_file.write_text(world["vkey"] + "\n")
        code = main(["verify", "--server", f"http://127.0.0.1:{server.server_address[1]}", "--log-key",
                     str(vkey_file), "--quiet"])
        out = capsys.readouterr().out
        assert code == 0 and f"Verified {world['size']:,} entries" in out and "VALID" in out, out
    finally:
        server.shutdown()
