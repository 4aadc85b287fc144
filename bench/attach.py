"""Attach/detach throughput and attach latency of volumed.

1. Cycles: one volume and one stopped instance; a single client (one keep-alive
   connection) runs ``PUT /v1/volumes/{uuid}/attach`` then ``PUT /v1/volumes/{uuid}/detach``
   back to back for ``--duration`` seconds. Prints attach+detach cycles per second and the
   median of each call.
2. Concurrency: ``--clients`` (default 32) volume/instance pairs; as many asyncio workers
   (httpx.AsyncClient, one connection each), each attaching and detaching its own pair for
   ``--duration`` seconds, all released together once every connection is open. Prints
   p50/p90/p99/max of ``PUT /v1/volumes/attach`` as the client sees it, the server's own
   ``op_time_us`` for it, and the aggregate cycles per second.

The server is ``volumed serve`` in a temporary data directory on loopback (default
settings: SQLite with ``synchronous=FULL``, so every acknowledged transition is on disk),
started and stopped by this script; the load runs in this separate process. Nothing is
asserted.

Usage: ``.venv/bin/python bench/attach.py [--duration 5] [--clients 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

VOLUMED = [sys.executable, "-m", "volumed", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``volumed serve`` in its own session, so the whole group can be stopped."""

    def __init__(self, data_dir: Path, token: str, log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "VOLUMED_TOKEN": token,
            "VOLUMED_DATA_DIR": str(data_dir),
            "VOLUMED_PORT": str(self.port),
            "VOLUMED_METRICS_PORT": str(free_port()),  # a busy one refuses to start
            "VOLUMED_LOG_LEVEL": "warning",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                VOLUMED, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"volumed exited early; see {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"volumed did not come up; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def expect_success(response: httpx.Response, key: str = "volumes") -> list[dict[str, Any]]:
    body = response.json()
    if response.status_code != 200 or body["status"] != "success":
        raise RuntimeError(f"unexpected answer: {response.status_code} {response.text[:500]}")
    items: list[dict[str, Any]] = body["data"][key]
    return items


def make_pairs(client: httpx.Client, count: int) -> list[tuple[str, str]]:
    """``count`` available 1 MB thin volumes and as many stopped instances."""
    tag = secrets.token_hex(3)
    vols = expect_success(
        client.post(
            "/v1/volumes",
            json=[
                {"name": f"b{tag}-{n}", "size_mb": 1, "quota_policy": "dynamic"}
                for n in range(count)
            ],
        )
    )
    insts = expect_success(
        client.post(
            "/v1/instances", json=[{"name": f"b{tag}-{n}", "image": "bench"} for n in range(count)]
        ),
        "instances",
    )
    wanted = {v["uuid"] for v in vols}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = expect_success(client.get("/v1/volumes"))
        if all(v["state"] == "available" for v in listed if v["uuid"] in wanted):
            return [(v["uuid"], i["uuid"]) for v, i in zip(vols, insts, strict=True)]
        time.sleep(0.05)
    raise RuntimeError("volumes were not formatted in time")


def quantile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def cycles(client: httpx.Client, volume: str, instance: str, duration: float) -> None:
    attach_ms: list[float] = []
    detach_ms: list[float] = []
    body = {"attach_to": {"uuid": instance}, "at": "/data"}
    deadline = time.monotonic() + duration
    began = time.perf_counter()
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        expect_success(client.put(f"/v1/volumes/{volume}/attach", json=body))
        t1 = time.perf_counter()
        expect_success(client.put(f"/v1/volumes/{volume}/detach"))
        t2 = time.perf_counter()
        attach_ms.append((t1 - t0) * 1000)
        detach_ms.append((t2 - t1) * 1000)
    elapsed = time.perf_counter() - began
    print(f"1. one pair, one client, {duration:.0f} s: {len(attach_ms)} attach+detach cycles")
    print(f"   {len(attach_ms) / elapsed:.0f} cycles/s")
    print(
        f"   median attach {statistics.median(attach_ms):.2f} ms, "
        f"median detach {statistics.median(detach_ms):.2f} ms"
    )


async def concurrent(url: str, token: str, pairs: list[tuple[str, str]], duration: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    attach_ms: list[float] = []
    server_us: list[int] = []
    count = 0
    # Clients are built and their connections opened before the clock starts: building
    # an httpx client costs tens of milliseconds of CPU (TLS context), and 32 of them made
    # inside the timed loop would show up as latency of the first attaches.
    clients = [httpx.AsyncClient(base_url=url, headers=headers, timeout=60) for _ in pairs]
    await asyncio.gather(*(c.get("/healthz") for c in clients))
    go = asyncio.Event()

    async def worker(client: httpx.AsyncClient, volume: str, instance: str) -> None:
        nonlocal count
        body = [{"uuid": volume, "attach_to": {"uuid": instance}, "at": "/data"}]
        await go.wait()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            response = await client.put("/v1/volumes/attach", json=body)
            attach_ms.append((time.perf_counter() - t0) * 1000)
            expect_success(response)
            server_us.append(int(response.json()["op_time_us"]))
            expect_success(await client.put(f"/v1/volumes/{volume}/detach"))
            count += 1

    tasks = [asyncio.create_task(worker(c, v, i)) for c, (v, i) in zip(clients, pairs, strict=True)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(c.aclose() for c in clients))
    ordered = sorted(attach_ms)
    inside = sorted(server_us)
    print(
        f"2. {len(pairs)} concurrent clients on distinct pairs, {duration:.0f} s: "
        f"{len(ordered)} attaches"
    )
    print(
        f"   PUT /v1/volumes/attach p50 {quantile(ordered, 0.50):.2f} ms, "
        f"p90 {quantile(ordered, 0.90):.2f} ms, p99 {quantile(ordered, 0.99):.2f} ms, "
        f"max {ordered[-1]:.2f} ms"
    )
    print(
        f"   (server op_time_us: p50 {quantile(inside, 0.50) / 1000:.2f} ms, "
        f"p99 {quantile(inside, 0.99) / 1000:.2f} ms; the rest is queueing)"
    )
    print(f"   aggregate {count / elapsed:.0f} attach+detach cycles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    print(
        f"volumed attach bench: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    token = "bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="volumed-bench-attach-") as tmp:
        server = Server(Path(tmp) / "data", token, Path(tmp) / "server.log")
        server.start()
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                (volume, instance), *_ = make_pairs(client, 1)
                cycles(client, volume, instance, args.duration)
                pairs = make_pairs(client, args.clients)
            asyncio.run(concurrent(server.url, token, pairs, args.duration))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
