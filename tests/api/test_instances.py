"""The Instances API slice (api-reference §8), against a server in process
(tests/inprocess.py): create, get and list, start and stop, delete, wait; same envelope
and per-item errors as volumes."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.attach_helpers import (
    failed,
    items,
    new_instance,
    ok,
    one,
    start,
    stop,
    unique,
)
from tests.conftest import LiveServer
from tests.inprocess import InProcessServer, inprocess_server  # noqa: F401 - in process

KEY = "instances"

JSON = {"Content-Type": "application/json"}


def test_create_with_defaults_and_get(api: httpx.Client) -> None:
    name = unique("web")
    created = new_instance(api, name)
    assert created["state"] == "stopped"
    got = ok(api.get(f"/v1/instances/{created['uuid']}"), KEY)
    assert got == created
    assert got["name"] == name
    assert got["image"] == "nginx:latest"
    assert (got["memory_mb"], got["vcpus"], got["args"], got["env"]) == (128, 1, [], {})
    assert got["private_fqdn"] == f"{name}.internal"
    assert (got["volumes"], got["tags"], got["restart_policy"]) == ([], [], "never")
    assert got["created_at"].endswith("Z")
    assert ok(api.get("/v1/instances", params={"name": name}), KEY)["uuid"] == created["uuid"]
    short = ok(api.get(f"/v1/instances/{created['uuid']}", params={"details": "false"}), KEY)
    assert short == {"status": "success", "uuid": created["uuid"], "name": name}


def test_create_with_every_field(api: httpx.Client) -> None:
    item = ok(
        api.post(
            "/v1/instances",
            json={
                "name": unique("full"),
                "image": {"url": "ghcr.io/acme/app:1.2", "pull_policy": "always"},
                "memory_mb": 256,
                "vcpus": 2,
                "args": ["--port", "80"],
                "env": {"A": "1"},
                "tags": ["prod", "prod", "web"],
                "autostart": True,
                "restart_policy": "never",
            },
        ),
        KEY,
    )
    assert item["state"] == "running"
    assert item["image"] == "ghcr.io/acme/app:1.2"
    assert (item["memory_mb"], item["vcpus"]) == (256, 2)
    assert (item["args"], item["env"], item["tags"]) == (
        ["--port", "80"],
        {"A": "1"},
        ["prod", "web"],
    )


def test_unnamed_instance_gets_a_name_from_its_image(api: httpx.Client) -> None:
    item = ok(api.post("/v1/instances", json={"image": "library/nginx:latest"}), KEY)
    assert item["name"].startswith("nginx-") and len(item["name"]) == len("nginx-") + 5


def test_create_errors(api: httpx.Client) -> None:
    name = unique("dup")
    new_instance(api, name)
    item = failed(api.post("/v1/instances", json={"name": name, "image": "x"}), 23, KEY)
    assert item["name"] == name
    failed(api.post("/v1/instances", json={"name": unique("n")}), 7, KEY)  # no image
    failed(api.post("/v1/instances", json={"image": "x", "memory_mb": 1}), 7, KEY)
    failed(api.post("/v1/instances", json={"image": "x", "vcpus": 0}), 7, KEY)
    failed(api.post("/v1/instances", json={"image": "x", "name": "bad name"}), 7, KEY)
    failed(api.post("/v1/instances", json={"image": "x", "name": "a" * 64}), 22, KEY)
    failed(api.post("/v1/instances", json={"image": "x", "tags": ["no spaces"]}), 7, KEY)
    failed(
        api.post("/v1/instances", json={"image": "x", "service_group": {"services": []}}), 1, KEY
    )
    failed(api.post("/v1/instances", json={"image": "x", "restart_policy": "always"}), 1, KEY)
    failed(
        api.post(
            "/v1/instances", json={"image": "x", "volumes": [{"host_path": "/srv", "at": "/a"}]}
        ),
        1,
        KEY,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"image": "x", "colour": "blue"},
        {"image": "x", "memory_mb": "lots"},
        {"image": "x", "volumes": [{"at": "/a", "size": 4}]},
        "not an object",
    ],
)
def test_malformed_create_is_400(api: httpx.Client, body: object) -> None:
    r = api.post("/v1/instances", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error"


def test_get_unknown_and_invalid(api: httpx.Client) -> None:
    ghost = unique("ghost")
    item = failed(api.get("/v1/instances", params={"name": ghost}), 8, KEY)
    assert item == {
        "status": "error",
        "name": ghost,
        "error": 8,
        "message": f"No instance with name '{ghost}'",
    }
    missing = "00000000-0000-4000-8000-000000000000"
    assert failed(api.get(f"/v1/instances/{missing}"), 8, KEY)["uuid"] == missing
    failed(api.get("/v1/instances/not-a-uuid"), 7, KEY)
    r = api.get("/v1/instances", params={"colour": "blue"})
    assert r.status_code == 400


def test_get_by_body_identifiers_and_mixed_results(api: httpx.Client) -> None:
    a = new_instance(api)
    r = api.request("GET", "/v1/instances", json=[{"uuid": a["uuid"]}, {"name": unique("nope")}])
    body = r.json()
    assert body["status"] == "partial_success"
    assert [i["status"] for i in body["data"][KEY]] == ["success", "error"]


def test_list_all_with_pagination(fresh_inprocess: Callable[..., InProcessServer]) -> None:
    live = fresh_inprocess()
    with live.client() as api:
        assert api.get("/v1/instances").json()["data"] == {KEY: []}
        made = [new_instance(api, f"p{i}") for i in range(5)]
        listed = items(api.get("/v1/instances"), KEY)
        assert [i["uuid"] for i in listed] == [i["uuid"] for i in made]
        page = items(api.get("/v1/instances", params={"count": 2, "from": made[2]["uuid"]}), KEY)
        assert [i["name"] for i in page] == ["p2", "p3"]
        desc = items(api.get("/v1/instances", params={"order": "desc", "details": "false"}), KEY)
        assert [i["name"] for i in desc] == ["p4", "p3", "p2", "p1", "p0"]
        assert set(desc[0]) == {"status", "uuid", "name"}
        # Logs with no instance named: one item per instance, as the listing has them.
        logs = items(api.get("/v1/instances/log", params={"limit": 16}), KEY)
        assert [i["uuid"] for i in logs] == [i["uuid"] for i in made]
        empty = api.request("GET", "/v1/instances/log", content=b"[]", headers=JSON)
        assert empty.status_code == 400 and "Name the instances" in empty.json()["message"]


def test_start_stop_are_idempotent_and_report_previous_state(api: httpx.Client) -> None:
    inst = new_instance(api)
    r = ok(start(api, inst), KEY)
    assert (r["state"], r["previous_state"]) == ("running", "stopped")
    r = ok(start(api, inst), KEY)
    assert (r["state"], r["previous_state"]) == ("running", "running")
    r = ok(api.put(f"/v1/instances/{inst['uuid']}/stop", json={"force": True}), KEY)
    assert (r["state"], r["previous_state"]) == ("stopped", "running")
    r = ok(api.put(f"/v1/instances/{inst['uuid']}/stop"), KEY)
    assert (r["state"], r["previous_state"]) == ("stopped", "stopped")
    r = ok(api.put(f"/v1/instances/{inst['uuid']}/start", json={"timeout_s": 5}), KEY)
    assert r["state"] == "running"
    stop(api, inst)


def test_start_stop_delete_errors(api: httpx.Client) -> None:
    ghost = unique("ghost")
    failed(api.put("/v1/instances/start", json=[{"name": ghost}]), 8, KEY)
    failed(api.put("/v1/instances/stop", json=[{"name": ghost}]), 8, KEY)
    failed(api.request("DELETE", "/v1/instances", json=[{"name": ghost}]), 8, KEY)
    failed(api.put("/v1/instances/start", json=[{}]), 13, KEY)
    inst = new_instance(api)
    failed(
        api.put("/v1/instances/stop", json=[{"uuid": inst["uuid"], "name": inst["name"]}]), 17, KEY
    )
    r = api.put(f"/v1/instances/{inst['uuid']}/start", json={"name": inst["name"]})
    assert r.status_code == 400
    r = api.put("/v1/instances/stop", json=[{"name": inst["name"], "forcefully": True}])
    assert r.status_code == 400


def test_delete_by_uuid_and_by_name(api: httpx.Client) -> None:
    a, b = new_instance(api), new_instance(api)
    r = ok(api.delete(f"/v1/instances/{a['uuid']}"), KEY)
    assert r == {
        "status": "success",
        "uuid": a["uuid"],
        "name": a["name"],
        "previous_state": "stopped",
    }
    start(api, b)
    r = ok(api.request("DELETE", "/v1/instances", json={"name": b["name"], "timeout_s": 5}), KEY)
    assert r["previous_state"] == "running"
    failed(api.get(f"/v1/instances/{a['uuid']}"), 8, KEY)
    failed(api.get(f"/v1/instances/{b['uuid']}"), 8, KEY)
    failed(api.delete(f"/v1/instances/{a['uuid']}"), 8, KEY)


# ---------------------------------------------------------------- wait


def test_wait_for_a_state_reached_already(api: httpx.Client) -> None:
    inst = new_instance(api)
    for method in ("GET", "PUT"):
        r = api.request(
            method,
            "/v1/instances/wait",
            json=[{"name": inst["name"], "state": "stopped", "timeout_s": 1}],
        )
        assert ok(r, KEY) == {
            "status": "success",
            "uuid": inst["uuid"],
            "name": inst["name"],
            "state": "stopped",
        }
    r = api.request("GET", f"/v1/instances/{inst['uuid']}/wait", json={"state": "stopped"})
    assert ok(r, KEY)["state"] == "stopped"
    r = api.get(
        "/v1/instances/wait", params={"uuid": inst["uuid"], "state": "stopped", "timeout_ms": 500}
    )
    assert ok(r, KEY)["state"] == "stopped"


def test_wait_times_out(api: httpx.Client) -> None:
    inst = new_instance(api)
    began = time.monotonic()
    r = api.request(
        "GET",
        "/v1/instances/wait",
        json=[{"uuid": inst["uuid"], "state": "running", "timeout_ms": 300}],
    )
    assert 0.25 < time.monotonic() - began < 5
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "error"
    assert "timed out" in body["message"].lower()
    item = body["data"][KEY][0]
    assert (item["error"], item["message"], item["state"]) == (12, "Operation timed out", "stopped")
    # timeout 0: look once.
    r = api.request(
        "GET",
        "/v1/instances/wait",
        json=[{"uuid": inst["uuid"], "state": "running", "timeout_s": 0}],
    )
    assert one(r, KEY)["error"] == 12


def test_wait_wakes_up_on_the_change(api: httpx.Client, server: LiveServer) -> None:
    import threading

    inst = new_instance(api)
    results: list[httpx.Response] = []

    def waiter() -> None:
        with server.client() as client:
            results.append(
                client.request(
                    "GET",
                    "/v1/instances/wait",
                    json=[{"uuid": inst["uuid"], "state": "running", "timeout_s": 10}],
                )
            )

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    began = time.monotonic()
    start(api, inst)
    thread.join(timeout=10)
    assert time.monotonic() - began < 2
    assert ok(results[0], KEY)["state"] == "running"
    stop(api, inst)


def test_wait_for_deleted_and_wait_errors(api: httpx.Client) -> None:
    inst = new_instance(api)
    api.delete(f"/v1/instances/{inst['uuid']}")
    r = api.request(
        "GET",
        "/v1/instances/wait",
        json=[{"uuid": inst["uuid"], "state": "deleted", "timeout_s": 1}],
    )
    assert ok(r, KEY)["state"] == "deleted"
    other = new_instance(api)
    failed(
        api.request("GET", "/v1/instances/wait", json=[{"uuid": inst["uuid"], "state": "running"}]),
        8,
        KEY,
    )
    failed(
        api.request(
            "GET", "/v1/instances/wait", json=[{"uuid": other["uuid"], "state": "sleeping"}]
        ),
        7,
        KEY,
    )
    failed(
        api.request(
            "GET", "/v1/instances/wait", json=[{"uuid": other["uuid"], "state": "standby"}]
        ),
        1,
        KEY,
    )
    assert api.request("GET", "/v1/instances/wait").status_code == 400


def test_wait_many_runs_concurrently(api: httpx.Client) -> None:
    a, b = new_instance(api), new_instance(api)
    began = time.monotonic()
    r = api.request(
        "GET",
        "/v1/instances/wait",
        json=[
            {"uuid": a["uuid"], "state": "running", "timeout_ms": 400},
            {"uuid": b["uuid"], "state": "running", "timeout_ms": 400},
            {"uuid": b["uuid"], "state": "stopped"},
        ],
    )
    assert time.monotonic() - began < 1.5
    body = r.json()
    assert body["status"] == "partial_success"
    assert "timed out" in body["message"].lower()
    assert [i.get("error") for i in body["data"][KEY]] == [12, 12, None]
