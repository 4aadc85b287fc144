"""What power-loss durability costs: volume creates per second through the API with
``VOLUMED_SQLITE_SYNCHRONOUS=FULL`` (the default) and ``NORMAL``.

Each setting gets a fresh server on a temporary data directory; ``--clients`` threads post
``POST /v1/volumes`` (1 MB, dynamic) for ``--duration`` seconds. Prints creates/s and the
ratio. Nothing is asserted.

Usage: ``.venv/bin/python bench/durability.py [--duration 5] [--clients 8]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_server  # noqa: E402


def measure(synchronous: str, duration: float, clients: int) -> float:
    with tempfile.TemporaryDirectory(prefix="volumed-durability-") as tmp:
        live = make_server(
            Path(tmp), VOLUMED_SQLITE_SYNCHRONOUS=synchronous, VOLUMED_METRICS_PORT=0
        )
        done = [0] * clients
        stop = time.monotonic() + duration

        def client(n: int) -> None:
            with live.client() as api:
                while time.monotonic() < stop:
                    body = {"size_mb": 1, "quota_policy": "dynamic"}
                    item = api.post("/v1/volumes", json=body).json()["data"]["volumes"][0]
                    done[n] += item["status"] == "success"

        try:
            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            live.kill()
        return sum(done) / duration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rates = {s: measure(s, args.duration, args.clients) for s in ("FULL", "NORMAL")}
    for setting, rate in rates.items():
        print(f"sqlite_synchronous={setting:<7} {rate:8.0f} creates/s")
    print(f"FULL / NORMAL = {rates['FULL'] / rates['NORMAL']:.2f}")


if __name__ == "__main__":
    main()
