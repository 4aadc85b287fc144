"""A format that fails (the host file system is full) puts the volume in ``error`` with a
message on GET; the server keeps serving and recovers once space is freed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, loop_mounted_disk, make_server, wait_for_state


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB ext4 file system, loop-mounted (CI runs as root)."""
    with loop_mounted_disk(tmp_path, "48M") as mount_point:
        yield mount_point


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12):
            try:
                while True:
                    os.write(fd, b"\1" * chunk)
            except OSError:
                pass
        # Leave a little room: enough for the metadata store's writes, too little for
        # the file system structures mke2fs has to write.
        os.ftruncate(fd, os.fstat(fd).st_size - 192 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)
    return filler


def test_format_failure_on_a_full_disk_puts_the_volume_in_error(
    small_disk: Path, fresh_server: Callable[..., LiveServer]
) -> None:
    live: LiveServer = make_server(small_disk, VOLUMED_FREE_SPACE_MARGIN_MB=0)
    try:
        with live.client() as api:
            filler = fill(small_disk)
            # A dynamic volume passes the up-front check (it may overcommit), then mke2fs
            # finds no space.
            item = api.post("/v1/volumes", json={"size_mb": 200, "quota_policy": "dynamic"}).json()[
                "data"
            ]["volumes"][0]
            volume = wait_for_state(api, item["uuid"], ("error",))
            assert volume["state"] == "error"
            assert "space" in volume["message"].lower()
            # Nothing half-made is left behind, and the server still answers.
            assert list((live.data_dir / "images").iterdir()) == []
            assert api.get("/v1/volumes").status_code == 200
            # A static volume is refused up front with 19.
            static = api.post("/v1/volumes", json={"size_mb": 16}).json()["data"]["volumes"][0]
            assert static["error"] == 19
            # Freeing space makes it work again; the errored volume can be deleted.
            filler.unlink()
            assert api.delete(f"/v1/volumes/{item['uuid']}").json()["status"] == "success"
            again = api.post("/v1/volumes", json={"size_mb": 16}).json()["data"]["volumes"][0]
            assert wait_for_state(api, again["uuid"])["state"] == "available"
    finally:
        live.kill()
