"""Two tenants on one live server, random interleavings of their operations (Hypothesis):
nothing of one is ever visible to, or changed by, the other — by uuid, by name, in lists,
through attach to the other's instance, clone, template, or update. Anything addressed to
the other tenant's objects answers exactly like a missing one (error 8) and changes nothing.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, make_server

Item = dict[str, Any]
EXAMPLES = int(os.environ.get("VOLUMED_TENANT_EXAMPLES", "40"))


@dataclass(repr=False)
class Tenant:
    """One tenant's client and what it made (kept across examples)."""

    name: str
    api: httpx.Client
    volumes: list[Item] = field(default_factory=list)
    templates: list[Item] = field(default_factory=list)
    instances: list[Item] = field(default_factory=list)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tenant, Tenant]]:
    live: LiveServer = make_server(tmp_path_factory.mktemp("tenants"), VOLUMED_METRICS_PORT=0)
    other = live.add_user("mallory")
    with live.client() as a, live.client(other) as b:
        yield Tenant("alice", a), Tenant("mallory", b)
    live.stop()


def _items(response: httpx.Response, key: str = "volumes") -> list[Item]:
    assert response.status_code == 200, response.text
    found: list[Item] = response.json()["data"][key]
    return found


def snapshot(t: Tenant) -> tuple[list[Item], list[Item], list[Item]]:
    """Everything the tenant owns, as it sees it (volumes settled first)."""
    deadline = time.monotonic() + 20
    while True:
        volumes = _items(t.api.get("/v1/volumes"))
        if all(v["state"] in ("available", "idle", "error") for v in volumes):
            break
        assert time.monotonic() < deadline, volumes
        time.sleep(0.05)
    templates = _items(t.api.get("/v1/volumes/templates"))
    instances = _items(t.api.get("/v1/instances"), "instances")
    return volumes, templates, instances


def like_missing(response: httpx.Response, ident: str, key: str = "volumes") -> None:
    """Exactly the answer for an identifier nobody has: error 8, the same message."""
    item = _items(response, key)[0]
    assert item["status"] == "error" and item["error"] == 8, item
    kind = "instance" if key == "instances" else "volume"
    field_ = "uuid" if _is_uuid(ident) else "name"
    assert item["message"] in (
        f"No {kind} with {field_} '{ident}'",
        f"No template with {field_} '{ident}'",
    ), item


def _is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except ValueError:
        return False
    return True


def new_volume(t: Tenant, name: str | None = None) -> Item:
    body = {"name": name or f"v-{secrets.token_hex(4)}", "size_mb": 4, "quota_policy": "dynamic"}
    item = _items(t.api.post("/v1/volumes", json=body))[0]
    assert item["status"] == "success", item
    t.volumes.append(item)
    return item


def new_instance(t: Tenant) -> Item:
    body = {"name": f"i-{secrets.token_hex(4)}", "image": "x"}
    item = _items(t.api.post("/v1/instances", json=body), "instances")[0]
    assert item["status"] == "success", item
    t.instances.append(item)
    return item


def available(t: Tenant) -> list[Item]:
    by_uuid = {v["uuid"]: v for v in snapshot(t)[0]}
    return [v for v in t.volumes if by_uuid.get(v["uuid"], {}).get("state") == "available"]


def new_template(t: Tenant) -> Item:
    vol = new_volume(t)
    snapshot(t)
    item = _items(t.api.post("/v1/volumes/templates", json=[{"uuid": vol["uuid"]}]))[0]
    assert item["status"] == "success", item
    t.volumes.remove(vol)
    t.templates.append(vol)
    return vol


def probe(actor: Tenant, victim: Tenant, op: str, pick: int) -> None:
    """``actor`` addresses ``victim``'s objects with ``op``: answered like a missing one."""
    if op in ("create", "delete_own", "same_name"):
        own(actor, victim, op, pick)
        return
    if op == "attach_to_other_instance":
        attach_to_other_instance(actor, victim, pick)
        return
    targets = victim.templates if "template" in op else victim.volumes
    if not targets:
        return
    target = targets[pick % len(targets)]
    u, n = target["uuid"], _foreign_name(actor, target["name"])
    api = actor.api
    if op == "get":
        like_missing(api.get(f"/v1/volumes/{u}"), u)
        like_missing(api.get("/v1/volumes", params={"name": n}), n)
        like_missing(api.get("/v1/volumes", params={"uuid": u}), u)
    elif op == "list":  # the probes below also check every listing
        listed = {v["uuid"] for v in _items(api.get("/v1/volumes"))}
        listed |= {v["uuid"] for v in _items(api.get("/v1/volumes/templates"))}
        assert u not in listed
    elif op == "delete":
        like_missing(api.delete(f"/v1/volumes/{u}"), u)
        like_missing(api.request("DELETE", "/v1/volumes", json={"name": n}), n)
    elif op == "patch":
        patch = {"prop": "tags", "op": "set", "value": ["pwned"]}
        like_missing(api.patch(f"/v1/volumes/{u}", json=patch), u)
        like_missing(api.patch("/v1/volumes", json={"name": n, **patch}), n)
    elif op == "clone":
        like_missing(api.post(f"/v1/volumes/{u}/clone", json={}), u)
        like_missing(api.post("/v1/volumes/clone", json={"name": n}), n)
    elif op == "make_template":
        like_missing(api.post("/v1/volumes/templates", json=[{"uuid": u}]), u)
    elif op == "attach_other_volume":
        inst = actor.instances[0] if actor.instances else new_instance(actor)
        body = {"attach_to": {"uuid": inst["uuid"]}, "at": "/data"}
        like_missing(api.put(f"/v1/volumes/{u}/attach", json=body), u)
    elif op == "from_template":
        body = {"template": {"uuid": u}, "name": f"f-{secrets.token_hex(3)}"}
        item = _items(api.post("/v1/volumes", json=body))[0]
        assert item["status"] == "error" and item["error"] == 8 and u in item["message"], item
    else:  # get_template
        like_missing(api.get(f"/v1/volumes/templates/{u}"), u)
        like_missing(api.delete(f"/v1/volumes/templates/{u}"), u)


def _foreign_name(actor: Tenant, name: str) -> str:
    """``name``, unless the actor has a volume of its own by that name (names are per
    tenant): then a name nobody has."""
    if name in {v["name"] for v in actor.volumes + actor.templates}:
        return f"nobody-{secrets.token_hex(4)}"
    return name


def attach_to_other_instance(actor: Tenant, victim: Tenant, pick: int) -> None:
    mine = available(actor)
    if not victim.instances or not mine:
        return
    vol = mine[pick % len(mine)]
    inst = victim.instances[pick % len(victim.instances)]
    body = {"attach_to": {"uuid": inst["uuid"]}, "at": "/data"}
    item = _items(actor.api.put(f"/v1/volumes/{vol['uuid']}/attach", json=body))[0]
    assert item["status"] == "error" and item["error"] == 8, item
    assert inst["uuid"] in item["message"], item


def own(actor: Tenant, victim: Tenant, op: str, pick: int) -> None:
    """Ordinary work of the actor on its own objects (the background the probes run in)."""
    if op == "create":
        [new_volume, new_instance, new_template][pick % 3](actor)
    elif op == "delete_own" and available(actor):
        vol = available(actor)[pick % len(available(actor))]
        item = _items(actor.api.delete(f"/v1/volumes/{vol['uuid']}"))[0]
        assert item["status"] == "success", item
        actor.volumes.remove(vol)
    elif op == "same_name":
        # Names are per tenant: the victim's names are free for the actor.
        taken = {v["name"] for v in actor.volumes + actor.templates}
        free = [v["name"] for v in victim.volumes if v["name"] not in taken]
        if free:
            new_volume(actor, free[pick % len(free)])


OPS = [
    "create",
    "delete_own",
    "same_name",
    "get",
    "list",
    "delete",
    "patch",
    "clone",
    "make_template",
    "attach_other_volume",
    "attach_to_other_instance",
    "from_template",
    "get_template",
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.generate],  # each example costs real requests: report, don't shrink
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(OPS), st.integers(0, 1000)),
        min_size=4,
        max_size=14,
    )
)
def test_no_tenant_sees_or_changes_the_others_objects(
    tenants: tuple[Tenant, Tenant], steps: list[tuple[bool, str, int]]
) -> None:
    alice, mallory = tenants
    for t in (alice, mallory):
        if not t.volumes:
            new_volume(t)
        if not t.templates:
            new_template(t)
        if not t.instances:
            new_instance(t)
    for alice_acts, op, pick in steps:
        actor, victim = (alice, mallory) if alice_acts else (mallory, alice)
        before = snapshot(victim)
        probe(actor, victim, op, pick)
        if op not in ("create", "delete_own", "same_name"):
            assert snapshot(victim) == before, f"{actor.name} changed {victim.name}'s objects"
        # The actor's own listing never shows the victim's objects.
        mine = {v["uuid"] for part in snapshot(actor)[:2] for v in part}
        theirs = {v["uuid"] for v in victim.volumes + victim.templates}
        assert not mine & theirs
