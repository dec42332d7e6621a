"""Correctness checks for the work the benchmarks time, through the log's own verifiers and the public API."""

from __future__ import annotations

import base64
import json
import random
import urllib.request


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: list[bytes], root: bytes) -> None:
    from log import proofs

    proofs.verify_inclusion(leaf_hash, index, size, proof, root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]) -> None:
    from log import proofs

    proofs.verify_consistency(first, second, proof, first_root, second_root)


def _get(url: str, token: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        return response.read()


def _get_json(url: str) -> dict:
    return json.loads(_get(url))


def signed_checkpoint(base_url: str):
    """GET /checkpoint, opened with the key GET /api/v1/log names: the signature must verify."""
    from log.checkpoint import open_checkpoint
    from log.note_keys import parse_verifier_key

    info = _get_json(f"{base_url}/api/v1/log")
    verifier = parse_verifier_key(info["verifier_key"])
    checkpoint, _ = open_checkpoint(_get(f"{base_url}/checkpoint"), verifier, info["origin"])
    return checkpoint


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None)


def verify_entry_over_http(base_url: str, index: int, checkpoint, token: str | None = None) -> None:
    """Fetch entry `index` (private: with `token`) and its inclusion proof at the checkpoint's size; the proof must
    verify to its root."""
    from log.hashing import hash_leaf

    entry = _get(f"{base_url}/api/v1/entries/{index}", token)
    try:
        data = _b64(json.loads(entry)["data"])
    except (ValueError, KeyError, TypeError):
        data = entry
    proof = _get_json(f"{base_url}/api/v1/proof/inclusion?index={index}&tree_size={checkpoint.size}")
    hashes = [_b64(h) for h in proof["hashes"]]
    verify_inclusion(index, checkpoint.size, hash_leaf(data), hashes, checkpoint.root_hash)


def check_acknowledged(base_url: str, report: dict, expect_entries: int | None = None, *,
                       token: str | None = None) -> None:
    """Every timed request succeeded, every acknowledged index is distinct, and the log serves them provably."""
    assert report["requests"] > 0, report
    assert report["ok"] == report["requests"], (report["statuses"], report["errors"])
    indices = report["indices"]
    assert indices["distinct"] == indices["count"] == report["entries"], indices
    if expect_entries is not None:
        assert report["entries"] == expect_entries, report
    checkpoint = signed_checkpoint(base_url)
    assert checkpoint.size >= indices["max"] + 1
    for index in {indices["min"], indices["max"]}:
        verify_entry_over_http(base_url, index, checkpoint, token)


def fetch_and_verify_http_proofs(base_url: str, kind: str, size: int, rng: random.Random, samples: int = 20, *,
                                 token: str | None = None) -> None:
    """Fetch a few of the benchmarked kind again and check them against the signed checkpoint."""
    from log.tiles import TileID

    checkpoint = signed_checkpoint(base_url)
    assert checkpoint.size == size
    if kind == "inclusion":
        for _ in range(samples):
            verify_entry_over_http(base_url, rng.randrange(size), checkpoint, token)
    elif kind == "consistency":
        for _ in range(samples):
            first = rng.randrange(1, size + 1)
            body = _get_json(f"{base_url}/api/v1/proof/consistency?first={first}&second={size}")
            # The old root is folded from tiles by the inclusion of its last leaf: fetch it through the API.
            old_root = _root_over_http(base_url, first)
            verify_consistency(first, size, old_root, checkpoint.root_hash, [_b64(h) for h in body["hashes"]])
    elif kind == "tile":
        level0 = _get(f"{base_url}/{TileID(0, 0).path()}")
        assert len(level0) == 256 * 32
        from log.hashing import hash_leaf

        first_entry = _get(f"{base_url}/{TileID(None, 0).path()}", token)
        from log.bundles import decode_entry_bundle

        assert level0[:32] == hash_leaf(decode_entry_bundle(first_entry)[0])
    elif kind == "checkpoint":
        pass  # signed_checkpoint above verified the signature and the size


def _root_over_http(base_url: str, size: int) -> bytes:
    """The root of the first `size` leaves, recomputed from the tiles the server serves (C2SP tlog-tiles)."""
    from log.compact import CompactRange, frontier_node_ids
    from log.tile_nodes import node_hash_from_tile, tile_for_node

    hashes = []
    for height, index in frontier_node_ids(size):
        tid, start, count = tile_for_node(height, index)  # the narrowest tile width that holds the node
        hashes.append(node_hash_from_tile(_get(f"{base_url}/{tid.path()}"), start, count))
    return CompactRange(size, hashes).root()
