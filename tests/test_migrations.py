"""Migrations that change stored data, run both ways on SQLite and on PostgreSQL against a log with real tiles."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from log.proofs import verify_inclusion
from log.service import Log, LogConfig
from log.storage.sql import downgrade_schema, normalize_database_url, upgrade_schema
from log.tiles import TILE_HEIGHT, interior_nodes, tile_node_layers
from tests.postgres import fresh_database

ORIGIN = "example.com/migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auditlog.db'}"
    else:
        with fresh_database() as url:
            yield url


def _tiles(url: str, column: str) -> dict:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT level, idx, data, {column} FROM tiles")).all()
    finally:
        engine.dispose()
    return {(level, idx): (bytes(data), None if extra is None else bytes(extra)) for level, idx, data, extra in rows}


def test_0005_recomputes_tile_interior_nodes_both_ways(database_url, tmp_path):
    config = LogConfig(data_dir=tmp_path / "log", database_url=database_url, origin=ORIGIN)
    entries = [f"entry {i}".encode() for i in range(600)]

    async def fill():
        log = await Log.open(config)
        try:
            await log.add_entries(entries)
        finally:
            await log.close()

    asyncio.run(fill())
    downgrade_schema(database_url, "0004")
    tiles = _tiles(database_url, "middle")
    full = {key: value for key, value in tiles.items() if len(value[0]) == 256 * 32}
    assert set(full) == {(0, 0), (0, 1)}
    for data, middle in full.values():
        assert middle == tile_node_layers(data)[4]
    assert all(extra is None for key, (_, extra) in tiles.items() if key not in full)

    upgrade_schema(database_url)
    tiles = _tiles(database_url, "interior")
    for key, (data, interior) in tiles.items():
        assert interior == (interior_nodes(data) if key in full else None), key
        if key in full:
            assert len(interior) == (2 ** TILE_HEIGHT - 2) * 32

    async def prove():
        log = await Log.open(config)
        try:
            root = log.checkpoint.root_hash
            for index in (0, 255, 256, 300, 511, 599):
                proof = await log.inclusion_proof(index, 600)
                verify_inclusion((await log.entry(index)).leaf_hash, index, 600, proof, root)
        finally:
            await log.close()

    asyncio.run(prove())
