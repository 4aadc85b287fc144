"""A full host disk: with the data directory on a small loop-mounted ext4 (CI runs as root),
fill it; creates, clones, grows and imports fail with clear per-item errors, the service
stays up, existing volumes and their data stay intact, and freeing space makes it all work
again. With not a byte left, even the metadata store cannot write: a clear 503 or per-item
error, never a 500."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_format_failure import fill
from tests.conftest import LiveServer, loop_mounted_disk, make_server, wait_for_state

PAYLOAD = b"volumed keeps this file intact\n" * 100


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 MiB ext4 file system, loop-mounted."""
    with loop_mounted_disk(tmp_path, "160M") as mount_point:
        yield mount_point


def one(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()["data"]["volumes"][0]
    return item


def failed(response: httpx.Response, *codes: int) -> dict[str, Any]:
    item = one(response)
    assert item["status"] == "error" and item["error"] in codes, item
    assert item["message"], item
    return item


def debugfs(image: Path, command: str, *, write: bool = False) -> bytes:
    args = ["debugfs", *(["-w"] if write else []), "-R", command, str(image)]
    return subprocess.run(args, check=True, capture_output=True).stdout


def tar_with(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def test_a_full_disk_gives_clear_errors_and_loses_nothing(disk: Path, tmp_path: Path) -> None:
    scenario(disk, tmp_path, with_import=False)


def test_an_import_on_a_full_disk_hands_the_volume_back(disk: Path, tmp_path: Path) -> None:
    scenario(disk, tmp_path, with_import=True)


def scenario(disk: Path, tmp_path: Path, *, with_import: bool) -> None:
    live: LiveServer = make_server(
        disk,
        VOLUMED_FREE_SPACE_MARGIN_MB=0,
        VOLUMED_READY_MIN_FREE_MB=0,
        VOLUMED_METRICS_PORT=0,
        VOLUMED_WORKER_LEASE_S=3,
    )
    try:
        with live.client() as api:
            run(live, api, disk, tmp_path, with_import)
    finally:
        live.kill()


def run(live: LiveServer, api: httpx.Client, disk: Path, tmp_path: Path, with_import: bool) -> None:
    images = live.data_dir / "images"
    keep = wait_for_state(
        api, one(api.post("/v1/volumes", json={"name": "keep", "size_mb": 8}))["uuid"]
    )
    thin = wait_for_state(
        api,
        one(api.post("/v1/volumes", json={"size_mb": 8, "quota_policy": "dynamic"}))["uuid"],
    )
    source = tmp_path / "payload.txt"
    source.write_bytes(PAYLOAD)
    image = images / f"{keep['uuid']}.img"
    debugfs(image, f"write {source} payload.txt", write=True)

    filler = fill(disk)
    # Creates: static is refused up front (19); dynamic passes, then fails to format.
    failed(api.post("/v1/volumes", json={"size_mb": 16}), 19)
    dynamic = one(api.post("/v1/volumes", json={"size_mb": 64, "quota_policy": "dynamic"}))
    made = wait_for_state(api, dynamic["uuid"], ("error", "available"))
    assert made["state"] == "error" and "space" in made["message"].lower(), made
    # A clone of a static volume does not fit: 19 up front, or an error state with a reason.
    clone = one(api.post(f"/v1/volumes/{keep['uuid']}/clone", json={}))
    if clone["status"] == "success":
        cloned = wait_for_state(api, clone["uuid"], ("error", "available"))
        assert cloned["state"] == "error" and cloned["message"], cloned
    else:
        assert clone["error"] in (19, 10) and clone["message"], clone
    # Grows: static cannot reserve the space (19); dynamic answers clearly either way.
    grow = {"prop": "size_mb", "op": "set", "value": 64}
    failed(api.patch(f"/v1/volumes/{keep['uuid']}", json=grow), 19, 10)
    thin_grow = one(api.patch(f"/v1/volumes/{thin['uuid']}", json=grow))
    assert thin_grow["status"] == "success" or thin_grow["message"], thin_grow
    # An import that does not fit: 19 (or 10), and the volume is unchanged.
    if with_import:
        put = api.put(
            f"/volumed/v1/volumes/{keep['uuid']}/import",
            content=tar_with(4 << 20),
            headers={"Content-Type": "application/x-tar"},
        )
        failed(put, 19, 10)

    # Not a byte left: not even the metadata store can write. Clear errors, no 500.
    last = disk / "last-bytes"
    with open(last, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        except OSError:
            pass
    for _ in range(3):
        response = api.post("/v1/volumes", json={"size_mb": 1, "quota_policy": "dynamic"})
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.json()["errors"][0]["status"] == 503
    last.unlink()

    # The service stayed up, the volume and its data are intact.
    assert httpx.get(live.url + "/healthz").status_code == 200
    # A refused import hands the volume back at once when the store can record it; when
    # not even the store can write, the volume stays busy until the worker can (below).
    settled = ("available", "busy") if with_import else ("available",)
    assert wait_for_state(api, keep["uuid"], settled, timeout=10)["state"] in settled
    assert debugfs(image, "cat payload.txt") == PAYLOAD
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True)
    assert fsck.returncode == 0, fsck.stdout
    # The server's log file sits on the full disk too: Python's own report that it could
    # not write a log line ("--- Logging error ---") is the disk, not a server fault.
    log = live.log()
    assert "Traceback" not in log.replace("--- Logging error ---\nTraceback", ""), log[-2000:]
    assert '"status":500' not in log

    # Free space: everything works again.
    filler.unlink()
    assert wait_for_state(api, keep["uuid"], timeout=30)["state"] == "available"
    again = one(api.post("/v1/volumes", json={"size_mb": 16}))
    assert wait_for_state(api, again["uuid"])["state"] == "available"
    copy = one(api.post(f"/v1/volumes/{keep['uuid']}/clone", json={}))
    assert wait_for_state(api, copy["uuid"])["state"] == "available"
    assert one(api.patch(f"/v1/volumes/{keep['uuid']}", json=grow))["status"] == "success"
    put = api.put(
        f"/volumed/v1/volumes/{thin['uuid']}/import",
        content=tar_with(1 << 20),
        headers={"Content-Type": "application/x-tar"},
    )
    assert one(put)["status"] == "success"
    assert debugfs(images / f"{copy['uuid']}.img", "cat payload.txt") == PAYLOAD
