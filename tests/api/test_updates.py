"""PATCH /v1/volumes and /v1/volumes/{uuid}: tags, delete lock, real grows and real
quota-policy switches, against a server in process (tests/inprocess.py)."""

from __future__ import annotations

import shutil
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
    patch,
    put_file,
    read_file,
    set_overrides,
    start,
    stop,
    superblock_size_mb,
    unique,
)
from tests.conftest import LiveServer
from tests.inprocess import inprocess_server  # noqa: F401 - `server` runs in process

# ---------------------------------------------------------------------- tags


def test_tags_set_add_del_and_clear(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    assert patch(api, volume, "tags", value=["b", "a", "b"])["status"] == "success"
    assert get(api, volume["uuid"])["tags"] == ["b", "a"]  # deduplicated, order kept
    patch(api, volume, "tags", "add", value=["c", "a", "d"])
    assert get(api, volume["uuid"])["tags"] == ["b", "a", "c", "d"]
    patch(api, volume, "tags", "del", value=["a", "zzz"])
    assert get(api, volume["uuid"])["tags"] == ["b", "c", "d"]
    # ``set`` without a value clears (the SDK's REMOVE).
    patch(api, volume, "tags")
    assert get(api, volume["uuid"])["tags"] == []


def test_tag_rules(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    assert patch(api, volume, "tags", value=[f"t{i}" for i in range(17)])["error"] == 5
    assert patch(api, volume, "tags", value=["x" * 257])["error"] == 22
    assert patch(api, volume, "tags", value=["has space"])["error"] == 7
    assert patch(api, volume, "tags", value=["ok-1", "a:b=c+d_e.f"])["status"] == "success"
    assert patch(api, volume, "tags", value=["x" * 256])["status"] == "success"
    assert patch(api, volume, "tags", value=[f"t{i}" for i in range(16)])["status"] == "success"
    assert patch(api, volume, "tags", "add", value=["one-more"])["error"] == 5
    assert patch(api, volume, "tags", "add")["error"] == 7  # add needs a value
    assert patch(api, volume, "tags", value=5)["error"] == 7
    assert len(get(api, volume["uuid"])["tags"]) == 16


def test_delete_lock_blocks_delete_until_cleared(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    assert patch(api, volume, "delete_lock", value=True)["status"] == "success"
    assert get(api, volume["uuid"])["delete_lock"] is True
    failed(api.delete(f"/v1/volumes/{volume['uuid']}"), 14)
    assert patch(api, volume, "delete_lock", "add", value=False)["error"] == 7
    assert patch(api, volume, "delete_lock", value="yes")["error"] == 7
    patch(api, volume, "delete_lock")  # set without value: unlocked
    assert get(api, volume["uuid"])["delete_lock"] is False
    ok(api.delete(f"/v1/volumes/{volume['uuid']}"))


def test_ids_are_echoed_and_items_apply_in_order(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    body = [
        {"uuid": volume["uuid"], "id": "1", "prop": "tags", "op": "set", "value": ["a"]},
        {"name": volume["name"], "id": "2", "prop": "tags", "op": "add", "value": ["b"]},
        {"name": "no-such-volume", "id": "3", "prop": "tags", "op": "set"},
        {"name": volume["name"], "prop": "delete_lock", "op": "set", "value": False},
    ]
    response = api.patch("/v1/volumes", json=body)
    assert response.json()["status"] == "partial_success"
    first, second, missing, no_id = items(response)
    assert first == {"status": "success", "uuid": volume["uuid"], "name": volume["name"], "id": "1"}
    assert second["id"] == "2"
    assert missing == {
        "status": "error",
        "name": "no-such-volume",
        "id": "3",
        "error": 8,
        "message": "No volume with name 'no-such-volume'",
    }
    assert "id" not in no_id
    assert get(api, volume["uuid"])["tags"] == ["a", "b"]


def test_local_scope_patch_object_and_array(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    url = f"/v1/volumes/{volume['uuid']}"
    one = ok(api.patch(url, json={"id": "x", "prop": "tags", "op": "set", "value": ["p"]}))
    assert one["id"] == "x" and one["uuid"] == volume["uuid"]
    both = items(
        api.patch(
            url,
            json=[
                {"prop": "tags", "op": "add", "value": ["q"]},
                {"prop": "delete_lock", "op": "set", "value": True},
            ],
        )
    )
    assert [b["status"] for b in both] == ["success", "success"]
    after = get(api, volume["uuid"])
    assert after["tags"] == ["p", "q"] and after["delete_lock"] is True
    ghost = "00000000-0000-4000-8000-000000000000"
    missing = items(api.patch(f"/v1/volumes/{ghost}", json={"prop": "tags", "op": "set"}))[0]
    assert missing["error"] == 8 and missing["uuid"] == ghost


@pytest.mark.parametrize(
    "body",
    [
        [{"name": "x", "prop": "colour", "op": "set"}],  # unknown property
        [{"name": "x", "prop": "tags", "op": "replace"}],  # unknown op
        [{"name": "x", "prop": "tags", "op": "set", "value": 1.5}],  # not a JSON type we take
        [{"name": "x", "prop": "tags", "op": "set", "extra": 1}],  # unknown field
        [{"name": "x", "op": "set"}],  # prop missing
    ],
)
def test_malformed_patch_bodies_are_400(api: httpx.Client, body: object) -> None:
    response = api.patch("/v1/volumes", json=body)
    assert response.status_code == 400 and response.json()["status"] == "error"


def test_identifiers_in_a_local_patch_body_are_400(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    body = {"name": "other", "prop": "tags", "op": "set"}
    assert api.patch(f"/v1/volumes/{volume['uuid']}", json=body).status_code == 400


# ---------------------------------------------------------------------- size_mb


def test_grow_is_real_and_answers_with_the_new_size(
    api: httpx.Client, server: LiveServer, tmp_path: Path
) -> None:
    volume = new_volume(api, size_mb=32)
    path = image(server, volume["uuid"])
    put_file(path, "keep.txt", b"still here\n", tmp_path)
    result = patch(api, volume, "size_mb", value=96)
    assert result["status"] == "success", result
    # The PATCH waits for the job: the very next read shows the grown volume.
    grown = get(api, volume["uuid"])
    assert grown["state"] == "available" and grown["size_mb"] == 96
    assert grown["free_mb"] >= volume["free_mb"] + 55
    assert path.stat().st_size == 96 * 2**20
    assert superblock_size_mb(path) == 96
    assert allocated_mb(path) >= 96  # static: the new space is reserved too
    fsck_clean(path)
    assert read_file(path, "keep.txt") == b"still here\n"


def test_grow_keeps_a_dynamic_volume_sparse(api: httpx.Client, server: LiveServer) -> None:
    volume = new_volume(api, size_mb=16, quota_policy="dynamic")
    assert patch(api, volume, "size_mb", value=512)["status"] == "success"
    path = image(server, volume["uuid"])
    assert superblock_size_mb(path) == 512 and allocated_mb(path) < 64
    assert get(api, volume["uuid"])["quota_policy"] == "dynamic"


def test_size_rules(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=16, quota_policy="dynamic")
    shrink = patch(api, volume, "size_mb", value=8)
    assert shrink["error"] == 7 and "never shrink" in shrink["message"]
    assert patch(api, volume, "size_mb", value=16)["status"] == "success"  # a no-op
    assert patch(api, volume, "size_mb", "add", value=32)["error"] == 7
    assert patch(api, volume, "size_mb")["error"] == 7  # cannot be cleared
    assert patch(api, volume, "size_mb", value=True)["error"] == 7
    assert patch(api, volume, "size_mb", value="32")["error"] == 7
    assert patch(api, volume, "size_mb", value=2_000_000)["error"] == 19
    assert get(api, volume["uuid"])["size_mb"] == 16


def test_grow_is_refused_while_mounted_and_allowed_while_idle(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=16, quota_policy="dynamic")
    instance = new_instance(api)
    attach(api, volume, instance)
    start(api, instance)
    assert get(api, volume["uuid"])["state"] == "mounted"
    refused = patch(api, volume, "size_mb", value=32)
    assert refused["error"] == 24 and "stop the instance" in refused["message"]
    policy = patch(api, volume, "quota_policy", value="static")
    assert policy["error"] == 24
    stop(api, instance)
    assert patch(api, volume, "size_mb", value=32)["status"] == "success"
    after = get(api, volume["uuid"])
    assert (after["state"], after["size_mb"]) == ("idle", 32)
    assert after["attached_to"] == [{"uuid": instance["uuid"], "name": instance["name"]}]


# ---------------------------------------------------------------------- quota_policy


def test_policy_switch_releases_and_reserves_for_real(
    api: httpx.Client, server: LiveServer, tmp_path: Path
) -> None:
    volume = new_volume(api, size_mb=64)
    path = image(server, volume["uuid"])
    put_file(path, "data.bin", b"\x5a" * (3 * 2**20), tmp_path)
    assert allocated_mb(path) >= 64
    assert patch(api, volume, "quota_policy", value="dynamic")["status"] == "success"
    assert get(api, volume["uuid"])["quota_policy"] == "dynamic"
    assert allocated_mb(path) < 16  # unused blocks punched back into holes
    assert read_file(path, "data.bin") == b"\x5a" * (3 * 2**20)  # written ones kept
    assert patch(api, volume, "quota_policy", value="static")["status"] == "success"
    assert get(api, volume["uuid"])["quota_policy"] == "static"
    assert allocated_mb(path) >= 64
    fsck_clean(path)
    # ``set`` without a value goes back to the default, static: nothing to do here.
    assert patch(api, volume, "quota_policy")["status"] == "success"
    assert patch(api, volume, "quota_policy", value="thin")["error"] == 7
    assert patch(api, volume, "quota_policy", "del", value="static")["error"] == 7


def test_switch_to_static_that_does_not_fit_is_refused_up_front(server: LiveServer) -> None:
    tenant = unique("big")
    token = server.add_user(tenant)
    set_overrides(server, tenant, max_volume_mb=10**8, max_total_volume_mb=10**9)
    free_mb = shutil.disk_usage(server.data_dir).free // 2**20
    with server.client(token) as client:
        volume = new_volume(client, size_mb=free_mb + 10_000, quota_policy="dynamic")
        refused = patch(client, volume, "quota_policy", value="static")
        assert refused["error"] == 19 and "free disk space" in refused["message"]
        grow = patch(client, volume, "size_mb", value=free_mb + 20_000)
        assert grow["status"] == "success"  # dynamic volumes may overcommit
        assert get(client, volume["uuid"])["quota_policy"] == "dynamic"
        ok(client.delete(f"/v1/volumes/{volume['uuid']}"))


def test_unknown_volume_and_other_tenants(api: httpx.Client, server: LiveServer) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    other = server.add_user(unique("tenant"))
    with server.client(other) as client:
        assert patch(client, volume, "tags", value=["x"])["error"] == 8
        body = {"prop": "size_mb", "op": "set", "value": 64}
        assert items(client.patch(f"/v1/volumes/{volume['uuid']}", json=body))[0]["error"] == 8
    assert get(api, volume["uuid"])["tags"] == []
