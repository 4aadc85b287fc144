"""Helpers of the guest tests: volumes, guests running a shell script, waits, logs."""

from __future__ import annotations

import base64
import secrets
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import REPO, LiveServer, make_server, wait_for_state

T = TypeVar("T")

BOOT_TIMEOUT_S = 240
"""Generous: TCG boots take 2 s on an idle machine, far more on a loaded one."""


def qemu_server(tmp: Path, **env: Any) -> LiveServer:
    return make_server(
        tmp,
        VOLUMED_RUNTIME="qemu",
        VOLUMED_GUEST_ASSETS_DIR=REPO / ".cache" / "guest",
        VOLUMED_GUEST_BOOT_TIMEOUT_S=BOOT_TIMEOUT_S,
        VOLUMED_METRICS_PORT=0,
        **env,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def new_volume(api: httpx.Client, size_mb: int = 16, **extra: Any) -> dict[str, Any]:
    body = {"name": unique("vol"), "size_mb": size_mb, **extra}
    made = api.post("/v1/volumes", json=body).json()["data"]["volumes"][0]
    assert made["status"] == "success", made
    volume = wait_for_state(api, made["uuid"])
    assert volume["state"] == "available", volume
    return volume


def guest(
    api: httpx.Client,
    script: str | None,
    volumes: list[dict[str, Any]],
    *,
    env: dict[str, str] | None = None,
    autostart: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Create (and by default start) a busybox instance that runs ``sh -c script`` (None:
    the image's own command, or ``args`` in ``extra``)."""
    body = {
        "name": unique("g"),
        "image": "busybox",
        **({} if script is None else {"args": ["sh", "-c", script]}),
        "env": env or {},
        "volumes": volumes,
        "autostart": autostart,
        **extra,
    }
    item: dict[str, Any] = api.post("/v1/instances", json=body).json()["data"]["instances"][0]
    return item


def wait_state(api: httpx.Client, uuid: str, state: str) -> dict[str, Any]:
    waited = api.get(
        f"/v1/instances/{uuid}/wait", params={"state": state, "timeout_s": BOOT_TIMEOUT_S}
    ).json()["data"]["instances"][0]
    assert waited["status"] == "success", waited
    return instance(api, uuid)


def instance(api: httpx.Client, uuid: str) -> dict[str, Any]:
    item: dict[str, Any] = api.get(f"/v1/instances/{uuid}").json()["data"]["instances"][0]
    return item


def console(api: httpx.Client, uuid: str) -> str:
    item = api.get(f"/v1/instances/{uuid}/log", params={"limit": 1_000_000}).json()
    return base64.b64decode(item["data"]["instances"][0]["output"]).decode(errors="replace")


def wait_console(api: httpx.Client, uuid: str, text: str) -> str:
    """Until the console shows ``text`` (a workload saying it is ready: no wait
    primitive exists for what a guest prints)."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        output = console(api, uuid)
        if text in output or time.monotonic() > deadline:
            assert text in output, output
            return output
        time.sleep(0.1)


def image_of(server: LiveServer, volume_uuid: str) -> Path:
    return server.data_dir / "images" / f"{volume_uuid}.img"


def fsck_clean(image: Path) -> tuple[bool, str]:
    done = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    return done.returncode == 0, done.stdout + done.stderr


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` at once (guests boot concurrently) and return their results."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]
