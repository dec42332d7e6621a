"""api/readers.py pieces that the end-to-end tests (tests/e2e/test_read_workers.py) cannot reach."""

from __future__ import annotations

import os

from api.readers import READ_ROUTES, writer_socket
from api.routes import ROUTES
from log.service import LogConfig


def test_the_writer_socket_lives_in_the_data_dir_unless_the_path_is_too_long_for_a_socket(tmp_path):
    short = LogConfig(data_dir=tmp_path / "data")
    assert writer_socket(short) == (tmp_path / "data").resolve() / "writer.sock"
    deep = LogConfig(data_dir=tmp_path / ("d" * 60) / ("e" * 60))
    path = writer_socket(deep)
    assert len(os.fsencode(path)) < 100
    assert path == writer_socket(LogConfig(data_dir=deep.data_dir))  # writer and workers agree on it
    assert path != writer_socket(LogConfig(data_dir=tmp_path / ("d" * 60) / ("f" * 60)))


def test_workers_serve_only_routes_the_writer_serves_with_the_same_handlers():
    served = {(route.method, route.path): route.handler for route in ROUTES}
    for route in READ_ROUTES:
        assert route.method == "GET"
        assert served[(route.method, route.path)] is route.handler
