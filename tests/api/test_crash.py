"""kill -9 in the middle of a burst of creates and deletes, restart, check invariants."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    row: list[Any] = []
    # On SQLite the image is begun while the insert commits (format_ahead): the staged
    # image can be there before the row.
    while not row and time.monotonic() < deadline:
        staged = [p for p in images_dir.iterdir() if p.name.endswith(".img.e1")]
        if staged:
            uuid = staged[0].name.split(".")[0]
            row = live.sql(
                "SELECT job, job_attempts, lease_epoch, lease_owner FROM volumes WHERE uuid = ?",
                (uuid,),
            )
    # What the request committed before it formatted: its own claim of the job.
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


def _fs_uuid(image: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Filesystem UUID"))


def test_kill_9_between_a_formats_placement_and_its_finish(
    fresh_server: Callable[..., LiveServer],
) -> None:
    """A format puts its image in place (only where there is none) and then ends its job
    in the store, without a commit in between (issue 15). The server is frozen the moment
    a new image appears and, if its job has not ended yet, killed there: the next claim
    keeps that image (the same file system, not a second format) and ends the job."""
    live = fresh_server()
    images_dir: Path = live.data_dir / "images"
    assert live.process is not None
    body = {"size_mb": 262_144, "quota_policy": "dynamic"}
    for _ in range(40):

        def create() -> None:
            with contextlib.suppress(httpx.HTTPError), live.client() as api:
                api.post("/v1/volumes", json=body)

        before = {p.name for p in images_dir.iterdir()}
        poster = threading.Thread(target=create)
        poster.start()
        deadline = time.monotonic() + 30
        new: set[str] = set()
        while not new and time.monotonic() < deadline:
            new = {n for n in os.listdir(images_dir) if n.endswith(".img")} - before
        os.killpg(live.process.pid, signal.SIGSTOP)
        (name,) = new
        uuid = name.removesuffix(".img")
        (job,) = live.sql("SELECT job FROM volumes WHERE uuid = ?", (uuid,))[0]
        if job is None:  # it ended before the freeze: try again
            os.killpg(live.process.pid, signal.SIGCONT)
            poster.join()
            continue
        placed = _fs_uuid(images_dir / name)
        live.kill()
        poster.join()
        break
    else:
        raise AssertionError("never caught a format between its placement and its end")

    live.restart()
    with live.client() as api:
        deadline = time.monotonic() + 30
        while True:
            volume = api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]
            if volume["state"] not in TRANSITIONAL or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert volume["state"] == "available", volume
    assert _fs_uuid(images_dir / name) == placed
    assert [n for n in os.listdir(images_dir) if not n.endswith(".img")] == []
    fsck = subprocess.run(["e2fsck", "-fn", str(images_dir / name)], capture_output=True)
    assert fsck.returncode == 0, fsck.stdout


def test_kill_9_after_a_create_began_its_image_but_before_its_insert_committed(
    fresh_server: Callable[..., LiveServer],
) -> None:
    """On SQLite a create begins its volume's image while its insert commits (issue 15):
    the server is frozen the moment a new staged image appears and, if its row is not
    committed yet, killed there. The restart removes that image: nothing of a create that
    was never acknowledged remains. On PostgreSQL no image is begun before its row."""
    live = fresh_server()
    images_dir: Path = live.data_dir / "images"
    assert live.process is not None
    body = {"size_mb": 64, "quota_policy": "static"}
    caught = None
    for _ in range(100):

        def create() -> None:
            with contextlib.suppress(httpx.HTTPError), live.client() as api:
                api.post("/v1/volumes", json=body)

        before = set(os.listdir(images_dir))
        poster = threading.Thread(target=create)
        poster.start()
        deadline = time.monotonic() + 30
        new: set[str] = set()
        while not new and time.monotonic() < deadline:
            new = {n for n in os.listdir(images_dir) if ".img.e" in n} - before
        os.killpg(live.process.pid, signal.SIGSTOP)
        (name,) = new
        uuid = name.split(".")[0]
        if live.sql("SELECT 1 FROM volumes WHERE uuid = ?", (uuid,)) or not live.is_sqlite:
            assert live.sql("SELECT 1 FROM volumes WHERE uuid = ?", (uuid,)), name
            os.killpg(live.process.pid, signal.SIGCONT)
            poster.join()
            continue
        caught = uuid
        live.kill()
        poster.join()
        break
    if not live.is_sqlite:
        return  # every staged image above had its row already
    assert caught is not None, "never caught a create between its image and its commit"
    assert (images_dir / name).exists()
    live.restart()
    assert not [n for n in os.listdir(images_dir) if n.startswith(caught)]
    assert not live.sql("SELECT 1 FROM volumes WHERE uuid = ?", (caught,))
    with live.client() as api:
        assert api.post("/v1/volumes", json=body).json()["data"]["volumes"][0]["state"] == (
            "available"
        )


def test_a_lone_server_removes_staged_images_without_rows_as_it_starts(
    fresh_server: Callable[..., LiveServer],
) -> None:
    """What a kill -9 between a create's image and its insert leaves (the test above
    catches it live): a staged image whose volume has no row. A lone SQLite server
    removes it as it starts; replicas on PostgreSQL keep it (another may be creating that
    volume right now) for ``volumed fsck`` to report."""
    live = fresh_server()
    images_dir: Path = live.data_dir / "images"
    with live.client() as api:
        kept = api.post("/v1/volumes", json={"size_mb": 8}).json()["data"]["volumes"][0]
    live.kill()
    unborn = images_dir / "0b9f3c3e-6a1d-4c1e-9d35-3f0c2a7b9e11.img.e1"
    subprocess.run(["truncate", "-s", "8M", str(unborn)], check=True)
    live.restart()
    assert unborn.exists() is not live.is_sqlite
    assert (images_dir / f"{kept['uuid']}.img").exists()
