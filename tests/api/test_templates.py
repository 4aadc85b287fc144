"""/v1/volumes/templates: make, get, list, update, delete templates; volumes from them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    Item,
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
    superblock_size_mb,
    unique,
)
from tests.conftest import LiveServer
from tests.inprocess import inprocess_server  # noqa: F401 - in process


def make_template(api: httpx.Client, **fields: object) -> Item:
    volume = new_volume(api, size_mb=16, **{"quota_policy": "dynamic", **fields})
    made = ok(api.post("/v1/volumes/templates", json=[{"uuid": volume["uuid"]}]))
    assert made == {
        "status": "success",
        "uuid": volume["uuid"],
        "name": volume["name"],
        "state": "template",
    }
    return volume


@pytest.mark.parametrize("shape", ["sdk-array", "ids", "single-name"])
def test_three_request_shapes(api: httpx.Client, shape: str) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    body: object = {
        "sdk-array": [{"name": volume["name"]}],
        "ids": {"ids": [{"uuid": volume["uuid"]}]},
        "single-name": {"name": volume["name"]},
    }[shape]
    made = ok(api.post("/v1/volumes/templates", json=body))
    assert (made["uuid"], made["state"]) == (volume["uuid"], "template")
    assert get(api, volume["uuid"])["state"] == "template"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{bad",
        b'{"ids": [{"uuid": "u", "x": 1}]}',
        b'{"ids": "u"}',
        b'{"ids": [], "name": "x"}',
    ],
)
def test_malformed_template_bodies_are_400(api: httpx.Client, body: bytes) -> None:
    response = api.post(
        "/v1/volumes/templates", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_get_list_and_lookup_separation(api: httpx.Client) -> None:
    template = make_template(api, tags=["tpl-" + unique()[2:]])
    plain = new_volume(api, size_mb=4, quota_policy="dynamic")
    by_uuid = ok(api.get(f"/v1/volumes/templates/{template['uuid']}"))
    assert by_uuid["state"] == "template" and by_uuid["size_mb"] == 16
    assert (
        ok(api.get("/v1/volumes/templates", params={"name": template["name"]}))["uuid"]
        == (template["uuid"])
    )
    listed = items(api.get("/v1/volumes/templates", params={"tags": template["tags"][0]}))
    assert [t["uuid"] for t in listed] == [template["uuid"]]
    everything = {t["uuid"] for t in items(api.get("/v1/volumes/templates"))}
    assert template["uuid"] in everything and plain["uuid"] not in everything
    # Templates are not listed among volumes, though a volume lookup still finds them.
    assert template["uuid"] not in {v["uuid"] for v in items(api.get("/v1/volumes"))}
    assert get(api, template["uuid"])["state"] == "template"
    # A plain volume is no template.
    missing = items(api.get("/v1/volumes/templates", params={"uuid": plain["uuid"]}))[0]
    assert (
        missing["error"] == 8 and missing["message"] == f"No template with uuid '{plain['uuid']}'"
    )
    brief = items(api.get("/v1/volumes/templates", params={"details": "false"}))
    assert all(set(t) == {"status", "uuid", "name"} for t in brief)


def test_templates_are_immutable(api: httpx.Client) -> None:
    template = make_template(api)
    instance = new_instance(api)
    body = {"uuid": template["uuid"], "attach_to": {"uuid": instance["uuid"]}, "at": "/data"}
    failed(api.put("/v1/volumes/attach", json=[body]), 24)
    grow = {"uuid": template["uuid"], "prop": "size_mb", "op": "set", "value": 64}
    assert items(api.patch("/v1/volumes", json=[grow]))[0]["error"] == 14
    policy = {"uuid": template["uuid"], "prop": "quota_policy", "op": "set", "value": "static"}
    assert items(api.patch("/v1/volumes", json=[policy]))[0]["error"] == 14
    # Only tags and delete_lock are properties of a template at all.
    assert api.patch("/v1/volumes/templates", json=[grow]).status_code == 400
    failed(api.delete(f"/v1/volumes/{template['uuid']}"), 24)  # through /templates only
    failed(api.post("/v1/volumes/templates", json=[{"uuid": template["uuid"]}]), 24)
    assert get(api, template["uuid"])["size_mb"] == 16


def test_only_available_unattached_volumes_become_templates(api: httpx.Client) -> None:
    volume = new_volume(api, size_mb=4, quota_policy="dynamic")
    attach(api, volume, new_instance(api))
    failed(api.post("/v1/volumes/templates", json={"uuid": volume["uuid"]}), 15)
    failed(api.post("/v1/volumes/templates", json={"name": "no-such-volume"}), 8)
    response = api.post("/v1/volumes/templates", json=[{"uuid": volume["uuid"]}, {}])
    assert [i["error"] for i in items(response)] == [15, 13]


def test_update_tags_and_delete_lock_of_a_template(api: httpx.Client) -> None:
    template = make_template(api)
    url = f"/v1/volumes/templates/{template['uuid']}"
    one = ok(api.patch(url, json={"id": "t1", "prop": "tags", "op": "set", "value": ["gold"]}))
    assert one["id"] == "t1"
    body = [{"name": template["name"], "prop": "delete_lock", "op": "set", "value": True}]
    ok(api.patch("/v1/volumes/templates", json=body))
    after = ok(api.get(url))
    assert (after["tags"], after["delete_lock"]) == (["gold"], True)
    failed(api.delete(url), 14)
    ok(api.patch(url, json={"prop": "delete_lock", "op": "set", "value": False}))
    # A plain volume is not reachable through /templates.
    plain = new_volume(api, size_mb=4, quota_policy="dynamic")
    body = [{"uuid": plain["uuid"], "prop": "tags", "op": "set", "value": ["x"]}]
    assert items(api.patch("/v1/volumes/templates", json=body))[0]["error"] == 8
    failed(api.request("DELETE", "/v1/volumes/templates", json=[{"uuid": plain["uuid"]}]), 8)


def test_delete_template_by_body_and_by_uuid(api: httpx.Client, server: LiveServer) -> None:
    first, second = make_template(api), make_template(api)
    gone = ok(api.request("DELETE", "/v1/volumes/templates", json=[{"name": first["name"]}]))
    assert gone == {"status": "success", "uuid": first["uuid"], "name": first["name"]}
    ok(api.delete(f"/v1/volumes/templates/{second['uuid']}"))
    for template in (first, second):
        assert not image(server, template["uuid"]).exists()
        failed(api.get(f"/v1/volumes/templates/{template['uuid']}"), 8)


def test_volume_from_template_holds_its_files(
    api: httpx.Client, server: LiveServer, tmp_path: Path
) -> None:
    source = new_volume(api, size_mb=16, quota_policy="dynamic")
    put_file(image(server, source["uuid"]), "base.txt", b"from the template\n", tmp_path)
    ok(api.post("/v1/volumes/templates", json={"uuid": source["uuid"]}))
    name = unique("from-tpl")
    created = ok(
        api.post(
            "/v1/volumes",
            json={"name": name, "template": {"name": source["name"]}, "tags": ["made"]},
        )
    )
    assert created["name"] == name and created["state"] == "available"
    volume = get(api, created["uuid"])
    assert (volume["size_mb"], volume["tags"], volume["quota_policy"]) == (16, ["made"], "dynamic")
    path = image(server, volume["uuid"])
    fsck_clean(path)
    assert read_file(path, "base.txt") == b"from the template\n"
    # Larger than the template: the copy is grown; and a static policy can be asked for.
    bigger = ok(
        api.post(
            "/v1/volumes",
            json={"template": {"uuid": source["uuid"]}, "size_mb": 40, "quota_policy": "static"},
        )
    )
    assert bigger["state"] == "available"
    volume = get(api, bigger["uuid"])
    assert (volume["size_mb"], volume["quota_policy"]) == (40, "static")
    assert superblock_size_mb(image(server, volume["uuid"])) == 40
    assert read_file(image(server, volume["uuid"]), "base.txt") == b"from the template\n"
    assert ok(api.get(f"/v1/volumes/templates/{source['uuid']}"))["state"] == "template"


def test_volume_from_template_errors(api: httpx.Client) -> None:
    template = make_template(api)
    plain = new_volume(api, size_mb=4, quota_policy="dynamic")
    small = {"template": {"uuid": template["uuid"]}, "size_mb": 8}
    assert items(api.post("/v1/volumes", json=small))[0]["error"] == 7
    missing = items(api.post("/v1/volumes", json={"template": {"name": "no-such"}}))[0]
    assert missing["error"] == 8 and missing["message"] == "No template with name 'no-such'"
    not_one = items(api.post("/v1/volumes", json={"template": {"name": plain["name"]}}))[0]
    assert not_one["error"] == 24
    both = {"template": {"name": template["name"], "uuid": template["uuid"]}}
    assert items(api.post("/v1/volumes", json=both))[0]["error"] == 17
    taken = {"template": {"name": template["name"]}, "name": plain["name"]}
    assert items(api.post("/v1/volumes", json=taken))[0]["error"] == 23
