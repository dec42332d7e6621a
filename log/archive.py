r"""Archives of a period of the log: written from its database, verified offline, in the C2SP tlog-tiles layout.

An archive of the entries [A, B) of a log is a directory, or a tar (optionally gzipped) of the same files:

    checkpoint                      the log's signed note of size B, then the witness cosignatures the log holds
                                    for it (what /checkpoint served for B)
    tile/<L>/<N>[.p/<W>]            every hash tile of the tree of size B (log/tiles.py tiles_for_size), so that
                                    the root, and a proof of any entry, is recomputed from the archive alone
    tile/entries/<N>[.p/<W>]        the entry bundles covering [A, B): whole bundles, so from A rounded down to a
                                    multiple of 256 (`entries_from`)
    tile/entries/<N>[.p/<W>].pruned.json
                                    in place of a bundle that holds entries a retention run pruned, what the log
                                    answers for it (410 Gone, log/prune.py): the problem body listing each pruned
                                    entry with its deletion entry, and the bundle with those entries as zero bytes;
                                    as a static copy of the log holds it (api/server/publishing.py), so LogClient
                                    and `auditlog verify` read it the same way
    api/v1/deletions/<index>        for each such deletion, what GET /api/v1/deletions/<index> answers: its items
                                    and their `list_sha256` (design20)
    pruned-rows.json                what the log still says each archived pruned entry was (the audit personality:
                                    its event's index row, so a run's evidence still lists it): the log's word, as
                                    on the live log, not proven by the archive
    timestamps/<n>.tsr, <n>.note    the RFC 3161 TimeStampResp tokens the log holds for the checkpoint of size B,
                                    each beside the exact note bytes it stamped
    blobs/<sha256>                  every blob an archived event cites that the blob store still holds
    manifest.json                   `auditlog.archive/v1`: origin, log key (a note verifier key), range, root,
                                    counts, the blobs cited but gone, and the SHA-256 of every other file

Any tlog-tiles client reads the checkpoint, tiles and bundles as it reads a log's; nothing in the archive has to be
trusted: `verify_archive` recomputes everything from the log's key (module checklist below), and the manifest's
hashes only catch a damaged file early and by name.

Writing (log/archive_writer.py `write_archive`) reads ONE committed state of the database (`LogStore.read`,
read-only, beside a live server), checks every archived entry against its leaf hash in the tiles as it goes (a
database that disagrees with itself is never archived), and is atomic: the files go to a temporary name beside the
target (a directory, or the tar file), are fsynced, and are renamed into place last. An existing target is never
overwritten.

`verify_archive` follows this checklist, going on after a failure where the later checks still mean something
(every failure is reported, the first 20 in full):

     1 manifest       manifest.json parses, has the format's fields and types
     2 files          every file is listed in the manifest and every listed file is there with its SHA-256;
                      nothing but regular files, no path outside the archive
     3 log key        the given key parses; the manifest names the same key and its origin
     4 checkpoint     the note carries a valid signature of the log key, of size `to_size`
     5 cosignatures   (when asked: the caller's check, witness keys) enough witnesses cosigned the checkpoint
     6 timestamps     each token's note is a checkpoint of size B with the same root, signed by the log key;
                      (when asked: the caller's check, a TSA certificate) each token verifies over its note, and
                      there is at least one
     7 hash tiles     exactly the tiles of size B, each of its width; every hash of a level L > 0 tile is the
                      root of the level L-1 tile below it; the root recomputed from the tiles is the checkpoint's
     8 entries        exactly the bundles of [entries_from, B), each of its width (a bundle or its .pruned.json);
                      every entry hashes to its leaf hash in the level-0 tiles, but the pruned ones, which are zero
                      bytes and each listed in their bundle's .pruned.json
     9 pruned         each pruned entry's deletion is described (api/v1/deletions/<d>) and lists it; the list
                      hashes to its `list_sha256`; a deletion entry inside the archive's tree is an entry of that
                      type committing to that hash (one beyond it is named, not proven, by this archive)
    10 blobs          every blob file hashes to its name; the blobs the archived events cite are exactly the
                      blob files and those the manifest lists as gone

Checks 5 and 6's token verification need witness/ (which log/ must not import): the caller passes them as
functions (api/client/archive.py does). What entries cite and which are pruned is the personality's to say
(`ArchivedRecords`; log/audit/archive.py for the audit log): the core knows nothing of it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from log.bundles import decode_entry_bundle
from log.checkpoint import open_checkpoint
from log.compact import CompactRange, frontier_node_ids
from log.errors import InvalidInput, LogError
from log.hashing import HASH_SIZE, hash_children_pairs, hash_leaves
from log.note_keys import Verifier, parse_verifier_key
from log.storage import ReadTransaction
from log.tile_nodes import node_hash_from_tile, tile_for_node
from log.tiles import TILE_WIDTH, TileID, entry_bundles_for_size, tiles_for_size

FORMAT = "auditlog.archive/v1"
MANIFEST_FILE = "manifest.json"
CHECKPOINT_FILE = "checkpoint"
PRUNED_SUFFIX = ".pruned.json"  # beside (in place of) a bundle the log answers 410 for, as api/server/publishing.py
DELETIONS_DIR = "api/v1/deletions"
PRUNED_ROWS_FILE = "pruned-rows.json"  # ArchivedRecords.pruned_rows of the archived pruned entries
TIMESTAMPS_DIR = "timestamps"
BLOBS_DIR = "blobs"
ENVELOPE_TYPE = b'"auditlog.envelope/v1"'

FILE_SYNCERS = 16  # threads fsyncing a directory archive's files (parallel fsyncs share journal commits)
KEPT = 20  # failures kept in full in a report (all are counted)

Progress = Callable[[int, int], None]
"""progress(entries done, entries in all)."""


# --- small shared pieces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedRecords:
    """What the personality built on the log knows about its entries that an archive carries (log/ knows nothing of
    it: log/audit/archive.py gives the audit personality's). Every function may be called from a reader thread.

    cited_blobs(entry)              the SHA-256 (hex) of each blob an entry cites (its blobs are archived)
    list_sha256(items)              the hash a deletion entry commits to, of its (kind, item) list
    deletion_document(tx, deletion) what GET /api/v1/deletions/<deletion> answers, or None (writing only)
    pruned_rows(tx, indices)        the personality's index rows that outlive a prune, JSON objects each with its
                                    entry's `idx`: what the log still says a pruned entry was (writing only)

    Which entries are pruned is the core's (log/prune.py); what authorised it is the personality's. The default
    (`NO_RECORDS`): a plain log, whose entries cite nothing and whose deletions it cannot describe."""

    cited_blobs: Callable[[bytes], Iterable[str]] = lambda entry: ()
    list_sha256: Callable[[Iterable[tuple[str, str]]], str] | None = None
    deletion_document: Callable[[ReadTransaction, int], dict | None] = lambda tx, deletion: None
    pruned_rows: Callable[[ReadTransaction, list[int]], list[dict]] = lambda tx, indices: []


NO_RECORDS = ArchivedRecords()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rfc3339(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tile_root(data: bytes) -> bytes:
    """The root of a full tile's 256 hashes (8 levels of pairs)."""
    layer = data
    while len(layer) > HASH_SIZE:
        layer = hash_children_pairs(layer)
    return layer


def root_from_tiles(size: int, tile_data: Callable[[int, int], bytes | None]) -> bytes | None:
    """The RFC 6962 root of the tree of `size` leaves from its tiles (`tile_data(level, index)`: the tile's bytes,
    or None); None when a tile it needs is missing or too short."""
    hashes = []
    for node in frontier_node_ids(size):
        tile_id, start, count = tile_for_node(*node)
        data = tile_data(tile_id.level, tile_id.index)
        if data is None or len(data) < (start + count) * HASH_SIZE:
            return None
        hashes.append(node_hash_from_tile(data, start, count))
    return CompactRange(size, hashes).root()


def archive_kind(path: Path) -> str:
    """"tar.gz", "tar" or "dir": what a path names by its ending (.tar.gz or .tgz, .tar, anything else)."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".tar"):
        return "tar"
    return "dir"


def json_bytes(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=False) + "\n").encode()


def check_member_name(name: str) -> None:
    """InvalidInput unless `name` is a normalised relative POSIX path: no leading "/", no empty, "." or ".." part."""
    if not name or name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidInput(f"{name!r} is not a relative path inside the archive", field="path")


# --- reading -----------------------------------------------------------------------------------------------------


class ArchiveFiles:
    """The regular files of an archive, a directory or a tar (plain or gzipped), by their relative POSIX names.

    `names` lists them; `read(name)` gives one's bytes; `problems` says what is in the archive that no archive
    holds (a symlink, a device, a path that leaves the archive, a name twice). Use as a context manager."""

    def __init__(self, path: Path):
        self.path = path
        self.names: list[str] = []
        self.problems: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> ArchiveFiles:
        """InvalidInput when `path` is neither a directory nor a tar file."""
        files = cls(Path(path))
        if files.path.is_dir():
            files._walk()
        elif files.path.is_file():
            try:
                files._tar = tarfile.open(files.path, "r:*")
                files._index_tar()
            except (tarfile.TarError, EOFError, OSError) as exc:
                files.close()
                raise InvalidInput(f"{files.path} is not a readable tar archive: {exc}", field="archive") from None
        else:
            raise InvalidInput(f"{files.path} is neither a directory nor a file", field="archive")
        return files

    def _walk(self) -> None:
        for directory, subdirectories, names in os.walk(self.path):
            subdirectories.sort()
            for name in sorted(names) + [d for d in subdirectories if (Path(directory) / d).is_symlink()]:
                full = Path(directory) / name
                relative = full.relative_to(self.path).as_posix()
                mode = os.lstat(full).st_mode
                if not stat.S_ISREG(mode):
                    self.problems.append(f"{relative} is not a regular file")
                    continue
                self.names.append(relative)

    def _index_tar(self) -> None:
        for member in self._tar.getmembers():
            name = member.name.removeprefix("./")
            if member.isdir():
                continue
            try:
                check_member_name(name)
            except InvalidInput:
                self.problems.append(f"{member.name!r} is a path outside the archive")
                continue
            if not member.isreg():
                self.problems.append(f"{name} is not a regular file")
            elif name in self._members:
                self.problems.append(f"{name} is in the tar twice")
            else:
                self._members[name] = member
                self.names.append(name)

    def read(self, name: str) -> bytes:
        if self._tar is None:
            return (self.path / name).read_bytes()
        extracted = self._tar.extractfile(self._members[name])
        return extracted.read()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> ArchiveFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _order(name: str) -> tuple:
    """The order verification reads files in: what later checks need first (the manifest, the checkpoint, the
    deletion lists, hash tiles by level), then the bundles by index (standard and pruned interleaved), blobs."""
    fixed = {MANIFEST_FILE: 0, CHECKPOINT_FILE: 1}
    if name in fixed:
        return (fixed[name],)
    if name.startswith(TIMESTAMPS_DIR + "/"):
        return (2, name)
    if name.startswith(DELETIONS_DIR + "/") or name == PRUNED_ROWS_FILE:
        return (3, name)
    tile_id = _tile_id(name.removesuffix(PRUNED_SUFFIX))
    if tile_id is not None and tile_id.level is not None and not name.endswith(PRUNED_SUFFIX):
        return (4, tile_id.level, tile_id.index)
    if tile_id is not None and tile_id.level is None:
        return (5, tile_id.index)
    if name.startswith(BLOBS_DIR + "/"):
        return (6, name)
    return (7, name)


def _tile_id(name: str) -> TileID | None:
    if not name.startswith("tile/"):
        return None
    try:
        return TileID.parse(name)
    except InvalidInput:
        return None


# --- verifying ---------------------------------------------------------------------------------------------------

CHECKS = {1: "manifest", 2: "files", 3: "log key", 4: "checkpoint", 5: "cosignatures", 6: "timestamps",
          7: "hash tiles", 8: "entries", 9: "pruned", 10: "blobs"}


@dataclass(frozen=True)
class Failure:
    check: int
    detail: str

    @property
    def name(self) -> str:
        return CHECKS[self.check]

    def __str__(self) -> str:
        return f"check {self.check} ({self.name}): {self.detail}"


@dataclass
class ArchiveReport:
    """What `verify_archive` found: `ok` when every check passed; `passed` says, per check number, what it checked;
    `failures` the first KEPT failures and `failure_counts` all of them, by check number."""

    path: Path
    origin: str | None = None
    from_size: int | None = None
    to_size: int | None = None
    entries_from: int | None = None
    root_hash: bytes | None = None
    entries: int = 0
    pruned: int = 0
    hash_tiles: int = 0
    entry_bundles: int = 0
    blobs: int = 0
    blobs_gone: int = 0
    timestamps: int = 0
    passed: dict[int, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    failure_counts: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failure_counts

    @property
    def first(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def fail(self, check: int, detail: str) -> None:
        self.failure_counts[check] = self.failure_counts.get(check, 0) + 1
        if len(self.failures) < KEPT:
            self.failures.append(Failure(check, detail))

    def failed(self, check: int) -> bool:
        return check in self.failure_counts


class _ManifestError(Exception):
    pass


def _parse_manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise _ManifestError(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise _ManifestError(f"format is {str(found)[:80]!r}, not {FORMAT!r}")

    def want(name: str, kind, check=lambda value: True):
        value = manifest.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
            raise _ManifestError(f"{name} is missing or not a valid {getattr(kind, '__name__', kind)}: "
                                 f"{str(value)[:80]!r}")
        return value

    want("origin", str)
    want("log_key", str)
    from_size = want("from_size", int, lambda v: v >= 0)
    to_size = want("to_size", int, lambda v: v > from_size)
    want("entries_from", int, lambda v: v == from_size - from_size % TILE_WIDTH)
    want("root_hash", str, lambda v: len(_b64decode(v) or b"") == HASH_SIZE)
    want("counts", dict)
    want("blobs_gone", list, lambda v: all(isinstance(d, str) and _is_digest(d) for d in v))
    want("files", dict, lambda v: all(isinstance(h, str) and _is_digest(h) for h in v.values()))
    del to_size
    return manifest


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def verify_archive(path: str | os.PathLike, log_key: str, *, records: ArchivedRecords = NO_RECORDS,
                   cosignatures: Callable[[bytes], str] | None = None,
                   timestamp: Callable[[bytes, bytes], str] | None = None,
                   progress: Progress | None = None) -> ArchiveReport:
    """Verify the archive at `path` (a directory or a tar) against the log's verifier key (the module docstring's
    checklist), its entries read as `records` says (the blobs they cite, the deletions' list hash).
    `cosignatures(note)` (check 5) and `timestamp(token, note)` (check 6) are the caller's checks that need
    witness/: each returns a one-line description or raises LogError; None: not asked for.

    Returns the report (every failure in it); raises InvalidInput only when `path` is no archive at all or the log
    key does not parse."""
    verifier = parse_verifier_key(log_key)
    with ArchiveFiles.open(path) as files:
        return _Verification(files, verifier, records, cosignatures, timestamp, progress).run()


class _Verification:
    def __init__(self, files: ArchiveFiles, verifier: Verifier, records: ArchivedRecords, cosignatures, timestamp,
                 progress):
        self.files, self.verifier, self.records = files, verifier, records
        self.check_cosignatures, self.check_timestamp, self.progress = cosignatures, timestamp, progress
        self.report = ArchiveReport(files.path)
        self.listed: dict[str, str] = {}
        self.checkpoint = None
        self.tiles: dict[tuple[int, int], bytes] = {}
        self.expected_tiles: set[TileID] = set()
        self.expected_bundles: dict[int, TileID] = {}
        self.bundles_seen: set[int] = set()
        self.pruned: dict[int, int] = {}  # index -> deletion index, of each pruned entry found (zero bytes, listed)
        self.deletions: dict[int, dict] = {}  # deletion index -> its document (api/v1/deletions/<index>)
        self.pruned_rows: list[int] = []  # the entries pruned-rows.json describes
        self.deletion_entries: dict[int, bytes] = {}  # deletion entries found in the bundles
        self.cited: set[str] = set()
        self.blob_files: set[str] = set()

    def fail(self, check: int, detail: str) -> None:
        self.report.fail(check, detail)

    def run(self) -> ArchiveReport:
        report = self.report
        # 1. manifest
        if MANIFEST_FILE not in self.files.names:
            self.fail(1, "the archive has no manifest.json")
            return report
        data = self.files.read(MANIFEST_FILE)
        try:
            manifest = _parse_manifest(data)
        except _ManifestError as exc:
            self.fail(1, str(exc))
            return report
        self.listed = manifest["files"]
        report.origin, report.from_size, report.to_size = manifest["origin"], manifest["from_size"], manifest["to_size"]
        report.entries_from = manifest["entries_from"]
        report.root_hash = _b64decode(manifest["root_hash"])
        report.blobs_gone = len(manifest["blobs_gone"])
        report.passed[1] = (f"{FORMAT}, entries [{manifest['from_size']:,}, {manifest['to_size']:,}) of "
                            f"{manifest['origin']}")
        # 2. files (the listing here; each file's hash as it is read below)
        for problem in self.files.problems:
            self.fail(2, problem)
        present = set(self.files.names) - {MANIFEST_FILE}
        for name in sorted(present - set(self.listed)):
            self.fail(2, f"{name} is not listed in the manifest")
        for name in sorted(set(self.listed) - present):
            self.fail(2, f"{name} is listed in the manifest but missing")
        # 3. log key
        if manifest["log_key"] != self.verifier.verifier_key:
            self.fail(3, f"the manifest names the log key {manifest['log_key'][:100]!r}, not the one given")
        elif manifest["origin"] != self.verifier.name:
            self.fail(3, f"the manifest's origin {manifest['origin']!r} is not the key's name {self.verifier.name!r}")
        else:
            report.passed[3] = f"{self.verifier.name}+{self.verifier.key_id:08x}"
        size = manifest["to_size"]
        if -(-size // TILE_WIDTH) > len(self.files.names):  # before listing its tiles: a forged size must not cost
            self.fail(1, f"the manifest's size {size:,} needs more level-0 tiles than the archive has files")
            return report
        self.expected_tiles = set(tiles_for_size(size))
        self.expected_bundles = {b.index: b for b in entry_bundles_for_size(size)
                                 if b.index >= manifest["entries_from"] // TILE_WIDTH}
        self.timestamp_files: dict[str, dict[str, bytes]] = {}
        tiles_done = False
        hashed = 0
        for name in sorted(present, key=_order):
            data = self.files.read(name)
            if name in self.listed:
                hashed += 1
                if hashlib.sha256(data).hexdigest() != self.listed[name]:
                    self.fail(2, f"{name} does not have the SHA-256 the manifest lists")
            kind = _order(name)[0]
            if kind >= 5 and not tiles_done:
                self._check_tiles(size)
                tiles_done = True
            if kind == 1:
                self._checkpoint(data, size)
            elif kind == 2:
                self._timestamp_file(name, data)
            elif kind == 3 and name == PRUNED_ROWS_FILE:
                self._pruned_rows_file(data)
            elif kind == 3:
                self._deletion_file(name, data)
            elif kind == 4:
                self._hash_tile(name, data)
            elif kind == 5:
                self._bundle(name, data)
            elif kind == 6:
                self._blob(name, data)
            else:
                self.fail(2, f"{name} is not a file of an archive")
        if not tiles_done:
            self._check_tiles(size)
        if not report.failed(2):
            report.passed[2] = f"{hashed:,} files, each with the SHA-256 the manifest lists"
        if CHECKPOINT_FILE not in present:
            self.fail(4, "the archive has no checkpoint")
        self._timestamps(size)
        self._entries_complete()
        self._check_pruned()
        self._check_blobs(manifest)
        return report

    # -- 4, 5: the checkpoint ---------------------------------------------------------------------------------
    def _checkpoint(self, data: bytes, size: int) -> None:
        try:
            checkpoint, _ = open_checkpoint(data, self.verifier)
        except LogError as exc:
            self.fail(4, f"the checkpoint does not verify with the log key: {exc}")
            return
        if checkpoint.size != size:
            self.fail(4, f"the checkpoint has size {checkpoint.size}, the manifest says {size}")
            return
        if self.report.root_hash != checkpoint.root_hash:
            self.fail(4, "the manifest's root_hash is not the checkpoint's")
        self.checkpoint = checkpoint
        self.report.passed[4] = f"size {size:,}, root {b64(checkpoint.root_hash)}, signed by the log key"
        if self.check_cosignatures is not None:
            try:
                self.report.passed[5] = self.check_cosignatures(data)
            except LogError as exc:
                self.fail(5, str(exc))

    # -- 6: timestamps ----------------------------------------------------------------------------------------
    def _timestamp_file(self, name: str, data: bytes) -> None:
        stem, dot, suffix = name.removeprefix(TIMESTAMPS_DIR + "/").rpartition(".")
        if not dot or suffix not in ("note", "tsr") or "/" in stem:
            self.fail(2, f"{name} is not a file of an archive")
            return
        self.timestamp_files.setdefault(stem, {})[suffix] = data

    def _timestamps(self, size: int) -> None:
        count, described = 0, []
        for stem, pair in sorted(self.timestamp_files.items()):
            if set(pair) != {"note", "tsr"}:
                self.fail(6, f"timestamp {stem} lacks its {'note' if 'tsr' in pair else 'token'}")
                continue
            try:
                stamped, _ = open_checkpoint(pair["note"], self.verifier)
            except LogError as exc:
                self.fail(6, f"the note timestamp {stem} stamps does not verify with the log key: {exc}")
                continue
            if self.checkpoint is None or (stamped.size, stamped.root_hash) != (size, self.checkpoint.root_hash):
                self.fail(6, f"timestamp {stem} stamps a checkpoint of size {stamped.size}, not the archive's")
                continue
            if self.check_timestamp is not None:
                try:
                    described.append(self.check_timestamp(pair["tsr"], pair["note"]))
                except LogError as exc:
                    self.fail(6, f"timestamp {stem}: {exc}")
                    continue
            count += 1
        self.report.timestamps = count
        if self.check_timestamp is not None and not self.timestamp_files:
            self.fail(6, "the archive holds no timestamp token of its checkpoint")
        if not self.report.failed(6):
            verified = (f"verified against the TSA certificate ({'; '.join(described)})"
                        if self.check_timestamp is not None else
                        "of the checkpoint (the tokens themselves not checked: no TSA certificate given)")
            self.report.passed[6] = f"{count} token(s) {verified}"

    # -- 7: hash tiles ----------------------------------------------------------------------------------------
    def _hash_tile(self, name: str, data: bytes) -> None:
        tile_id = _tile_id(name)
        if tile_id not in self.expected_tiles:
            self.fail(7, f"{name} is not a tile of the tree of size {self.report.to_size}")
            return
        if len(data) != tile_id.width * HASH_SIZE:
            self.fail(7, f"{name} holds {len(data)} bytes, not {tile_id.width * HASH_SIZE}")
            return
        self.tiles[(tile_id.level, tile_id.index)] = data
        self.report.hash_tiles += 1

    def _check_tiles(self, size: int) -> None:
        missing = [t for t in self.expected_tiles if (t.level, t.index) not in self.tiles]
        for tile_id in sorted(missing, key=lambda t: (t.level, t.index))[:KEPT]:
            self.fail(7, f"{tile_id.path()} is missing")
        for (level, index), data in sorted(self.tiles.items()):
            if level == 0:
                continue
            for position in range(len(data) // HASH_SIZE):
                below = self.tiles.get((level - 1, index * TILE_WIDTH + position))
                if below is None or len(below) != TILE_WIDTH * HASH_SIZE:
                    continue  # reported as missing
                if _tile_root(below) != data[position * HASH_SIZE:(position + 1) * HASH_SIZE]:
                    self.fail(7, f"hash {position} of {TileID(level, index, len(data) // HASH_SIZE).path()} is not "
                                 f"the root of {TileID(level - 1, index * TILE_WIDTH + position).path()}")
        root = root_from_tiles(size, lambda level, index: self.tiles.get((level, index)))
        if self.checkpoint is not None and root is not None and root != self.checkpoint.root_hash:
            self.fail(7, f"the root recomputed from the tiles, {b64(root)}, is not the checkpoint's")
        if not self.report.failed(7):
            self.report.passed[7] = (f"{self.report.hash_tiles:,} tiles agree level by level; the root recomputed "
                                     "from them is the checkpoint's")

    # -- 8: entries -------------------------------------------------------------------------------------------
    def _bundle(self, name: str, data: bytes) -> None:
        in_pruned = name.endswith(PRUNED_SUFFIX)
        tile_id = _tile_id(name.removesuffix(PRUNED_SUFFIX))
        expected = self.expected_bundles.get(tile_id.index)
        if expected is None or expected.width != tile_id.width:
            self.fail(8, f"{name} is not a bundle of [{self.report.entries_from:,}, {self.report.to_size:,})")
            return
        if tile_id.index in self.bundles_seen:
            self.fail(8, f"the bundle of {tile_id.path()} is in the archive twice")
            return
        self.bundles_seen.add(tile_id.index)
        self.report.entry_bundles += 1
        first = tile_id.index * TILE_WIDTH
        listed: dict[int, int] = {}
        if in_pruned:
            parsed = self._pruned_problem(name, data, range(first, first + tile_id.width))
            if parsed is None:
                return
            listed, data = parsed
        try:
            members = decode_entry_bundle(data)
        except InvalidInput as exc:
            self.fail(8, f"{name} is not an entry bundle: {exc}")
            return
        if len(members) != tile_id.width:
            self.fail(8, f"{name} holds {len(members)} entries, not {tile_id.width}")
            return
        leaves = self.tiles.get((0, tile_id.index))
        if leaves is None or len(leaves) < tile_id.width * HASH_SIZE:
            self.fail(8, f"{name} has no level-0 tile to check its entries against")
            return
        hashes = hash_leaves(members)
        if b"".join(hashes) != leaves[: tile_id.width * HASH_SIZE] or listed:
            for position, (entry, leaf) in enumerate(zip(members, hashes)):
                index = first + position
                if index in listed:
                    if entry:
                        self.fail(8, f"entry {index} is listed as pruned in {name} but its bundle holds bytes")
                    else:
                        self.pruned[index] = listed[index]
                elif leaf != leaves[position * HASH_SIZE:(position + 1) * HASH_SIZE]:
                    self.fail(8, f"entry {index} (in {name}) does not hash to its leaf hash"
                                 + ("" if entry else ": it is empty, and not listed as pruned"))
        for position, entry in enumerate(members):
            if first + position in self.deletions:
                self.deletion_entries[first + position] = entry
            self.cited.update(self.records.cited_blobs(entry))
        self.report.entries += len(members)
        if self.progress is not None:
            self.progress(self.report.entries, (self.report.to_size or 0) - (self.report.entries_from or 0))

    def _pruned_problem(self, name: str, data: bytes, indices: range) -> tuple[dict[int, int], bytes] | None:
        """(pruned index -> deletion index, the bundle with them as zero bytes) of a .pruned.json: the 410 problem
        body the log answers for the bundle (api/server/problems.py); None (and a failure) when it is not one."""
        try:
            problem = json.loads(data)
            if not isinstance(problem, dict) or not str(problem.get("type", "")).endswith(":entry-pruned"):
                raise ValueError("it is not an entry-pruned problem")
            listed = {}
            for item in problem["pruned"]:
                index, deletion = item["index"], item["deletion_index"]
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, deletion)):
                    raise ValueError(f"pruned entry {str(item)[:80]} has a field of the wrong type")
                if index not in indices:
                    raise ValueError(f"it lists entry {index}, which is not in its bundle")
                listed[index] = deletion
            bundle = base64.b64decode(problem["bundle"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(8, f"{name} is not the problem the log answers for a bundle with pruned entries: {exc}")
            return None
        if not listed:
            self.fail(8, f"{name} lists no pruned entry")
            return None
        return listed, bundle

    def _entries_complete(self) -> None:
        for index in sorted(set(self.expected_bundles) - self.bundles_seen)[:KEPT]:
            self.fail(8, f"the bundle {self.expected_bundles[index].path()} is missing")
        if not self.report.failed(8):
            pruned = f" ({len(self.pruned):,} of them pruned: zero bytes, each listed)" if self.pruned else ""
            self.report.passed[8] = (f"{self.report.entries:,} entries in {self.report.entry_bundles:,} bundles hash "
                                     f"to their leaf hashes{pruned}")

    # -- 9: pruned entries ------------------------------------------------------------------------------------
    def _deletion_file(self, name: str, data: bytes) -> None:
        number = name.removeprefix(DELETIONS_DIR + "/")
        try:
            document = json.loads(data)
            if not number.isdigit() or not isinstance(document, dict) or document.get("index") != int(number):
                raise ValueError(f"its index is not {number}")
            items = document["items"]
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 and
                                                      all(isinstance(v, str) for v in i) for i in items):
                raise ValueError("items is not a list of [kind, item] strings")
            if not isinstance(document.get("list_sha256"), str):
                raise ValueError("list_sha256 is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(9, f"{name} is not a deletion list: {exc}")
            return
        self.deletions[int(number)] = document

    def _pruned_rows_file(self, data: bytes) -> None:
        try:
            rows = json.loads(data)["rows"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("idx"), int)
                                                     for r in rows):
                raise ValueError("rows is not a list of objects with an integer idx")
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(9, f"{PRUNED_ROWS_FILE} does not parse: {exc}")
            return
        self.pruned_rows = [row["idx"] for row in rows]

    def _check_pruned(self) -> None:
        if len(set(self.pruned_rows)) != len(self.pruned_rows):
            self.fail(9, f"{PRUNED_ROWS_FILE} describes an entry twice")
        for index in sorted(set(self.pruned_rows) - set(self.pruned))[:KEPT]:
            self.fail(9, f"{PRUNED_ROWS_FILE} describes entry {index}, which is not an archived pruned entry")
        for index, deletion in sorted(self.pruned.items()):
            document = self.deletions.get(deletion)
            if document is None:
                self.fail(9, f"pruned entry {index}: its deletion {deletion} is not in {DELETIONS_DIR}/")
            elif ["entry", str(index)] not in document["items"]:
                self.fail(9, f"pruned entry {index} is not in the list of deletion {deletion}")
        if self.deletions and self.records.list_sha256 is None:
            self.fail(9, "the archive holds deletion lists, and no personality was given to check them")
            return
        used = set(self.pruned.values())
        proven = 0
        for deletion, document in sorted(self.deletions.items()):
            if deletion not in used:
                self.fail(9, f"deletion {deletion} pruned no archived entry")
                continue
            digest = self.records.list_sha256([tuple(item) for item in document["items"]])
            if digest != document["list_sha256"]:
                self.fail(9, f"the list of deletion {deletion} does not hash to its list_sha256")
                continue
            if not (self.report.entries_from or 0) <= deletion < (self.report.to_size or 0):
                continue  # beyond the archive's tree: named, not proven, by this archive
            entry = self.deletion_entries.get(deletion)
            try:
                committed = json.loads(entry) if entry else None
            except ValueError:
                committed = None
            if not isinstance(committed, dict) or committed.get("list_sha256") != digest or \
                    committed.get("type") != document.get("type"):
                self.fail(9, f"deletion entry {deletion} is not a {document.get('type')} entry committing to the "
                             "list_sha256 of its list")
                continue
            proven += 1
        if not self.report.failed(9):
            self.report.pruned = len(self.pruned)
            if self.pruned:
                self.report.passed[9] = (f"{len(self.pruned):,} pruned entries, each in the list of its deletion "
                                         f"({len(self.deletions)} deletion(s), {proven} of them proven in the "
                                         "archive's tree, the others beyond it); what the log still says of "
                                         f"{len(self.pruned_rows):,} of them kept")
            else:
                self.report.passed[9] = "no pruned entries"

    # -- 10: blobs --------------------------------------------------------------------------------------------
    def _blob(self, name: str, data: bytes) -> None:
        digest = name.removeprefix(BLOBS_DIR + "/")
        if not _is_digest(digest):
            self.fail(10, f"{name} is not named by a SHA-256")
        elif hashlib.sha256(data).hexdigest() != digest:
            self.fail(10, f"{name} does not hash to its name")
        else:
            self.blob_files.add(digest)
            self.report.blobs += 1

    def _check_blobs(self, manifest: dict) -> None:
        gone = set(manifest["blobs_gone"])
        for digest in sorted(self.cited - self.blob_files - gone)[:KEPT]:
            self.fail(10, f"blob {digest}, cited by an archived event, is neither archived nor listed as gone")
        for digest in sorted((self.blob_files | gone) - self.cited)[:KEPT]:
            self.fail(10, f"blob {digest} is archived or listed as gone but no archived event cites it")
        for digest in sorted(self.blob_files & gone):
            self.fail(10, f"blob {digest} is archived and listed as gone")
        if not self.report.failed(10):
            self.report.passed[10] = (f"{len(self.blob_files):,} blobs hash to their names; {len(gone):,} cited "
                                      "blob(s) were gone when archived")
