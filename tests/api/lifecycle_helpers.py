"""Helpers for the update, clone, template, quota and listing tests: short calls, and
looking inside images with the e2fsprogs tools (no mount, no mocks)."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.conftest import LiveServer, wait_for_state

if TYPE_CHECKING:
    from volumed.store.sql import SqlStore

Item = dict[str, Any]


def unique(prefix: str = "v") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def items(response: httpx.Response, key: str = "volumes") -> list[Item]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["op_time_us"], int)
    found: list[Item] = body["data"][key]
    return found


def ok(response: httpx.Response, key: str = "volumes") -> Item:
    found = items(response, key)
    assert len(found) == 1, found
    assert found[0]["status"] == "success", found[0]
    return found[0]


def failed(response: httpx.Response, code: int) -> Item:
    found = items(response)
    assert len(found) == 1, found
    assert found[0]["status"] == "error" and found[0]["error"] == code, found[0]
    assert response.json()["status"] == "error"
    return found[0]


def new_volume(api: httpx.Client, size_mb: int = 8, **fields: Any) -> Item:
    """A volume waited for until ``available``."""
    body = {"name": unique(), "size_mb": size_mb, **fields}
    created = ok(api.post("/v1/volumes", json=body))
    volume = wait_for_state(api, created["uuid"])
    assert volume["state"] == "available", volume
    return volume


def get(api: httpx.Client, uuid: str) -> Item:
    return ok(api.get(f"/v1/volumes/{uuid}"))


def patch(api: httpx.Client, volume: Item, prop: str, op: str = "set", **value: Any) -> Item:
    """One update item by name; ``value=`` is passed only when given."""
    body = {"name": volume["name"], "prop": prop, "op": op, **value}
    return items(api.patch("/v1/volumes", json=[body]))[0]


def wait_until(api: httpx.Client, uuid: str, states: tuple[str, ...], timeout: float = 20) -> Item:
    volume = wait_for_state(api, uuid, states, timeout)
    assert volume["state"] in states, volume
    return volume


def set_overrides(live: LiveServer, user_name: str, **limits: int | None) -> None:
    """Per-user quota overrides, written through the admin path (the store, directly)."""
    from volumed.domain.values import QuotaOverrides

    async def write(store: SqlStore) -> None:
        user = await store.find_user(user_name)
        assert user is not None
        await store.set_quota_overrides(user.id, QuotaOverrides(**limits))

    live.with_store(write)


# ---------------------------------------------------------------------- images


def image(server: LiveServer, uuid: str) -> Path:
    return server.data_dir / "images" / f"{uuid}.img"


def allocated_mb(path: Path) -> int:
    return path.stat().st_blocks * 512 // 2**20


def fsck_clean(path: Path) -> None:
    done = subprocess.run(["e2fsck", "-fn", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def put_file(path: Path, name: str, data: bytes, tmp: Path) -> None:
    """Write ``data`` as ``/name`` into the (unattached) image with debugfs."""
    source = tmp / f"put-{secrets.token_hex(4)}"
    source.write_bytes(data)
    done = subprocess.run(
        ["debugfs", "-w", "-R", f"write {source} {name}", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Allocated inode" in done.stdout + done.stderr, done


def read_file(path: Path, name: str) -> bytes:
    done = subprocess.run(["debugfs", "-R", f"cat /{name}", str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def superblock_size_mb(path: Path) -> int:
    done = subprocess.run(["dumpe2fs", "-h", str(path)], capture_output=True, text=True)
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    blocks = int(fields["Block count"].strip())
    block_size = int(fields["Block size"].strip())
    return blocks * block_size // 2**20


@contextlib.contextmanager
def image_held(server: LiveServer, uuid: str) -> Iterator[None]:
    """Move the image away for a while: every job that needs it fails (and is retried
    after its lease) until it is back. Makes a job's in-between state observable."""
    path = image(server, uuid)
    held = path.with_name(path.name + ".held")
    os.rename(path, held)
    try:
        yield
    finally:
        os.rename(held, path)


def wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------------- instances


def new_instance(api: httpx.Client) -> Item:
    return ok(api.post("/v1/instances", json={"name": unique("i"), "image": "x"}), "instances")


def attach(api: httpx.Client, volume: Item, instance: Item, **fields: Any) -> Item:
    body = {"uuid": volume["uuid"], "attach_to": {"uuid": instance["uuid"]}, "at": "/data"}
    return ok(api.put("/v1/volumes/attach", json=[{**body, **fields}]))


def start(api: httpx.Client, instance: Item) -> Item:
    return ok(api.put("/v1/instances/start", json=[{"uuid": instance["uuid"]}]), "instances")


def stop(api: httpx.Client, instance: Item) -> Item:
    return ok(api.put("/v1/instances/stop", json=[{"uuid": instance["uuid"]}]), "instances")
