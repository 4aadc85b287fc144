"""Crashes with real guests: kill -9 of volumed while guests run, and of one QEMU."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, kill_guests
from tests.guests.guest_helpers import (
    fsck_clean,
    guest,
    image_of,
    in_parallel,
    new_volume,
    qemu_server,
    wait_console,
    wait_state,
)

# Runs in the SQLite pass only: the QEMU runtime is what these test; instance and volume
# transitions run on both stores in tests/api, and guests on PostgreSQL replicas in
# test_guest_replicas.py.
pytestmark = pytest.mark.store_independent

KERNEL_CRASH = 1
WRITER = "i=0; echo armed; while :; do echo $i > /d/n; i=$((i+1)); sleep 0.1; done"


def qemu_pid(server: LiveServer, instance_uuid: str) -> int:
    pid_files = list(server.data_dir.glob(f"guests/*/{instance_uuid}/qemu.pid"))
    assert len(pid_files) == 1, pid_files
    return int(pid_files[0].read_text().split()[0])


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def volume_state(api: httpx.Client, uuid: str) -> str:
    state: str = api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]["state"]
    return state


def test_kill_9_of_volumed_finds_its_guests_again(tmp_path: Path) -> None:
    server = qemu_server(tmp_path)
    try:
        with server.client() as api:
            api.timeout = httpx.Timeout(300)
            a, b = new_volume(api), new_volume(api)
            kept, lost = in_parallel(
                lambda: guest(api, WRITER, [{"uuid": a["uuid"], "at": "/d"}]),
                lambda: guest(api, WRITER, [{"uuid": b["uuid"], "at": "/d"}]),
            )
            assert kept["state"] == lost["state"] == "running", (kept, lost)
            wait_console(api, kept["uuid"], "armed")
            kept_pid, lost_pid = qemu_pid(server, kept["uuid"]), qemu_pid(server, lost["uuid"])

        server.kill()
        assert alive(kept_pid) and alive(lost_pid)  # guests outlive volumed
        os.kill(lost_pid, signal.SIGKILL)  # and one of them dies while volumed is down
        server.restart()

        with server.client() as api:
            api.timeout = httpx.Timeout(300)
            found = api.get(f"/v1/instances/{kept['uuid']}").json()["data"]["instances"][0]
            assert found["state"] == "running" and alive(kept_pid), found
            assert volume_state(api, a["uuid"]) == "mounted"
            gone = api.get(f"/v1/instances/{lost['uuid']}").json()["data"]["instances"][0]
            assert gone["state"] == "stopped" and gone["stop_reason"] == KERNEL_CRASH, gone
            assert volume_state(api, b["uuid"]) == "idle"
            clean, report = fsck_clean(image_of(server, b["uuid"]))
            assert clean, report

        # A graceful shutdown of volumed leaves the guest running too (docs/guests.md).
        assert server.stop() == 0
        assert alive(kept_pid)
        server.restart()

        with server.client() as api:
            api.timeout = httpx.Timeout(300)
            found = api.get(f"/v1/instances/{kept['uuid']}").json()["data"]["instances"][0]
            assert found["state"] == "running", found
            # The adopted guest is still ours: it stops cleanly through the API.
            api.put(f"/v1/instances/{kept['uuid']}/stop", json={"drain_timeout_ms": 2000})
            stopped = wait_state(api, kept["uuid"], "stopped")
            assert stopped["stop_reason"] & 8, stopped  # user-initiated
            assert not alive(kept_pid)
            clean, report = fsck_clean(image_of(server, a["uuid"]))
            assert clean, report
    finally:
        server.stop()
        kill_guests(server.data_dir)


def test_kill_9_of_a_guest_is_a_crash_and_its_volume_recovers(
    gapi: httpx.Client, guest_server: LiveServer
) -> None:
    volume = new_volume(gapi)
    writer = guest(gapi, WRITER, [{"uuid": volume["uuid"], "at": "/d"}])
    wait_console(gapi, writer["uuid"], "armed")
    pid = qemu_pid(guest_server, writer["uuid"])
    os.kill(pid, signal.SIGKILL)
    crashed = wait_state(gapi, writer["uuid"], "stopped")
    assert crashed["stop_reason"] == KERNEL_CRASH and "exit_code" not in crashed, crashed
    assert volume_state(gapi, volume["uuid"]) == "idle"
    clean, report = fsck_clean(image_of(guest_server, volume["uuid"]))
    assert clean, report
