"""The monitor behind `auditlog verify`: re-verify a whole log from its public tlog-tiles API.

Checks, in order (each failure is recorded with the tile or entry index it concerns; the run goes on):

1. Fetch /checkpoint and open it with the log's verifier key (signature and origin).
2. For every level-0 tile of that tree, fetch the tile and its entry bundle (concurrently, a bounded number at a
   time, consumed in order): the bundle must decode to the tile's width of entries, and each entry's RFC 6962 leaf
   hash must equal the tile's hash at its position. A byte changed in a stored entry is found here, by index.
3. Fold the level-0 tiles' hashes into a compact range. Every perfect node it completes at a height that is a
   multiple of 8 must equal the matching hash in the level-8k tile the log serves; the final root must equal the
   checkpoint's root.
4. With a saved state (the last checkpoint this monitor accepted): the saved checkpoint must verify with the same
   key, must not be larger than the new one, the root recomputed at its size must equal its root, and the log's
   consistency proof from it to the new checkpoint must verify (equal sizes: equal roots).
5. With witness keys (a `WitnessPolicy`): every cosignature on /checkpoint from those keys must verify; the
   checkpoint /checkpoint.witnessed serves must be signed by the log, consistent with the one verified above, and
   cosigned by at least k of the witnesses (api/client/evidence.py).
6. With a TSA certificate: the latest timestamp's checkpoint must be signed by the log and consistent with the one
   verified above, and its token must verify over that note's bytes (witness/rfc3161.py's checklist).
7. Only when everything passed is the new checkpoint saved as the state.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from api.client.log_client import LogClient, tile_width_in_tree
from log.checkpoint import Checkpoint
from log.compact import CompactRange
from log.errors import InvalidInput, LogError
from log.hashing import hash_leaves
from log.bundles import decode_entry_bundle
from log.tiles import TILE_HEIGHT, TILE_WIDTH, TileID, tiles_for_size
from witness.cosignatures import WitnessPolicy, check_cosignatures
from witness.rfc3161 import TimestampInfo, format_gen_time, verify_timestamp

HASH_SIZE = 32
MAX_LISTED_ENTRIES = 20


@dataclass
class MonitorReport:
    checkpoint: Checkpoint | None = None
    entries_checked: int = 0
    tampered: list[int] = field(default_factory=list)  # entry indices whose bytes do not hash to the tile's hash
    failures: list[str] = field(default_factory=list)  # every failed check, naming the tile or entry
    previous_size: int | None = None
    state_saved: bool = False
    witnesses: WitnessPolicy | None = None  # set when cosignatures were asked for
    cosigned_by: int = 0
    witnessed_size: int | None = None
    timestamp_asked: bool = False
    timestamp: TimestampInfo | None = None  # set once a token verified
    timestamp_size: int | None = None

    @property
    def valid(self) -> bool:
        return not self.failures and self.checkpoint is not None

    def summary(self) -> str:
        verdict = "VALID" if self.valid else "INVALID"
        line = f"Verified {self.entries_checked:,} entries · integrity {verdict} · tampered {len(self.tampered)}"
        if self.witnesses is not None:
            line += f" · cosigned by {self.cosigned_by} of {self.witnesses.total} witnesses"
            if self.witnesses.required != self.witnesses.total:
                line += f" (k={self.witnesses.required})"
            if self.witnessed_size is not None:
                line += f" at size {self.witnessed_size}"
        if self.timestamp_asked:
            if self.timestamp is None:
                line += " · timestamp INVALID"
            else:
                line += (f" · timestamp VALID (genTime {format_gen_time(self.timestamp.gen_time)}, "
                         f"size {self.timestamp_size})")
        return line


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


def load_state(path: Path) -> bytes | None:
    """The saved checkpoint note, or None when there is no state file yet."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the monitor state {path}: {exc}", field="state") from exc
    note = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(note, str):
        raise InvalidInput(f"the monitor state {path} holds no checkpoint", field="state")
    return note.encode()


def save_state(path: Path, checkpoint: Checkpoint, note: bytes) -> None:
    """Write the state atomically (temporary file, fsync, rename)."""
    document = {"origin": checkpoint.origin, "size": checkpoint.size,
                "root_hash": base64.b64encode(checkpoint.root_hash).decode(), "checkpoint": note.decode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def verify_log(
    client: LogClient,
    state_path: Path | None = None,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    witnesses: WitnessPolicy | None = None,
    tsa_trusted: bytes | None = None,
) -> MonitorReport:
    report = MonitorReport(witnesses=witnesses, timestamp_asked=tsa_trusted is not None)
    failures = report.failures

    # 4 (first half). The saved checkpoint must still verify with the key before anything is compared with it.
    previous: Checkpoint | None = None
    if state_path is not None:
        saved_note = load_state(state_path)
        if saved_note is not None:
            try:
                previous = client.believe(saved_note)
            except LogError as exc:
                failures.append(f"the saved checkpoint in {state_path} does not verify: {exc}")
                return report
            report.previous_size = previous.size

    # 1. The checkpoint.
    try:
        checkpoint, note = await client.signed_checkpoint()
    except LogError as exc:
        failures.append(f"checkpoint: {exc}")
        return report
    report.checkpoint = checkpoint
    size = checkpoint.size
    if previous is not None and previous.size > size:
        failures.append(f"the log shrank: the checkpoint has size {size}, the saved one {previous.size}")
        return report

    # Hash tiles of levels >= 1, fetched up front: there are about size / 256 of them.
    upper_ids = [t for t in tiles_for_size(size) if t.level and t.level > 0]
    upper: dict[tuple[int, int], bytes] = {}
    for tile_id, result in zip(upper_ids, await asyncio.gather(
        *(client.tile(t) for t in upper_ids), return_exceptions=True
    )):
        if isinstance(result, LogError):
            failures.append(f"{tile_id.path()}: cannot fetch: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            upper[(tile_id.level, tile_id.index)] = result

    # 2 and 3. Level-0 tiles with their bundles, in order; perfect nodes collected per level for step 3.
    completed: dict[int, bytearray] = collections.defaultdict(bytearray)

    def on_node(height: int, index: int, node_hash: bytes) -> None:
        if height and height % TILE_HEIGHT == 0:
            completed[height // TILE_HEIGHT] += node_hash

    tree = CompactRange()
    root_at_previous = None
    level0 = [TileID(0, n, tile_width_in_tree(0, n, size)) for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH)]

    async def fetch(tile_id: TileID):
        bundle_id = TileID(None, tile_id.index, tile_id.width)
        results = await asyncio.gather(client.tile(tile_id), client.tile(bundle_id), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, LogError):
                raise result
        return tile_id, bundle_id, *results

    async for tile_id, bundle_id, tile, bundle in _ordered(level0, fetch, concurrency):
        start = tile_id.index * TILE_WIDTH
        width = tile_id.width
        if isinstance(tile, LogError):
            failures.append(f"{tile_id.path()} (entries {start}..{start + width - 1}): cannot fetch: {tile}")
            break
        if len(tile) != width * HASH_SIZE:
            failures.append(f"{tile_id.path()}: {len(tile)} bytes, not the {width * HASH_SIZE} of {width} hashes")
            break
        leaf_hashes = [tile[i:i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]
        _check_bundle(report, bundle_id, bundle, tile_id, leaf_hashes)
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

    if tree.size == size:
        for (level, index), data in sorted(upper.items()):
            expected = bytes(completed[level][index * TILE_WIDTH * HASH_SIZE:][:len(data)])
            if data != expected:
                failures.append(f"{TileID(level, index, len(data) // HASH_SIZE).path()}: does not match the hashes "
                                f"recomputed from the level-{level - 1} tiles")
        if tree.root() != checkpoint.root_hash:
            failures.append(f"the root recomputed from the tiles, {base64.b64encode(tree.root()).decode()}, does not "
                            f"match the checkpoint root {base64.b64encode(checkpoint.root_hash).decode()} "
                            f"(size {size})")

    # 4 (second half). Consistency with the saved checkpoint.
    if previous is not None and tree.size == size:
        if previous.size == size:
            if previous.root_hash != checkpoint.root_hash:
                failures.append(f"fork: the saved checkpoint and the log's both have size {size} but different roots")
        elif previous.size > 0:
            if root_at_previous != previous.root_hash:
                failures.append(f"the tiles give another root at the saved size {previous.size} than the saved "
                                "checkpoint: the log rewrote its history")
            try:
                await client.consistency(previous.size, size)
            except LogError as exc:
                failures.append(f"consistency proof from the saved size {previous.size} to {size}: {exc}")

    # 5. Witnesses, and 6. the timestamp, once the tree was folded up to the checkpoint.
    if tree.size == size:
        if witnesses is not None:
            await _check_witnesses(client, report, note, witnesses)
        if tsa_trusted is not None:
            await _check_timestamp(client, report, tsa_trusted)

    # 7. Save only what fully verified.
    if state_path is not None and report.valid:
        save_state(state_path, checkpoint, note)
        report.state_saved = True
    return report


async def _consistent(client: LogClient, first: int, second: int) -> None:
    """Both sizes' roots are believed; equal sizes were compared by `believe` (a split view raises there)."""
    low, high = min(first, second), max(first, second)
    if 0 < low < high:
        await client.consistency(low, high)


async def _check_witnesses(client: LogClient, report: MonitorReport, note: bytes, policy: WitnessPolicy) -> None:
    try:
        check_cosignatures(note, policy)  # lines already on /checkpoint from the given keys must verify
    except LogError as exc:
        report.failures.append(f"a cosignature on /checkpoint does not verify: {exc}")
        return
    try:
        witnessed, witnessed_note = await client.witnessed_checkpoint()
        cosignatures = check_cosignatures(witnessed_note, policy)
    except LogError as exc:
        report.failures.append(f"witnessed checkpoint: {exc}")
        return
    report.cosigned_by, report.witnessed_size = len(cosignatures.cosigned_by), witnessed.size
    if not cosignatures.satisfied:
        report.failures.append(f"the witnessed checkpoint of size {witnessed.size} is {cosignatures.describe()}")
    try:
        await _consistent(client, witnessed.size, report.checkpoint.size)
    except LogError as exc:
        report.failures.append(f"the witnessed checkpoint of size {witnessed.size} is not consistent with the "
                               f"verified one of size {report.checkpoint.size}: {exc}")


async def _check_timestamp(client: LogClient, report: MonitorReport, trusted: bytes) -> None:
    try:
        stamped, stamped_note, token = await client.latest_timestamp()
    except LogError as exc:
        report.failures.append(f"timestamp: {exc}")
        return
    try:
        info = verify_timestamp(token, stamped_note, trusted)
    except LogError as exc:
        report.failures.append(f"the timestamp of the checkpoint of size {stamped.size}: {exc}")
        return
    try:
        await _consistent(client, stamped.size, report.checkpoint.size)
    except LogError as exc:
        report.failures.append(f"the timestamped checkpoint of size {stamped.size} is not consistent with the "
                               f"verified one of size {report.checkpoint.size}: {exc}")
        return
    report.timestamp, report.timestamp_size = info, stamped.size


def _check_bundle(report: MonitorReport, bundle_id: TileID, bundle, tile_id: TileID, leaf_hashes: list[bytes]):
    start = bundle_id.index * TILE_WIDTH
    if isinstance(bundle, LogError):
        report.failures.append(f"{bundle_id.path()} (entries {start}..{start + bundle_id.width - 1}): "
                               f"cannot fetch: {bundle}")
        return
    try:
        entries = decode_entry_bundle(bundle)
    except InvalidInput as exc:
        report.failures.append(f"{bundle_id.path()}: not a valid entry bundle: {exc}")
        return
    if len(entries) != len(leaf_hashes):
        report.failures.append(f"{bundle_id.path()}: {len(entries)} entries, not the {len(leaf_hashes)} of "
                               f"{tile_id.path()}")
        return
    for position, (computed, expected) in enumerate(zip(hash_leaves(entries), leaf_hashes)):
        if computed != expected:
            index = start + position
            report.tampered.append(index)
            if len(report.tampered) <= MAX_LISTED_ENTRIES:
                report.failures.append(
                    f"entry {index} ({bundle_id.path()}, position {position}): its leaf hash does not match "
                    f"{tile_id.path()}: the entry's bytes were changed"
                )
            elif len(report.tampered) == MAX_LISTED_ENTRIES + 1:
                report.failures.append("more entries do not match; only the first 20 are listed")
