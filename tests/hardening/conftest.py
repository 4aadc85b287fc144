"""Fixtures of the hardening tests: a server with short client timeouts and a small limit
on failed authentication, and raw HTTP for what httpx will not send."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, make_server

BODY_TIMEOUT_S = 1
HEADER_TIMEOUT_S = 1
AUTH_BURST = 5


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_server(
        tmp_path_factory.mktemp("strict"),
        VOLUMED_BODY_TIMEOUT_S=BODY_TIMEOUT_S,
        VOLUMED_HEADER_TIMEOUT_S=HEADER_TIMEOUT_S,
        VOLUMED_AUTH_FAILURES_BURST=AUTH_BURST,
        VOLUMED_METRICS_PORT=0,
    )
    yield live
    live.stop()


def raw_request(live: LiveServer, data: bytes, *, timeout: float = 10) -> bytes:
    """Send ``data`` as it is on a new connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
