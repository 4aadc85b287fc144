"""What a create and a quota read cost as a tenant's volume count grows.

For each N in ``--counts`` (default 0, 10,000, 100,000):

1. A fresh data directory; ``volumed serve`` starts once (schema, ``default`` user) and
   stops; N volume rows of ``default`` are inserted into the SQLite file in one
   transaction (rows only, as in ``paging.py``: neither request reads an image).
2. The server starts again. ``--requests`` (default 200) sequential
   ``POST /v1/volumes {"size_mb":1,"quota_policy":"dynamic","name":...}`` over one
   keep-alive connection, each timed from request to parsed JSON; then the same number
   of ``GET /v1/users/quotas``. The server's own ``op_time_us`` is collected beside the
   client's time. ``VOLUMED_JOB_WAIT_S=0`` (``VOLUMED_SYNC_WAIT_S`` before issue 12 renamed
   it; both are set, so older commits measure the same) keeps the POST an
   acknowledgement, so the background format is not part of what is timed.

Prints, per N, median and p90 in ms of both requests, and the ratio of each median to
the N=0 median: flat means ~1.0. Nothing is asserted.

Usage: ``.venv/bin/python bench/tenant_scale.py [--counts 0,10000,100000] [--requests 200]``
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paging import Server, insert_rows  # noqa: E402


def timed(client: httpx.Client, method: str, path: str, body: object = None) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.request(method, path, json=body)
    payload = response.json()
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or payload.get("status") != "success":
        raise RuntimeError(f"{method} {path}: {response.status_code} {payload}")
    return elapsed, int(payload.get("op_time_us", 0))


def ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


def measure(count: int, requests: int) -> dict[str, tuple[float, float, float]]:
    token = secrets.token_hex(24)
    with tempfile.TemporaryDirectory(prefix="volumed-scale-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = Server(data_dir, token)
        server.extra_env = {
            "VOLUMED_JOB_WAIT_S": "0",
            "VOLUMED_SYNC_WAIT_S": "0",
            "VOLUMED_QUOTA_MAX_VOLUMES": "1000000",
        }
        server.start()
        server.stop()
        if count:
            insert_rows(data_dir / "volumed.db", count)
        server.start()
        try:
            headers = {"Authorization": f"Bearer {token}"}
            results: dict[str, tuple[float, float, float]] = {}
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                for label, method, path, make_body in (
                    (
                        "POST /v1/volumes",
                        "POST",
                        "/v1/volumes",
                        lambda i: {"name": f"s{i}", "size_mb": 1, "quota_policy": "dynamic"},
                    ),
                    ("GET /v1/users/quotas", "GET", "/v1/users/quotas", lambda i: None),
                ):
                    times, ops = [], []
                    for i in range(requests):
                        elapsed, op_us = timed(client, method, path, make_body(i))
                        times.append(elapsed)
                        ops.append(op_us)
                    median, p90 = ms(times)
                    results[label] = (median, p90, statistics.median(ops) / 1000)
            return results
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="0,10000,100000")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    base: dict[str, float] = {}
    for count in counts:
        for label, (median, p90, op_ms) in measure(count, args.requests).items():
            base.setdefault(label, median)
            print(
                f"N={count:>7,}  {label:<22} median {median:6.2f} ms  p90 {p90:6.2f} ms  "
                f"server op {op_ms:6.2f} ms  ratio to N={counts[0]}: {median / base[label]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
