"""Prometheus metrics: scraped and parsed after a known sequence of requests."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable

import httpx
import pytest

from tests.ops.conftest import Ops, hold_a_request_open, value
from volumed.settings import Settings, SettingsError

MIB = 1024 * 1024
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def poll_until_available(api: httpx.Client, uuid: str) -> int:
    """GET the volume until it is available; returns how many GETs that took."""
    deadline = time.monotonic() + 20
    gets = 0
    while time.monotonic() < deadline:
        gets += 1
        if api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]["state"] == "available":
            return gets
        time.sleep(0.02)
    raise AssertionError(f"{uuid} did not become available")


def test_counts_match_a_known_sequence_of_requests(ops_server: Callable[..., Ops]) -> None:
    ops = ops_server()
    live = ops.live
    with live.client() as api:
        created = api.post(
            "/v1/volumes",
            json=[{"name": f"m{n}", "size_mb": 8, "quota_policy": "dynamic"} for n in range(3)],
        ).json()["data"]["volumes"]
        uuids = [item["uuid"] for item in created]
        gets = sum(poll_until_available(api, uuid) for uuid in uuids)
        # One failed item (8) on a GET, two (23, 7) in a create, and one request-level
        # failure of each kind.
        assert api.get(f"/v1/volumes/{UNKNOWN}").json()["data"]["volumes"][0]["error"] == 8
        gets += 1
        taken = api.post("/v1/volumes", json=[{"name": "m0", "size_mb": 8}, {"size_mb": 0}])
        assert [i.get("error") for i in taken.json()["data"]["volumes"]] == [23, 7]
        assert api.get("/v1/nothing-here").status_code == 404
        assert httpx.get(live.url + "/v1/volumes").status_code == 401
        assert api.delete(f"/v1/volumes/{uuids[2]}").json()["status"] == "success"

    samples = ops.scrape()
    # Requests are counted by the latency histogram's _count alone (no twin counter),
    # with the HTTP status in the label `code`.
    requests = "volumed_http_request_duration_seconds_count"
    assert value(samples, requests, method="POST", route="/v1/volumes", code="200") == 2
    assert value(samples, requests, method="GET", route="/v1/volumes/{uuid}", code="200") == gets
    assert value(samples, requests, method="GET", route="unmatched", code="404") == 1
    assert value(samples, requests, method="GET", route="/v1/volumes", code="401") == 1
    assert value(samples, requests, method="DELETE", route="/v1/volumes/{uuid}", code="200") == 1
    assert not [name for name, _ in samples if name == "volumed_http_requests_total"]
    # Nothing in flight between requests (the scrape is served apart from the API); a
    # request whose body is still arriving is.
    assert ("volumed_http_requests_in_flight", frozenset()) in samples
    assert value(samples, "volumed_http_requests_in_flight") == 0
    stuck = hold_a_request_open(live)
    try:
        assert value(ops.scrape(), "volumed_http_requests_in_flight") == 1
    finally:
        stuck.close()
    # Failed items by code, with the error's name beside it: one each of 8, 23 and 7.
    errors = "volumed_item_errors_total"
    assert {
        code: value(samples, errors, code=code, reason=reason)
        for code, reason in (("7", "invalid"), ("8", "not_found"), ("23", "already_exists"))
    } == {"7": 1, "8": 1, "23": 1}
    # Read from the store when scraped.
    assert value(samples, "volumed_volumes", state="available") == 2
    assert value(samples, "volumed_volumes", state="error") == 0
    assert value(samples, "volumed_tenants") == 1
    assert value(samples, "volumed_volumes_provisioned_bytes") == 2 * 8 * MIB
    assert 0 < value(samples, "volumed_volumes_used_bytes") < 2 * 8 * MIB
    assert value(samples, "volumed_worker_queue_depth") == 0
    assert value(samples, "volumed_worker_jobs_running") == 0
    assert value(samples, "volumed_store_up") == 1
    assert value(samples, "volumed_data_dir_free_bytes") > 0
    assert value(samples, "volumed_data_dir_capacity_bytes") > value(
        samples, "volumed_data_dir_free_bytes"
    )
    # Jobs by kind and outcome; the store's latency by method.
    jobs = "volumed_job_duration_seconds_count"
    assert value(samples, jobs, kind="format", outcome="ok") == 3
    assert value(samples, jobs, kind="format", outcome="retry") == 0
    for kind in ("format", "delete", "clone", "grow", "import"):
        # Failures are the _count of outcomes retry/failed/parked: no separate counter.
        assert (jobs, frozenset({("kind", kind), ("outcome", "failed")})) in samples
    assert not [name for name, _ in samples if name == "volumed_job_failures_total"]
    store = "volumed_store_operation_duration_seconds_count"
    # The point reads on every request's path are not timed (their cost was the timer's).
    assert (
        "volumed_store_operation_duration_seconds_count",
        frozenset({("operation", "get_volume")}),
    ) not in samples
    assert value(samples, store, operation="begin_delete") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_listen_apart_from_the_api(ops_server: Callable[..., Ops]) -> None:
    ops = ops_server()
    # On the API port /metrics is an unknown route, like any other.
    assert httpx.get(ops.live.url + "/metrics").status_code == 401
    with ops.live.client() as api:
        assert api.get("/metrics").status_code == 404
    # On the metrics port there is only /metrics.
    base = f"http://127.0.0.1:{ops.metrics_port}"
    assert httpx.get(base + "/").status_code == 404
    assert httpx.post(base + "/metrics").status_code == 405
    assert httpx.head(base + "/metrics").status_code == 200
    assert "volumed_build_info" in httpx.get(base + "/metrics").text


def test_metrics_settings_are_checked() -> None:
    assert Settings(metrics_port=0).validate().metrics_port == 0
    with pytest.raises(SettingsError, match="metrics_port must differ"):
        Settings(port=9000, metrics_port=9000).validate()
    with pytest.raises(SettingsError, match="log_format"):
        Settings(log_format="xml").validate()


def test_bytes_moved_by_imports_and_exports_are_counted(ops_server: Callable[..., Ops]) -> None:
    ops = ops_server()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        payload = os.urandom(300_000)
        info = tarfile.TarInfo("blob")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    body = archive.getvalue()
    with ops.live.client() as api:
        uuid = api.post("/v1/volumes", json={"size_mb": 8}).json()["data"]["volumes"][0]["uuid"]
        poll_until_available(api, uuid)
        before = ops.scrape()
        assert value(before, "volumed_transfer_bytes_total", direction="import") == 0
        imported = api.put(f"/volumed/v1/volumes/{uuid}/import", content=body)
        assert imported.json()["status"] == "success", imported.text
        exported = api.get(f"/volumed/v1/volumes/{uuid}/export")
        assert exported.headers["content-type"].startswith("application/x-tar")
        # A refused export (unknown volume) answers an envelope: not archive bytes.
        assert api.get(f"/volumed/v1/volumes/{UNKNOWN}/export").status_code == 200
    after = ops.scrape()
    assert value(after, "volumed_transfer_bytes_total", direction="import") == len(body)
    assert value(after, "volumed_transfer_bytes_total", direction="export") == len(exported.content)
