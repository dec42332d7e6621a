"""The witness's cosigner (witness/cosigner.py) and its HTTP face (witness/server.py), per c2sp.org/tlog-witness.

Checkpoints and consistency proofs come from the reference log in tests/vectors (built by Go's x/mod tlog, see
tests/vectors/reference-log/README.md): its roots at sizes 1, 2, 8, 256, 257, 512, 69999 and 70000, and the
proofs between them, signed here with its published test key `log.skey`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from log.checkpoint import Checkpoint, sign_checkpoint
from log.note import COSIGNATURE_ED25519, COSIGNATURE_MLDSA44, NoteSignature, open_note, parse_note
from log.note_keys import (
    CosignatureSigner,
    CosignatureVerifier,
    generate_signer_key,
    parse_signer_key,
    parse_verifier_key,
)
from log.storage.engine import sqlite_url_for
from witness.cosigner import EMPTY_TREE_ROOT, AddCheckpointRequest, Cosigner, format_signature_lines, parse_log_keys
from witness.errors import (
    BadLogSignature, InconsistentProof, MalformedRequest, OldSizeConflict, RootConflict, UnknownLog,
)
from witness.store import WitnessState, WitnessStore
from witness.server import create_witness_app
from tests.conftest import exchange_raw
from tests.schema_template import upgrade_schema

VECTORS = Path(__file__).resolve().parent / "vectors"
REFERENCE = VECTORS / "reference-log"
DATA = json.loads((REFERENCE / "vectors.json").read_text())
ORIGIN = DATA["origin"]
LOG_SIGNER = parse_signer_key((REFERENCE / "log.skey").read_text().strip())
LOG_VERIFIER = parse_verifier_key((REFERENCE / "log.vkey").read_text().strip())
ROOTS = {r["size"]: base64.b64decode(r["root"]) for r in DATA["roots"]}
PROOFS = {(c["first"], c["second"]): [base64.b64decode(h) for h in c["hashes"]] for c in DATA["consistency"]}
WITNESS_NAME = "witness.test/w1"
NOW = 1_800_000_000


def signed(size: int, root: bytes | None = None, signer=LOG_SIGNER, origin: str = ORIGIN) -> bytes:
    return sign_checkpoint(Checkpoint(origin, size, ROOTS[size] if root is None else root), signer)


def request(old: int, size: int, *, proof=None, note: bytes | None = None) -> AddCheckpointRequest:
    if proof is None:
        proof = PROOFS[(old, size)] if 0 < old < size else []
    return AddCheckpointRequest(old, tuple(proof), signed(size) if note is None else note)


@pytest.fixture
def db_url(tmp_path) -> str:
    url = sqlite_url_for(tmp_path / "witness.db")
    upgrade_schema(url)
    return url


@pytest.fixture
def witness_keys():
    ed_skey, ed_vkey = generate_signer_key(WITNESS_NAME, COSIGNATURE_ED25519)
    return ed_skey, ed_vkey


def make_cosigner(url: str, skeys: list[str], clock=lambda: NOW) -> Cosigner:
    return Cosigner(WitnessStore(url), [CosignatureSigner(k) for k in skeys], {ORIGIN: [LOG_VERIFIER]}, clock=clock)


def run(coro):
    return asyncio.run(coro)


# --- the request body -----------------------------------------------------------------------------------------


def test_request_round_trip_and_spec_example_shape():
    req = request(2, 8)
    body = req.to_bytes()
    assert body.startswith(b"old 2\n")
    assert body.count(b"\n\n") >= 1 and AddCheckpointRequest.from_bytes(body) == req
    empty = AddCheckpointRequest(0, (), signed(1))
    assert empty.to_bytes() == b"old 0\n\n" + signed(1)
    assert AddCheckpointRequest.from_bytes(empty.to_bytes()) == empty


GOOD_HASH = base64.b64encode(b"\x11" * 32)


@pytest.mark.parametrize(
    "mutation, body",
    [
        ("no newline at all", b"old 0"),
        ("no old line", b"\n" + b"x"),
        ("old with leading zero", b"old 01\n\n"),
        ("old negative", b"old -1\n\n"),
        ("old with two spaces", b"old  1\n\n"),
        ("old with plus", b"old +1\n\n"),
        ("OLD in capitals", b"OLD 1\n\n"),
        ("old too large", b"old 9223372036854775808\n\n"),
        ("no blank line", b"old 1\n" + GOOD_HASH + b"\n"),
        ("proof line not base64", b"old 1\n!!!!\n\n"),
        ("proof line 31 bytes", b"old 1\n" + base64.b64encode(b"\x11" * 31) + b"\n\n"),
        ("proof line 33 bytes", b"old 1\n" + base64.b64encode(b"\x11" * 33) + b"\n\n"),
        ("proof line unpadded", b"old 1\n" + GOOD_HASH.rstrip(b"=") + b"\n\n"),
        ("proof line with space", b"old 1\n" + GOOD_HASH + b" \n\n"),
        ("64 proof lines", b"old 1\n" + (GOOD_HASH + b"\n") * 64 + b"\n"),
    ],
)
def test_malformed_bodies_are_refused(mutation, body):
    with pytest.raises(MalformedRequest):
        AddCheckpointRequest.from_bytes(body + b"reference.example/log\n1\n" + GOOD_HASH + b"\n\n")


def test_63_proof_lines_are_allowed():
    body = b"old 1\n" + (GOOD_HASH + b"\n") * 63 + b"\n" + signed(2)
    assert len(AddCheckpointRequest.from_bytes(body).proof) == 63


# --- the cosigner -------------------------------------------------------------------------------------------


def test_first_checkpoint_then_consistent_growth(db_url, witness_keys):
    skey, vkey = witness_keys
    cosigner = make_cosigner(db_url, [skey])
    verifier = CosignatureVerifier(vkey)

    async def scenario():
        for old, size in [(0, 1), (1, 2), (2, 8), (8, 8)]:
            sigs = await cosigner.add_checkpoint(request(old, size))
            assert len(sigs) == 1
            text = parse_note(signed(size)).text
            assert verifier.verify(text, sigs[0]) == NOW
        return await asyncio.to_thread(cosigner.store.latest, ORIGIN)

    state = run(scenario())
    assert (state.size, state.root_hash) == (8, ROOTS[8])
    assert cosigner.store.cosigned(ORIGIN, 2) == signed(2)  # every cosigned checkpoint is kept whole


def test_first_checkpoint_may_be_large_and_size_zero_needs_the_empty_root(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])

    async def scenario():
        with pytest.raises(InconsistentProof):
            await cosigner.add_checkpoint(request(0, 0, note=signed(0, root=ROOTS[1])))
        await cosigner.add_checkpoint(request(0, 0))
        assert ROOTS[0] == EMPTY_TREE_ROOT
        await cosigner.add_checkpoint(request(0, 69999, proof=[]))
        await cosigner.add_checkpoint(request(69999, 70000))

    run(scenario())


def test_wrong_old_size_is_409_with_the_latest_size(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])

    async def scenario():
        with pytest.raises(OldSizeConflict) as never:
            await cosigner.add_checkpoint(request(1, 2))
        assert never.value.latest_size == 0  # "or zero if it never cosigned a checkpoint for that origin"
        await cosigner.add_checkpoint(request(0, 2))
        for old, size in [(0, 8), (1, 8), (3, 8)]:
            with pytest.raises(OldSizeConflict) as conflict:
                await cosigner.add_checkpoint(request(old, size, proof=[]))
            assert conflict.value.latest_size == 2

    run(scenario())


def test_a_rollback_is_refused(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])

    async def scenario():
        await cosigner.add_checkpoint(request(0, 8))
        with pytest.raises(OldSizeConflict):
            await cosigner.add_checkpoint(request(0, 2))
        with pytest.raises(MalformedRequest):  # old (8) larger than the checkpoint size (2): 400
            await cosigner.add_checkpoint(request(8, 2, proof=[]))

    run(scenario())
    assert cosigner.store.latest(ORIGIN).size == 8


@pytest.mark.parametrize("mutation", ["flipped bit", "missing hash", "extra hash", "swapped hashes", "wrong size"])
def test_a_bad_proof_is_422_and_kept_as_evidence(db_url, witness_keys, mutation):
    cosigner = make_cosigner(db_url, [witness_keys[0]])
    proof = list(PROOFS[(2, 8)])
    if mutation == "flipped bit":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    elif mutation == "missing hash":
        proof = proof[:-1]
    elif mutation == "extra hash":
        proof = proof + [proof[0]]
    elif mutation == "swapped hashes":
        proof = proof[::-1]
    elif mutation == "wrong size":
        proof = PROOFS[(3, 7)]

    async def scenario():
        await cosigner.add_checkpoint(request(0, 2))
        with pytest.raises(InconsistentProof):
            await cosigner.add_checkpoint(request(2, 8, proof=proof))

    run(scenario())
    assert cosigner.store.latest(ORIGIN).size == 2
    assert [(size, reason.startswith("consistency proof")) for size, _, _, reason in cosigner.store.refusals(ORIGIN)] \
        == [(8, True)]


def test_a_proof_from_zero_must_be_empty(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])
    with pytest.raises(InconsistentProof):
        run(cosigner.add_checkpoint(request(0, 2, proof=PROOFS[(1, 2)])))
    assert cosigner.store.latest(ORIGIN) is None


def test_a_forked_root_is_refused_and_never_cosigned(db_url, witness_keys):
    """Consistent-looking growth to a different root at the same size, or from it: never a second root."""
    cosigner = make_cosigner(db_url, [witness_keys[0]])
    fork = signed(8, root=ROOTS[7])

    async def scenario():
        await cosigner.add_checkpoint(request(0, 8))
        with pytest.raises(RootConflict):  # same size, other root: 422 (C2SP/C2SP#280)
            await cosigner.add_checkpoint(AddCheckpointRequest(8, (), fork))
        with pytest.raises(InconsistentProof):  # same size, same root, but a non-empty proof
            await cosigner.add_checkpoint(request(8, 8, proof=PROOFS[(2, 8)]))
        # the same checkpoint again: all checks pass, so it is cosigned again (tlog-witness: 200)
        again = await cosigner.add_checkpoint(request(8, 8))
        assert len(again) == 1

    run(scenario())
    assert cosigner.store.cosigned(ORIGIN, 8) == signed(8)
    assert [(size, root) for size, root, _, _ in cosigner.store.refusals(ORIGIN)] == [(8, ROOTS[7])]
    # the log's own two signatures on size 8: the cosigned one and the refused fork
    _, note = cosigner.store.refusals(ORIGIN)[0][1:3]
    assert open_note(note, [LOG_VERIFIER]) and open_note(cosigner.store.cosigned(ORIGIN, 8), [LOG_VERIFIER])


def test_store_refuses_a_second_root_for_a_size_even_if_asked_directly(db_url):
    store = WitnessStore(db_url)
    first = WitnessState(8, ROOTS[8], signed(8))
    assert store.compare_and_swap(ORIGIN, None, first)
    assert not store.compare_and_swap(ORIGIN, None, first)  # the first insert already happened
    stale = WitnessState(2, ROOTS[2], signed(2))
    assert not store.compare_and_swap(ORIGIN, stale, WitnessState(257, ROOTS[257], signed(257)))
    with pytest.raises(RootConflict):
        store.compare_and_swap(ORIGIN, first, WitnessState(8, ROOTS[7], signed(8, root=ROOTS[7])))
    assert store.latest(ORIGIN) == first


def test_unknown_origin_is_404_and_bad_signatures_403(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])
    other_skey, _ = generate_signer_key(ORIGIN)
    stranger = parse_signer_key(generate_signer_key("other.example/log")[0])
    good = signed(2)
    tampered = good.replace(good.split(b"\n")[1], b"3")  # signature over size 2, text says 3

    async def scenario():
        with pytest.raises(UnknownLog):
            await cosigner.add_checkpoint(request(0, 2, note=signed(2, signer=stranger, origin="other.example/log")))
        with pytest.raises(BadLogSignature):  # right name, unknown key: ignored, so nothing verifies
            await cosigner.add_checkpoint(request(0, 2, note=signed(2, signer=parse_signer_key(other_skey))))
        with pytest.raises(BadLogSignature):
            await cosigner.add_checkpoint(AddCheckpointRequest(0, (), tampered))
        with pytest.raises(MalformedRequest):
            await cosigner.add_checkpoint(AddCheckpointRequest(0, (), b"not a note"))
        with pytest.raises(MalformedRequest):  # a signed note that is not a checkpoint
            from log.note import sign_note
            await cosigner.add_checkpoint(AddCheckpointRequest(0, (), sign_note("hello\n", [LOG_SIGNER])))
        # extra signatures from unknown keys are ignored (tlog-witness: "MUST ignore signatures from unknown keys")
        extra = good + NoteSignature("someone.else", 0x01020304, b"\x00" * 64).to_line().encode()
        assert await cosigner.add_checkpoint(AddCheckpointRequest(0, (), extra))

    run(scenario())


def test_concurrent_requests_for_one_origin_exactly_one_wins(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])

    async def attempt(req):
        try:
            return await cosigner.add_checkpoint(req)
        except OldSizeConflict as exc:
            return exc.latest_size

    async def scenario():
        await cosigner.add_checkpoint(request(0, 1))
        reqs = [request(1, 2) for _ in range(15)] + [request(1, 70000) for _ in range(15)]
        return await asyncio.gather(*(attempt(r) for r in reqs))

    results = run(scenario())
    winners = [r for r in results if isinstance(r, list)]
    assert len(winners) == 1
    final = cosigner.store.latest(ORIGIN).size
    assert final in (2, 70000) and all(r == final for r in results if not isinstance(r, list))


def test_two_witness_processes_on_one_database_cannot_both_win(db_url, witness_keys):
    """Two cosigners (own engines, own locks), as two processes would be: only the database's CAS separates them."""
    first, second = make_cosigner(db_url, [witness_keys[0]]), make_cosigner(db_url, [witness_keys[0]])

    async def attempt(cosigner, req):
        try:
            await cosigner.add_checkpoint(req)
            return req.checkpoint
        except OldSizeConflict:
            return None

    async def scenario():
        await first.add_checkpoint(request(0, 256))
        reqs = [(first, request(256, 257)), (second, request(256, 512))] * 8
        return await asyncio.gather(*(attempt(c, r) for c, r in reqs))

    results = run(scenario())
    won = [r for r in results if r is not None]
    assert len(won) == 1
    assert first.store.latest(ORIGIN).note == won[0]


def test_cosignatures_verify_with_both_key_types(db_url):
    ed_skey, ed_vkey = generate_signer_key(WITNESS_NAME, COSIGNATURE_ED25519)
    ml_skey, ml_vkey = generate_signer_key(WITNESS_NAME, COSIGNATURE_MLDSA44)
    cosigner = make_cosigner(db_url, [ed_skey, ml_skey])
    sigs = run(cosigner.add_checkpoint(request(0, 8)))
    note = signed(8) + format_signature_lines(sigs)
    _, verified = open_note(note, [LOG_VERIFIER, CosignatureVerifier(ed_vkey), CosignatureVerifier(ml_vkey)])
    assert len(verified) == 3
    assert [s.timestamp for s in sigs] == [NOW, NOW]


def test_cosignature_matches_the_reference_vector(db_url):
    """Cosigning the reference checkpoint with wit.skey at 1790000000 gives the line x/mod-based tooling wrote."""
    witness_skey = (REFERENCE / "wit.skey").read_text().strip()
    reference = (REFERENCE / "log" / "checkpoint").read_bytes()
    expected_line = reference.decode().rstrip("\n").split("\n")[-1] + "\n"
    log_only = reference[: -len(expected_line.encode())]
    cosigner = Cosigner(WitnessStore(db_url), [CosignatureSigner(witness_skey)], {ORIGIN: [LOG_VERIFIER]},
                        clock=lambda: 1790000000)
    sigs = run(cosigner.add_checkpoint(AddCheckpointRequest(0, (), log_only)))
    assert format_signature_lines(sigs).decode() == expected_line
    # independent check, with pyca/cryptography only: "cosignature/v1\ntime <t>\n" || checkpoint text
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    vkey = (REFERENCE / "wit.vkey").read_text().strip()
    public = base64.b64decode(vkey.split("+")[2])[1:]
    raw = base64.b64decode(expected_line.split(" ")[2])
    assert raw[:4] == bytes.fromhex(vkey.split("+")[1])
    assert int.from_bytes(raw[4:12], "big") == 1790000000
    message = b"cosignature/v1\ntime 1790000000\n" + parse_note(log_only).text.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)


def test_parse_log_keys():
    other = generate_signer_key("other.example/log")[1]
    logs = parse_log_keys(["# trusted logs", "", LOG_VERIFIER.verifier_key, f"alias.example/log {other}"])
    assert set(logs) == {ORIGIN, "alias.example/log"}
    assert logs[ORIGIN][0].key_id == LOG_VERIFIER.key_id


def test_cosigner_ignores_garbage_in_a_signature_it_does_not_know_but_not_from_a_trusted_key(db_url, witness_keys):
    cosigner = make_cosigner(db_url, [witness_keys[0]])
    good = signed(2)
    bad = good + NoteSignature(LOG_VERIFIER.name, LOG_VERIFIER.key_id, b"\x00" * 64).to_line().encode()
    with pytest.raises(BadLogSignature):
        run(cosigner.add_checkpoint(AddCheckpointRequest(0, (), bad)))


# --- over HTTP ------------------------------------------------------------------------------------------------


def test_http_statuses_and_bodies(db_url, witness_keys):
    skey, vkey = witness_keys
    app = create_witness_app(make_cosigner(db_url, [skey]), close_store=True)

    async def scenario():
        async with TestClient(TestServer(app)) as client:
            async def post(body: bytes):
                response = await client.post("/add-checkpoint", data=body)
                return response.status, response.headers.get("Content-Type", ""), await response.read()

            status, ctype, body = await post(request(0, 2).to_bytes())
            assert status == 200 and ctype.startswith("text/plain")
            assert body.startswith("\u2014 ".encode()) and body.endswith(b"\n") and body.count(b"\n") == 1
            sig = NoteSignature.from_line(body.decode().rstrip("\n"))
            assert CosignatureVerifier(vkey).verify(parse_note(signed(2)).text, sig) == NOW

            assert await post(request(0, 8, proof=[]).to_bytes()) == (409, "text/x.tlog.size", b"2\n")
            assert (await post(request(2, 8, proof=PROOFS[(3, 7)]).to_bytes()))[0] == 422
            # same size, other root: 422, as a failed proof, not 409 (C2SP/C2SP#280: every 409 carries a size)
            status, ctype, body = await post(AddCheckpointRequest(2, (), signed(2, root=ROOTS[3])).to_bytes())
            assert status == 422 and not ctype.startswith("text/x.tlog.size") and b"another root" in body
            assert (await post(b"old 01\n\n" + signed(8)))[0] == 400
            assert (await post(AddCheckpointRequest(8, (), signed(2)).to_bytes()))[0] == 400
            stranger = parse_signer_key(generate_signer_key("other.example/log")[0])
            assert (await post(request(0, 2, note=signed(2, signer=stranger, origin="other.example/log"))
                               .to_bytes()))[0] == 404
            impostor = parse_signer_key(generate_signer_key(ORIGIN)[0])
            assert (await post(request(2, 8, note=signed(8, signer=impostor)).to_bytes()))[0] == 403
            assert (await client.get("/add-checkpoint")).status == 405
            status, _, body = await post(request(2, 8).to_bytes())
            assert status == 200

    run(scenario())


def test_hostile_requests_get_plain_4xx_answers_not_500(db_url, witness_keys):
    """An Expect header of bytes that are not UTF-8 broke aiohttp's own 417, and a body its Content-Encoding cannot
    decode raised from the read: both were bare 500s (issue 16)."""
    app = create_witness_app(make_cosigner(db_url, [witness_keys[0]]), close_store=True)

    async def raw(port: int, request: bytes) -> tuple[int, bytes]:
        status, _, body = await exchange_raw(port, request, timeout=10)
        return status, body

    async def scenario():
        server = TestServer(app)
        await server.start_server()
        try:
            head = b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nConnection: close\r\n"
            assert await raw(server.port, head + b"Expect: \xff\r\nContent-Length: 1\r\n\r\nx") == (
                417, b"the only expectation this server meets is 100-continue, not '\\udcff'\n")
            status, body = await raw(server.port, head + b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nold 0")
            assert status == 400 and body.startswith(b"the body cannot be read")
            body = request(0, 2).to_bytes()
            status, rest = await raw(server.port, head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
                                     % (len(body), body))
            assert status == 100 and rest.startswith(b"HTTP/1.1 200 OK")  # the cosignature, after "100 Continue"
        finally:
            await server.close()

    run(scenario())


def test_extension_lines_are_cosigned_by_ed25519_only_and_refused_by_an_mldsa_only_witness(db_url):
    ed_skey, ed_vkey = generate_signer_key(WITNESS_NAME, COSIGNATURE_ED25519)
    ml_skey, _ = generate_signer_key(WITNESS_NAME, COSIGNATURE_MLDSA44)
    with_extension = sign_checkpoint(Checkpoint(ORIGIN, 2, ROOTS[2], ("extension line",)), LOG_SIGNER)
    mldsa_only = make_cosigner(db_url, [ml_skey])
    with pytest.raises(MalformedRequest):
        run(mldsa_only.add_checkpoint(AddCheckpointRequest(0, (), with_extension)))
    assert mldsa_only.store.latest(ORIGIN) is None  # nothing stored for a checkpoint it could not cosign
    both = make_cosigner(db_url, [ed_skey, ml_skey])
    sigs = run(both.add_checkpoint(AddCheckpointRequest(0, (), with_extension)))
    assert [s.key_id for s in sigs] == [CosignatureVerifier(ed_vkey).key_id]


def test_the_compare_and_swap_holds_on_postgresql(witness_keys):
    """The same race as above on PostgreSQL (the server at 127.0.0.1:5432, as tests/postgres.py requires)."""
    from tests.postgres import fresh_database

    with fresh_database() as url:
        upgrade_schema(url)
        first, second = make_cosigner(url, [witness_keys[0]]), make_cosigner(url, [witness_keys[0]])

        async def attempt(cosigner, req):
            try:
                await cosigner.add_checkpoint(req)
                return req.checkpoint
            except OldSizeConflict:
                return None

        async def scenario():
            firsts = await asyncio.gather(*(attempt(c, request(0, 256)) for c in (first, second) * 4))
            grown = await asyncio.gather(*(attempt(c, r) for c, r in [(first, request(256, 257)),
                                                                         (second, request(256, 512))] * 4))
            return firsts, grown

        try:
            firsts, grown = run(scenario())
            assert len([r for r in firsts if r is not None]) == 1
            won = [r for r in grown if r is not None]
            assert len(won) == 1 and first.store.latest(ORIGIN).note == won[0]
            latest = first.store.latest(ORIGIN)
            with pytest.raises(RootConflict):  # the history table's fence, inside the same transaction
                first.store.compare_and_swap(ORIGIN, latest, WitnessState(latest.size, ROOTS[8], signed(8)))
            assert first.store.latest(ORIGIN) == latest
        finally:
            first.store.close()
            second.store.close()
