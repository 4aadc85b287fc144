"""The events feed of a volume: GET /volumed/v1/volumes/{uuid}/events answers "what
happened to my volume" (who, what, when, result), tenant-scoped, with a retention bound,
and stays readable after the volume is deleted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, free_port, make_server, wait_for_state
from tests.ops.conftest import Ops, fill, value

Item = dict[str, Any]


def events(api: httpx.Client, uuid: str) -> list[Item]:
    response = api.get(f"/volumed/v1/volumes/{uuid}/events")
    assert response.status_code == 200, response.text
    found: list[Item] = response.json()["data"]["events"]
    return found


def success(response: httpx.Response, key: str = "volumes") -> Item:
    assert response.status_code == 200, response.text
    item: Item = response.json()["data"][key][0]
    assert item["status"] == "success", item
    return item


def test_events_after_create_attach_detach_delete(ops_server: Callable[..., Ops]) -> None:
    live: LiveServer = ops_server().live
    with live.client() as api:
        volume = success(api.post("/v1/volumes", json={"name": "audited", "size_mb": 4}))
        uuid = volume["uuid"]
        wait_for_state(api, uuid)
        instance = success(
            api.post("/v1/instances", json={"name": "web", "image": "nginx:latest"}), "instances"
        )
        attach = {"uuid": uuid, "attach_to": {"uuid": instance["uuid"]}, "at": "/data"}
        success(api.put("/v1/volumes/attach", json=[attach]))
        success(api.put("/v1/volumes/detach", json=[{"uuid": uuid}]))
        success(api.delete(f"/v1/volumes/{uuid}"))
        # Gone from /v1, still explained here.
        assert api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]["error"] == 8
        trail = events(api, uuid)

    steps = [(e["actor"], e["action"], e["result"], e["state_from"], e["state_to"]) for e in trail]
    assert steps == [
        ("default", "create", "ok", None, "uninitialized"),
        ("worker", "format", "ok", "uninitialized", "initializing"),
        ("worker", "format", "ok", "initializing", "available"),
        ("default", "attach", "ok", "available", "idle"),
        ("default", "detach", "ok", "idle", "available"),
        ("default", "delete", "ok", "available", None),
    ]
    assert "audited" in trail[0]["message"]
    assert trail[3]["message"] == "Attached to instance 'web'"
    assert trail[4]["message"] == "Detached from instance 'web'"
    times = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in trail]
    assert times == sorted(times)
    assert len({e["id"] for e in trail}) == len(trail)


def test_events_are_tenant_scoped(ops_server: Callable[..., Ops]) -> None:
    live = ops_server().live
    other = live.add_user("other")
    with live.client() as api:
        uuid = success(api.post("/v1/volumes", json={"size_mb": 4}))["uuid"]
        assert events(api, uuid)[0]["action"] == "create"
        unknown = "00000000-0000-4000-8000-000000000000"
        item = api.get(f"/volumed/v1/volumes/{unknown}/events").json()["data"]["events"][0]
        assert (item["status"], item["error"], item["uuid"]) == ("error", 8, unknown)
        bad = api.get("/volumed/v1/volumes/not-a-uuid/events").json()["data"]["events"][0]
        assert bad["status"] == "error"
        assert api.get(f"/volumed/v1/volumes/{uuid}/events?count=1").status_code == 400
    with live.client(other) as intruder:
        item = intruder.get(f"/volumed/v1/volumes/{uuid}/events").json()["data"]["events"][0]
        assert (item["status"], item["error"]) == ("error", 8)
    assert httpx.get(f"{live.url}/volumed/v1/volumes/{uuid}/events").status_code == 401


def test_only_the_newest_events_are_kept(ops_server: Callable[..., Ops]) -> None:
    live = ops_server(VOLUMED_EVENTS_PER_VOLUME=3).live
    with live.client() as api:
        uuid = success(api.post("/v1/volumes", json={"name": "short", "size_mb": 4}))["uuid"]
        wait_for_state(api, uuid)
        instance = success(
            api.post("/v1/instances", json={"name": "app", "image": "nginx:latest"}), "instances"
        )
        attach = {"uuid": uuid, "attach_to": {"uuid": instance["uuid"]}, "at": "/data"}
        success(api.put("/v1/volumes/attach", json=[attach]))
        trail = events(api, uuid)
    assert [e["action"] for e in trail] == ["format", "format", "attach"]


def test_events_say_why_a_volume_is_in_error(small_disk: Path) -> None:
    """A format that runs out of disk: the trail ends with the worker's error, and the
    job failure is counted."""
    port = free_port()
    ops = Ops(
        make_server(small_disk, VOLUMED_FREE_SPACE_MARGIN_MB=0, VOLUMED_METRICS_PORT=port), port
    )
    try:
        fill(small_disk)
        with ops.live.client() as api:
            body = {"name": "doomed", "size_mb": 200, "quota_policy": "dynamic"}
            uuid = success(api.post("/v1/volumes", json=body))["uuid"]
            assert wait_for_state(api, uuid, ("error",))["state"] == "error"
            last = events(api, uuid)[-1]
        assert (last["actor"], last["action"], last["result"]) == ("worker", "format", "error")
        assert (last["state_from"], last["state_to"]) == ("initializing", "error")
        assert "space" in last["message"].lower()
        samples = ops.scrape()
        assert ("volumed_job_failures_total", frozenset({("kind", "format")})) not in samples
        jobs = "volumed_job_duration_seconds_count"
        assert value(samples, jobs, kind="format", outcome="failed") == 1
        assert value(samples, "volumed_volumes", state="error") == 1
    finally:
        ops.live.kill()


def test_events_of_a_grow_and_a_clone(ops_server: Callable[..., Ops]) -> None:
    live = ops_server().live
    with live.client() as api:
        uuid = success(api.post("/v1/volumes", json={"name": "grown", "size_mb": 8}))["uuid"]
        wait_for_state(api, uuid)
        grow = {"name": "grown", "prop": "size_mb", "op": "set", "value": 16}
        success(api.patch("/v1/volumes", json=[grow]))
        wait_for_state(api, uuid)
        copy = success(api.post(f"/v1/volumes/{uuid}/clone", json={"vol_name": "copy"}))
        wait_for_state(api, copy["uuid"])
        source = events(api, uuid)
        clone = events(api, copy["uuid"])
    grows = [(e["actor"], e["state_from"], e["state_to"]) for e in source if e["action"] == "grow"]
    assert grows == [("default", "available", "busy"), ("worker", "busy", "available")]
    assert [e["message"] for e in source if e["action"] == "grow"][
        0
    ] == "Growing from 8 MB to 16 MB"
    assert clone[0]["action"] == "create" and uuid in clone[0]["message"]
    assert (clone[-1]["actor"], clone[-1]["action"], clone[-1]["result"]) == (
        "worker",
        "clone",
        "ok",
    )
    assert clone[-1]["state_to"] == "available"
