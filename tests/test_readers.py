"""api/server/readers.py pieces that the end-to-end tests (tests/e2e/test_read_workers.py) cannot reach."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from api.server.readers import READ_ROUTES, refuse_a_served_port, writer_socket
from api.server.routes import ROUTES
from log.service import LogConfig


def test_the_writer_socket_lives_in_the_data_dir_unless_the_path_is_too_long_for_a_socket(tmp_path):
    short = LogConfig(data_dir=tmp_path / "data")
    assert writer_socket(short) == (tmp_path / "data").resolve() / "writer.sock"
    deep = LogConfig(data_dir=tmp_path / ("d" * 60) / ("e" * 60))
    path = writer_socket(deep)
    assert len(os.fsencode(path)) < 100
    assert path == writer_socket(LogConfig(data_dir=deep.data_dir))  # writer and workers agree on it
    assert path != writer_socket(LogConfig(data_dir=tmp_path / ("d" * 60) / ("f" * 60)))


def test_a_port_some_process_listens_on_is_refused_even_with_so_reuseport():
    """What the writer checks before it binds with SO_REUSEPORT: a listener of the same user that set SO_REUSEPORT
    too (another server's read-worker group) would otherwise share the port without a word."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError) as refused:
            refuse_a_served_port("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
        assert str(refused.value) == f"[Errno {errno.EADDRINUSE}] port {port} at 127.0.0.1 is already served by " \
                                     "another process"
    refuse_a_served_port("127.0.0.1", port)  # free again (nothing listens): no complaint
    refuse_a_served_port("127.0.0.1", 0)  # port 0: the kernel picks a free one


def test_workers_serve_only_routes_the_writer_serves_with_the_same_handlers():
    served = {(route.method, route.path): route.handler for route in ROUTES}
    for route in READ_ROUTES:
        assert route.method == "GET"
        assert served[(route.method, route.path)] is route.handler


def _batcher_with(answer):
    """An EntryBatcher whose writer is `answer(entries) -> (status, headers, body)`; `sent` records each batch."""
    import asyncio
    import base64
    import json

    from api.server.forwarding import EntryBatcher
    from api.server.problems import problem_response

    sent: list[list[bytes]] = []
    release = asyncio.Event()

    async def send(body: bytes):
        entries = [base64.b64decode(item) for item in json.loads(body)["entries"]]
        sent.append(entries)
        await release.wait()  # held until the test has queued everything
        return answer(entries)

    def unavailable():
        return problem_response(503, "unavailable", "Writer unavailable", "the writer is not answering")

    return EntryBatcher(send, unavailable), sent, release


def _writer_answer(first_index: int):
    import base64
    import json

    from log.hashing import hash_leaf

    note = "example.test/log\n{size}\nroot\n\n\u2014 example.test/log sig\n"

    def answer(entries):
        nonlocal first_index
        receipts = [{"index": first_index + i, "leaf_hash": base64.b64encode(hash_leaf(e)).decode()}
                    for i, e in enumerate(entries)]
        first_index += len(entries)
        size = first_index
        return 200, {}, json.dumps({"entries": receipts, "tree_size": size,
                                    "checkpoint": note.format(size=size)}).encode()

    return answer


def test_entries_reaching_a_worker_go_to_the_writer_in_batches_each_answered_as_the_writer_would():
    import asyncio
    import base64
    import json

    from log.hashing import hash_leaf

    async def scenario():
        batcher, sent, release = _batcher_with(_writer_answer(100))
        entries = [f"entry {n}".encode() for n in range(50)]
        tasks = [asyncio.create_task(batcher.add(entries[0]))]
        await asyncio.sleep(0.01)
        assert sent == [entries[:1]]  # out at once, alone
        tasks += [asyncio.create_task(batcher.add(entry)) for entry in entries[1:]]
        await asyncio.sleep(0.01)
        assert len(sent) == 1  # the rest wait for it
        release.set()
        responses = await asyncio.gather(*tasks)
        return entries, sent, responses

    entries, sent, responses = asyncio.run(scenario())
    # The first entry went alone; the 49 that came while it was out went as one batch.
    assert sent == [entries[:1], entries[1:]]
    for n, (entry, response) in enumerate(zip(entries, responses)):
        assert response.status == 200 and response.content_type == "application/json"
        body = json.loads(response.body)
        assert body["index"] == 100 + n and base64.b64decode(body["leaf_hash"]) == hash_leaf(entry)
        assert body["tree_size"] == (101 if n == 0 else 150)
        assert body["checkpoint"].startswith(f"example.test/log\n{body['tree_size']}\n")


def test_what_the_writer_refuses_or_fails_reaches_every_entry_of_the_batch_and_nothing_is_acknowledged():
    import asyncio
    import json

    problem = json.dumps({"type": "urn:auditlog:problem:unavailable", "status": 503, "detail": "queue full"})

    def refuse(entries):
        return 503, {"Retry-After": "1", "Content-Type": "application/problem+json"}, problem.encode()

    def short(entries):
        return 200, {}, json.dumps({"entries": [], "tree_size": 1, "checkpoint": "x\n1\nr\n"}).encode()

    def unreachable(entries):
        raise ConnectionRefusedError("no writer")

    async def run(answer):
        batcher, _, release = _batcher_with(answer)
        tasks = [asyncio.create_task(batcher.add(b"entry %d" % n)) for n in range(5)]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*tasks)

    for response in asyncio.run(run(refuse)):
        assert response.status == 503 and response.body == problem.encode()
        assert response.headers["Retry-After"] == "1"
    for answer in (short, unreachable):  # an answer that does not account for every entry, or none at all
        for response in asyncio.run(run(answer)):
            assert response.status == 503
            assert json.loads(response.body)["type"] == "urn:auditlog:problem:unavailable"


def test_a_worker_batch_stays_within_the_writers_limits_on_a_batch():
    import asyncio

    from api.server.routes import MAX_BATCH_ENTRIES, MAX_JSON_BODY, parse_batch
    from log.tiles import MAX_ENTRY_SIZE

    sizes = []

    async def scenario(entries):
        batcher, sent, release = _batcher_with(_writer_answer(0))
        original = batcher._send

        async def measuring(body):
            sizes.append(len(body))
            parse_batch(body)  # what the writer would accept, or InvalidInput
            return await original(body)

        batcher._send = measuring
        first = asyncio.create_task(batcher.add(b"first"))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.add(entry)) for entry in entries]
        await asyncio.sleep(0.01)
        release.set()
        responses = await asyncio.gather(first, *rest)
        assert all(response.status == 200 for response in responses)
        return sent

    big = [bytes([n % 256]) * MAX_ENTRY_SIZE for n in range(260)]  # ~22 MiB of base64 in all
    sent = asyncio.run(scenario(big))
    assert sum(len(batch) for batch in sent) == len(big) + 1
    assert len(sent) >= 3 and max(sizes) <= MAX_JSON_BODY
    small = [b"e%d" % n for n in range(MAX_BATCH_ENTRIES + 10)]
    sizes.clear()
    sent = asyncio.run(scenario(small))
    assert [len(batch) for batch in sent] == [1, MAX_BATCH_ENTRIES, 10]


def test_workers_answer_exactly_the_tree_reads_themselves_in_the_main_tables_order():
    """The worker's routes are rows of the main table, not a copy of it: the five tree reads, nothing else."""
    assert [(route.method, route.path) for route in READ_ROUTES] == [
        ("GET", "/api/v1/entries/{index}"),
        ("GET", "/api/v1/proof/inclusion"),
        ("GET", "/api/v1/proof/consistency"),
        ("GET", "/tile/entries/{n:.+}"),
        ("GET", "/tile/{level}/{n:.+}"),
    ]
    assert all(any(route is row for row in ROUTES) for route in READ_ROUTES)
    assert all(route.kwargs.get("allow_head") is False for route in READ_ROUTES)  # no HEAD, as on the writer
