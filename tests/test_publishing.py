"""TilePublisher (api/server/publishing.py, `serve --publish-dir`): the tlog-tiles read API as files, checked against
what the log's own routes answer, on an in-process Log on SQLite served on a loopback port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from api.client.log_client import LogClient
from api.client.monitor import verify_log
from api.server.app import Witnessing, create_app
from api.server.auth import AccessSettings
from api.server.publishing import TilePublisher
from api.server.state import LOG, PUBLISHER
from log.checkpoint import Checkpoint, sign_checkpoint
from log.errors import NotFound
from log.note import parse_note
from log.note_keys import generate_signer_key, parse_signer_key, parse_verifier_key
from log.tiles import TILE_WIDTH, TileID, entry_bundles_for_size, tiles_for_size
from tests.conftest import TEST_ORIGIN, serve_app
from tests.test_witness_job import WitnessServer

PUBLIC = AccessSettings(public=True)


def published_files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by its path below it (temporary files included: none may be left)."""
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def expected_paths(size: int, bundles: bool) -> set[str]:
    """The tiles a reader of the checkpoint of `size` needs (the partial ones of older checkpoints may be there too)."""
    tiles = tiles_for_size(size) + (entry_bundles_for_size(size) if bundles else [])
    return {tile.path() for tile in tiles}


def checkpoint_size(directory: Path) -> int:
    return int(parse_note((directory / "checkpoint").read_bytes()).text.split("\n")[1])


async def fill(log, start: int, end: int) -> None:
    for first in range(start, end, 4096):
        await log.add_entries([b"entry %d" % i for i in range(first, min(end, first + 4096))])


async def assert_files_are_the_get_answers(url: str, directory: Path, size: int, *, bundles: bool,
                                           checked: dict[str, bytes] | None = None) -> None:
    """Every file in `directory` is what GET /<its path> answers. `checked`: files compared before, by their bytes
    then (a tile path's answer never changes), skipped while unchanged, and added to."""
    checked = {} if checked is None else checked
    files = published_files(directory)
    assert not [name for name in files if name.rsplit("/", 1)[-1].startswith(".")], "a temporary file was left"
    assert expected_paths(size, bundles) <= set(files), sorted(expected_paths(size, bundles) - set(files))
    assert all(name == "checkpoint" or TileID.parse(name).level is not None or bundles for name in files)
    async with aiohttp.ClientSession(auto_decompress=True) as session:
        for name, data in files.items():
            if name != "checkpoint" and checked.get(name) == data:
                continue
            async with session.get(f"{url}/{name}") as answer:
                assert answer.status == 200, name
                assert await answer.read() == data, f"{name} differs from GET /{name}"
            checked[name] = data
    assert checkpoint_size(directory) == size


def test_files_are_byte_identical_to_the_routes_across_tile_boundaries(log_config, tmp_path):
    """Sizes on both sides of the level-0 and level-1 tile boundaries: every file equals GET /<its path>, every tile
    of the checkpoint is there, partial tiles are kept for each published size until the full tile is published,
    and then their .p/ directory is gone."""
    directory = tmp_path / "published"

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app) as url:
            log = app[LOG]
            publisher = TilePublisher(log, directory, entry_bundles=True)
            size, checked = 0, {}
            for size in (1, 100, 255, 256, 257, 600, 65_535, 65_536, 65_536 + 300):
                await fill(log, log.size, size)
                assert await publisher.publish_once() is True
                assert await publisher.publish_once() is False  # nothing new: nothing written
                await assert_files_are_the_get_answers(url, directory, size, bundles=True, checked=checked)
                if size == 255:  # the partial tiles of the sizes published before are kept
                    for width in (1, 100, 255):
                        assert (directory / f"tile/0/000.p/{width}").is_file()
                        assert (directory / f"tile/entries/000.p/{width}").is_file()
                if size == 256:  # full now: the partial ones go; the level-1 tile appears
                    assert (directory / "tile/0/000").stat().st_size == TILE_WIDTH * 32
                    assert not (directory / "tile/0/000.p").exists()
                    assert not (directory / "tile/entries/000.p").exists()
                    assert (directory / "tile/1/000.p/1").is_file()
            # The level-1 tile became full at 65,536 and a level-2 tile appeared; no partial tile of a full one is
            # left anywhere.
            assert (directory / "tile/1/000").is_file() and (directory / "tile/2/000.p/1").is_file()
            leftovers = [p for p in directory.rglob("*.p") if (p.parent / p.name[:-2]).is_file()]
            assert leftovers == []
            assert publisher.metrics()["publish_tree_size"] == size

    asyncio.run(main())


def test_without_entry_bundles_only_the_checkpoint_and_hash_tiles_are_written(log_config, tmp_path):
    directory = tmp_path / "published"

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app) as url:
            publisher = TilePublisher(app[LOG], directory, entry_bundles=False)
            await fill(app[LOG], 0, 300)
            await publisher.publish_once()
            await assert_files_are_the_get_answers(url, directory, 300, bundles=False)
            assert not (directory / "tile/entries").exists()

    asyncio.run(main())


def test_a_restart_resumes_from_the_published_checkpoint(log_config, tmp_path):
    """A new publisher over the same directory writes only what the log added since its checkpoint; a checkpoint of
    another log, or one that is not a checkpoint, makes it write everything from size 0."""
    directory = tmp_path / "published"

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app) as url:
            log = app[LOG]
            await fill(log, 0, 300)
            first = TilePublisher(log, directory, entry_bundles=True)
            await first.publish_once()
            written = first.metrics()["publish_files_total"]
            assert written == len(expected_paths(300, True)) + 1

            again = TilePublisher(log, directory, entry_bundles=True)
            assert await again.publish_once() is False
            assert again.metrics()["publish_files_total"] == 0
            await fill(log, 300, 600)
            assert await again.publish_once() is True
            # 600: tile/0/001 and tile/0/002.p/88, tile/1/000.p/2, and the two bundles, then the checkpoint
            assert again.metrics()["publish_files_total"] == 6
            await assert_files_are_the_get_answers(url, directory, 600, bundles=True)

            other = parse_signer_key(generate_signer_key(TEST_ORIGIN)[0])
            for foreign in (sign_checkpoint(Checkpoint(TEST_ORIGIN, 600, b"\1" * 32), other), b"not a note\n",
                            sign_checkpoint(Checkpoint(TEST_ORIGIN, 600, b"\1" * 32), log.signer)):
                (directory / "checkpoint").write_bytes(foreign)
                fresh = TilePublisher(log, directory, entry_bundles=True)
                assert await fresh.publish_once() is True
                assert fresh.metrics()["publish_files_total"] == len(expected_paths(600, True)) + 1
                await assert_files_are_the_get_answers(url, directory, 600, bundles=True)

    asyncio.run(main())


def test_a_failing_directory_is_retried_and_never_stops_the_log(log_config, tmp_path):
    """`tile` is a file where a directory must go: every round fails (counted, logged), the log takes entries all
    the while, and once the obstacle is gone the directory catches up."""
    directory = tmp_path / "published"
    directory.mkdir()
    (directory / "tile").write_bytes(b"in the way")

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app) as url:
            log = app[LOG]
            publisher = TilePublisher(log, directory, entry_bundles=True, interval=0.01, retry_max=0.05)
            await publisher.start()
            try:
                await fill(log, 0, 10)
                await _wait(lambda: publisher.metrics()["publish_failures_total"] >= 3)
                await fill(log, 10, 20)  # the log goes on
                metrics = publisher.metrics()
                # At most the empty tree's checkpoint (it needs no tile) got out, if a round came before the entries.
                assert not (directory / "checkpoint").exists() or checkpoint_size(directory) == 0
                assert metrics["publish_backlog_entries"] == 20
                assert "tile" in metrics["publish_last_error"]
                (directory / "tile").unlink()
                await _wait(lambda: checkpoint_size(directory) == 20)
                await assert_files_are_the_get_answers(url, directory, 20, bundles=True)
                # The round that wrote the checkpoint resets the count once its files are written: the file can be
                # seen a moment before that.
                await _wait(lambda: publisher.metrics()["publish_consecutive_failures"] == 0)
                # Stopped (a server stepping down to standby), it reports no backlog; started again (taking over),
                # it resumes from DIR's checkpoint: 20 -> 30 is tile/0/000.p/30, its bundle, the checkpoint.
                await publisher.stop()
                stopped = publisher.metrics()
                assert stopped["publish_active"] == 0 and "publish_backlog_entries" not in stopped
                written = stopped["publish_files_total"]
                await fill(log, 20, 30)
                await publisher.start()
                await _wait(lambda: checkpoint_size(directory) == 30)
                # The checkpoint file is visible a moment before the round counts it (as above): wait for the count.
                await _wait(lambda: publisher.metrics()["publish_files_total"] >= written + 3)
                assert publisher.metrics()["publish_files_total"] == written + 3
            finally:
                await publisher.stop()

    asyncio.run(main())


def test_a_directory_that_is_a_file_is_refused(log_config, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="not a directory"):
        TilePublisher(object(), tmp_path / "file", entry_bundles=False)


def test_the_app_publishes_as_it_commits_with_the_cosignatures_of_checkpoint(log_config, tmp_path):
    """create_app(publish_dir=...) with a witness: the checkpoint file is what GET /checkpoint serves, the witness's
    cosignature included once it came; /metrics carries the publisher's figures."""
    directory = tmp_path / "published"
    signer_key, log_vkey = generate_signer_key(TEST_ORIGIN)
    (tmp_path / "log.key").write_text(signer_key + "\n")
    log_config.key_file = tmp_path / "log.key"

    async def main():
        witness = await WitnessServer(tmp_path, "witness.test/w1", parse_verifier_key(log_vkey)).start()
        try:
            settings = Witnessing(witnesses=(f"{witness.url} {witness.vkeys[0]}",), witness_interval=0.05)
            app = create_app(log_config, settings, access=AccessSettings(public=True, metrics_public=True),
                             publish_dir=directory, publish_entry_bundles=True)
            async with serve_app(app) as url, aiohttp.ClientSession() as session:
                await fill(app[LOG], 0, 3)

                async def cosigned_and_equal() -> bool:
                    async with session.get(f"{url}/checkpoint") as answer:
                        served = await answer.read()
                    path = directory / "checkpoint"
                    return path.exists() and path.read_bytes() == served and len(parse_note(served).signatures) == 2

                await _wait_async(cosigned_and_equal)
                await assert_files_are_the_get_answers(url, directory, 3, bundles=True)
                async with session.get(f"{url}/metrics") as answer:
                    text = await answer.text()
                assert "auditlog_publish_tree_size 3" in text and "auditlog_publish_backlog_entries 0" in text, text
                assert app[PUBLISHER].directory == directory
        finally:
            await witness.stop()

    asyncio.run(main())


async def _wait(check, timeout: float = 20.0) -> None:
    async def wrapped() -> bool:
        return check()

    await _wait_async(wrapped, timeout)


async def _wait_async(check, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def static_app(directory: Path) -> web.Application:
    """DIR as a plain static file server would serve it (no route of the log, no proofs)."""
    directory.mkdir(parents=True, exist_ok=True)
    app = web.Application()
    app.router.add_static("/", directory)
    return app


def test_the_monitor_verifies_a_static_copy_with_its_state_and_reads_removed_partials_from_full_tiles(
        log_config, tmp_path):
    """The monitor against DIR served by a static file server: VALID, across rounds with a saved state (no
    consistency route: the tiles prove it), and a partial tile of an older checkpoint, removed once its full tile
    was published, is read from the full tile (the same bytes the log serves at the partial path)."""
    directory = tmp_path / "published"

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app) as url, serve_app(static_app(directory)) as static_url:
            log = app[LOG]
            publisher = TilePublisher(log, directory, entry_bundles=True)
            state = tmp_path / "state.json"
            for size in (100, 300):
                await fill(log, log.size, size)
                await publisher.publish_once()
                async with LogClient(static_url, log.verifier_key) as client:
                    report = await verify_log(client, state)
                assert report.valid and report.complete and report.state_saved, report.problems
                assert report.contents_unchecked is None and report.checkpoint.size == size
            assert not (directory / "tile/0/000.p").exists()
            async with LogClient(static_url, log.verifier_key) as client, aiohttp.ClientSession() as session:
                for partial in (TileID(0, 0, 100), TileID(None, 0, 100)):
                    async with session.get(f"{url}/{partial.path()}") as answer:
                        assert await client.tile(partial) == await answer.read()
                with pytest.raises(NotFound):  # neither the partial tile nor its full one: the 404 stands
                    await client.tile(TileID(0, 5, 100))

    asyncio.run(main())


def test_the_monitor_checks_the_hash_tiles_of_a_copy_without_bundles_and_catches_a_changed_tile(log_config, tmp_path):
    directory = tmp_path / "published"

    async def main():
        app = create_app(log_config, access=PUBLIC)
        async with serve_app(app), serve_app(static_app(directory)) as static_url:
            log = app[LOG]
            await fill(log, 0, 300)
            await TilePublisher(log, directory, entry_bundles=False).publish_once()
            async with LogClient(static_url, log.verifier_key) as client:
                report = await verify_log(client)
            assert report.valid and report.complete, report.problems
            assert "publishes no entry bundles" in report.contents_unchecked
            tile = directory / "tile/0/000"
            tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
            async with LogClient(static_url, log.verifier_key) as client:
                report = await verify_log(client)
            assert report.status == "invalid", report.problems
            assert any("does not match the checkpoint root" in problem for problem in report.integrity_failures)

    asyncio.run(main())
