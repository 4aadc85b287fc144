"""Attach and detach: the seed's examples, the SDK's shapes, every rule of api-reference
§6.6/§6.7 and every error code of the §5 table for attach and detach, against a server in
process (tests/inprocess.py; the official SDK's calls are in tests/sdk)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.attach_helpers import (
    attach,
    check_invariants,
    failed,
    images,
    instance,
    items,
    new_instance,
    new_volume,
    ok,
    one,
    start,
    stop,
    unique,
    volume,
    wait_settled,
)
from tests.conftest import LiveServer, wait_for_state
from tests.inprocess import InProcessServer, inprocess_server  # noqa: F401 - in process

# ---------------------------------------------------------------- the seed's examples


def test_seed_attach_and_detach_examples(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    # The seed's curl, with its single quotes fixed to JSON.
    r = api.put(
        f"/v1/volumes/{vol['uuid']}/attach",
        json={"attach_to": {"uuid": inst["uuid"]}, "at": "/mnt/"},
    )
    assert r.json()["status"] == "success"
    assert r.json()["data"]["volumes"] == [
        {"status": "success", "uuid": vol["uuid"], "name": vol["name"]}
    ]
    got = volume(api, vol["uuid"])
    assert got["state"] == "idle"
    assert got["attached_to"] == [{"uuid": inst["uuid"], "name": inst["name"]}]
    assert got["mounted_by"] == []
    assert instance(api, inst["uuid"])["volumes"] == [
        {"uuid": vol["uuid"], "name": vol["name"], "at": "/mnt/", "readonly": False}
    ]
    # The seed's detach curl sends no body at all.
    r = api.put(f"/v1/volumes/{vol['uuid']}/detach")
    assert r.json()["data"]["volumes"] == [
        {"status": "success", "uuid": vol["uuid"], "name": vol["name"]}
    ]
    got = volume(api, vol["uuid"])
    assert (got["state"], got["attached_to"], got["persistent"]) == ("available", [], True)
    assert instance(api, inst["uuid"])["volumes"] == []


def test_seed_attach_body_with_single_quotes_is_a_400(api: httpx.Client) -> None:
    vol = new_volume(api)
    body = "{ 'attach_to': { 'uuid': '77d0316a-fbbe-488d-8618-5bf7a612477a' }, 'at': '/mnt/' }"
    r = api.put(f"/v1/volumes/{vol['uuid']}/attach", content=body)
    assert r.status_code == 400
    assert r.json()["status"] == "error"
    assert volume(api, vol["uuid"])["state"] == "available"


# ---------------------------------------------------------------- shapes


def test_sdk_shapes_by_name_array_readonly_and_from(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    r = api.put(
        "/v1/volumes/attach",
        json=[
            {"name": vol["name"], "attach_to": {"name": inst["name"]}, "at": "/d", "readonly": True}
        ],
    )
    ok(r)
    assert instance(api, inst["uuid"])["volumes"][0]["readonly"] is True
    start(api, inst)
    assert volume(api, vol["uuid"])["mounted_by"] == [
        {"uuid": inst["uuid"], "name": inst["name"], "readonly": True}
    ]
    stop(api, inst)
    ok(api.put("/v1/volumes/detach", json=[{"name": vol["name"], "from": {"name": inst["name"]}}]))
    assert volume(api, vol["uuid"])["state"] == "available"


def test_object_body_in_global_scope_and_by_uuid_detach_with_from(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    ok(
        api.put(
            "/v1/volumes/attach",
            json={"uuid": vol["uuid"], "attach_to": {"uuid": inst["uuid"]}, "at": "/x"},
        )
    )
    ok(api.put(f"/v1/volumes/{vol['uuid']}/detach", json={"from": {"uuid": inst["uuid"]}}))
    ok(attach(api, vol, inst))
    ok(api.put(f"/v1/volumes/{vol['uuid']}/detach", json={}))
    assert volume(api, vol["uuid"])["state"] == "available"


@pytest.mark.parametrize("by", ["uuid", "name"])
def test_legacy_attach_to_bare_string(api: httpx.Client, by: str) -> None:
    vol, inst = new_volume(api), new_instance(api)
    ok(api.put("/v1/volumes/attach", json={"uuid": vol["uuid"], "attach_to": inst[by], "at": "/m"}))
    assert volume(api, vol["uuid"])["attached_to"] == [{"uuid": inst["uuid"], "name": inst["name"]}]
    ok(api.put("/v1/volumes/detach", json={"uuid": vol["uuid"], "from": inst[by]}))


def test_batch_of_mixed_outcomes_is_partial_success(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    r = api.put(
        "/v1/volumes/attach",
        json=[
            {"uuid": vol["uuid"], "attach_to": {"uuid": inst["uuid"]}, "at": "/a"},
            {"name": unique("ghost"), "attach_to": {"uuid": inst["uuid"]}, "at": "/b"},
        ],
    )
    body = r.json()
    assert body["status"] == "partial_success"
    assert body["message"] == "Failed to perform all operations"
    assert [i["status"] for i in body["data"]["volumes"]] == ["success", "error"]
    assert body["data"]["volumes"][1]["error"] == 8


@pytest.mark.parametrize(
    "body",
    [
        {"uuid": "x", "attach_to": {"uuid": "y"}, "at": "/a", "mode": "rw"},  # unknown field
        {"uuid": "x", "attach_to": 5, "at": "/a"},  # wrong type
        {"uuid": "x", "attach_to": {"uuid": "y"}, "at": "/a", "readonly": "yes"},
        [1, 2],
    ],
)
def test_malformed_attach_bodies_are_400(api: httpx.Client, body: object) -> None:
    r = api.put("/v1/volumes/attach", json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["status"] == 400


def test_identifiers_in_local_scope_body_are_400(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    r = api.put(
        f"/v1/volumes/{vol['uuid']}/attach",
        json={"uuid": vol["uuid"], "attach_to": {"uuid": inst["uuid"]}, "at": "/a"},
    )
    assert r.status_code == 400
    assert api.put(f"/v1/volumes/{vol['uuid']}/detach", json={"name": "x"}).status_code == 400


# ---------------------------------------------------------------- start / stop drive volumes


def test_start_mounts_and_stop_unmounts(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    ok(attach(api, vol, inst))
    item = ok(start(api, inst), "instances")
    assert (item["state"], item["previous_state"]) == ("running", "stopped")
    got = volume(api, vol["uuid"])
    assert got["state"] == "mounted"
    assert got["mounted_by"] == [{"uuid": inst["uuid"], "name": inst["name"], "readonly": False}]
    item = ok(stop(api, inst), "instances")
    assert (item["state"], item["previous_state"]) == ("stopped", "running")
    got = volume(api, vol["uuid"])
    assert (got["state"], got["mounted_by"]) == ("idle", [])
    assert got["attached_to"] == [{"uuid": inst["uuid"], "name": inst["name"]}]


# ---------------------------------------------------------------- errors, code by code


def test_error_8_unknown_volume_or_instance(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    ghost = unique("ghost")
    item = failed(
        api.put(
            "/v1/volumes/attach",
            json={"name": ghost, "attach_to": {"uuid": inst["uuid"]}, "at": "/a"},
        ),
        8,
    )
    assert item["name"] == ghost and ghost in item["message"]
    item = failed(
        api.put(
            f"/v1/volumes/{vol['uuid']}/attach", json={"attach_to": {"name": ghost}, "at": "/a"}
        ),
        8,
    )
    assert "instance" in item["message"]
    failed(api.put("/v1/volumes/detach", json={"name": ghost}), 8)
    failed(api.put(f"/v1/volumes/{vol['uuid']}/detach", json={"from": {"name": ghost}}), 8)
    missing = "00000000-0000-4000-8000-000000000000"
    assert failed(api.put(f"/v1/volumes/{missing}/detach"), 8)["uuid"] == missing


@pytest.mark.parametrize("at", ["relative/path", "/a:b", "/a/../b", "/a/./b", "/a/..", ""])
def test_error_7_invalid_mount_path(api: httpx.Client, at: str) -> None:
    vol, inst = new_volume(api), new_instance(api)
    failed(attach(api, vol, inst, at=at), 7)
    assert volume(api, vol["uuid"])["state"] == "available"


def test_error_7_missing_at_and_invalid_uuid(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    failed(
        api.put(
            "/v1/volumes/attach", json={"uuid": vol["uuid"], "attach_to": {"uuid": inst["uuid"]}}
        ),
        7,
    )
    item = failed(
        api.put(
            "/v1/volumes/attach",
            json={"uuid": "not-a-uuid", "attach_to": {"uuid": inst["uuid"]}, "at": "/a"},
        ),
        7,
    )
    assert item["message"] == "Invalid uuid 'not-a-uuid'"
    failed(
        api.put(
            "/v1/volumes/not-a-uuid/attach", json={"attach_to": {"uuid": inst["uuid"]}, "at": "/a"}
        ),
        7,
    )


def test_error_13_and_17_identifiers(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    failed(
        api.put("/v1/volumes/attach", json={"attach_to": {"uuid": inst["uuid"]}, "at": "/a"}), 13
    )
    failed(api.put("/v1/volumes/attach", json={"uuid": vol["uuid"], "at": "/a"}), 13)
    failed(
        api.put("/v1/volumes/attach", json={"uuid": vol["uuid"], "attach_to": {}, "at": "/a"}), 13
    )
    failed(
        api.put(
            "/v1/volumes/attach",
            json={
                "uuid": vol["uuid"],
                "name": vol["name"],
                "attach_to": {"uuid": inst["uuid"]},
                "at": "/a",
            },
        ),
        17,
    )
    failed(
        api.put(
            "/v1/volumes/attach",
            json={
                "uuid": vol["uuid"],
                "attach_to": {"uuid": inst["uuid"], "name": inst["name"]},
                "at": "/a",
            },
        ),
        17,
    )
    failed(api.put("/v1/volumes/detach", json={}), 13)
    failed(api.put("/v1/volumes/detach", json={"uuid": vol["uuid"], "name": vol["name"]}), 17)


def test_error_15_attached_volume(api: httpx.Client) -> None:
    vol, first, second = new_volume(api), new_instance(api), new_instance(api)
    ok(attach(api, vol, first))
    item = failed(attach(api, vol, second), 15)  # idle
    assert vol["name"] in item["message"]
    failed(attach(api, vol, first, at="/other"), 15)  # already attached to this one
    start(api, first)
    failed(attach(api, vol, second), 15)  # mounted
    # Deleting an attached volume is refused with the same code.
    failed(api.delete(f"/v1/volumes/{vol['uuid']}"), 15)
    stop(api, first)
    failed(api.request("DELETE", "/v1/volumes", json=[{"uuid": vol["uuid"]}]), 15)


def test_error_11_instance_not_stopped(api: httpx.Client) -> None:
    vol, other, inst = new_volume(api), new_volume(api), new_instance(api)
    ok(attach(api, vol, inst))
    start(api, inst)
    item = failed(attach(api, other, inst), 11)
    assert "running" in item["message"]
    failed(api.put(f"/v1/volumes/{vol['uuid']}/detach"), 11)
    failed(
        api.put("/v1/volumes/detach", json={"uuid": vol["uuid"], "from": {"uuid": inst["uuid"]}}),
        11,
    )
    assert volume(api, vol["uuid"])["state"] == "mounted"
    stop(api, inst)
    ok(api.put(f"/v1/volumes/{vol['uuid']}/detach"))


def test_error_21_not_attached(api: httpx.Client) -> None:
    vol, first, second = new_volume(api), new_instance(api), new_instance(api)
    item = failed(api.put(f"/v1/volumes/{vol['uuid']}/detach"), 21)
    assert vol["name"] in item["message"]
    ok(attach(api, vol, first))
    failed(
        api.put(f"/v1/volumes/{vol['uuid']}/detach", json={"from": {"uuid": second["uuid"]}}), 21
    )
    assert volume(api, vol["uuid"])["state"] == "idle"


def test_error_5_too_many_volumes_per_instance(api: httpx.Client) -> None:
    first, second, inst = new_volume(api), new_volume(api), new_instance(api)
    ok(attach(api, first, inst))
    item = failed(attach(api, second, inst, at="/other"), 5)
    assert "at most 1" in item["message"]
    assert volume(api, second["uuid"])["state"] == "available"


# A volume still being formatted is waited for, and refused with 24 only past the
# bound: tests/api/test_job_waits.py (deterministically, with a lease held elsewhere).


# ---------------------------------------------------------------- instance-made volumes


def test_volume_made_with_instance_is_real_and_goes_with_it(
    api: httpx.Client, server: LiveServer
) -> None:
    name = unique("inline")
    inst = new_instance(api, volumes=[{"size_mb": 8, "at": "/data", "name": name}])
    assert [(v["name"], v["at"], v["readonly"]) for v in inst["volumes"]] == [
        (name, "/data", False)
    ]
    vol_uuid = inst["volumes"][0]["uuid"]
    got = wait_for_state(api, vol_uuid, ("idle",))
    assert (got["state"], got["persistent"], got["size_mb"]) == ("idle", False, 8)
    assert got["attached_to"] == [{"uuid": inst["uuid"], "name": inst["name"]}]
    assert vol_uuid in images(server.data_dir)
    item = ok(api.delete(f"/v1/instances/{inst['uuid']}"), "instances")
    assert item["previous_state"] == "stopped"
    failed(api.get(f"/v1/volumes/{vol_uuid}"), 8)
    deadline = time.monotonic() + 10
    while vol_uuid in images(server.data_dir):
        assert time.monotonic() < deadline, "the image of the deleted volume is still there"
        time.sleep(0.05)
    # The name is free again.
    new_volume(api, name)


def test_detaching_an_instance_volume_makes_it_persistent(api: httpx.Client) -> None:
    inst = new_instance(api, volumes=[{"size_mb": 4, "at": "/data"}])
    vol_uuid = inst["volumes"][0]["uuid"]
    wait_for_state(api, vol_uuid, ("idle",))
    ok(api.put(f"/v1/volumes/{vol_uuid}/detach"))
    got = volume(api, vol_uuid)
    assert (got["state"], got["persistent"]) == ("available", True)
    ok(api.delete(f"/v1/instances/{inst['uuid']}"), "instances")
    assert volume(api, vol_uuid)["state"] == "available"


def test_deleting_an_instance_detaches_its_persistent_volumes(api: httpx.Client) -> None:
    vol, inst = new_volume(api), new_instance(api)
    ok(attach(api, vol, inst))
    start(api, inst)
    # Even a running instance: it is stopped, then deleted.
    item = ok(api.request("DELETE", "/v1/instances", json=[{"name": inst["name"]}]), "instances")
    assert item == {
        "status": "success",
        "uuid": inst["uuid"],
        "name": inst["name"],
        "previous_state": "running",
    }
    got = volume(api, vol["uuid"])
    assert (got["state"], got["attached_to"], got["mounted_by"]) == ("available", [], [])
    failed(api.get(f"/v1/instances/{inst['uuid']}"), 8, "instances")


def test_create_instance_with_existing_volume_by_name(api: httpx.Client) -> None:
    vol = new_volume(api)
    inst = new_instance(api, volumes=[{"name": vol["name"], "at": "/srv", "readonly": True}])
    assert inst["volumes"] == [
        {"uuid": vol["uuid"], "name": vol["name"], "at": "/srv", "readonly": True}
    ]
    got = volume(api, vol["uuid"])
    assert (got["state"], got["persistent"]) == ("idle", True)
    # An attached volume cannot be given to a second instance at creation either.
    name = unique("second")
    r = api.post(
        "/v1/instances",
        json={"name": name, "image": "x", "volumes": [{"uuid": vol["uuid"], "at": "/a"}]},
    )
    item = failed(r, 15, "instances")
    assert item["message"].startswith("volumes[0]: ")
    failed(api.get("/v1/instances", params={"name": name}), 8, "instances")


def test_failed_volume_item_leaves_nothing_behind(
    fresh_inprocess: Callable[..., InProcessServer],
) -> None:
    live = fresh_inprocess(VOLUMED_VOLUMES_PER_INSTANCE=3)
    with live.client() as api:
        name, new_name = unique("atomic"), unique("newvol")
        cases = [
            [{"size_mb": 4, "at": "/a", "name": new_name}, {"name": unique("ghost"), "at": "/b"}],
            [{"size_mb": 4, "at": "/a", "name": new_name}, {"size_mb": 4, "at": "/a"}],
            [{"size_mb": 4, "at": "/a", "name": new_name}, {"size_mb": 0, "at": "/b"}],
            [{"size_mb": 4, "at": "/a", "name": new_name}, {"size_mb": 4, "at": "rel"}],
            [
                {"size_mb": 4, "at": "/a", "name": new_name},
                {"size_mb": 4, "name": new_name, "at": "/b"},
            ],
            [{"size_mb": 4, "at": "/a"}] * 4,
        ]
        codes = []
        for volumes in cases:
            r = api.post("/v1/instances", json={"name": name, "image": "x", "volumes": volumes})
            item = one(r, "instances")
            assert item["status"] == "error", item
            codes.append(item["error"])
            assert items(api.get("/v1/instances"), "instances") == []
            assert items(api.get("/v1/volumes")) == []
        assert codes == [8, 7, 7, 7, 23, 5]
        wait_settled(api)
        assert images(live.data_dir) == set()


def test_volumes_made_with_an_instance_count_against_the_quota(
    fresh_inprocess: Callable[..., InProcessServer],
) -> None:
    live = fresh_inprocess(VOLUMED_QUOTA_MAX_VOLUMES=2, VOLUMED_QUOTA_MAX_TOTAL_MB=100)
    with live.client() as api:
        new_instance(api, volumes=[{"size_mb": 60, "at": "/a", "quota_policy": "dynamic"}])
        name = unique("over")
        body = {"name": name, "image": "x", "volumes": [{"size_mb": 60, "at": "/a"}]}
        item = failed(api.post("/v1/instances", json=body), 19, "instances")
        assert "size quota" in item["message"]
        new_volume(api)  # the second of two
        body["volumes"] = [{"size_mb": 4, "at": "/a"}]
        item = failed(api.post("/v1/instances", json=body), 19, "instances")
        assert "Volume quota" in item["message"]
        failed(api.get("/v1/instances", params={"name": name}), 8, "instances")
        assert len(items(api.get("/v1/volumes"))) == 2


# ---------------------------------------------------------------- limits and paths


def test_volumes_per_instance_is_configurable(
    fresh_inprocess: Callable[..., InProcessServer],
) -> None:
    live = fresh_inprocess(VOLUMED_VOLUMES_PER_INSTANCE=2)
    with live.client() as api:
        a, b, c = new_volume(api), new_volume(api), new_volume(api)
        inst = new_instance(api)
        ok(attach(api, a, inst, at="/a"))
        item = failed(attach(api, b, inst, at="/a"), 7)  # never two at the same path
        assert "/a" in item["message"]
        ok(attach(api, b, inst, at="/b"))
        failed(attach(api, c, inst, at="/c"), 5)
        start(api, inst)
        assert {volume(api, v["uuid"])["state"] for v in (a, b)} == {"mounted"}
        assert volume(api, c["uuid"])["state"] == "available"
        # Two new volumes at creation are fine; three are too many.
        ok(
            api.post(
                "/v1/instances",
                json={
                    "image": "x",
                    "volumes": [{"size_mb": 4, "at": "/1"}, {"size_mb": 4, "at": "/2"}],
                },
            ),
            "instances",
        )
        check_invariants(api, max_per_instance=2)


def test_rox_volume_is_shared_read_only(api: httpx.Client) -> None:
    vol = new_volume(api, access_mode="rox")
    first, second = new_instance(api), new_instance(api)
    failed(attach(api, vol, first, readonly=False), 7)
    ok(attach(api, vol, first))
    ok(attach(api, vol, second, at="/ro"))
    start(api, first)
    got = volume(api, vol["uuid"])
    assert got["state"] == "mounted"
    assert [m["uuid"] for m in got["mounted_by"]] == [first["uuid"]]
    assert all(v["readonly"] for v in instance(api, second["uuid"])["volumes"])
    # Detach from the stopped one while the other runs: still mounted.
    ok(api.put(f"/v1/volumes/{vol['uuid']}/detach", json={"from": {"uuid": second["uuid"]}}))
    assert volume(api, vol["uuid"])["state"] == "mounted"
    stop(api, first)
    assert volume(api, vol["uuid"])["state"] == "idle"
    check_invariants(api)


# ---------------------------------------------------------------- tenants


def test_tenants_cannot_see_each_others_volumes_or_instances(
    api: httpx.Client, server: LiveServer
) -> None:
    vol, inst = new_volume(api), new_instance(api)
    other_token = server.add_user(unique("tenant"))
    with server.client(other_token) as other:
        mine_vol, mine_inst = new_volume(other), new_instance(other)
        failed(attach(other, vol, mine_inst), 8)
        failed(attach(other, mine_vol, inst), 8)
        failed(other.put(f"/v1/volumes/{vol['uuid']}/detach"), 8)
        failed(start(other, inst), 8, "instances")
        # Same names in two tenants are fine.
        new_instance(other, inst["name"])
    assert volume(api, vol["uuid"])["state"] == "available"


def test_a_listing_shows_each_volume_as_get_one_shows_it(api: httpx.Client) -> None:
    # A listing renders the rows as stored and GET one its own statement's: the same
    # items, attachments (in attachment order, mounted by the running one only) and all.
    shared = new_volume(api, access_mode="rox", tags=["blue", "green"])
    plain = new_volume(api)
    running, stopped, other = new_instance(api), new_instance(api), new_instance(api)
    ok(attach(api, shared, running, readonly=True))
    ok(attach(api, shared, stopped, at="/ro", readonly=True))
    ok(attach(api, plain, other, at="/rw"))
    ok(start(api, running), "instances")
    ok(start(api, other), "instances")
    wanted = [shared["uuid"], plain["uuid"]]
    for params in ({}, {"count": "1000"}):
        listed = {v["uuid"]: v for v in items(api.get("/v1/volumes", params=params))}
        assert [listed[u] for u in wanted] == [volume(api, u) for u in wanted]
    got = listed[shared["uuid"]]
    assert got["attached_to"] == [
        {"uuid": running["uuid"], "name": running["name"]},
        {"uuid": stopped["uuid"], "name": stopped["name"]},
    ]
    assert got["mounted_by"] == [
        {"uuid": running["uuid"], "name": running["name"], "readonly": True}
    ]
    assert (got["tags"], got["access_mode"], got["persistent"]) == (["blue", "green"], "rox", True)
    assert listed[plain["uuid"]]["mounted_by"][0]["readonly"] is False
    refs = {v["uuid"]: v for v in items(api.get("/v1/volumes", params={"details": "false"}))}
    assert refs[plain["uuid"]] == {
        "status": "success",
        "uuid": plain["uuid"],
        "name": plain["name"],
    }
    ok(stop(api, running), "instances")
    ok(stop(api, other), "instances")
