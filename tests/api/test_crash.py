"""kill -9 in the middle of a burst of creates and deletes, restart, check invariants."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import LiveServer

TRANSITIONAL = {"uninitialized", "initializing", "busy"}


@dataclass
class Ledger:
    """What the clients were told. A request in flight when the kill landed may or may not
    have been applied: its volume is in ``unsure`` and either outcome is accepted."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def burst(live: LiveServer, ledger: Ledger, stop: threading.Event) -> None:
    """Create volumes and delete every other one (each thread its own) until the server
    dies."""
    mine: list[str] = []
    with live.client() as api:
        n = 0
        while not stop.is_set():
            n += 1
            victim = None
            try:
                response = api.post("/v1/volumes", json={"size_mb": 16 + n % 5})
                item = response.json()["data"]["volumes"][0]
                if item["status"] == "success":
                    with ledger.lock:
                        ledger.acknowledged[item["uuid"]] = item["name"]
                    mine.append(item["uuid"])
                if n % 2 == 0 and mine:
                    victim = mine.pop(0)
                    with ledger.lock:
                        ledger.unsure.add(victim)
                    gone = api.delete(f"/v1/volumes/{victim}").json()["data"]["volumes"][0]
                    with ledger.lock:
                        ledger.unsure.discard(victim)
                        if gone["status"] == "success":
                            ledger.deleted.add(victim)
            except (httpx.HTTPError, ValueError, KeyError):
                return  # the server is gone; ``victim`` (if any) stays unsure


def check_invariants(live: LiveServer, ledger: Ledger) -> None:
    with live.client() as api:
        deadline = time.monotonic() + 30
        while True:
            volumes = api.get("/v1/volumes").json()["data"]["volumes"]
            states = {v["uuid"]: v["state"] for v in volumes}
            if not TRANSITIONAL & set(states.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert not TRANSITIONAL & set(states.values()), states
    # Every acknowledged create is there, unless its delete was acknowledged (or was in
    # flight at the kill: then either outcome is fine, and the ledger adopts the one found).
    for uuid in ledger.acknowledged:
        if uuid in ledger.deleted:
            assert uuid not in states
        elif uuid in ledger.unsure:
            if uuid not in states:
                ledger.deleted.add(uuid)
        else:
            assert uuid in states, f"acknowledged volume {uuid} was lost"
    ledger.unsure.clear()
    images_dir: Path = live.data_dir / "images"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = {p.name for p in images_dir.iterdir()}
        if all(name.endswith(".img") and name[:-4] in states for name in files):
            break
        time.sleep(0.1)
    # No image without its row, no temporary file left, no healthy row without its image.
    for name in files:
        assert name.endswith(".img") and name[:-4] in states, f"orphan file {name}"
    for uuid, state in states.items():
        image = images_dir / f"{uuid}.img"
        if state == "available":
            assert image.exists(), f"row {uuid} claims a missing image"
            fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True)
            assert fsck.returncode == 0, fsck.stdout
        else:
            assert state == "error", state


def test_kill_9_mid_burst_loses_nothing(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    ledger = Ledger()
    for round_number in range(3):
        stop = threading.Event()
        workers = [threading.Thread(target=burst, args=(live, ledger, stop)) for _ in range(4)]
        for worker in workers:
            worker.start()
        # Kill after a number of acknowledged creates, not after a time: creates answer
        # once formatted, and a busy machine formats slowly. The pause varies the moment.
        wanted = len(ledger.acknowledged) + 4
        deadline = time.monotonic() + 30
        while len(ledger.acknowledged) < wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1 * round_number)
        live.kill()
        stop.set()
        for worker in workers:
            worker.join()
        live.restart()
        check_invariants(live, ledger)
    assert len(ledger.acknowledged) > 10


def test_kill_9_while_a_create_formats_its_own_volume(
    fresh_server: Callable[..., LiveServer],
) -> None:
    """A create whose request claimed the format itself (issue 15) is killed in the
    middle of it: the row is committed leased to the dead process, a staged image of
    epoch 1 on disk. After the restart another claim (epoch 2) redoes the format, drops
    the leftover and the volume becomes available."""
    live = fresh_server()
    images_dir: Path = live.data_dir / "images"
    # A large sparse volume: its mke2fs takes tens of milliseconds, long enough to be
    # seen and killed in the middle.
    body = {"size_mb": 262_144, "quota_policy": "dynamic"}
    staged: list[Path] = []

    def create() -> None:
        with contextlib.suppress(httpx.HTTPError), live.client() as api:
            api.post("/v1/volumes", json=body)

    poster = threading.Thread(target=create)
    poster.start()
    deadline = time.monotonic() + 30
    while not staged and time.monotonic() < deadline:
        staged = [p for p in images_dir.iterdir() if p.name.endswith(".img.e1")]
    # What the request committed before it formatted: its own claim of the job.
    uuid = staged[0].name.split(".")[0]
    row = live.sql(
        "SELECT job, job_attempts, lease_epoch, lease_owner FROM volumes WHERE uuid = ?", (uuid,)
    )
    live.kill()
    poster.join()
    assert row[0][0] == "format" and row[0][1] == 1 and row[0][2] == 1 and row[0][3]

    live.restart()
    with live.client() as api:
        deadline = time.monotonic() + 30
        while True:
            volume = api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]
            if volume["state"] not in TRANSITIONAL or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert volume["state"] == "available", volume
    epoch, job = live.sql("SELECT lease_epoch, job FROM volumes WHERE uuid = ?", (uuid,))[0]
    assert epoch == 2 and job is None
    assert sorted(p.name for p in images_dir.iterdir()) == [f"{uuid}.img"]
    fsck = subprocess.run(["e2fsck", "-fn", str(images_dir / f"{uuid}.img")], capture_output=True)
    assert fsck.returncode == 0, fsck.stdout
