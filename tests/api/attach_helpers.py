"""Helpers for the instance and attachment tests: short calls and the invariant check."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for_state

Item = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def items(response: httpx.Response, key: str = "volumes") -> list[Item]:
    assert response.status_code == 200, response.text
    found: list[Item] = response.json()["data"][key]
    return found


def one(response: httpx.Response, key: str = "volumes") -> Item:
    found = items(response, key)
    assert len(found) == 1, found
    return found[0]


def ok(response: httpx.Response, key: str = "volumes") -> Item:
    item = one(response, key)
    assert item["status"] == "success", item
    return item


def failed(response: httpx.Response, code: int, key: str = "volumes") -> Item:
    body = response.json()
    item = one(response, key)
    assert item["status"] == "error" and item["error"] == code, item
    assert body["status"] == "error"
    return item


def new_volume(api: httpx.Client, name: str | None = None, **fields: Any) -> Item:
    """A small thin volume, waited for until ``available``."""
    body = {"name": name or unique("v"), "size_mb": 4, "quota_policy": "dynamic", **fields}
    created = ok(api.post("/v1/volumes", json=body))
    item = wait_for_state(api, created["uuid"])
    assert item["state"] == "available", item
    return item


def new_volumes(api: httpx.Client, count: int) -> list[Item]:
    """``count`` small thin volumes made in one request, waited for until available."""
    body = [{"name": unique("v"), "size_mb": 4, "quota_policy": "dynamic"} for _ in range(count)]
    created = items(api.post("/v1/volumes", json=body))
    assert all(c["status"] == "success" for c in created), created
    wanted = {c["uuid"] for c in created}
    deadline = time.monotonic() + 30
    while True:
        listed = [v for v in items(api.get("/v1/volumes")) if v["uuid"] in wanted]
        if all(v["state"] == "available" for v in listed):
            order = {c["uuid"]: n for n, c in enumerate(created)}
            return sorted(listed, key=lambda v: order[v["uuid"]])
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)


def new_instances(api: httpx.Client, count: int) -> list[Item]:
    body = [{"name": unique("i"), "image": "nginx:latest"} for _ in range(count)]
    created = items(api.post("/v1/instances", json=body), "instances")
    assert all(c["status"] == "success" for c in created), created
    return created


def new_instance(api: httpx.Client, name: str | None = None, **fields: Any) -> Item:
    body = {"name": name or unique("i"), "image": "nginx:latest", **fields}
    return ok(api.post("/v1/instances", json=body), "instances")


def volume(api: httpx.Client, uuid: str) -> Item:
    return ok(api.get(f"/v1/volumes/{uuid}"))


def instance(api: httpx.Client, uuid: str) -> Item:
    return ok(api.get(f"/v1/instances/{uuid}"), "instances")


def attach(
    api: httpx.Client, vol: Item, inst: Item, at: str = "/data", **fields: Any
) -> httpx.Response:
    body = {"uuid": vol["uuid"], "attach_to": {"uuid": inst["uuid"]}, "at": at, **fields}
    return api.put("/v1/volumes/attach", json=[body])


def start(api: httpx.Client, inst: Item) -> httpx.Response:
    return api.put("/v1/instances/start", json=[{"uuid": inst["uuid"]}])


def stop(api: httpx.Client, inst: Item) -> httpx.Response:
    return api.put("/v1/instances/stop", json=[{"uuid": inst["uuid"]}])


def wait_settled(api: httpx.Client, timeout: float = 20) -> None:
    """Until no volume is owned by a job (formatting) any more."""
    deadline = time.monotonic() + timeout
    while True:
        states = {v["state"] for v in items(api.get("/v1/volumes"))}
        if not states & {"uninitialized", "initializing", "busy"}:
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.05)


def check_invariants(api: httpx.Client, max_per_instance: int | None = None) -> None:
    """Volume and instance rows agree on every attachment, and each volume's state
    matches its attachments and the states of its instances."""
    volumes = {v["uuid"]: v for v in items(api.get("/v1/volumes"))}
    instances = {i["uuid"]: i for i in items(api.get("/v1/instances"), "instances")}
    running = {"starting", "running", "stopping"}
    from_volumes = {(v["uuid"], a["uuid"]) for v in volumes.values() for a in v["attached_to"]}
    from_instances = {(v["uuid"], i["uuid"]) for i in instances.values() for v in i["volumes"]}
    assert from_volumes == from_instances
    for inst in instances.values():
        paths = [v["at"] for v in inst["volumes"]]
        assert len(paths) == len(set(paths)), inst
        if max_per_instance is not None:
            assert len(paths) <= max_per_instance, inst
    for vol in volumes.values():
        holders = [instances[a["uuid"]] for a in vol["attached_to"]]
        mounted = {m["uuid"] for m in vol["mounted_by"]}
        assert mounted == {h["uuid"] for h in holders if h["state"] in running}, vol
        if vol["state"] in ("uninitialized", "initializing", "busy", "error"):
            continue
        if not holders:
            assert vol["state"] == "available", vol
            assert vol["persistent"], vol
        elif mounted:
            assert vol["state"] == "mounted", (vol, holders)
        else:
            assert vol["state"] == "idle", (vol, holders)
        if vol["access_mode"] == "rwo":
            assert len(holders) <= 1, vol


def images(data_dir: Path) -> set[str]:
    return {p.name.split(".", 1)[0] for p in (data_dir / "images").iterdir()}
