"""The verifying client against a real in-process server, and against servers that lie (a middleware that
tampers with one kind of answer): every lie must raise a VerificationError subclass."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

import pytest
from aiohttp import web

from api.server.app import create_app
from api.client.log_client import LogClient, SyncLogClient
from api.server.state import LOG
from log.checkpoint import Checkpoint, sign_checkpoint
from log.errors import InvalidInput, NotFound, ProofError, SignatureError, VerificationError
from log.hashing import hash_leaf
from log.note_keys import generate_signer_key, parse_signer_key
from tests.conftest import serve_app
from tests.credentials import ADMIN_TOKEN


def with_client(config, scenario, *, tamper=None, key: str | None = None):
    """scenario(client, log) with a LogClient on a real server; `tamper(path, body) -> body` rewrites answers."""

    async def main():
        app = create_app(config, admin_token=ADMIN_TOKEN)
        if tamper is not None:
            @web.middleware
            async def lie(request, handler):
                response = await handler(request)
                if response.status == 200 and isinstance(response, web.Response):
                    changed = tamper(request.path, response.body)
                    if changed is not None:
                        response.body = changed
                return response

            app.middlewares.append(lie)
        async with serve_app(app) as url:
            log = app[LOG]
            async with LogClient(url, key or log.verifier_key, token=ADMIN_TOKEN) as client:
                return await scenario(client, log)

    return asyncio.run(main())


def flip_first_hash(body: bytes) -> bytes:
    document = json.loads(body)
    first = bytearray(base64.b64decode(document["hashes"][0]))
    first[0] ^= 1
    document["hashes"][0] = base64.b64encode(bytes(first)).decode()
    return json.dumps(document).encode()


ENTRIES = [f"client entry {i}".encode() for i in range(20)]


def test_add_verifies_inclusion_and_the_checkpoint(log_config):
    async def scenario(client, log):
        receipt = await client.add(b"first")
        assert receipt.index == 0 and receipt.tree_size == 1 and receipt.leaf_hash == hash_leaf(b"first")
        receipts = await client.add_many(ENTRIES)
        assert [r.index for r in receipts] == list(range(1, 21))
        assert all(r.tree_size == 21 for r in receipts)
        checkpoint = await client.checkpoint()
        assert checkpoint.size == 21 and checkpoint.root_hash == log.checkpoint.root_hash

    with_client(log_config, scenario)


def test_proofs_at_older_sizes_use_roots_from_tiles_checked_by_consistency(log_config):
    async def scenario(client, log):
        await client.add_many(ENTRIES)
        proof = await client.inclusion_proof(3, 7)  # no checkpoint of size 7 was ever seen by the client
        assert proof.index == 3 and proof.tree_size == 7 and proof.leaf_hash == hash_leaf(ENTRIES[3])
        by_hash = await client.inclusion_proof(leaf_hash=hash_leaf(ENTRIES[11]))
        assert by_hash.index == 11 and by_hash.tree_size == 20
        consistency = await client.consistency(5, 20)
        assert consistency.second_root == log.checkpoint.root_hash
        assert await client.entry(9) == ENTRIES[9]

    with_client(log_config, scenario)


def _expect(error_type, config, *, tamper, action):
    async def scenario(client, log):
        await log.add_entries(ENTRIES)
        with pytest.raises(error_type) as raised:
            await action(client)
        return raised.value

    return with_client(config, scenario, tamper=tamper)


def test_a_flipped_inclusion_hash_is_rejected(log_config):
    error = _expect(ProofError, log_config, action=lambda c: c.inclusion_proof(4, 20),
                    tamper=lambda path, body: flip_first_hash(body) if path.endswith("/inclusion") else None)
    assert isinstance(error, VerificationError)


def test_a_flipped_consistency_hash_is_rejected(log_config):
    _expect(ProofError, log_config, action=lambda c: c.consistency(6, 20),
            tamper=lambda path, body: flip_first_hash(body) if path.endswith("/consistency") else None)


def test_a_changed_entry_is_rejected(log_config):
    _expect(ProofError, log_config, action=lambda c: c.entry(2),
            tamper=lambda path, body: b"something else" if path == "/api/v1/entries/2" else None)


def test_a_wrong_tile_gives_a_root_the_consistency_proof_rejects(log_config):
    def tamper(path, body):
        if path.startswith("/tile/0/"):
            return bytes([body[0] ^ 1]) + body[1:]
        return None

    _expect(ProofError, log_config, action=lambda c: c.inclusion_proof(0, 9), tamper=tamper)


def test_a_receipt_with_a_wrong_leaf_hash_is_rejected(log_config):
    def tamper(path, body):
        if path != "/api/v1/entries":
            return None
        document = json.loads(body)
        document["leaf_hash"] = base64.b64encode(hash_leaf(b"not what was sent")).decode()
        return json.dumps(document).encode()

    _expect(ProofError, log_config, action=lambda c: c.add(b"sent"), tamper=tamper)


def test_a_checkpoint_from_another_key_is_rejected(log_config):
    _, other_key = generate_signer_key("test.example/log")

    async def scenario(client, log):
        with pytest.raises(SignatureError):
            await client.checkpoint()

    with_client(log_config, scenario, key=other_key)


def test_two_roots_for_one_size_are_a_split_view():
    signer_key, verifier_key = generate_signer_key("split.example/log")
    signer = parse_signer_key(signer_key)
    client = LogClient("http://127.0.0.1:9", verifier_key)
    client.believe(sign_checkpoint(Checkpoint("split.example/log", 5, b"\x01" * 32), signer))
    with pytest.raises(ProofError, match="split view"):
        client.believe(sign_checkpoint(Checkpoint("split.example/log", 5, b"\x02" * 32), signer))


def test_server_errors_come_back_as_log_errors(log_config):
    async def scenario(client, log):
        await log.add_entries(ENTRIES[:3])
        with pytest.raises(NotFound):
            await client.entry(50, verify=False)
        with pytest.raises(InvalidInput):
            await client.inclusion_proof(1, 99)

    with_client(log_config, scenario)


def test_sync_client(log_config, live_server):
    url = live_server(create_app(log_config, admin_token=ADMIN_TOKEN))
    probe = SyncLogClient(url, generate_signer_key("x.example/y")[1])
    with pytest.raises(SignatureError):
        probe.checkpoint()
    probe.close()
    info_key = json.loads(urllib.request.urlopen(url + "/api/v1/log").read())["verifier_key"]
    with SyncLogClient(url, info_key, token=ADMIN_TOKEN) as client:
        receipt = client.add(b"from a script")
        assert receipt.index == 0
        assert client.entry(0) == b"from a script"
        assert client.checkpoint().size == 1
