"""Guests with replicas (PostgreSQL): a guest runs on the replica that started it; a
stop, delete or logs request reaching another replica is carried out by the owner, and a
replica gone past its lease has its instances stopped by the platform."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, kill_guests
from tests.guests.guest_helpers import (
    BOOT_TIMEOUT_S,
    console,
    guest,
    new_volume,
    wait_console,
    wait_state,
)
from tests.replicas.conftest import start_replicas

pytestmark = pytest.mark.postgresql_only

PLATFORM = 4
USER_CLEAN = 15


def test_a_guest_started_through_one_replica_is_stopped_through_the_other(
    tmp_path: Path,
) -> None:
    a, b = start_replicas(
        tmp_path,
        2,
        VOLUMED_RUNTIME="qemu",
        VOLUMED_GUEST_ASSETS_DIR=REPO / ".cache" / "guest",
        VOLUMED_GUEST_BOOT_TIMEOUT_S=BOOT_TIMEOUT_S,
        VOLUMED_WORKER_LEASE_S=4,
    )
    try:
        with a.client() as ca, b.client() as cb:
            ca.timeout = cb.timeout = httpx.Timeout(300)
            script = "trap 'echo bye; exit 0' TERM; echo armed; while :; do sleep 1; done"
            first = guest(ca, script, [{"uuid": new_volume(ca)["uuid"], "at": "/d"}])
            second = guest(ca, script, [{"uuid": new_volume(ca)["uuid"], "at": "/d"}])
            assert first["state"] == second["state"] == "running", (first, second)
            wait_console(cb, first["uuid"], "armed")  # logs of A's guest, read through B

            stopped = cb.put(f"/v1/instances/{first['uuid']}/stop", json={}).json()
            item = stopped["data"]["instances"][0]
            assert item["status"] == "success" and item["state"] == "stopped", stopped
            done = wait_state(cb, first["uuid"], "stopped")
            assert done["stop_reason"] == USER_CLEAN, done
            assert "bye" in console(cb, first["uuid"])

            # A dies; once its lease has ended B records its guest stopped by the platform.
            a.kill()
            ended = cb.get(
                f"/v1/instances/{second['uuid']}/wait",
                params={"state": "stopped", "timeout_s": 60},
            ).json()["data"]["instances"][0]
            assert ended["status"] == "success", ended
            gone = cb.get(f"/v1/instances/{second['uuid']}").json()["data"]["instances"][0]
            assert gone["stop_reason"] == PLATFORM, gone
            volume = gone["volumes"][0]["uuid"]
            state = cb.get(f"/v1/volumes/{volume}").json()["data"]["volumes"][0]["state"]
            assert state == "idle"
    finally:
        for live in (a, b):
            if live.process is not None and live.process.poll() is None:
                live.kill()
        kill_guests(a.data_dir)
