"""Fixtures of the operations tests: servers with a metrics listener, the scrape, and the
server's log as JSON records."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, free_port, loop_mounted_disk

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Ops:
    live: LiveServer
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def scrape(self) -> Samples:
        """Every sample of ``/metrics``, by name and label set."""
        response = httpx.get(self.metrics_url, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        samples: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def records(self) -> list[dict[str, Any]]:
        """The server's log, one JSON object per line: every line must be one."""
        return [json.loads(line) for line in self.live.log().splitlines() if line.strip()]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def ops_server(fresh_server: Callable[..., LiveServer]) -> Callable[..., Ops]:
    """A fresh server whose metrics listen on a free port of their own."""

    def start(**env: Any) -> Ops:
        port = free_port()
        return Ops(fresh_server(VOLUMED_METRICS_PORT=port, **env), port)

    return start


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB ext4 file system, loop-mounted (the tests run as root, as CI does)."""
    with loop_mounted_disk(tmp_path, "48M") as mount_point:
        yield mount_point


def fill(directory: Path) -> None:
    """Fill the file system but for a little room: enough for the store's writes, too
    little for what mke2fs has to write."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12):
            try:
                while True:
                    os.write(fd, b"\1" * chunk)
            except OSError:
                pass
        os.ftruncate(fd, os.fstat(fd).st_size - 192 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)


def hold_a_request_open(live: LiveServer) -> socket.socket:
    """A request whose body never finishes arriving: its handler waits for it, so a
    graceful shutdown has something in flight to wait for. Close the socket to end it."""
    stuck = socket.create_connection(("127.0.0.1", live.port))
    stuck.sendall(
        b"POST /v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + live.token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    time.sleep(0.3)  # no signal tells when granian has handed the request to the app
    return stuck
