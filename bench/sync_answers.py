"""Time until the answer of the requests that start data-plane work (issue 12), and
time until the volume is usable.

One ``volumed serve`` on a fresh temporary data directory, default settings (except
``VOLUMED_QUOTA_MAX_VOLUMES``, raised so the throughput run never hits the quota):

1. ``create``: ``-n`` (default 100) sequential ``POST /v1/volumes {"size_mb":100}``
   (static policy: the image is fully reserved), after 3 discarded ones. Per create:
   the time until the answer, the state the answer carries, and the time until the
   volume is ``available`` (the answer itself, or ``GET`` every 2 ms after it).
2. ``throughput``: 16 clients (asyncio, one connection each) ``POST /v1/volumes
   {"size_mb":1,"quota_policy":"dynamic"}`` back to back for ``--duration`` seconds:
   answers/s, and creates/s counted until the last of them is ``available``.
3. ``clone``: a 1024 MB dynamic volume holding 400 MB of random data (written with
   ``debugfs -w``) is cloned ``--clones`` times (default 3) after ``sync``: the time
   until the answer of ``POST /v1/volumes/{uuid}/clone``, its state, and the time until
   the clone is ``available``.

Prints p50/p99 (nearest rank) and max, in ms. Nothing is asserted.

Usage: ``.venv/bin/python bench/sync_answers.py [-n 100] [--duration 5] [--clones 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
VOLUMED = [sys.executable, "-m", "volumed", "serve"]
POLL_S = 0.002


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def line(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<44} n {len(ms):>4}  p50 {rank(ms, 0.5):8.1f}  p99 {rank(ms, 0.99):8.1f}"
        f"  max {max(ms):8.1f} ms"
    )


async def until_available(api: httpx.AsyncClient, item: dict[str, object]) -> None:
    while item.get("state") != "available":
        if item.get("state") == "error":
            raise RuntimeError(f"volume {item.get('uuid')} is in error: {item.get('message')}")
        await asyncio.sleep(POLL_S)
        reply = await api.get(f"/v1/volumes/{item['uuid']}")
        item = reply.json()["data"]["volumes"][0]


async def timed(api: httpx.AsyncClient, path: str, body: object) -> tuple[float, float, str, str]:
    """(seconds until the answer, seconds until available, state in the answer, uuid)."""
    began = time.perf_counter()
    reply = await api.post(path, json=body)
    answered = time.perf_counter() - began
    item = reply.json()["data"]["volumes"][0]
    if item.get("status") != "success":
        raise RuntimeError(f"{path}: {item}")
    state = str(item.get("state"))
    await until_available(api, item)
    return answered, time.perf_counter() - began, state, str(item["uuid"])


async def creates(api: httpx.AsyncClient, n: int) -> None:
    answers, usable, states = [], [], collections.Counter[str]()
    for i in range(n + 3):
        answered, ready, state, _ = await timed(api, "/v1/volumes", {"size_mb": 100})
        if i >= 3:
            answers.append(answered)
            usable.append(ready)
            states[state] += 1
    print(line("create 100 MB static: until the answer", answers))
    print(line("create 100 MB static: until available", usable))
    print(f"{'':<44} states in the answers: {dict(states)}")


async def throughput(url: str, token: str, duration: float, clients: int) -> None:
    body = {"size_mb": 1, "quota_policy": "dynamic"}
    made: list[dict[str, object]] = []
    errors = 0
    began = time.perf_counter()
    stop_at = began + duration

    async def client() -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
            while time.perf_counter() < stop_at:
                item = (await api.post("/v1/volumes", json=body)).json()["data"]["volumes"][0]
                if item.get("status") == "success":
                    made.append(item)
                else:
                    errors += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    answered = time.perf_counter() - began
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
        for item in made:
            await until_available(api, item)
    usable = time.perf_counter() - began
    states = collections.Counter(str(item.get("state")) for item in made)
    print(
        f"creates, {clients} clients, 1 MB dynamic: {len(made)} in {answered:.1f} s = "
        f"{len(made) / answered:.0f} answers/s; all available after {usable:.1f} s = "
        f"{len(made) / usable:.0f} creates/s; failed items {errors}; states {dict(states)}"
    )


async def clones(api: httpx.AsyncClient, root: Path, runs: int) -> None:
    source = await api.post("/v1/volumes", json={"size_mb": 1024, "quota_policy": "dynamic"})
    item = source.json()["data"]["volumes"][0]
    await until_available(api, item)
    image = root / "data" / "images" / f"{item['uuid']}.img"
    data = root / "data.bin"
    with open(data, "wb") as out:
        for _ in range(400):
            out.write(os.urandom(2**20))
    subprocess.run(
        ["debugfs", "-w", "-R", f"write {data} /data.bin", str(image)],
        check=True,
        capture_output=True,
    )
    data.unlink()
    answers, usable, states = [], [], collections.Counter[str]()
    for _ in range(runs):
        subprocess.run(["sync"], check=True)
        path = f"/v1/volumes/{item['uuid']}/clone"
        answered, ready, state, clone = await timed(api, path, {})
        answers.append(answered)
        usable.append(ready)
        states[state] += 1
        # The source is busy until the clone's job has ended (before this change, a
        # moment after the clone turned available).
        await until_available(
            api, (await api.get(f"/v1/volumes/{item['uuid']}")).json()["data"]["volumes"][0]
        )
        await api.delete(f"/v1/volumes/{clone}")
    print(line("clone 1 GB holding 400 MB: until the answer", answers))
    print(line("clone 1 GB holding 400 MB: until available", usable))
    print(f"{'':<44} states in the answers: {dict(states)}")


async def bench(url: str, token: str, root: Path, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as api:
        await creates(api, args.n)
        await throughput(url, token, args.duration, 16)
        await clones(api, root, args.clones)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="timed creates [100]")
    parser.add_argument("--duration", type=float, default=5.0, help="throughput seconds [5]")
    parser.add_argument("--clones", type=int, default=3, help="timed clones [3]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="volumed-bench-sync-") as tmp:
        root = Path(tmp)
        port, token = free_port(), "bench-" + secrets.token_hex(16)
        env = {
            **os.environ,
            "VOLUMED_DATA_DIR": str(root / "data"),
            "VOLUMED_PORT": str(port),
            "VOLUMED_TOKEN": token,
            "VOLUMED_METRICS_PORT": "0",
            "VOLUMED_QUOTA_MAX_VOLUMES": os.environ.get("VOLUMED_QUOTA_MAX_VOLUMES", "1000000"),
        }
        with open(root / "server.log", "ab") as log:
            server = subprocess.Popen(
                VOLUMED, env=env, stdout=log, stderr=log, start_new_session=True, cwd=REPO
            )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("volumed did not come up")
                time.sleep(0.05)
            asyncio.run(bench(url, token, root, args))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
