"""Create-to-available of several volumed versions side by side, under the same load.

Each ``--variant NAME=SRC`` starts its own ``volumed serve`` with ``PYTHONPATH=SRC`` (all
of them at once, each on its own data directory). Every iteration creates one 100 MB
static volume on each server in turn (timed as ``run_create.py`` times it: from before the
POST to the first answer that says ``available``), deletes it, then times the bare data
plane of issue 15 once (truncate + mke2fs + fallocate + fsync of the file and its
directory). So every sample of every variant, and of the bare data plane, sees the same
momentary load: on a shared machine whose load keeps changing, that compares versions
where ``run_create.py`` in turn cannot. Prints median, p10 and minimum of each, and the
ratios to the bare data plane (median over median, p10 over p10). Nothing is asserted.

Usage: ``.venv/bin/python bench/create_paired.py --variant before=/tmp/before/src
--variant after=src [-n 150]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_create  # noqa: E402  (a sibling script, not a package)


def p10(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 10]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=SRC_DIR")
    parser.add_argument("-n", "--iterations", type=int, default=150, help="per variant [150]")
    parser.add_argument("--warmup", type=int, default=2, help="discarded iterations [2]")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    tmp = Path(tempfile.mkdtemp(prefix="volumed-bench-paired-"))
    (tmp / "bare").mkdir()
    servers: dict[str, tuple[run_create.Server, httpx.Client]] = {}
    try:
        print(run_create.environment())
        for i, (name, src) in enumerate(variants.items()):
            token = "bench-" + secrets.token_hex(16)
            server = run_create.Server(tmp / f"data-{i}", token, tmp / f"volumed-{i}.log")
            server.env["PYTHONPATH"] = str(Path(src).resolve())
            server.start()
            headers = {"Authorization": f"Bearer {token}"}
            client = httpx.Client(base_url=server.url, headers=headers, timeout=60)
            servers[name] = (server, client)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        bare: list[float] = []
        for i in range(args.warmup + args.iterations):
            for name, (_, client) in servers.items():
                uuid, _, available, _ = run_create.create_to_available(client, 100)
                client.delete(f"/v1/volumes/{uuid}")
                if i >= args.warmup:
                    samples[name].append(available)
            elapsed = run_create.bare_format(tmp / "bare", "x.img", 100, reserve=True, sync=True)
            (tmp / "bare" / "x.img").unlink()
            if i >= args.warmup:
                bare.append(elapsed)
        load1, load5, _ = os.getloadavg()
        print(f"\n{args.iterations} iterations, interleaved; load avg now {load1:.2f}/{load5:.2f}")
        bare_median, bare_p10 = statistics.median(bare), p10(bare)
        print(f"{'ms':<44} {'median':>7} {'p10':>7} {'min':>7} {'ratio':>6} {'p10 r.':>6}")
        label = "bare truncate + mke2fs + fallocate + fsync"
        print(f"{label:<44} {bare_median:>7.2f} {bare_p10:>7.2f} {min(bare):>7.2f}")
        for name, xs in samples.items():
            median = statistics.median(xs)
            print(
                f"{name + ' create-to-available':<44} {median:>7.2f} {p10(xs):>7.2f} "
                f"{min(xs):>7.2f} {median / bare_median:>6.2f} {p10(xs) / bare_p10:>6.2f}"
            )
        return 0
    finally:
        for server, client in servers.values():
            client.close()
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
