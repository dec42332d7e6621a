"""Envelope checks and signatures in verifier processes (log/audit/verifier.py): RFC 8032's Ed25519 test vectors
through a real child process, every malformed or forged job refused, a body checked in a child exactly as
check_body checks it here (refusals included) with the signatures of taught keys verified, the verify request's
format, and failing closed when a child dies: a request it was answering raises VerifierUnavailable (never a
verdict), and the pool starts a new child."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import struct

import pytest
from nacl.signing import SigningKey

from log.audit import verifier
from log.audit.canonical import canonicalize
from log.audit.errors import InvalidEvent
from log.audit.intake import check_body
from log.audit.registry import key_id_for
from log.audit.schema import parse_timestamp_ms
from log.errors import LogError
from log.audit.verifier import VerifierPool, VerifierUnavailable, decode_jobs, encode_jobs

# RFC 8032 section 7.1, TEST 1-3: (public key, message, signature).
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe"
     "24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302a"
     "eeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed2"
     "8dc027beceea1ec40a"),
]
VECTORS = [(bytes.fromhex(k), bytes.fromhex(m), bytes.fromhex(s)) for k, m, s in RFC8032]


def _flip(data: bytes, position: int = 0) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1:]


async def _with_pool(scenario, processes: int = 1):
    pool = VerifierPool(processes)
    await pool.start()
    try:
        return await scenario(pool)
    finally:
        await pool.close()


def test_rfc8032_vectors_verify_and_every_forgery_is_refused():
    (key1, msg1, sig1), (key2, msg2, sig2), (key3, msg3, sig3) = VECTORS
    jobs = [
        *VECTORS,
        (key2, _flip(msg2), sig2),  # message changed
        (key3, msg3, _flip(sig3, 63)),  # signature changed (S)
        (key3, msg3, _flip(sig3, 0)),  # signature changed (R)
        (key1, msg2, sig2),  # another key's signature
        (key2, msg2, sig2[:63]),  # signature too short
        (key2 + b"\0", msg2, sig2),  # key too long
        (bytes(32), b"", bytes(64)),  # the all-zero key and signature
        (b"\xff" * 32, msg1, sig1),  # not a curve point
        *VECTORS,  # the same keys again, from the child's key cache
    ]
    expected = [True] * 3 + [False] * 8 + [True] * 3

    async def scenario(pool):
        assert pool.running == 1
        return await pool.verify(jobs)

    assert asyncio.run(_with_pool(scenario)) == expected


def test_concurrent_requests_get_their_own_verdicts_in_order():
    async def scenario(pool):
        requests = []
        for n in range(40):
            forged = (VECTORS[0][0], b"x", VECTORS[0][2])
            jobs = [VECTORS[(n + i) % 3] if (n + i) % 4 else forged for i in range(n % 7 + 1)]
            requests.append(jobs)
        answers = await asyncio.gather(*(pool.verify(jobs) for jobs in requests))
        return requests, answers, pool.verified

    requests, answers, verified = asyncio.run(_with_pool(scenario, processes=2))
    for jobs, answer in zip(requests, answers):
        assert answer == [message != b"x" for _, message, _ in jobs]
    assert verified == sum(len(jobs) for jobs in requests)


def test_verify_request_round_trips_and_refuses_a_payload_of_the_wrong_length():
    jobs = [VECTORS[1], (VECTORS[2][0], b"m" * 1000, VECTORS[2][2])]
    payload = encode_jobs(jobs)
    assert struct.unpack_from("<I", payload) == (2,)
    assert len(payload) == 4 + 2 * (32 + 64 + 4) + 1 + 1000
    assert decode_jobs(payload) == jobs
    for broken in (payload[:-1], payload + b"\0", struct.pack("<I", 3) + payload[4:], payload[:50]):
        with pytest.raises(ValueError):
            decode_jobs(broken)


def test_a_child_that_dies_fails_what_it_was_asked_and_a_new_child_takes_over(monkeypatch):
    monkeypatch.setattr(verifier, "RESTART_DELAY", 0.0)

    async def scenario(pool):
        first = pool.pids()
        # A child stopped mid-request never answers: the request fails, it is not taken as verified.
        os.kill(first[0], signal.SIGSTOP)
        pending = asyncio.ensure_future(pool.verify(VECTORS))
        await asyncio.sleep(0.05)
        assert not pending.done()
        os.kill(first[0], signal.SIGKILL)
        with pytest.raises(VerifierUnavailable):
            await asyncio.wait_for(pending, 10)
        # The next request finds no child (it is restarted in the background) and says so.
        with pytest.raises(VerifierUnavailable):
            await pool.verify(VECTORS)
        for _ in range(200):
            if pool.running:
                break
            await asyncio.sleep(0.05)
        assert pool.running == 1 and pool.pids() != first
        return await pool.verify(VECTORS)

    assert asyncio.run(_with_pool(scenario)) == [True, True, True]


def test_a_stuck_child_is_replaced_and_its_requests_fail_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(verifier, "REPLY_TIMEOUT", 0.5)
    monkeypatch.setattr(verifier, "RESTART_DELAY", 0.0)

    async def scenario(pool):
        (stuck,) = pool.pids()
        os.kill(stuck, signal.SIGSTOP)
        with pytest.raises(VerifierUnavailable):
            await asyncio.wait_for(pool.verify(VECTORS), 10)
        for _ in range(200):
            if pool.running and pool.pids() != [stuck]:
                break
            with pytest.raises(VerifierUnavailable):
                await pool.verify(VECTORS)  # no child until the new one has started
            await asyncio.sleep(0.05)
        return stuck, await pool.verify(VECTORS)

    stuck, verdicts = asyncio.run(_with_pool(scenario))
    assert verdicts == [True, True, True]
    with pytest.raises(ProcessLookupError):
        os.kill(stuck, 0)


def test_a_child_that_cannot_start_leaves_the_pool_unavailable_not_hanging(monkeypatch):
    monkeypatch.setattr(verifier, "child_command", lambda: [verifier.sys.executable, "-c", "print('nope')"])

    async def scenario(pool):
        assert pool.running == 0
        with pytest.raises(VerifierUnavailable):
            await pool.verify(VECTORS)

    asyncio.run(_with_pool(scenario))


def test_close_stops_every_child():
    async def scenario():
        pool = VerifierPool(2)
        await pool.start()
        pids = pool.pids()
        assert len(pids) == 2
        await pool.close()
        with pytest.raises(VerifierUnavailable):
            await pool.verify(VECTORS)
        return pids

    for pid in asyncio.run(scenario()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _signed_body(envelopes: list[dict]) -> bytes:
    return json.dumps({"events": envelopes}).encode()


def _event(n: int, **fields) -> dict:
    return {"schema": "auditlog.event/v1", "event_id": f"ev-{n}", "trace_id": "tr-1", "run_id": "run-1",
            "timestamp": "2026-11-23T10:00:00.000Z", "tenant": "acme", "actor": {"type": "agent", "id": "a"},
            "event_type": "tool_call", **fields}


def _envelope(key: SigningKey, event: dict, producer: str = "agent-1") -> dict:
    return {"producer": producer, "key_id": key_id_for(bytes(key.verify_key)), "event": event,
            "signature": base64.b64encode(key.sign(canonicalize(event)).signature).decode()}


def _same(ours, theirs) -> bool:
    """Checked envelopes equal; refusals of the same class with the same message, field and field errors."""
    if isinstance(ours, Exception):
        return (type(ours), ours.args, getattr(ours, "field", None), getattr(ours, "errors", None)) == (
            type(theirs), theirs.args, getattr(theirs, "field", None), getattr(theirs, "errors", None))
    return ours == theirs


def test_a_child_checks_a_body_as_check_body_does_and_verifies_the_keys_it_was_taught():
    taught, untaught = SigningKey(bytes(range(32))), SigningKey(bytes(range(1, 33)))
    now = parse_timestamp_ms("2026-11-23T10:00:01.000Z")
    forged = _envelope(taught, _event(2))
    forged["event"]["event_type"] = "outcome"
    invalid = _event(3)
    del invalid["tenant"]
    envelopes = [_envelope(taught, _event(0)), _envelope(untaught, _event(1)), forged, _envelope(taught, invalid),
                 _envelope(taught, _event(4, context={"case_id": "c-1"}, extensions={"note": "é"})), {"x": 1}]
    body = _signed_body(envelopes)

    async def scenario(pool):
        pool.learn_keys([bytes(taught.verify_key)])
        checked = await pool.check(body, now)
        refusal = None
        try:
            await pool.check(b'{"events": []}', now)
        except LogError as exc:
            refusal = exc
        return checked, refusal, pool.checked

    checked, refusal, count = asyncio.run(_with_pool(scenario))
    single, items = check_body(body, now)
    assert checked.single is single is False
    assert len(checked.items) == len(items) == 6 and count == 6
    assert all(_same(ours, theirs) for ours, theirs in zip(items, checked.items))
    assert isinstance(checked.items[3], InvalidEvent) and checked.items[3].field == "$.event.tenant"
    key = bytes(taught.verify_key)
    assert checked.signed_with == [key, None, None, None, key, None]
    with pytest.raises(InvalidEvent) as expected:
        check_body(b'{"events": []}', now)
    assert _same(expected.value, refusal)


def test_keys_taught_before_a_child_starts_reach_it():
    key = SigningKey(bytes(range(32)))
    body = json.dumps(_envelope(key, _event(0))).encode()

    async def scenario():
        pool = VerifierPool(1)
        pool.learn_keys([bytes(key.verify_key), b"short"])
        await pool.start()
        try:
            return await pool.check(body, parse_timestamp_ms("2026-11-23T10:00:01.000Z"))
        finally:
            await pool.close()

    checked = asyncio.run(scenario())
    assert checked.single is True and checked.signed_with == [bytes(key.verify_key)]
