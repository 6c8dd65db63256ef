"""The emulated key server's edge: a stalled client is dropped, connections are bounded."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.platform.kds_server import KdsServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KdsServer]:
    kds = KdsServer(
        ("127.0.0.1", 0), str(tmp_path / "no-platform.sock"), header_timeout=0.5, max_connections=2
    )
    thread = threading.Thread(target=kds.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield kds
    kds.shutdown()
    kds.server_close()


def _connect(kds: KdsServer) -> socket.socket:
    return socket.create_connection(kds.server_address[:2], timeout=30)  # type: ignore[arg-type]


def test_a_client_that_stops_mid_request_is_dropped(server: KdsServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /cek/id/00 HTTP/1.1\r\n")
        assert sock.recv(1024) == b""  # closed by the server's read timeout


def test_connections_past_the_bound_get_503(server: KdsServer) -> None:
    held = [_connect(server) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"GET ")  # accepted and waiting for the rest
        with _connect(server) as extra:
            answer = extra.recv(1024)
        assert answer.startswith(b"HTTP/1.0 503 ")
    finally:
        for sock in held:
            sock.close()


def test_a_body_route_is_not_served(server: KdsServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /cek/id/00 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.0 501 ")
