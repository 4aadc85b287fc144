"""Replicas behave as one service: names stay unique, every transition is a
compare-and-set, each job runs on exactly one replica, a dead replica's jobs are taken
over once its lease expires, and a PostgreSQL restart costs 503s, never data."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest

from tests.api.attach_helpers import new_instance, new_volume, unique
from tests.conftest import LiveServer, pg_cluster, wait_for_state

pytestmark = pytest.mark.postgresql_only

Replicas = Callable[..., list[LiveServer]]


def race(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls at once (released together by a barrier)."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def item(response: httpx.Response, key: str = "volumes") -> dict[str, Any]:
    return dict(response.json()["data"][key][0])


def format_counts(live: LiveServer) -> dict[str, tuple[int, int]]:
    """Per volume: (format jobs started, format jobs finished), from the audit trail."""
    rows = live.sql(
        "SELECT volume_uuid, "
        "SUM(CASE WHEN state_to = 'initializing' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN state_from = 'initializing' THEN 1 ELSE 0 END) "
        "FROM volume_events WHERE action = 'format' GROUP BY volume_uuid"
    )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def test_same_name_on_two_replicas_has_one_winner(replicas: Replicas) -> None:
    a, b = replicas(2)
    with a.client() as ca, b.client() as cb:
        for _ in range(15):
            name = unique("same")
            body = {"name": name, "size_mb": 4, "quota_policy": "dynamic"}
            answers = race(
                partial(ca.post, "/v1/volumes", json=body),
                partial(cb.post, "/v1/volumes", json=body),
            )
            outcomes = sorted(item(r).get("status", "?") for r in answers)
            assert outcomes == ["error", "success"], [r.text for r in answers]
            assert all(r.status_code < 500 for r in answers)
            listed = ca.get("/v1/volumes", params={"name": name}).json()
            named = [v for v in listed["data"]["volumes"] if v.get("name") == name]
            assert len(named) == 1


def test_same_volume_attached_via_two_replicas_has_one_winner(replicas: Replicas) -> None:
    a, b = replicas(2)
    with a.client() as ca, b.client() as cb:
        for _ in range(10):
            vol = new_volume(ca)
            one, two = new_instance(ca), new_instance(cb)
            first = [{"uuid": vol["uuid"], "attach_to": {"uuid": one["uuid"]}, "at": "/d"}]
            second = [{"uuid": vol["uuid"], "attach_to": {"uuid": two["uuid"]}, "at": "/d"}]
            answers = race(
                partial(ca.put, "/v1/volumes/attach", json=first),
                partial(cb.put, "/v1/volumes/attach", json=second),
            )
            outcomes = sorted(item(r).get("status", "?") for r in answers)
            assert outcomes == ["error", "success"], [r.text for r in answers]
            got = item(cb.get(f"/v1/volumes/{vol['uuid']}"))
            assert len(got["attached_to"]) == 1


def test_200_creates_over_three_replicas_format_each_image_once(replicas: Replicas) -> None:
    group = replicas(3)
    clients = [r.client() for r in group]
    try:

        def create(n: int) -> str:
            body = {"name": f"v{n:03d}", "size_mb": 4, "quota_policy": "dynamic"}
            answer = clients[n % 3].post("/v1/volumes", json=body)
            assert answer.status_code == 200, answer.text
            return str(item(answer)["uuid"])

        with ThreadPoolExecutor(12) as pool:
            uuids = list(pool.map(create, range(200)))
        assert len(set(uuids)) == 200
        for n, uuid in enumerate(uuids):
            assert wait_for_state(clients[n % 3], uuid, timeout=60)["state"] == "available"
    finally:
        for client in clients:
            client.close()
    images = {p.stem for p in (group[0].data_dir / "images").glob("*.img")}
    assert images == set(uuids)
    counts = format_counts(group[0])
    assert {u: counts.get(u) for u in uuids} == {u: (1, 1) for u in uuids}


def test_a_killed_replicas_format_jobs_are_taken_over(replicas: Replicas) -> None:
    a, b = replicas(2, VOLUMED_WORKER_CONCURRENCY=1)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        body = {"name": f"k{n:02d}", "size_mb": 1024, "quota_policy": "dynamic"}
        with contextlib.suppress(httpx.HTTPError), a.client() as ca:
            answer = ca.post("/v1/volumes", json=body)
            if answer.status_code == 200:
                with lock:
                    acknowledged.append(item(answer)["uuid"])

    burst = [threading.Thread(target=create, args=(n,)) for n in range(50)]
    for thread in burst:
        thread.start()
    # Kill A mid-burst, at a moment when format jobs are leased (A's own creates wake
    # its worker, so it claims first): whatever it held must be taken over by B.
    deadline = time.monotonic() + 30
    held: list[Any] = []
    while not held or len(acknowledged) < 20:
        assert time.monotonic() < deadline, (held, len(acknowledged))
        held = a.sql("SELECT uuid FROM volumes WHERE job = 'format' AND lease_owner IS NOT NULL")
    a.kill()
    for thread in burst:
        thread.join()
    with lock:
        uuids = list(acknowledged)
    with b.client() as cb:
        for uuid in uuids + [r[0] for r in held]:
            assert wait_for_state(cb, uuid, timeout=90)["state"] == "available", uuid
    counts = format_counts(b)
    finished = {u: counts[u][1] for u in uuids}
    assert finished == {u: 1 for u in uuids}  # each image formatted to completion once
    images = {p.stem for p in (b.data_dir / "images").glob("*.img")}
    assert set(uuids) <= images


class Load:
    """Creates spread over the replicas until stopped, remembering each acknowledged
    volume and every answer that is neither a success nor a 503 envelope."""

    def __init__(self, group: list[LiveServer]) -> None:
        self.group = group
        self.acknowledged: list[str] = []
        self.unavailable = 0
        self.bad: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self, worker: int) -> None:
        live = self.group[worker % len(self.group)]
        with live.client() as client:
            n = 0
            while not self.stopping.is_set():
                n += 1
                body = {"name": f"l{worker}-{n}", "size_mb": 4, "quota_policy": "dynamic"}
                try:
                    answer = client.post("/v1/volumes", json=body, timeout=60)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.bad.append(f"transport error {exc!r}")
                    continue
                self.record(answer)

    def record(self, answer: httpx.Response) -> None:
        with self.lock:
            envelope = answer.json()
            if answer.status_code == 200 and envelope["status"] == "success":
                self.acknowledged.append(envelope["data"]["volumes"][0]["uuid"])
            elif answer.status_code == 503 and envelope["status"] == "error":
                assert answer.headers.get("retry-after")
                self.unavailable += 1
                time.sleep(0.05)
            else:
                self.bad.append(f"{answer.status_code} {answer.text[:200]}")


def test_postgresql_restart_under_load_loses_no_acknowledged_write(replicas: Replicas) -> None:
    # Four clients creating for 9 s reach the default 1,024 volumes of a tenant since
    # creates got faster (issue 15); the quota is not what this test is about.
    group = replicas(2, VOLUMED_QUOTA_MAX_VOLUMES=1_000_000)
    load = Load(group)
    threads = [threading.Thread(target=load.run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    cluster = pg_cluster()
    try:
        time.sleep(2)
        before = len(load.acknowledged)
        cluster.stop()
        time.sleep(3)
        during = load.unavailable
        cluster.start()
        time.sleep(4)
    finally:
        load.stopping.set()
        for thread in threads:
            thread.join()
    assert before > 0 and during > 0, (before, during)
    assert load.bad == []
    # The service recovered by itself: new writes succeed on every replica...
    for live in group:
        with live.client() as client:
            fresh = client.post("/v1/volumes", json={"size_mb": 4, "quota_policy": "dynamic"})
            assert fresh.status_code == 200, fresh.text
            assert httpx.get(live.url + "/readyz").status_code == 200
    # ...and every acknowledged create is there, and gets formatted.
    with group[0].client() as client:
        for uuid in load.acknowledged:
            assert wait_for_state(client, uuid, timeout=60)["state"] == "available", uuid
