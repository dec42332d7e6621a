"""The monitor behind `auditlog verify`: re-verify a whole log from its public tlog-tiles API.

`Monitor(client, state_path, ...)` checks its local inputs when it is built, before anything is downloaded (the
state file is readable JSON of the right shape whose checkpoint verifies with the log's key, the TSA certificate is
a PEM or DER X.509 certificate, the limits make sense): a bad one raises `InvalidInput`. `await monitor.run()` is
one round; `verify_log(...)` builds a monitor and runs it once. Checks, in order (each problem is recorded with the
tile or entry index it concerns; the run goes on where it can):

1. Fetch /checkpoint and open it with the log's verifier key (signature and origin). A 404 there means the URL names
   no log: `InvalidInput`, raised.
2. For every level-0 tile of that tree, fetch the tile and its entry bundle (concurrently, a bounded number at a
   time, consumed in order): the bundle must decode to the tile's width of entries, and each entry's RFC 6962 leaf
   hash must equal the tile's hash at its position. A byte changed in a stored entry is found here, by index.
   Bundles refused for want of a credential (401, 403), or absent from the first (404: a static copy of a log that
   is not public), leave the contents unchecked (`contents_unchecked`): the hash tiles are checked alone.
   A bundle answered 410 (entry-pruned: entries whose contents a retention run deleted) is checked entry by entry
   from the problem body: every entry still present against its leaf hash, every pruned one empty there; the leaf
   hashes still come from the tile, so the root is recomputed as before. Each pruned entry's deletion entry must
   then be a retention run (read from its own, verified bundle) whose list, served by /api/v1/deletions/{index}
   and re-hashed to the list_sha256 that entry commits to, names the pruned entry. Anything else is INTEGRITY.
3. Fold the level-0 tiles' hashes into a compact range. Every perfect node it completes at a height that is a
   multiple of 8 must equal the matching hash in the level-8k tile the log serves; the final root must equal the
   checkpoint's root.
4. With a saved state (the last checkpoint this monitor accepted): the saved checkpoint must not be larger than the
   new one, the root recomputed at its size must equal its root, and the log's consistency proof from it to the new
   checkpoint must verify (equal sizes: equal roots). A log that serves no proofs (404: a static copy of its
   tiles) passes on the roots alone, which the tiles gave.
5. With witness keys (a `WitnessPolicy`): every cosignature on /checkpoint from those keys must verify; the
   checkpoint /checkpoint.witnessed serves must be signed by the log, consistent with the one verified above, and
   cosigned by at least k of the witnesses (api/client/evidence.py).
6. With a TSA certificate: the latest timestamp's checkpoint must be signed by the log and consistent with the one
   verified above, and its token must verify over that note's bytes (witness/rfc3161.py's checklist).
7. Freshness, when limits were given (`max_witness_lag`, `max_timestamp_age`; see `Monitor`).
8. Only when everything passed is the new checkpoint saved as the state.

Every problem has a kind, which is what a cron job or a service unit needs to tell apart:
    INTEGRITY    the log's answers do not verify (a changed entry or tile, a fork, a bad signature or token, a
                 limit the user set breached): evidence of misbehaviour. `report.error()` is a VerificationError.
    UNAVAILABLE  the log or a dependency cannot be reached or is not ready (connection refused, a timeout, a 5xx,
                 nothing cosigned or timestamped yet): no verdict. `report.error()` is an Unavailable.
An integrity problem wins over an outage in `report.error()`: tampering found before the log went away is reported.
A tile the checkpoint commits to that the log answers 404 for is INTEGRITY: the log signed a tree it cannot show.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from api.client.log_client import LogClient, tile_width_in_tree
from log.checkpoint import Checkpoint
from log.compact import CompactRange
from log.errors import (
    EntryPruned, Forbidden, InvalidInput, LogError, NotFound, Unauthenticated, Unavailable, VerificationError,
)
from log.hashing import hash_leaves
from log.bundles import decode_entry_bundle
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID, tiles_for_size
from witness.cosignatures import WitnessPolicy, check_cosignatures
from witness.rfc3161 import TimestampInfo, format_gen_time, load_certificates, verify_timestamp

HASH_SIZE = 32
MAX_LISTED_ENTRIES = 20
MAX_SEEN = 10_000  # sizes remembered with the time they were first seen (for the witness lag as a duration)

INTEGRITY = "integrity"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Problem:
    """One failed check: its kind (INTEGRITY or UNAVAILABLE), what it concerns ('log', 'state', 'witness',
    'timestamp'), and one line in words."""

    kind: str
    area: str
    message: str


def duration_words(seconds: float) -> str:
    """90 -> '1m 30s', 7260 -> '2h 1m', 90000 -> '1d 1h'."""
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0s"


@dataclass
class MonitorReport:
    checkpoint: Checkpoint | None = None
    entries_checked: int = 0
    tampered: list[int] = field(default_factory=list)  # entry indices whose bytes do not hash to the tile's hash
    pruned: dict[int, int] = field(default_factory=dict)  # entries pruned by retention -> their deletion entry
    problems: list[Problem] = field(default_factory=list)  # every failed check, naming the tile or entry
    previous_size: int | None = None
    state_saved: bool = False
    witnesses: WitnessPolicy | None = None  # set when cosignatures were asked for
    cosigned_by: int = 0
    witnessed_size: int | None = None
    witness_lag_entries: int | None = None
    witness_lag_seconds: float | None = None  # a lower bound (see Monitor); None when nothing bounds it
    timestamp_asked: bool = False
    timestamp: TimestampInfo | None = None  # set once a token verified
    timestamp_size: int | None = None
    timestamp_age_seconds: float | None = None
    # Entry contents (the entry bundles) are private on a log with access control: without a credential that may
    # read them, the tree is rebuilt from the public hash tiles alone and this says why the contents were not
    # re-hashed (None: they were, or the log served them to anyone).
    contents_unchecked: str | None = None

    def fail(self, kind: str, area: str, message: str) -> None:
        self.problems.append(Problem(kind, area, message))

    @property
    def failures(self) -> list[str]:
        """Every problem's message, integrity and outage alike."""
        return [p.message for p in self.problems]

    @property
    def integrity_failures(self) -> list[str]:
        return [p.message for p in self.problems if p.kind == INTEGRITY]

    @property
    def unavailable(self) -> list[str]:
        return [p.message for p in self.problems if p.kind == UNAVAILABLE]

    @property
    def complete(self) -> bool:
        """Every entry of the checkpoint was fetched and checked."""
        return self.checkpoint is not None and self.entries_checked == self.checkpoint.size

    @property
    def valid(self) -> bool:
        return not self.problems and self.checkpoint is not None

    @property
    def status(self) -> str:
        """'valid', 'invalid' (an integrity problem) or 'unavailable' (no verdict: an outage or not ready)."""
        if self.integrity_failures:
            return "invalid"
        return "valid" if self.valid else "unavailable"

    def error(self) -> LogError | None:
        """None when valid; else the error this round ends in: a VerificationError when any integrity check failed,
        otherwise an Unavailable. Its message is the first problem of that kind (and how many more there are)."""
        for kind, cls in ((INTEGRITY, VerificationError), (UNAVAILABLE, Unavailable)):
            messages = [p.message for p in self.problems if p.kind == kind]
            if messages:
                more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
                return cls(messages[0] + more)
        return None

    def summary(self) -> str:
        verdict = "INVALID" if self.integrity_failures else "VALID" if self.complete else "UNKNOWN"
        what = "entries" if self.contents_unchecked is None else "leaf hashes"
        line = f"Verified {self.entries_checked:,} {what} · integrity {verdict} · tampered {len(self.tampered)}"
        if self.pruned:
            line += (f" · pruned {len(self.pruned):,} (contents deleted by retention runs whose lists name them; "
                     "leaf hashes checked)")
        if self.contents_unchecked is not None:
            line += (" · entry contents NOT checked (the tree was rebuilt from the public hash tiles; give a "
                     "credential that may read entries, e.g. --token, to re-hash them)")
        areas = {p.area: p.kind for p in reversed(self.problems)}  # the first problem of each area wins
        if self.witnesses is not None:
            if areas.get("witness") == UNAVAILABLE and self.witnessed_size is None:
                line += " · witnessed checkpoint UNAVAILABLE"
            else:
                line += f" · cosigned by {self.cosigned_by} of {self.witnesses.total} witnesses"
                if self.witnesses.required != self.witnesses.total:
                    line += f" (k={self.witnesses.required})"
                if self.witnessed_size is not None:
                    line += f" at size {self.witnessed_size}"
                if self.witness_lag_entries:
                    line += f", {self.witness_lag_entries:,} entries behind"
        if self.timestamp_asked:
            if self.timestamp is not None:
                line += (f" · timestamp VALID (genTime {format_gen_time(self.timestamp.gen_time)}, "
                         f"size {self.timestamp_size})")
            elif areas.get("timestamp") == UNAVAILABLE:
                line += " · timestamp UNAVAILABLE"
            else:
                line += " · timestamp INVALID"
        return line

    def to_dict(self) -> dict:
        """The report as JSON-ready values (`auditlog verify --json`)."""
        checkpoint = None if self.checkpoint is None else {
            "origin": self.checkpoint.origin, "size": self.checkpoint.size,
            "root_hash": base64.b64encode(self.checkpoint.root_hash).decode()}
        document = {
            "status": self.status,
            "checkpoint": checkpoint,
            "entries_checked": self.entries_checked,
            "tampered": self.tampered,
            "pruned": len(self.pruned),
            "problems": [{"kind": p.kind, "area": p.area, "message": p.message} for p in self.problems],
            "previous_size": self.previous_size,
            "state_saved": self.state_saved,
            "contents_checked": self.contents_unchecked is None,
        }
        if self.witnesses is not None:
            document["witnesses"] = {
                "cosigned_by": self.cosigned_by, "total": self.witnesses.total, "required": self.witnesses.required,
                "witnessed_size": self.witnessed_size, "lag_entries": self.witness_lag_entries,
                "lag_seconds": self.witness_lag_seconds}
        if self.timestamp_asked:
            document["timestamp"] = None if self.timestamp is None else {
                "size": self.timestamp_size, "gen_time": format_gen_time(self.timestamp.gen_time),
                "tsa": self.timestamp.tsa_name, "age_seconds": self.timestamp_age_seconds}
        return document


Progress = Callable[[int, int], None]


async def _ordered(items: Iterable, fetch: Callable[[object], Awaitable], limit: int):
    """Yield fetch(item) for each item in order, with at most `limit` fetches in flight."""
    iterator = iter(items)
    pending: collections.deque[asyncio.Task] = collections.deque()
    try:
        for item in iterator:
            pending.append(asyncio.create_task(fetch(item)))
            if len(pending) >= limit:
                break
        while pending:
            result = await pending.popleft()
            for item in iterator:
                pending.append(asyncio.create_task(fetch(item)))
                break
            yield result
    finally:
        for task in pending:
            task.cancel()


@dataclass
class MonitorState:
    """What a monitor keeps between runs: the last checkpoint it accepted, and when it first saw each newer size
    (sizes increasing; pruned of sizes that were since cosigned)."""

    note: bytes | None = None
    seen: list[tuple[int, float]] = field(default_factory=list)

    def saw(self, size: int, now: float) -> None:
        if not self.seen or size > self.seen[-1][0]:
            self.seen.append((size, now))
            del self.seen[:-MAX_SEEN]

    def first_seen_above(self, size: int) -> tuple[int, float] | None:
        """The first size larger than `size` this monitor saw, and when; older entries are dropped."""
        self.seen = [(s, t) for s, t in self.seen if s > size]
        return self.seen[0] if self.seen else None


def load_monitor_state(path: Path) -> MonitorState:
    """The state file, checked for shape; an empty state when there is no file yet. InvalidInput names the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return MonitorState()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the monitor state {path}: {exc}", field="state") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"the monitor state {path} is not JSON: {exc}", field="state") from None
    if not isinstance(document, dict) or not isinstance(document.get("checkpoint"), str):
        raise InvalidInput(f"the monitor state {path} is not a JSON object holding a \"checkpoint\" note",
                           field="state")
    for name, kind in (("origin", str), ("size", int), ("root_hash", str), ("seen", list)):
        if name in document and not isinstance(document[name], kind):
            raise InvalidInput(f"the monitor state {path}: {name!r} is not a {kind.__name__}", field="state")
    seen = []
    for item in document.get("seen", []):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                and isinstance(item[1], (int, float))):
            raise InvalidInput(f"the monitor state {path}: 'seen' must hold [size, seconds] pairs", field="state")
        seen.append((item[0], float(item[1])))
    return MonitorState(document["checkpoint"].encode(), seen)


def load_state(path: Path) -> bytes | None:
    """The saved checkpoint note, or None when there is no state file yet."""
    return load_monitor_state(path).note


def save_state(path: Path, checkpoint: Checkpoint, note: bytes, seen: list[tuple[int, float]] = ()) -> None:
    """Write the state atomically (temporary file, fsync, rename)."""
    document = {"origin": checkpoint.origin, "size": checkpoint.size,
                "root_hash": base64.b64encode(checkpoint.root_hash).decode(), "checkpoint": note.decode(),
                "seen": [[size, at] for size, at in seen]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _kind(exc: LogError) -> str:
    return UNAVAILABLE if isinstance(exc, Unavailable) else INTEGRITY


def _seconds(value: float | datetime.timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    if not seconds > 0:
        raise InvalidInput(f"{what} must be a positive duration, not {value}", field=what)
    return seconds


class Monitor:
    """Verifies one log, round after round (`run()`), with the same client (the roots it believed stay believed:
    a split view between rounds is found) and the same state.

    Freshness limits (a breach is an INTEGRITY problem: the log does not deliver what the user requires of it):

    `max_witness_lag`: an int N, or a duration (a `timedelta`, or seconds as a float).
      - N entries: the witnessed checkpoint may be at most N entries smaller than the log's latest checkpoint.
      - A duration D: the log's entries beyond the witnessed checkpoint may have waited for cosignatures at most D.
        How long they waited is measured only from what this monitor can check, so the figure is a lower bound and a
        breach is proven: from the earlier of (a) when this monitor first saw a checkpoint larger than the witnessed
        one (its own clock; remembered in the state file, or in memory across `run()`s), and (b) the genTime of a
        verified timestamp on such a checkpoint (the TSA's signed clock). The log's own checkpoints carry no time,
        and a cosignature's timestamp only says when the witnessed size was cosigned, not how long newer entries
        have waited; an idle log whose latest checkpoint is cosigned has no lag however old that cosignature is.
        A single run without a state file and without a TSA can therefore only see a lag that began in that run.
    `max_timestamp_age`: a duration D: the newest verified timestamp's genTime is at most D before now (this
      machine's clock). It bounds how stale the log's proof of time may be, whether or not the log grew.
    """

    def __init__(
        self,
        client: LogClient,
        state_path: Path | None = None,
        *,
        concurrency: int = 16,
        witnesses: WitnessPolicy | None = None,
        tsa_trusted: bytes | str | list | None = None,
        max_witness_lag: int | float | datetime.timedelta | None = None,
        max_timestamp_age: float | datetime.timedelta | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.state_path = Path(state_path) if state_path is not None else None
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1, not {concurrency}", field="concurrency")
        self.concurrency = concurrency
        self.witnesses = witnesses
        self.clock = clock
        # The TSA's certificate: parsed now, so a file that is not one fails before anything is downloaded.
        self.tsa_trusted = None
        if tsa_trusted is not None:
            self.tsa_trusted = load_certificates(tsa_trusted)
            if not self.tsa_trusted:
                raise InvalidInput("the TSA certificate file holds no certificate", field="tsa_ca")
        self.max_lag_entries: int | None = None
        self.max_lag_seconds: float | None = None
        if isinstance(max_witness_lag, bool):
            raise InvalidInput("max_witness_lag is a number of entries or a duration", field="max_witness_lag")
        if isinstance(max_witness_lag, int):
            if max_witness_lag < 0:
                raise InvalidInput(f"max_witness_lag must be 0 or more entries, not {max_witness_lag}",
                                   field="max_witness_lag")
            self.max_lag_entries = max_witness_lag
        else:
            self.max_lag_seconds = _seconds(max_witness_lag, "max_witness_lag")
        self.max_timestamp_age = _seconds(max_timestamp_age, "max_timestamp_age")
        if max_witness_lag is not None and witnesses is None:
            raise InvalidInput("a witness lag limit needs witness keys to check the witnessed checkpoint with",
                               field="max_witness_lag")
        if max_timestamp_age is not None and self.tsa_trusted is None:
            raise InvalidInput("a timestamp age limit needs the TSA's certificate to check the timestamp with",
                               field="max_timestamp_age")
        # The saved state: readable, of the right shape, and its checkpoint signed by the key given.
        self.state = MonitorState()
        self.previous: Checkpoint | None = None
        if self.state_path is not None:
            self.state = load_monitor_state(self.state_path)
            if self.state.note is not None:
                self.previous = self._believe_saved(self.state.note)

    def _believe_saved(self, note: bytes) -> Checkpoint:
        try:
            checkpoint = self.client.believe(note)
        except LogError as exc:
            raise InvalidInput(f"the checkpoint saved in {self.state_path} does not verify with the log key given "
                               f"(another log's state, or a wrong key?): {exc}", field="state") from None
        return checkpoint

    async def run(self, progress: Progress | None = None) -> MonitorReport:
        """One round. Raises InvalidInput when the URL names no log (/checkpoint answers 404); every other problem
        is in the report."""
        report = MonitorReport(witnesses=self.witnesses, timestamp_asked=self.tsa_trusted is not None)
        previous = self.previous
        if previous is not None:
            report.previous_size = previous.size
        now = self.clock()
        checkpoint, note = await _verify_tree(self.client, report, previous, self.concurrency, progress)
        if checkpoint is None or not report.complete:
            return report
        if self.witnesses is not None:  # only the witness lag reads when sizes were first seen
            self.state.saw(checkpoint.size, now)

        # 5. Witnesses, and 6. the timestamp, once the tree was folded up to the checkpoint.
        if self.witnesses is not None:
            await _check_witnesses(self.client, report, note, self.witnesses)
        if self.tsa_trusted is not None:
            await _check_timestamp(self.client, report, self.tsa_trusted)
        # 7. Freshness.
        self._check_freshness(report, now)

        # 8. Save only what fully verified.
        if report.valid:
            self.previous = checkpoint
            self.state.note = note
            if self.state_path is not None:
                save_state(self.state_path, checkpoint, note, self.state.seen)
                report.state_saved = True
        return report

    def _check_freshness(self, report: MonitorReport, now: float) -> None:
        latest = report.checkpoint.size
        witnessed = report.witnessed_size
        if witnessed is not None:
            report.witness_lag_entries = max(0, latest - witnessed)
            since = None
            first = self.state.first_seen_above(witnessed)
            if first is not None:
                since = (first[1], f"a checkpoint of size {first[0]:,} was first seen by this monitor")
            if report.timestamp is not None and report.timestamp_size is not None \
                    and report.timestamp_size > witnessed:
                stamped = report.timestamp.gen_time.timestamp()
                if since is None or stamped < since[0]:
                    since = (stamped, f"the checkpoint of size {report.timestamp_size:,} was timestamped "
                                      f"(genTime {format_gen_time(report.timestamp.gen_time)})")
            report.witness_lag_seconds = 0.0 if report.witness_lag_entries == 0 else \
                (max(0.0, now - since[0]) if since is not None else None)
            if self.max_lag_entries is not None and report.witness_lag_entries > self.max_lag_entries:
                report.fail(INTEGRITY, "witness",
                            f"witnessed checkpoint {witnessed:,} lags the log {latest:,} by "
                            f"{report.witness_lag_entries:,} entries, limit {self.max_lag_entries:,}")
            if self.max_lag_seconds is not None and report.witness_lag_seconds is not None \
                    and report.witness_lag_seconds > self.max_lag_seconds:
                report.fail(INTEGRITY, "witness",
                            f"witnessed checkpoint {witnessed:,} lags the log {latest:,}: entries have waited for "
                            f"cosignatures at least {duration_words(report.witness_lag_seconds)} (since {since[1]}), "
                            f"limit {duration_words(self.max_lag_seconds)}")
        if report.timestamp is not None:
            report.timestamp_age_seconds = max(0.0, now - report.timestamp.gen_time.timestamp())
            if self.max_timestamp_age is not None and report.timestamp_age_seconds > self.max_timestamp_age:
                report.fail(INTEGRITY, "timestamp",
                            f"the newest timestamp (checkpoint {report.timestamp_size:,}, genTime "
                            f"{format_gen_time(report.timestamp.gen_time)}) is "
                            f"{duration_words(report.timestamp_age_seconds)} old, limit "
                            f"{duration_words(self.max_timestamp_age)}")


async def verify_log(
    client: LogClient,
    state_path: Path | None = None,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    witnesses: WitnessPolicy | None = None,
    tsa_trusted: bytes | None = None,
    max_witness_lag: int | float | datetime.timedelta | None = None,
    max_timestamp_age: float | datetime.timedelta | None = None,
    clock: Callable[[], float] = time.time,
) -> MonitorReport:
    """One monitoring run (`Monitor(...).run()`): InvalidInput for a bad local input, before any download."""
    monitor = Monitor(client, state_path, concurrency=concurrency, witnesses=witnesses, tsa_trusted=tsa_trusted,
                      max_witness_lag=max_witness_lag, max_timestamp_age=max_timestamp_age, clock=clock)
    return await monitor.run(progress)


async def _verify_tree(client: LogClient, report: MonitorReport, previous: Checkpoint | None, concurrency: int,
                       progress: Progress | None) -> tuple[Checkpoint | None, bytes | None]:
    """Steps 1 to 4: the checkpoint, every tile and bundle, the root, consistency with the saved checkpoint."""
    # 1. The checkpoint.
    try:
        checkpoint, note = await client.signed_checkpoint()
    except NotFound as exc:
        raise InvalidInput(f"no log at {client.base_url}: {exc} (is it the log's base URL?)", field="server") from None
    except LogError as exc:
        report.fail(_kind(exc), "log", f"checkpoint: {exc}")
        return None, None
    report.checkpoint = checkpoint
    size = checkpoint.size
    if previous is not None and previous.size > size:
        report.fail(INTEGRITY, "log", f"the log shrank: the checkpoint has size {size}, the saved one {previous.size}")
        return None, None

    # Hash tiles of levels >= 1, fetched up front: there are about size / 256 of them.
    upper_ids = [t for t in tiles_for_size(size) if t.level and t.level > 0]
    upper: dict[tuple[int, int], bytes] = {}
    for tile_id, result in zip(upper_ids, await asyncio.gather(
        *(client.tile(t) for t in upper_ids), return_exceptions=True
    )):
        if isinstance(result, LogError):
            report.fail(_kind(result), "log", f"{tile_id.path()}: cannot fetch: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            upper[(tile_id.level, tile_id.index)] = result
    if any(p.kind == UNAVAILABLE for p in report.problems):
        return checkpoint, note

    # 2 and 3. Level-0 tiles with their bundles, in order; perfect nodes collected per level for step 3.
    completed: dict[int, bytearray] = collections.defaultdict(bytearray)

    def on_node(height: int, index: int, node_hash: bytes) -> None:
        if height and height % TILE_HEIGHT == 0:
            completed[height // TILE_HEIGHT] += node_hash

    tree = CompactRange()
    deletions: dict[int, bytes | None] = {}  # deletion entries pruned entries name -> their (verified) bytes
    root_at_previous = None
    level0 = [TileID(0, n, tile_width_in_tree(0, n, size)) for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH)]

    async def fetch(tile_id: TileID):
        bundle_id = TileID(None, tile_id.index, tile_id.width)
        fetches = [client.tile(tile_id)]
        if report.contents_unchecked is None:  # once the contents are refused, the hash tiles go on alone
            fetches.append(client.tile(bundle_id))
        results = await asyncio.gather(*fetches, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, LogError):
                raise result
        return tile_id, bundle_id, results[0], results[1] if len(results) > 1 else None

    async for tile_id, bundle_id, tile, bundle in _ordered(level0, fetch, concurrency):
        start = tile_id.index * TILE_WIDTH
        width = tile_id.width
        if isinstance(tile, LogError):
            report.fail(_kind(tile), "log",
                        f"{tile_id.path()} (entries {start}..{start + width - 1}): cannot fetch: {tile}")
            break
        if isinstance(bundle, Unavailable):
            report.fail(UNAVAILABLE, "log", f"{bundle_id.path()} (entries {start}..{start + width - 1}): cannot "
                                            f"fetch: {bundle}")
            break
        if len(tile) != width * HASH_SIZE:
            report.fail(INTEGRITY, "log",
                        f"{tile_id.path()}: {len(tile)} bytes, not the {width * HASH_SIZE} of {width} hashes")
            break
        leaf_hashes = [tile[i:i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]
        if isinstance(bundle, (Unauthenticated, Forbidden)):
            report.contents_unchecked = str(bundle)
        elif isinstance(bundle, NotFound) and (tile_id.index == 0 or report.contents_unchecked is not None):
            # No bundle at all, from the first: a static copy of a log that is not public publishes hash tiles
            # only (`serve --publish-dir` without --public). A bundle missing after others were served is not that.
            if report.contents_unchecked is None:
                report.contents_unchecked = f"the log publishes no entry bundles ({bundle})"
        elif isinstance(bundle, EntryPruned):
            kept = _check_pruned_bundle(report, bundle_id, bundle, tile_id, leaf_hashes)
            _keep_deletion_entries(report, deletions, start, kept)
        elif bundle is not None:
            kept = _check_bundle(report, bundle_id, bundle, tile_id, leaf_hashes)
            _keep_deletion_entries(report, deletions, start, kept)
        if previous is not None and tree.size < previous.size <= tree.size + width:
            cut = previous.size - tree.size
            tree.extend(leaf_hashes[:cut], on_node)
            root_at_previous = tree.root()
            tree.extend(leaf_hashes[cut:], on_node)
        else:
            tree.extend(leaf_hashes, on_node)
        report.entries_checked = tree.size
        if progress is not None:
            progress(tree.size, size)

    if tree.size != size:
        return checkpoint, note
    for (level, index), data in sorted(upper.items()):
        expected = bytes(completed[level][index * TILE_WIDTH * HASH_SIZE:][:len(data)])
        if data != expected:
            report.fail(INTEGRITY, "log", f"{TileID(level, index, len(data) // HASH_SIZE).path()}: does not match the "
                                          f"hashes recomputed from the level-{level - 1} tiles")
    if report.pruned:
        await _check_deletions(client, report, deletions, size)
    if tree.root() != checkpoint.root_hash:
        report.fail(INTEGRITY, "log",
                    f"the root recomputed from the tiles, {base64.b64encode(tree.root()).decode()}, does not match "
                    f"the checkpoint root {base64.b64encode(checkpoint.root_hash).decode()} (size {size})")

    # 4 (second half). Consistency with the saved checkpoint.
    if previous is not None:
        if previous.size == size:
            if previous.root_hash != checkpoint.root_hash:
                report.fail(INTEGRITY, "log",
                            f"fork: the saved checkpoint and the log's both have size {size} but different roots")
        elif previous.size > 0:
            if root_at_previous != previous.root_hash:
                report.fail(INTEGRITY, "log", f"the tiles give another root at the saved size {previous.size} than "
                                              "the saved checkpoint: the log rewrote its history")
            try:
                await client.consistency(previous.size, size)
            except NotFound:
                # A static copy of the tiles (`serve --publish-dir`) serves no proofs. The tiles rebuilt both the
                # saved root and the new one above (or that failed there), which proves what the proof would.
                pass
            except LogError as exc:
                report.fail(_kind(exc), "log",
                            f"consistency proof from the saved size {previous.size} to {size}: {exc}")
    return checkpoint, note


async def _consistent(client: LogClient, first: int, second: int) -> None:
    """Both sizes' roots are believed; equal sizes were compared by `believe` (a split view raises there)."""
    low, high = min(first, second), max(first, second)
    if 0 < low < high:
        await client.consistency(low, high)


async def _check_witnesses(client: LogClient, report: MonitorReport, note: bytes, policy: WitnessPolicy) -> None:
    try:
        check_cosignatures(note, policy)  # lines already on /checkpoint from the given keys must verify
    except LogError as exc:
        report.fail(INTEGRITY, "witness", f"a cosignature on /checkpoint does not verify: {exc}")
        return
    try:
        witnessed, witnessed_note = await client.witnessed_checkpoint()
    except NotFound as exc:  # nothing cosigned yet, or no witnesses configured: not ready
        report.fail(UNAVAILABLE, "witness", f"witnessed checkpoint not ready: {exc}")
        return
    except LogError as exc:
        report.fail(_kind(exc), "witness", f"witnessed checkpoint: {exc}")
        return
    try:
        cosignatures = check_cosignatures(witnessed_note, policy)
    except LogError as exc:
        report.fail(INTEGRITY, "witness", f"witnessed checkpoint: {exc}")
        return
    report.cosigned_by, report.witnessed_size = len(cosignatures.cosigned_by), witnessed.size
    if not cosignatures.satisfied:
        report.fail(INTEGRITY, "witness",
                    f"the witnessed checkpoint of size {witnessed.size} is {cosignatures.describe()}")
    try:
        await _consistent(client, witnessed.size, report.checkpoint.size)
    except LogError as exc:
        report.fail(_kind(exc), "witness", f"the witnessed checkpoint of size {witnessed.size} is not consistent "
                                           f"with the verified one of size {report.checkpoint.size}: {exc}")


async def _check_timestamp(client: LogClient, report: MonitorReport, trusted) -> None:
    try:
        stamped, stamped_note, token = await client.latest_timestamp()
    except NotFound as exc:  # no timestamp yet, or no TSA configured: not ready
        report.fail(UNAVAILABLE, "timestamp", f"timestamp not ready: {exc}")
        return
    except LogError as exc:
        report.fail(_kind(exc), "timestamp", f"timestamp: {exc}")
        return
    try:
        info = verify_timestamp(token, stamped_note, trusted)
    except LogError as exc:
        report.fail(INTEGRITY, "timestamp", f"the timestamp of the checkpoint of size {stamped.size}: {exc}")
        return
    try:
        await _consistent(client, stamped.size, report.checkpoint.size)
    except LogError as exc:
        report.fail(_kind(exc), "timestamp", f"the timestamped checkpoint of size {stamped.size} is not consistent "
                                             f"with the verified one of size {report.checkpoint.size}: {exc}")
        return
    report.timestamp, report.timestamp_size = info, stamped.size


def _check_pruned_bundle(report: MonitorReport, bundle_id: TileID, gone: EntryPruned, tile_id: TileID,
                         leaf_hashes: list[bytes]) -> list[bytes] | None:
    """A bundle the log answered 410: the entries still present against the tile, the pruned ones empty in the
    bundle the problem carries; the pruned ones are recorded for the deletion check. Returns the entries."""
    start = bundle_id.index * TILE_WIDTH
    outside = [index for index in gone.pruned if not start <= index < start + bundle_id.width]
    if gone.present is None or outside:
        why = "without the bundle's other entries" if gone.present is None else f"naming entry {outside[0]}"
        report.fail(INTEGRITY, "log", f"{bundle_id.path()}: answered 410 (entries pruned) {why}")
        return None
    for index, deletion in gone.pruned.items():
        if deletion <= index:
            report.fail(INTEGRITY, "log", f"entry {index}: pruned by entry {deletion}, which is not a later entry")
        report.pruned[index] = deletion
    return _check_bundle(report, bundle_id, gone.present, tile_id, leaf_hashes,
                         pruned={index - start for index in gone.pruned})


def _keep_deletion_entries(report: MonitorReport, deletions: dict[int, bytes | None], start: int,
                           entries: list[bytes] | None) -> None:
    """Note the deletion entries pruned entries name, and keep the bytes of those in this (verified) bundle."""
    for deletion in report.pruned.values():
        deletions.setdefault(deletion, None)
    if entries is None:
        return
    for index in [i for i, data in deletions.items() if data is None and start <= i < start + len(entries)]:
        deletions[index] = entries[index - start]


async def _check_deletions(client: LogClient, report: MonitorReport, deletions: dict[int, bytes | None],
                           size: int) -> None:
    """Every pruned entry's deletion entry: a retention run in the tree, whose deletion list (GET
    /api/v1/deletions/{index}) hashes to the list_sha256 the entry commits to and names the pruned entry."""
    by_deletion: dict[int, list[int]] = collections.defaultdict(list)
    for index, deletion in sorted(report.pruned.items()):
        by_deletion[deletion].append(index)
    for deletion, pruned in sorted(by_deletion.items()):
        where = f"entries {pruned[0]}..{pruned[-1]}" if len(pruned) > 1 else f"entry {pruned[0]}"
        data = deletions.get(deletion)
        if deletion >= size or data is None:
            report.fail(INTEGRITY, "log", f"{where}: pruned by entry {deletion}, which the verified tree does not "
                                          f"hold")
            continue
        try:
            record = json.loads(data)
            committed = record["list_sha256"] if record.get("type") == "auditlog.retention-run/v1" else None
        except (ValueError, AttributeError, KeyError, TypeError):
            committed = None
        if not isinstance(committed, str):
            report.fail(INTEGRITY, "log", f"{where}: pruned by entry {deletion}, which is not a retention run")
            continue
        try:
            listed = await client.deletion(deletion)
        except NotFound as exc:
            report.fail(INTEGRITY, "log", f"{where}: the log serves no deletion list for entry {deletion}: {exc}")
            continue
        except LogError as exc:
            report.fail(_kind(exc), "log", f"the deletion list of entry {deletion}: cannot fetch: {exc}")
            continue
        items = listed.get("items")
        if not isinstance(items, list) or not all(
                isinstance(i, list) and len(i) == 2 and all(isinstance(v, str) for v in i) for i in items):
            report.fail(INTEGRITY, "log", f"the deletion list of entry {deletion} is malformed")
            continue
        digest = hashlib.sha256(b"".join(sorted(f"{kind} {item}\n".encode() for kind, item in items))).hexdigest()
        if digest != committed:
            report.fail(INTEGRITY, "log", f"the deletion list of entry {deletion} hashes to {digest}, not the "
                                          f"list_sha256 {committed} its entry commits to")
            continue
        named = {item for kind, item in items if kind == "entry"}
        unlisted = [index for index in pruned if str(index) not in named]
        if unlisted:
            report.fail(INTEGRITY, "log", f"entry {unlisted[0]}" + (f" (and {len(unlisted) - 1} more)" if
                                                                    len(unlisted) > 1 else "") +
                        f": pruned, but the deletion list of entry {deletion} does not name it")


def _check_bundle(report: MonitorReport, bundle_id: TileID, bundle, tile_id: TileID, leaf_hashes: list[bytes],
                  pruned: set[int] = frozenset()) -> list[bytes] | None:
    """The bundle's entries against the tile's leaf hashes (`pruned`: positions whose contents were deleted, empty
    here and not re-hashed). Returns the entries (None when the bundle could not be read as one)."""
    start = bundle_id.index * TILE_WIDTH
    if isinstance(bundle, LogError):
        report.fail(_kind(bundle), "log", f"{bundle_id.path()} (entries {start}..{start + bundle_id.width - 1}): "
                                          f"cannot fetch: {bundle}")
        return None
    try:
        entries = decode_entry_bundle(bundle)
    except InvalidInput as exc:
        report.fail(INTEGRITY, "log", f"{bundle_id.path()}: not a valid entry bundle: {exc}")
        return None
    if len(entries) != len(leaf_hashes):
        report.fail(INTEGRITY, "log", f"{bundle_id.path()}: {len(entries)} entries, not the {len(leaf_hashes)} of "
                                      f"{tile_id.path()}")
        return None
    for position, (computed, expected) in enumerate(zip(hash_leaves(entries), leaf_hashes)):
        if position in pruned:
            if entries[position]:
                report.fail(INTEGRITY, "log", f"entry {start + position}: answered as pruned but with contents")
            continue
        if computed != expected:
            index = start + position
            report.tampered.append(index)
            if len(report.tampered) <= MAX_LISTED_ENTRIES:
                report.fail(INTEGRITY, "log",
                            f"entry {index} ({bundle_id.path()}, position {position}): its leaf hash does not match "
                            f"{tile_id.path()}: the entry's bytes were changed")
            elif len(report.tampered) == MAX_LISTED_ENTRIES + 1:
                report.fail(INTEGRITY, "log", "more entries do not match; only the first 20 are listed")
    return entries
