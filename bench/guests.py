"""Figures of real guests (the ``qemu`` runtime; TCG on this host).

1. start → running: ``PUT /v1/instances/{uuid}/start`` of a stopped busybox instance
   until it answers ``running`` (the guest booted and mounted its volumes); and the
   ``boot_time_us`` volumed records (QEMU start → init ready).
2. stop → stopped: ``PUT /v1/instances/{uuid}/stop`` of a guest whose workload exits on
   SIGTERM, until it answers ``stopped`` (workload ended, volumes synced and unmounted,
   QEMU gone).
3. Cost of each extra volume: start → running with 0 and with 4 volumes.
4. Throughput: a guest writes ``--mb`` MB to its volume with ``dd … conv=fsync``, then
   reads it back after dropping its page cache; the host does the same with ``dd`` into
   a file in the same images directory (``conv=fsync``; read with ``iflag=direct``).
   Prints MB/s and the guest/host ratio.
5. Memory per idle guest: the resident set (VmRSS) of each QEMU process of ``--idle``
   idle guests (128 MB of guest RAM each).

Each latency is the median of ``--runs`` runs, one at a time. The server is ``volumed
serve`` in a temporary data directory, started and stopped here. Nothing is asserted.

Usage: ``.venv/bin/python bench/guests.py [--runs 3] [--mb 64] [--idle 2]``
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from attach import Server, expect_success

ROOT = Path(__file__).resolve().parent.parent
SLEEPER = "trap 'exit 0' TERM; while :; do sleep 1; done"


def new_volume(client: httpx.Client, size_mb: int) -> str:
    uuid: str = expect_success(
        client.post("/v1/volumes", json={"name": f"b{secrets.token_hex(4)}", "size_mb": size_mb})
    )[0]["uuid"]
    while client.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]["state"] != "available":
        time.sleep(0.05)
    return uuid


def new_instance(client: httpx.Client, script: str, volumes: list[str]) -> str:
    body = {
        "name": f"b{secrets.token_hex(4)}",
        "image": "busybox",
        "args": ["sh", "-c", script],
        "volumes": [{"uuid": v, "at": f"/v{n}"} for n, v in enumerate(volumes)],
    }
    uuid: str = expect_success(client.post("/v1/instances", json=body), "instances")[0]["uuid"]
    return uuid


def timed(client: httpx.Client, method: str, path: str, body: Any, want: str) -> float:
    began = time.perf_counter()
    item = expect_success(client.request(method, path, json=body), "instances")[0]
    elapsed = time.perf_counter() - began
    if item.get("state") != want:
        raise RuntimeError(f"expected {want}: {item}")
    return elapsed


def instance(client: httpx.Client, uuid: str) -> dict[str, Any]:
    item: dict[str, Any] = client.get(f"/v1/instances/{uuid}").json()["data"]["instances"][0]
    return item


def start_stop(client: httpx.Client, volumes: list[str]) -> tuple[float, float, float]:
    """(start→running s, boot_time s, stop→stopped s) of one guest."""
    uuid = new_instance(client, SLEEPER, volumes)
    start = timed(client, "PUT", f"/v1/instances/{uuid}/start", {}, "running")
    boot = instance(client, uuid)["boot_time_us"] / 1e6
    stop = timed(client, "PUT", f"/v1/instances/{uuid}/stop", {}, "stopped")
    client.delete(f"/v1/instances/{uuid}")
    return start, boot, stop


def run_to_end(client: httpx.Client, script: str, volumes: list[str]) -> str:
    """Run ``script`` in a guest until it exits; return its console output."""
    uuid = new_instance(client, script, volumes)
    timed(client, "PUT", f"/v1/instances/{uuid}/start", {}, "running")
    while instance(client, uuid)["state"] != "stopped":
        client.get(f"/v1/instances/{uuid}/wait", params={"state": "stopped", "timeout_s": 300})

    log = client.get(f"/v1/instances/{uuid}/log", params={"limit": 1_000_000}).json()
    client.delete(f"/v1/instances/{uuid}")
    return base64.b64decode(log["data"]["instances"][0]["output"]).decode(errors="replace")


def dd_rate(output: str) -> float:
    """MB/s from dd's summary (bytes and seconds, so busybox and coreutils agree)."""
    found = re.findall(r"(\d+) bytes .*? copied, ([\d.]+) s", output)
    if not found:
        raise RuntimeError(f"no dd summary in: {output[-500:]}")
    size, seconds = found[-1]
    return int(size) / 1e6 / float(seconds)


def host_dd(directory: Path, mb: int) -> tuple[float, float]:
    scratch = directory / "bench-host-dd.bin"
    try:
        wrote = subprocess.run(
            ["dd", "if=/dev/zero", f"of={scratch}", "bs=1M", f"count={mb}", "conv=fsync"],
            capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
        read = subprocess.run(
            ["dd", f"if={scratch}", "of=/dev/null", "bs=1M", "iflag=direct"],
            capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
    finally:
        scratch.unlink(missing_ok=True)
    return dd_rate(wrote), dd_rate(read)


def qemu_rss_mb(data_dir: Path) -> list[float]:
    sizes = []
    for pid_file in data_dir.glob("guests/*/*/qemu.pid"):
        pid = pid_file.read_text().split()[0]
        status = Path(f"/proc/{pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        sizes.append(kb / 1024)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--idle", type=int, default=2)
    args = parser.parse_args()
    token = "bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="volumed-bench-guests-") as tmp:
        data = Path(tmp) / "data"
        server = Server(data, token, Path(tmp) / "server.log")
        server.env.update(
            VOLUMED_RUNTIME="qemu",
            VOLUMED_GUEST_ASSETS_DIR=str(ROOT / ".cache" / "guest"),
            VOLUMED_VOLUMES_PER_INSTANCE="4",
            VOLUMED_GUEST_BOOT_TIMEOUT_S="600",
        )
        server.start()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=900) as client:
                report(client, data, args)
        finally:
            server.stop()
            for pid_file in data.glob("guests/*/*/qemu.pid"):
                os.kill(int(pid_file.read_text().split()[0]), 9)


def report(client: httpx.Client, data: Path, args: argparse.Namespace) -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores; TCG)")
    bare = [start_stop(client, []) for _ in range(args.runs)]
    four_volumes = [new_volume(client, 16) for _ in range(4)]
    four = [start_stop(client, four_volumes) for _ in range(args.runs)]
    med = statistics.median
    print(f"start -> running, 0 volumes: median {med(r[0] for r in bare):.2f} s "
          f"(boot_time_us {med(r[1] for r in bare):.2f} s), runs {args.runs}")  # fmt: skip
    print(f"stop -> stopped: median {med(r[2] for r in bare):.2f} s")
    extra = (med(r[0] for r in four) - med(r[0] for r in bare)) / 4
    print(f"start -> running, 4 volumes: median {med(r[0] for r in four):.2f} s "
          f"-> {extra * 1000:+.0f} ms per extra volume")  # fmt: skip

    volume = new_volume(client, args.mb + 32)
    # busybox dd prints no rate and busybox date no %N: time with /proc/uptime (10 ms).
    script = (
        'now() { read -r u _ < /proc/uptime; echo "${u%.*}${u#*.}"; }; '
        "s=$(now); "
        f"dd if=/dev/zero of=/v0/f bs=1M count={args.mb} conv=fsync 2>/dev/null; "
        "echo write-cs=$(($(now)-s)); "
        "echo 3 > /proc/sys/vm/drop_caches; s=$(now); "
        "dd if=/v0/f of=/dev/null bs=1M 2>/dev/null; echo read-cs=$(($(now)-s))"
    )
    output = run_to_end(client, script, [volume])
    timings = dict(re.findall(r"(write|read)-cs=(\d+)", output))
    if len(timings) < 2:
        raise RuntimeError(f"no timings in the guest's output: {output[-800:]}")
    guest_write = args.mb * 1.048576 / max(int(timings["write"]) / 100, 0.01)
    guest_read = args.mb * 1.048576 / max(int(timings["read"]) / 100, 0.01)
    host_write, host_read = host_dd(data / "images", args.mb)
    print(f"write {args.mb} MB: guest {guest_write:.0f} MB/s, host dd {host_write:.0f} MB/s, "
          f"ratio {guest_write / host_write:.2f}")  # fmt: skip
    print(f"read {args.mb} MB: guest {guest_read:.0f} MB/s, host dd {host_read:.0f} MB/s, "
          f"ratio {guest_read / host_read:.2f}")  # fmt: skip

    idle = [new_instance(client, SLEEPER, []) for _ in range(args.idle)]
    for uuid in idle:
        timed(client, "PUT", f"/v1/instances/{uuid}/start", {}, "running")
    time.sleep(2)  # let the guests settle into idle before measuring
    sizes = qemu_rss_mb(data)
    print(f"memory per idle guest (128 MB RAM): RSS {statistics.mean(sizes):.0f} MB "
          f"(min {min(sizes):.0f}, max {max(sizes):.0f}, {len(sizes)} guests)")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
