"""The metadata store out of space: PostgreSQL on a small loop-mounted disk (CI runs as
root) that is then filled. Writes answer 503 with a clear envelope, never 500; /readyz
says the store cannot write; freeing space brings both back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, LiveServer, free_port, loop_mounted_disk, make_server

PG_SH = str(REPO / "scripts" / "pg.sh")


@pytest.fixture
def pg_on_small_disk() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL whose data directory is on its own 160 MiB file system: its URL and
    the mount point."""
    root = Path(tempfile.mkdtemp(prefix="volumed-pgfull-", dir="/tmp"))
    root.chmod(0o755)  # the postgres user must reach the data directory
    try:
        with loop_mounted_disk(root, "160M") as mount:
            data = mount / "pg"
            started = subprocess.run(
                ["bash", PG_SH, "start", str(data), str(free_port())],
                capture_output=True,
                text=True,
                check=True,
            )
            try:
                yield started.stdout.strip().splitlines()[-1], mount
            finally:
                subprocess.run(["bash", PG_SH, "stop", str(data)], check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fill_completely(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 512):
            try:
                while True:
                    os.write(fd, b"\1" * chunk)
            except OSError:
                pass
        os.fsync(fd)
    finally:
        os.close(fd)
    return filler


def store_check(live: LiveServer) -> dict[str, str]:
    body = httpx.get(live.url + "/readyz", timeout=30).json()
    check: dict[str, str] = next(c for c in body["data"]["checks"] if c["name"] == "store")
    return check


@pytest.mark.postgresql_only
def test_postgresql_out_of_space_is_a_503_and_not_ready(
    pg_on_small_disk: tuple[str, Path], tmp_path: Path
) -> None:
    url, mount = pg_on_small_disk
    live = make_server(tmp_path, VOLUMED_DATABASE_URL=url, VOLUMED_READY_MIN_FREE_MB=0)
    try:
        with live.client() as api:
            assert api.post("/v1/volumes", json={"size_mb": 1}).status_code == 200
            assert store_check(live)["status"] == "ok"
            filler = fill_completely(mount)
            answers = []
            for n in range(300):
                body = {"name": f"full-{n}", "size_mb": 1, "quota_policy": "dynamic"}
                response = api.post("/v1/volumes", json=body)
                answers.append(response.status_code)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 503:
                    envelope = response.json()
                    assert envelope["status"] == "error"
                    assert "no space" in envelope["message"], envelope
                    assert envelope["errors"] == [{"status": 503, "message": envelope["message"]}]
                    assert response.headers["retry-after"]
                    break
            assert 503 in answers, answers
            check = store_check(live)
            assert check["status"] == "fail" and "no space" in check["message"], check
            assert httpx.get(live.url + "/readyz").status_code == 503
            # Reads still work.
            assert api.get("/v1/volumes").status_code == 200
            filler.unlink()
            assert store_check(live)["status"] == "ok"
            assert api.post("/v1/volumes", json={"size_mb": 1}).status_code == 200
    finally:
        live.kill()


# The database file in the data directory (issue 6's SQLite layout): SQLite pass only.
@pytest.mark.sqlite_only
def test_sqlite_out_of_space_is_a_503_and_not_ready(tmp_path: Path) -> None:
    with loop_mounted_disk(tmp_path, "48M") as mount:
        live = make_server(mount, VOLUMED_READY_MIN_FREE_MB=0, VOLUMED_FREE_SPACE_MARGIN_MB=0)
        try:
            with live.client() as api:
                assert store_check(live)["status"] == "ok"
                filler = fill_completely(mount)
                check = store_check(live)
                assert check["status"] == "fail" and "no space" in check["message"], check
                for n in range(5):
                    body = {"name": f"full-{n}", "size_mb": 1, "quota_policy": "dynamic"}
                    response = api.post("/v1/volumes", json=body)
                    assert response.status_code in (200, 503), response.text
                filler.unlink()
                assert store_check(live)["status"] == "ok"
        finally:
            live.kill()
