"""``kill -9`` in the middle of a burst of attach, detach, start, stop, instance create and
instance delete; after a restart every invariant holds: volume and instance agree on each
attachment, no persistent volume is lost, no instance is left half started or stopped,
and the volumes of deleted instances are gone together with their images."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.api.attach_helpers import (
    Item,
    check_invariants,
    images,
    items,
    new_instances,
    new_volumes,
    wait_settled,
)
from tests.conftest import LiveServer

WORKERS = 8
ANSWERED = 120
"""Requests answered before the kill (a count, not a time: the machine may be busy)."""


@dataclass
class Pool:
    """What the burst knows, shared by its threads."""

    volumes: list[str]
    plain: list[str]
    inline: dict[str, str] = field(default_factory=dict)
    """Instances made with a volume of their own: instance uuid → volume uuid."""
    deleted: dict[str, str | None] = field(default_factory=dict)
    """Instances whose delete was acknowledged → the volume that went with them."""
    answered: int = 0
    """Requests answered in the current burst (so the test knows it did something)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def instances(self) -> list[str]:
        with self.lock:
            return self.plain + list(self.inline)


def burst(live: LiveServer, pool: Pool, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    with httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {live.token}"}, timeout=5
    ) as client:
        while not stop.is_set():
            try:
                step(client, pool, rng)
            except httpx.HTTPError:
                return  # the server is gone
            with pool.lock:
                pool.answered += 1


def step(client: httpx.Client, pool: Pool, rng: random.Random) -> None:
    choice = rng.random()
    instances = pool.instances()
    if not instances:
        return
    inst = rng.choice(instances)
    if choice < 0.25:
        vol = rng.choice(pool.volumes)
        target = rng.choice(pool.plain) if pool.plain else inst
        client.put(f"/v1/volumes/{vol}/attach", json={"attach_to": {"uuid": target}, "at": "/d"})
    elif choice < 0.45:
        client.put(f"/v1/volumes/{rng.choice(pool.volumes)}/detach")
    elif choice < 0.6:
        client.put("/v1/instances/start", json=[{"uuid": inst}])
    elif choice < 0.75:
        client.put("/v1/instances/stop", json=[{"uuid": inst}])
    elif choice < 0.88:
        r = client.delete(f"/v1/instances/{inst}")
        if r.json()["data"]["instances"][0]["status"] == "success":
            with pool.lock:
                pool.deleted[inst] = pool.inline.pop(inst, None)
                if inst in pool.plain:
                    pool.plain.remove(inst)
    else:
        r = client.post(
            "/v1/instances",
            json={"image": "x", "volumes": [{"size_mb": 4, "at": "/data"}], "autostart": True},
        )
        body = r.json()
        assert "data" in body, (r.status_code, body)
        item = body["data"]["instances"][0]
        if item["status"] == "success":
            with pool.lock:
                pool.inline[item["uuid"]] = item["volumes"][0]["uuid"]


def crash_and_check(live: LiveServer, pool: Pool, seed: int) -> None:
    stop = threading.Event()
    pool.answered = 0
    threads = [
        threading.Thread(target=burst, args=(live, pool, seed * 100 + n, stop))
        for n in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while pool.answered < ANSWERED and time.monotonic() < deadline:
        time.sleep(0.005)
    live.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    assert pool.answered >= ANSWERED, pool.answered
    live.restart()
    with live.client() as api:
        # Nothing half started or stopped: the server finished those before serving.
        instances = {i["uuid"]: i for i in items(api.get("/v1/instances"), "instances")}
        assert all(i["state"] in ("stopped", "running") for i in instances.values())
        wait_settled(api)
        check_invariants(api)
        volumes = {v["uuid"]: v for v in items(api.get("/v1/volumes"))}
        # No persistent volume is ever lost.
        assert set(pool.volumes) <= set(volumes)
        for gone, own_volume in pool.deleted.items():
            assert gone not in instances
            if own_volume is not None:
                assert own_volume not in volumes
        # Images and rows agree once the owed deletes have run.
        deadline = time.monotonic() + 15
        while images(live.data_dir) != set(volumes):
            assert time.monotonic() < deadline, images(live.data_dir) ^ set(volumes)
            time.sleep(0.05)
        # Resync the pool with what survived (in-flight creates and deletes either way).
        with pool.lock:
            pool.plain = [i for i in pool.plain if i in instances]
            pool.inline = {i: v for i, v in pool.inline.items() if i in instances}


def test_kill_9_during_attach_burst(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    with live.client() as api:
        volumes: list[Item] = new_volumes(api, 12)
        plain = new_instances(api, 12)
    pool = Pool(volumes=[v["uuid"] for v in volumes], plain=[i["uuid"] for i in plain])
    for round_ in range(2):
        crash_and_check(live, pool, round_)
        with live.client() as api:
            pool.plain += [i["uuid"] for i in new_instances(api, 4)]


def test_restart_finishes_starts_and_stops_cut_short(
    fresh_server: Callable[..., LiveServer],
) -> None:
    """A crash between ``begin_start`` and ``finish_start`` (or the same for stop) leaves
    an instance ``starting``/``stopping`` with its volumes mounted; the next start of the
    server finishes the job through the runtime before it serves."""
    live = fresh_server()
    with live.client() as api:
        starting, stopping = new_instances(api, 2)
        vols = new_volumes(api, 2)
        for vol, inst in zip(vols, (starting, stopping), strict=True):
            r = api.put(
                f"/v1/volumes/{vol['uuid']}/attach",
                json={"attach_to": {"uuid": inst["uuid"]}, "at": "/d"},
            )
            assert r.json()["status"] == "success"
    live.kill()
    # What the two begin_* transactions leave behind, written as they would.
    live.sql("UPDATE instances SET state = 'starting' WHERE uuid = ?", (starting["uuid"],))
    live.sql("UPDATE instances SET state = 'stopping' WHERE uuid = ?", (stopping["uuid"],))
    live.sql("UPDATE volumes SET state = 'mounted'")
    live.restart()
    with live.client() as api:
        states = {i["uuid"]: i["state"] for i in items(api.get("/v1/instances"), "instances")}
        assert states == {starting["uuid"]: "running", stopping["uuid"]: "stopped"}
        by_uuid = {v["uuid"]: v["state"] for v in items(api.get("/v1/volumes"))}
        assert by_uuid == {vols[0]["uuid"]: "mounted", vols[1]["uuid"]: "idle"}
        check_invariants(api)
    assert "finished 2 interrupted start/stop(s)" in live.log()
