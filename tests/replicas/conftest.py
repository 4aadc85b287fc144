"""Replicas: N ``volumed serve`` processes on one fresh PostgreSQL database and one data
directory, each on its own port, with a short lease so that a dead replica's jobs are
taken over quickly."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, pg_cluster

LEASE_S = 2


def start_replicas(tmp: Path, count: int, **env: Any) -> list[LiveServer]:
    url = pg_cluster().new_database()
    token = "test-" + secrets.token_hex(16)
    settings = {
        "VOLUMED_WORKER_POLL_S": "0.2",
        "VOLUMED_WORKER_LEASE_S": str(LEASE_S),
        "VOLUMED_METRICS_PORT": "0",
        "VOLUMED_RUNTIME": "record",
        **{k: str(v) for k, v in env.items()},
    }
    replicas = [
        LiveServer(data_dir=tmp / "data", token=token, env=settings, database_url=url)
        for _ in range(count)
    ]
    for replica in replicas:
        replica.start()
    return replicas


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[..., list[LiveServer]]]:
    started: list[LiveServer] = []

    def start(count: int, **env: Any) -> list[LiveServer]:
        group = start_replicas(tmp_path / f"g{len(started)}", count, **env)
        started.extend(group)
        return group

    yield start
    for live in started:
        if live.process is not None and live.process.poll() is None:
            live.kill()
