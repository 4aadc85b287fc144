"""POST /v1/volumes/clone and /v1/volumes/{uuid}/clone: real copies of real images."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    allocated_mb,
    attach,
    failed,
    fsck_clean,
    get,
    image,
    items,
    new_instance,
    new_volume,
    ok,
    put_file,
    read_file,
    start,
    stop,
    unique,
    wait_until,
)
from tests.conftest import LiveServer
from tests.inprocess import inprocess_server  # noqa: F401 - in process


def _uuid_of_fs(path: Path) -> str:
    done = subprocess.run(["dumpe2fs", "-h", str(path)], capture_output=True, text=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("Filesystem UUID"))
    return line.split(":", 1)[1].strip()


def test_clone_is_a_real_copy_with_its_own_identity(
    api: httpx.Client, server: LiveServer, tmp_path: Path
) -> None:
    source = new_volume(api, size_mb=48, tags=["src"])
    source_path = image(server, source["uuid"])
    payload = bytes(range(256)) * 4096
    put_file(source_path, "payload.bin", payload, tmp_path)
    name = unique("copy")
    created = ok(api.post("/v1/volumes/clone", json=[{"name": source["name"], "vol_name": name}]))
    assert created["name"] == name and created["uuid"] != source["uuid"]
    assert created["state"] in ("uninitialized", "initializing", "available")
    clone = wait_until(api, created["uuid"], ("available",))
    assert clone["size_mb"] == 48 and clone["quota_policy"] == "static"
    assert clone["access_mode"] == "rwo" and clone["tags"] == []  # tags are not inherited
    assert clone["persistent"] is True and clone["delete_lock"] is False
    assert isinstance(clone["free_mb"], int) and clone["free_mb"] < 48
    clone_path = image(server, clone["uuid"])
    fsck_clean(clone_path)
    assert read_file(clone_path, "payload.bin") == payload
    assert _uuid_of_fs(clone_path) != _uuid_of_fs(source_path)
    assert allocated_mb(clone_path) >= 48  # static like its source: reserved
    after = get(api, source["uuid"])
    assert (after["state"], after["tags"]) == ("available", ["src"])
    # The two are independent: a change to the copy leaves the source alone.
    put_file(clone_path, "only-in-clone", b"x", tmp_path)
    done = subprocess.run(["debugfs", "-R", "ls /", str(source_path)], capture_output=True)
    assert b"only-in-clone" not in done.stdout


def test_clone_options_and_local_scope(api: httpx.Client, server: LiveServer) -> None:
    source = new_volume(api, size_mb=32, access_mode="rox")
    by_uuid = ok(
        api.post(
            f"/v1/volumes/{source['uuid']}/clone",
            json={"quota_policy": "dynamic", "tags": ["a", "b", "a"], "access_mode": "rwo"},
        )
    )
    assert by_uuid["name"].startswith("vol-")
    clone = wait_until(api, by_uuid["uuid"], ("available",))
    assert (clone["quota_policy"], clone["access_mode"], clone["tags"]) == (
        "dynamic",
        "rwo",
        ["a", "b"],
    )
    assert allocated_mb(image(server, clone["uuid"])) < 16  # dynamic: sparse
    wait_until(api, source["uuid"], ("available",))
    # No body at all: everything from the source, access mode included.
    bare = ok(api.post(f"/v1/volumes/{source['uuid']}/clone"))
    clone = wait_until(api, bare["uuid"], ("available",))
    assert (clone["quota_policy"], clone["access_mode"]) == ("static", "rox")


def test_clone_of_a_read_only_mount_keeps_it_mounted_and_a_writable_one_is_refused(
    api: httpx.Client,
) -> None:
    readonly = new_volume(api, size_mb=8, quota_policy="dynamic")
    writable = new_volume(api, size_mb=8, quota_policy="dynamic")
    first, second = new_instance(api), new_instance(api)
    attach(api, readonly, first, readonly=True)
    attach(api, writable, second)
    start(api, first)
    start(api, second)
    created = ok(api.post("/v1/volumes/clone", json={"uuid": readonly["uuid"]}))
    assert get(api, readonly["uuid"])["state"] == "mounted"
    wait_until(api, created["uuid"], ("available",))
    refused = failed(api.post("/v1/volumes/clone", json={"uuid": writable["uuid"]}), 24)
    assert "read-write" in refused["message"]
    stop(api, first)
    stop(api, second)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"vol_name": "bad name"}, 7),
        ({"vol_name": "x" * 64}, 22),
        ({"quota_policy": "thin"}, 7),
        ({"access_mode": "rwx"}, 1),
        ({"tags": ["no spaces"]}, 7),
    ],
)
def test_clone_option_errors(api: httpx.Client, fields: dict[str, object], code: int) -> None:
    source = new_volume(api, size_mb=4, quota_policy="dynamic")
    failed(api.post("/v1/volumes/clone", json=[{"uuid": source["uuid"], **fields}]), code)
    assert get(api, source["uuid"])["state"] == "available"


def test_clone_errors(api: httpx.Client, server: LiveServer) -> None:
    source = new_volume(api, size_mb=4, quota_policy="dynamic")
    taken = new_volume(api, size_mb=4, quota_policy="dynamic")
    clash = failed(
        api.post("/v1/volumes/clone", json={"uuid": source["uuid"], "vol_name": taken["name"]}),
        23,
    )
    assert clash["message"] == f"Volume with name '{taken['name']}' already exists"
    failed(api.post("/v1/volumes/clone", json={"name": "no-such-volume"}), 8)
    failed(api.post("/v1/volumes/clone", json={}), 13)
    failed(api.post("/v1/volumes/clone", json={"uuid": source["uuid"], "name": "x"}), 17)
    ghost = "00000000-0000-4000-8000-000000000000"
    failed(api.post(f"/v1/volumes/{ghost}/clone"), 8)
    assert api.post(f"/v1/volumes/{ghost}/clone", json={"uuid": ghost}).status_code == 400
    assert api.post("/v1/volumes/clone", json={"uuid": "x", "size_mb": 4}).status_code == 400
    other = server.add_user(unique("tenant"))
    with server.client(other) as client:
        failed(client.post("/v1/volumes/clone", json={"uuid": source["uuid"]}), 8)
    assert get(api, source["uuid"])["state"] == "available"


def test_mixed_batch_is_partial_success(api: httpx.Client) -> None:
    source = new_volume(api, size_mb=4, quota_policy="dynamic")
    other = new_volume(api, size_mb=4, quota_policy="dynamic")
    response = api.post(
        "/v1/volumes/clone",
        json=[{"uuid": source["uuid"]}, {"name": "nope-nope"}, {"uuid": other["uuid"]}],
    )
    assert response.json()["status"] == "partial_success"
    assert [i["status"] for i in items(response)] == ["success", "error", "success"]
