"""Connection-holding attacks against the API: latency of a valid client while another
address holds idle connections, and what the guard (``volumed.edge.guard``) leaves it.

One ``volumed serve`` on a fresh data directory. For each attack size N, an attacker on
127.0.0.2 opens N connections that never send a byte, and reopens each one the server
closes, for the whole measurement; meanwhile a valid client on 127.0.0.1 sends
``--requests`` sequential ``GET /v1/volumes``, each on a new connection. Prints, per N, the
valid client's p50/p99/max latency and failures (timeouts, 5 s), and how many of the
attacker's connections the server closed meanwhile (each was reopened at once). Nothing is asserted.

Usage: ``.venv/bin/python bench/edge.py [--attacks 0,130,1000] [--requests 200]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ATTACKER = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Attacker(threading.Thread):
    """Holds ``count`` idle connections from ``ATTACKER``, reopening those closed."""

    def __init__(self, port: int, count: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.stop = threading.Event()
        self.reopened = 0

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((ATTACKER, 0))
        try:
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        selector.register(sock, selectors.EVENT_READ)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        while not self.stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except (ConnectionError, BlockingIOError):
                    data = b""
                if not data:  # closed by the server: take another one
                    selector.unregister(sock)
                    sock.close()
                    self._open(selector)
                    self.reopened += 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def measure(url: str, token: str, requests: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, headers=headers, timeout=5, limits=limits) as client:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                client.get("/v1/volumes").raise_for_status()
                latencies.append(time.perf_counter() - started)
            except httpx.HTTPError:
                failures += 1
    return latencies, failures


def start_server(tmp: Path, token: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "VOLUMED_TOKEN": token,
        "VOLUMED_DATA_DIR": str(tmp / "data"),
        "VOLUMED_PORT": str(port),
        "VOLUMED_METRICS_PORT": str(free_port()),
        "VOLUMED_LOG_LEVEL": "error",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "volumed", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "volumed.log", "wb"),  # noqa: SIM115 - the child keeps it
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("volumed did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="0,130,1000", help="attacker connections [0,130,1000]")
    parser.add_argument("--requests", type=int, default=200, help="valid requests per run [200]")
    args = parser.parse_args()
    token = "bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="volumed-edge-") as tmp:
        process, port = start_server(Path(tmp), token)
        try:
            print(
                f"{'attacker conns':>14} {'closed':>8} "
                f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'failed':>6}"
            )
            for count in (int(n) for n in args.attacks.split(",")):
                attacker = Attacker(port, count)
                attacker.start()
                time.sleep(1.0)  # let the attack settle (and the guard answer it)
                latencies, failures = measure(f"http://127.0.0.1:{port}", token, args.requests)
                attacker.stop.set()
                attacker.join()
                ms = sorted(x * 1000 for x in latencies) or [float("nan")]
                p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
                print(
                    f"{count:14} {attacker.reopened:8} {statistics.median(ms):7.1f}"
                    f" {p99:7.1f} {ms[-1]:7.1f} {failures:6}"
                )
        finally:
            process.terminate()
            process.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
