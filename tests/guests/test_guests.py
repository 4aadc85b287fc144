"""Real guests: a workload's files outlive it, ENOSPC stays in the guest, rox is shared
and read-only, exits and stops carry the SDK's stop reasons, and logs are kept."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import subprocess
import sys
import tarfile
from typing import Any

import httpx
import pytest

from tests.cli.conftest import run_cli
from tests.conftest import LiveServer
from tests.guests.guest_helpers import (
    console,
    fsck_clean,
    guest,
    image_of,
    in_parallel,
    new_volume,
    wait_console,
    wait_state,
)

# Runs in the SQLite pass only: the QEMU runtime is what these test; instance and volume
# transitions run on both stores in tests/api, and guests on PostgreSQL replicas in
# test_guest_replicas.py.
pytestmark = pytest.mark.store_independent

APP_EXIT = 3  # ---AK: the application exited
USER_CLEAN = 15  # -UPAK: user stop, the workload exited
FORCED_USER = 28  # FUP--: user stop, forced


def test_files_written_by_one_guest_are_read_by_the_next(
    gapi: httpx.Client, guest_server: LiveServer
) -> None:
    volume = new_volume(gapi)
    payload = secrets.token_hex(3000)
    writer = guest(
        gapi,
        'printf %s "$PAYLOAD" > /data/blob && sync',
        [{"uuid": volume["uuid"], "at": "/data"}],
        env={"PAYLOAD": payload},
    )
    # A workload this short may already have ended when the start answers.
    assert writer["state"] in ("running", "stopped"), writer
    done = wait_state(gapi, writer["uuid"], "stopped")
    assert (done["stop_reason"], done["exit_code"]) == (APP_EXIT, 0), done
    assert done["boot_time_us"] > 0
    assert gapi.get(f"/v1/volumes/{volume['uuid']}").json()["data"]["volumes"][0]["state"] == (
        "idle"
    )

    detached = gapi.put(
        f"/v1/volumes/{volume['uuid']}/detach", json={"from": writer["uuid"]}
    ).json()
    assert detached["status"] == "success", detached
    reader = guest(gapi, "cat /in/blob", [{"uuid": volume["uuid"], "at": "/in"}])
    wait_state(gapi, reader["uuid"], "stopped")
    assert payload in console(gapi, reader["uuid"])

    clean, report = fsck_clean(image_of(guest_server, volume["uuid"]))
    assert clean, report
    exported = subprocess.run(
        [sys.executable, "-m", "volumed", "volume", "export", volume["uuid"], "--output", "-"],
        env={"VOLUMED_URL": guest_server.url, "VOLUMED_TOKEN": guest_server.token},
        capture_output=True,
    )
    assert exported.returncode == 0, exported.stderr
    assert payload.encode() in exported.stdout


def test_a_full_volume_is_enospc_in_the_guest_only(
    gapi: httpx.Client, guest_server: LiveServer
) -> None:
    volume = new_volume(gapi, size_mb=8)
    filler = guest(
        gapi,
        "dd if=/dev/zero of=/data/fill bs=64k; echo dd-exit=$?; sync",
        [{"uuid": volume["uuid"], "at": "/data"}],
    )
    wait_state(gapi, filler["uuid"], "stopped")
    output = console(gapi, filler["uuid"])
    assert "No space left on device" in output and "dd-exit=1" in output, output
    after = gapi.get(f"/v1/volumes/{volume['uuid']}").json()["data"]["volumes"][0]
    assert after["state"] == "idle" and after["free_mb"] <= 1, after
    assert image_of(guest_server, volume["uuid"]).stat().st_size == 8 * 1_048_576


def test_rox_is_read_by_two_guests_at_once_and_never_written(gapi: httpx.Client) -> None:
    shared = new_volume(gapi, access_mode="rox")
    # A rox volume is filled before it is shared: here by importing a one-file archive.
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = len(b"shared-text\n")
        tar.addfile(info, io.BytesIO(b"shared-text\n"))
    imported = gapi.put(f"/volumed/v1/volumes/{shared['uuid']}/import", content=archive.getvalue())
    assert imported.status_code == 200, imported.text

    script = "cat /r/f; sleep 2; echo x > /r/f || echo write-refused"
    readers = in_parallel(
        *((lambda: guest(gapi, script, [{"uuid": shared["uuid"], "at": "/r"}])) for _ in range(2))
    )
    assert all(r["state"] == "running" for r in readers), readers
    for reader in readers:
        wait_state(gapi, reader["uuid"], "stopped")
        output = console(gapi, reader["uuid"])
        assert "shared-text" in output and "write-refused" in output, output


def test_exit_codes_and_a_drain_that_times_out(gapi: httpx.Client) -> None:
    exits, stubborn = in_parallel(
        lambda: guest(
            gapi,
            "echo cpus=$(grep -c ^processor /proc/cpuinfo); grep MemTotal /proc/meminfo; exit 3",
            [],
            vcpus=2,
            memory_mb=256,
        ),
        lambda: guest(gapi, "trap '' TERM; echo armed; while :; do sleep 1; done", []),
    )
    done = wait_state(gapi, exits["uuid"], "stopped")
    assert (done["stop_reason"], done["exit_code"], done["stop_code"]) == (APP_EXIT, 3, 0)
    output = console(gapi, exits["uuid"])
    assert "cpus=2" in output, output  # vcpus and memory_mb are the guest's
    total_kb = int(output.split("MemTotal:")[1].split()[0])
    assert 200_000 < total_kb <= 256 * 1024, output

    assert stubborn["state"] == "running", stubborn
    wait_console(gapi, stubborn["uuid"], "armed")
    stopped = gapi.put(
        f"/v1/instances/{stubborn['uuid']}/stop", json={"drain_timeout_ms": 500}
    ).json()
    assert stopped["data"]["instances"][0]["state"] == "stopped", stopped
    item = wait_state(gapi, stubborn["uuid"], "stopped")
    # The user asked, the workload ignored SIGTERM and was killed after the drain: the
    # kernel still unmounted cleanly (-UP-K), and there is no exit code.
    assert item["stop_reason"] == 13 and "exit_code" not in item, item


def test_a_clean_stop_and_a_forced_one(gapi: httpx.Client) -> None:
    polite, rude = in_parallel(
        lambda: guest(
            gapi, "trap 'echo bye; exit 5' TERM; echo armed; while :; do sleep 1; done", []
        ),
        lambda: guest(gapi, "while :; do sleep 1; done", []),
    )
    wait_console(gapi, polite["uuid"], "armed")  # SIGTERM before the trap would kill it
    in_parallel(
        lambda: gapi.put(f"/v1/instances/{polite['uuid']}/stop", json={}),
        lambda: gapi.put(f"/v1/instances/{rude['uuid']}/stop", json={"force": True}),
    )
    clean = wait_state(gapi, polite["uuid"], "stopped")
    assert (clean["stop_reason"], clean["exit_code"]) == (USER_CLEAN, 5), clean
    assert "bye" in console(gapi, polite["uuid"])
    forced = wait_state(gapi, rude["uuid"], "stopped")
    assert forced["stop_reason"] == FORCED_USER and "exit_code" not in forced, forced


def test_an_unknown_image_and_too_much_memory_are_per_item_errors(gapi: httpx.Client) -> None:
    unknown = guest(gapi, "true", [], image="no-such-image:1")
    assert "not known" in unknown["message"], unknown
    huge = guest(gapi, "true", [], memory_mb=60_000)
    assert "cannot hold" in huge["message"], huge


def test_logs_through_the_sdk_and_the_cli(gapi: httpx.Client, guest_server: LiveServer) -> None:
    from unikraft_cloud import UnikraftCloud

    printer = guest(gapi, "echo first-line; echo second-line; sleep 1; echo last-line", [])
    assert printer["state"] in ("running", "stopped"), printer
    # --follow prints until the instance stops, then exits by itself.
    followed = run_cli("instance", "logs", printer["name"], "--follow", server=guest_server)
    assert followed.code == 0, followed.err
    assert "first-line\r\nsecond-line\r\nlast-line\r\n" in followed.out, followed.out

    async def read() -> tuple[Any, Any]:
        async with UnikraftCloud(token=guest_server.token, base_url=guest_server.url) as ukc:
            whole = await ukc.instances.get(uuid=printer["uuid"]).logs()
            tail = await ukc.instances.get(uuid=printer["uuid"]).logs(offset=-13, limit=5)
            return whole, tail

    whole, tail = asyncio.run(read())
    text = base64.b64decode(whole.output).decode()
    assert text == followed.out
    end = whole.available.end
    assert whole.available.start == 0 and end == len(text.encode())
    assert (tail.range.start, tail.range.end) == (end - 13, end - 8)
    assert base64.b64decode(tail.output) == text.encode()[end - 13 : end - 8]
    last = run_cli("instance", "logs", printer["uuid"], "--tail", "13", server=guest_server)
    assert last.code == 0 and last.out == text[-13:], last


def test_a_volume_that_does_not_mount_fails_the_start_per_item(
    gapi: httpx.Client, guest_server: LiveServer
) -> None:
    volume = new_volume(gapi)
    with image_of(guest_server, volume["uuid"]).open("r+b") as image:
        image.write(b"\0" * 8192)  # no superblock: not ext4 any more
    made = guest(gapi, "true", [{"uuid": volume["uuid"], "at": "/data"}])
    assert made["state"] == "stopped", made
    assert "cannot mount the volume at /data" in made["message"], made
    after = gapi.get(f"/v1/volumes/{volume['uuid']}").json()["data"]["volumes"][0]
    assert after["state"] == "idle", after
