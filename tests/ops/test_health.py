"""Liveness and readiness probes: unauthenticated, outside /v1, and readiness flips when
the data directory turns read-only, the store goes away, a migration is missing or free
space runs low."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.ops.conftest import Ops


def readyz(ops: Ops) -> tuple[int, dict[str, dict[str, Any]]]:
    response = httpx.get(ops.live.url + "/readyz", timeout=10)
    body = response.json()
    assert set(body) >= {"status", "data", "op_time_us"}
    checks = {check["name"]: check for check in body["data"]["checks"]}
    assert list(checks) == ["store", "migrations", "data_dir", "free_space"]
    if response.status_code == 200:
        assert body["status"] == "success"
    else:
        assert body["status"] == "error" and body["message"].startswith("Not ready")
    return response.status_code, checks


def failing(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, check in checks.items() if check["status"] != "ok"}


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` read-only for real. Root ignores permission bits, so as root
    it becomes a read-only bind mount of itself; otherwise its mode is enough."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory), str(directory)], check=True
        )
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_probes_need_no_token_and_pass_on_a_healthy_server(
    ops_server: Callable[..., Ops],
) -> None:
    ops = ops_server()
    health = httpx.get(ops.live.url + "/healthz")
    assert health.status_code == 200
    assert health.json()["data"]["checks"] == [{"name": "process", "status": "ok", "message": None}]
    status, checks = readyz(ops)
    assert status == 200 and not failing(checks), checks
    assert httpx.get(ops.live.url + "/v1/readyz").status_code == 401


def test_readiness_flips_with_the_data_directory_and_the_store(
    ops_server: Callable[..., Ops],
) -> None:
    ops = ops_server()
    data_dir = ops.live.data_dir
    images = data_dir / "images"

    with read_only(images):
        status, checks = readyz(ops)
        assert (status, failing(checks)) == (503, {"data_dir"}), checks
        assert "not writable" in checks["data_dir"]["message"]
        assert httpx.get(ops.live.url + "/healthz").status_code == 200
    assert readyz(ops)[0] == 200
    assert list(images.iterdir()) == []  # the probe leaves no file behind

    if ops.live.is_sqlite:
        # The store goes away: its file is moved (SQLite would go on writing to it).
        database = data_dir / "volumed.db"
        database.rename(data_dir / "moved.db")
        try:
            status, checks = readyz(ops)
            assert (status, failing(checks)) == (503, {"store"}), checks
            assert "gone" in checks["store"]["message"]
        finally:
            (data_dir / "moved.db").rename(database)
        assert readyz(ops)[0] == 200

    # A migration this build knows is not applied.
    row = ops.live.sql("SELECT * FROM schema_migrations WHERE version = 4")[0]
    ops.live.sql("DELETE FROM schema_migrations WHERE version = 4")
    status, checks = readyz(ops)
    assert (status, failing(checks)) == (503, {"migrations"}), checks
    assert "4" in checks["migrations"]["message"]
    ops.live.sql("INSERT INTO schema_migrations VALUES (?, ?, ?)", tuple(row))
    assert readyz(ops)[0] == 200


def test_readiness_needs_free_space_above_the_threshold(ops_server: Callable[..., Ops]) -> None:
    ops = ops_server(VOLUMED_READY_MIN_FREE_MB=1 << 40)
    status, checks = readyz(ops)
    assert (status, failing(checks)) == (503, {"free_space"}), checks
    assert "below" in checks["free_space"]["message"]
