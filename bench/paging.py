"""Paging through 100,000 volumes with ``GET /v1/volumes?count=100``, and the server's
memory meanwhile.

1. ``volumed serve`` is started once on a fresh temporary data directory (it creates the
   schema and the ``default`` user) and stopped.
2. N (default 100,000) volume rows are inserted into its SQLite file in one transaction:
   ``available``, dynamic, 1 MB, creation times 1 µs apart, random v4 uuids. Rows only,
   no images: ``GET /v1/volumes`` reads rows and never an image (``free_mb`` is stored on
   the row), so images would cost 100,000 × mke2fs and ~40 GB of metadata for nothing
   this benchmark measures.
3. The server is started again and the listing is read to its end the way the SDK's
   ``list(page_size=100)`` reads it: ``count=100``, then ``count=101&from=<last uuid>``
   dropping the repeated first item, over one keep-alive connection. Each page is timed
   from request to parsed JSON. The server's RSS is sampled every 10 ms meanwhile;
   ``VmHWM`` (its peak RSS since it started) is read at the end.
4. The same listing through the SDK itself (``UnikraftCloud(...).volumes.list``), timed
   as a whole, with ``--sdk``.

Prints total time, pages, per-page min/median/p99/max, the mean of the first and of the
last 10 pages (they should not differ: each page is an index range scan), and memory.
Nothing is asserted.

5. With ``--whole``, instead of (3): one ``GET /v1/volumes`` without ``count``, the whole
   listing in one answer (streamed by the server page by page), timed to its last byte.

Usage: ``.venv/bin/python bench/paging.py [-n 100000] [--count 100] [--sdk] [--whole]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuid_lib
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
VOLUMED = [sys.executable, "-m", "volumed", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, token: str) -> None:
        self.data_dir = data_dir
        self.token = token
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "VOLUMED_DATA_DIR": str(self.data_dir),
            "VOLUMED_PORT": str(self.port),
            "VOLUMED_TOKEN": self.token,
            "VOLUMED_LOG_LEVEL": "warning",
            "VOLUMED_METRICS_PORT": "0",
            **self.extra_env,
        }
        log = open(self.data_dir.parent / "server.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            VOLUMED, env=env, stdout=log, stderr=log, start_new_session=True, cwd=REPO
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("volumed did not come up")

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.process = None

    def rss_kb(self, field: str = "VmRSS") -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0


def insert_rows(db_path: Path, n: int) -> float:
    """N volume rows of the ``default`` user, in one transaction; returns seconds."""
    started = time.perf_counter()
    db = sqlite3.connect(db_path, isolation_level=None)
    owner = db.execute("SELECT id FROM users WHERE name = 'default'").fetchone()[0]
    base_us = time.time_ns() // 1000 - n
    rows = (
        (
            str(uuid_lib.uuid4()),
            owner,
            f"bench-{i:06d}",
            "available",
            1,
            1,
            base_us + i,
            "dynamic",
            "rwo",
            0,
            0,
            "ext4",
            "[]",
        )
        for i in range(n)
    )
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO volumes (uuid, owner_id, name, state, size_mb, persistent, created_at_us,"
        " quota_policy, access_mode, delete_lock, free_mb, filesystem, tags)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - started


def page_through(server: Server, count: int) -> tuple[list[float], int]:
    """Read the whole listing as the SDK does; returns per-page seconds and items."""
    times: list[float] = []
    seen = 0
    start: str | None = None
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        while True:
            params: dict[str, str | int] = {"count": count if start is None else count + 1}
            if start is not None:
                params["from"] = start
            began = time.perf_counter()
            page = client.get("/v1/volumes", params=params).json()["data"]["volumes"]
            times.append(time.perf_counter() - began)
            if start is not None and page and page[0]["uuid"] == start:
                page = page[1:]
            seen += len(page)
            if len(page) < count:
                return times, seen
            start = page[-1]["uuid"]


def whole_listing(server: Server) -> tuple[list[float], int]:
    """One ``GET /v1/volumes`` without ``count`` (streamed by the server), timed to its
    last byte; returns that time and the items."""
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        began = time.perf_counter()
        body = client.get("/v1/volumes").content
        elapsed = time.perf_counter() - began
    print(f"whole listing: {len(body) / 1e6:.1f} MB")
    return [elapsed], len(json.loads(body)["data"]["volumes"])


def sdk_listing(server: Server, count: int) -> tuple[float, int]:
    from unikraft_cloud import UnikraftCloud

    async def run() -> int:
        async with UnikraftCloud(token=server.token, base_url=server.url) as ukc:
            return len(await ukc.volumes.list(page_size=count))

    began = time.perf_counter()
    found = asyncio.run(run())
    return time.perf_counter() - began, found


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="volumes (default 100000)")
    parser.add_argument("--count", type=int, default=100, help="page size (default 100)")
    parser.add_argument("--sdk", action="store_true", help="also list through the SDK")
    parser.add_argument(
        "--whole", action="store_true", help="one GET without count instead of paging"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="volumed-bench-paging-") as tmp:
        server = Server(Path(tmp) / "data", "bench-" + secrets.token_hex(16))
        server.start()
        server.stop()
        inserted_s = insert_rows(server.data_dir / "volumed.db", args.n)
        print(f"inserted {args.n} rows in {inserted_s:.2f} s")
        server.start()
        try:
            rss_before = server.rss_kb()
            samples: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(server.rss_kb())
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            began = time.perf_counter()
            if args.whole:
                times, seen = whole_listing(server)
            else:
                times, seen = page_through(server, args.count)
            total = time.perf_counter() - began
            done.set()
            sampler.join()
            hwm = server.rss_kb("VmHWM")
            sdk = sdk_listing(server, args.count) if args.sdk else None
            rss_after_sdk = server.rss_kb() if args.sdk else None
        finally:
            server.stop()

    ordered = sorted(times)
    print(f"listed {seen} volumes in {len(times)} pages of count={args.count}: {total:.2f} s")
    print(
        f"per page: min {ms(ordered[0])}, median {ms(statistics.median(times))}, "
        f"p99 {ms(ordered[int(len(ordered) * 0.99) - 1])}, max {ms(ordered[-1])}, "
        f"mean {ms(statistics.fmean(times))}"
    )
    print(
        f"first page {ms(times[0])}, last page {ms(times[-1])}; "
        f"mean of the first 10 pages {ms(statistics.fmean(times[:10]))}, "
        f"of the last 10 {ms(statistics.fmean(times[-10:]))}"
    )
    print(
        f"server RSS: {rss_before / 1024:.1f} MiB before, peak sampled "
        f"{max(samples) / 1024:.1f} MiB while paging, VmHWM {hwm / 1024:.1f} MiB"
    )
    if sdk is not None:
        print(
            f"SDK list(page_size={args.count}): {sdk[1]} volumes in {sdk[0]:.2f} s; "
            f"server RSS after it {(rss_after_sdk or 0) / 1024:.1f} MiB"
        )


if __name__ == "__main__":
    main()
