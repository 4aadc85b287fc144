"""Per-user quotas: count, total size, per-volume size; defaults, overrides, races, and
GET /v1/users/quotas in the SDK's shape.

One server for the module, started with per-volume size defaults of 2…64 MB; each test
works as a tenant of its own, whose overrides it sets through the admin path.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from unikraft_cloud.api.platform import models

from tests.api.lifecycle_helpers import (
    Item,
    failed,
    items,
    new_volume,
    ok,
    patch,
    set_overrides,
    unique,
    wait_for,
    wait_until,
)
from tests.conftest import LiveServer
from tests.inprocess import inprocess_server, make_inprocess_server  # noqa: F401 - in process


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_inprocess_server(
        tmp_path_factory.mktemp("quotas"), VOLUMED_MIN_VOLUME_MB=2, VOLUMED_MAX_VOLUME_MB=64
    )
    yield live
    live.stop()


def tenant(live: LiveServer, **limits: int | None) -> tuple[str, str]:
    """A new tenant (name, token), with these overrides."""
    name = unique("tenant")
    token = live.add_user(name)
    if limits:
        set_overrides(live, name, **limits)
    return name, token


def quotas(client: httpx.Client) -> Item:
    response = client.get("/v1/users/quotas")
    parsed = models.QuotasResponse.model_validate(response.json())
    assert parsed.status == "success" and parsed.data and parsed.data.quotas
    return ok(response, "quotas")


def dynamic(client: httpx.Client, size_mb: int, **fields: object) -> httpx.Response:
    body = {"name": unique(), "size_mb": size_mb, "quota_policy": "dynamic", **fields}
    return client.post("/v1/volumes", json=body)


def test_count_and_total_limits(quota_server: LiveServer) -> None:
    _, token = tenant(quota_server, max_volumes=3, max_total_volume_mb=100)
    with quota_server.client(token) as api:
        report = quotas(api)
        assert report["used"]["volumes"] == 0 and report["used"]["total_volume_mb"] == 0
        assert report["hard"] == {"volumes": 3, "total_volume_mb": 100}
        first = new_volume(api, size_mb=60, quota_policy="dynamic")
        too_big = failed(dynamic(api, 50), 19)
        assert "Total volume size quota exceeded: 60 MB of 100 MB" in too_big["message"]
        second = new_volume(api, size_mb=30, quota_policy="dynamic")
        # Growing past the total is refused too, before anything changes.
        assert patch(api, second, "size_mb", value=50)["error"] == 19
        assert patch(api, second, "size_mb", value=38)["status"] == "success"
        ok(dynamic(api, 2))
        count = failed(dynamic(api, 2), 19)
        assert count["message"].startswith("Volume quota exceeded: you have 3 of at most 3")
        # A clone is one more volume: refused; after a delete there is room again.
        failed(api.post("/v1/volumes/clone", json={"uuid": first["uuid"]}), 19)
        report = quotas(api)
        assert report["used"]["volumes"] == 3 and report["used"]["total_volume_mb"] == 100
        ok(api.delete(f"/v1/volumes/{first['uuid']}"))
        clone = ok(api.post("/v1/volumes/clone", json={"uuid": second["uuid"]}))
        wait_until(api, clone["uuid"], ("available",))
        assert quotas(api)["used"] == {
            "instances": 0,
            "live_instances": 0,
            "live_vcpus": 0,
            "live_memory_mb": 0,
            "volumes": 3,
            "total_volume_mb": 78,
        }


def test_concurrent_creates_cannot_overshoot(quota_server: LiveServer) -> None:
    _, token = tenant(quota_server, max_volumes=5)

    def create(_: int) -> Item:
        with quota_server.client(token) as client:
            return items(dynamic(client, 2))[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(create, range(20)))
    assert sum(r["status"] == "success" for r in results) == 5
    assert {r.get("error") for r in results if r["status"] == "error"} == {19}
    with quota_server.client(token) as api:
        assert len(items(api.get("/v1/volumes"))) == 5


def test_per_user_overrides_and_defaults(quota_server: LiveServer) -> None:
    name, token = tenant(quota_server)
    _, neighbour = tenant(quota_server)
    with quota_server.client(token) as api, quota_server.client(neighbour) as other:
        assert quotas(api)["limits"] == {"min_volume_mb": 2, "max_volume_mb": 64}
        failed(dynamic(api, 1), 7)
        failed(dynamic(api, 65), 19)
        set_overrides(quota_server, name, max_volumes=1, min_volume_mb=8, max_volume_mb=128)
        report = quotas(api)
        assert report["limits"] == {"min_volume_mb": 8, "max_volume_mb": 128}
        assert report["hard"]["volumes"] == 1
        assert report["hard"]["total_volume_mb"] == 4_194_304  # the default still applies
        failed(dynamic(api, 4), 7)
        ok(dynamic(api, 100))
        failed(dynamic(api, 8), 19)
        # Another tenant keeps the defaults, and counts only its own volumes.
        failed(dynamic(other, 100), 19)
        ok(dynamic(other, 64))
        assert quotas(other)["used"]["volumes"] == 1
        set_overrides(quota_server, name)  # all None: back to the defaults
        assert quotas(api)["limits"] == {"min_volume_mb": 2, "max_volume_mb": 64}


def test_templates_count_and_instances_are_reported(quota_server: LiveServer) -> None:
    _, token = tenant(quota_server)
    with quota_server.client(token) as api:
        volume = new_volume(api, size_mb=4, quota_policy="dynamic")
        ok(api.post("/v1/volumes/templates", json={"uuid": volume["uuid"]}))
        body = {"name": unique("i"), "image": "x", "memory_mb": 256}
        ok(api.post("/v1/instances", json=body), "instances")
        used = quotas(api)["used"]
        assert (used["volumes"], used["total_volume_mb"]) == (1, 4)
        assert (used["instances"], used["live_instances"], used["live_memory_mb"]) == (1, 0, 0)


def test_quotas_need_a_token_and_take_no_query(server: LiveServer, api: httpx.Client) -> None:
    with server.anonymous() as anonymous:
        assert anonymous.get("/v1/users/quotas").status_code == 401
    assert api.get("/v1/users/quotas", params={"x": "1"}).status_code == 400


def test_usage_counters_agree_with_a_recount(quota_server: LiveServer) -> None:
    """The counters the quota check reads (kept by triggers) match the tenant's volumes
    and templates after creates, a refused duplicate, grows, a clone, a template, an
    instance born with a volume and then deleted, and deletes."""
    _, token = tenant(quota_server)
    with quota_server.client(token) as api:
        kept = new_volume(api, size_mb=8, quota_policy="dynamic")
        grown = new_volume(api, size_mb=4, quota_policy="dynamic")
        failed(dynamic(api, 4, name=kept["name"]), 23)
        assert patch(api, grown, "size_mb", value=12)["status"] == "success"
        clone = ok(api.post("/v1/volumes/clone", json={"uuid": kept["uuid"]}))
        wait_until(api, clone["uuid"], ("available",))
        template = new_volume(api, size_mb=6, quota_policy="dynamic")
        ok(api.post("/v1/volumes/templates", json={"uuid": template["uuid"]}))
        born = {"name": unique("i"), "image": "x", "memory_mb": 64}
        born["volumes"] = [{"size_mb": 10, "at": "/data"}]
        instance = ok(api.post("/v1/instances", json=born), "instances")
        assert quotas(api)["used"]["volumes"] == 5
        ok(api.delete(f"/v1/instances/{instance['uuid']}"), "instances")
        ok(api.delete(f"/v1/volumes/{kept['uuid']}"))

        def recount() -> tuple[int, int]:
            listed = items(api.get("/v1/volumes"))
            listed += items(api.get("/v1/volumes/templates"))
            return len(listed), sum(item["size_mb"] for item in listed)

        wait_for(lambda: recount()[0] == 3)
        used = quotas(api)["used"]
        assert (used["volumes"], used["total_volume_mb"]) == recount() == (3, 12 + 8 + 6)
