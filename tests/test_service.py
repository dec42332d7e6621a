"""The Log service against the independent reference log (Go's golang.org/x/mod/sumdb/tlog, tests/vectors).

The 70,000 reference entries go through the real write path in batches of uneven sizes; at every size the vectors
name, the proofs the Log serves (from stored tiles, from its caches, and from the sequencer's in-memory edge
tiles right after a commit) must equal Go's byte for byte, and after a reopen too. Every tile the Log serves must
equal the reference file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from log.note_keys import parse_signer_key
from log.service import Log, LogConfig
from log.bundles import decode_entry_bundle
from log.storage.schema import entries as entries_table
from log.tile_nodes import interior_nodes
from log.tiles import TileID, entry_bundles_for_size, tiles_for_size
from tests.postgres import fresh_database

REFERENCE = Path(__file__).resolve().parent / "vectors" / "reference-log"
VECTORS = json.loads((REFERENCE / "vectors.json").read_text())


def _entries() -> list[bytes]:
    out: list[bytes] = []
    for tile in entry_bundles_for_size(VECTORS["tree_size"]):
        out.extend(decode_entry_bundle((REFERENCE / "log" / tile.path()).read_bytes()))
    return out


def _b64(hashes):
    return [base64.b64decode(h) for h in hashes]


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request, tmp_path):
    with contextlib.ExitStack() as stack:
        url = None if request.param == "sqlite" else stack.enter_context(fresh_database())
        key_file = tmp_path / "data" / "log.key"
        key_file.parent.mkdir(parents=True)
        shutil.copy(REFERENCE / "log.skey", key_file)
        yield LogConfig(data_dir=tmp_path / "data", database_url=url, batch_size=8192)


def test_proofs_and_tiles_equal_the_go_reference_log(config):
    entries = _entries()
    inclusion_at: dict[int, list[dict]] = {}
    for vector in VECTORS["inclusion"]:
        inclusion_at.setdefault(vector["tree_size"], []).append(vector)
    consistency_at: dict[int, list[dict]] = {}
    for vector in VECTORS["consistency"]:
        consistency_at.setdefault(vector["second"], []).append(vector)
    stops = sorted(set(inclusion_at) | set(consistency_at))

    async def check_at(log: Log, size: int) -> None:
        for vector in inclusion_at.get(size, []):
            assert await log.inclusion_proof(vector["index"], size) == _b64(vector["hashes"]), vector
            assert await log.find_leaf(base64.b64decode(vector["leaf_hash"]), size) <= vector["index"]
        for vector in consistency_at.get(size, []):
            if vector["first"] == 0:
                continue
            got = await log.consistency_proof(vector["first"], size)
            assert got == _b64(vector["hashes"]), vector

    async def grow() -> None:
        log = await Log.open(config)
        try:
            assert log.origin == VECTORS["origin"] and log.verifier_key == VECTORS["vkey"]
            # Uneven batches, stopping exactly at every size a vector names: proofs right after the commit that
            # made that size come from the newest tiles.
            done = 0
            for stop in stops:
                while done < stop:
                    step = min(stop - done, 5000 + done % 777)
                    await log.add_entries(entries[done:done + step])
                    done += step
                assert log.size == stop
                await check_at(log, stop)
            assert base64.b64encode(log.checkpoint.root_hash).decode() == VECTORS["root"]
            assert log.checkpoint.note.decode().startswith(VECTORS["checkpoint"].split("\n\n")[0])
        finally:
            await log.close()

    async def reopened() -> None:
        log = await Log.open(config)
        try:
            for stop in stops:  # every older size again, now from stored tiles and cold caches
                await check_at(log, stop)
            for tile in tiles_for_size(VECTORS["tree_size"]) + entry_bundles_for_size(VECTORS["tree_size"]):
                assert await log.tile(tile) == (REFERENCE / "log" / tile.path()).read_bytes(), tile.path()
            full = log.store.read_tiles([(0, 3), (1, 0)])
            for tile in full.values():  # full tiles are stored with their interior nodes
                assert tile.interior == interior_nodes(tile.data)
            narrower = TileID(0, 3, 17)  # a partial view of a full tile: a prefix of it
            assert await log.tile(narrower) == (REFERENCE / "log" / "tile/0/003").read_bytes()[:17 * 32]
        finally:
            await log.close()

    asyncio.run(grow())
    asyncio.run(reopened())


def test_the_signed_checkpoint_equals_the_go_signature(config):
    """Ed25519 is deterministic: the same body signed with the same key gives Go's signature line."""
    entries = _entries()

    async def scenario() -> bytes:
        log = await Log.open(config)
        try:
            for start in range(0, len(entries), 8192):
                await log.add_entries(entries[start:start + 8192])
            return log.checkpoint.note
        finally:
            await log.close()

    note = asyncio.run(scenario()).decode()
    reference = (REFERENCE / "log" / "checkpoint").read_text()
    ours_signature = note.split("\n\n")[1].splitlines()[0]
    assert ours_signature in reference.split("\n\n")[1].splitlines()
    assert parse_signer_key((REFERENCE / "log.skey").read_text().strip()).name == VECTORS["origin"]


def test_proofs_of_neighbouring_leaves_share_their_top_and_still_equal_the_reference(config):
    # The elements above a leaf's 256-leaf block are kept per (tree size, block) for the next proof of a neighbour:
    # every proof, asked in any order, at the newest size and at older ones, must still be RFC 6962's PATH.
    import random

    from tests import reference_tree

    entries = [b"neighbour %d" % n for n in range(700)]
    rng = random.Random(7)

    async def scenario() -> None:
        log = await Log.open(config)
        try:
            sizes, added = [], 0
            for size in (1, 2, 255, 256, 257, 511, 512, 513, 700):
                await log.add_entries(entries[added:size])
                added = size
                sizes.append(size)
                for tree_size in (size, rng.choice(sizes)):  # the newest, and one seen before
                    indices = list(range(tree_size))
                    rng.shuffle(indices)
                    for index in indices[:120]:
                        expected = reference_tree.path(index, entries[:tree_size])
                        assert await log.inclusion_proof(index, tree_size) == expected, (index, tree_size)
        finally:
            await log.close()

    asyncio.run(scenario())


def test_read_runs_its_work_against_one_committed_state(config):
    """What commits while a read's work runs is not seen by it, in its statements nor in the entries it reads;
    the next read sees it. What the work raises is raised to the caller."""
    count = sa.select(sa.func.count()).select_from(entries_table)

    async def scenario():
        loop = asyncio.get_running_loop()
        log = await Log.open(config)
        try:
            await log.add_entries([b"a", b"b"])

            def work(tx):
                before = tx.execute(count)[0][0]
                asyncio.run_coroutine_threadsafe(log.add_entries([b"c"]), loop).result()  # committed meanwhile
                return before, tx.execute(count)[0][0], tx.entries_at([1, 0, 2, 1, 5])

            assert await log.read(work) == (2, 2, {0: b"a", 1: b"b"})
            assert log.size == 3
            assert await log.read(lambda tx: (tx.execute(count)[0][0], tx.entries_at([2]))) == (3, {2: b"c"})
            assert await log.read(lambda tx: tx.entries_at([])) == {}
            with pytest.raises(ZeroDivisionError):
                await log.read(lambda tx: 1 / 0)
        finally:
            await log.close()

    asyncio.run(scenario())
