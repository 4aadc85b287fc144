"""Server memory during and after an import of many small entries.

One server (``tests.conftest.make_server``: SQLite, a temporary data directory), one
volume with inodes for every entry (ext4's 16 KiB per inode, plus 64 MB), and one
``PUT /volumed/v1/volumes/{uuid}/import`` of a tar generated on the fly: ``--entries``
empty files, 1,000 per directory (so about 0.1 % directories). The server's ``VmRSS`` is
read before, sampled every 5 ms during, and read 2 s after the import.

Usage: ``.venv/bin/python bench/import_entries.py [--entries 200000]`` (the issue's case is
``--entries 2000000``: a 32 GB sparse image and a few minutes of ``mke2fs -d``).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_server, wait_for_state  # noqa: E402

PER_DIR = 1000


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def archive(entries: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    for n in range(entries):
        if n % PER_DIR == 0:
            info = tarfile.TarInfo(f"d{n // PER_DIR:05d}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            batch.append(info.tobuf(format=tarfile.GNU_FORMAT))
        batch.append(tarfile.TarInfo(f"d{n // PER_DIR:05d}/f{n:07d}").tobuf())
        if len(batch) >= 2048:
            yield b"".join(batch)
            batch = []
    batch.append(bytes(1024))
    yield b"".join(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    size_mb = args.entries * 16 // 1024 + 64
    with tempfile.TemporaryDirectory(prefix="volumed-bench-", dir=ROOT) as tmp:
        live = make_server(Path(tmp), VOLUMED_METRICS_PORT=0, VOLUMED_LOG_LEVEL="warning")
        assert live.process is not None
        pid = live.process.pid
        try:
            with live.client() as api:
                api.timeout = 3600
                made = api.post("/v1/volumes", json={"size_mb": size_mb}).json()
                uuid = made["data"]["volumes"][0]["uuid"]
                wait_for_state(api, uuid, timeout=600)
                before = rss_mib(pid)
                peak = before
                done = threading.Event()

                def sample() -> None:
                    nonlocal peak
                    while not done.wait(0.005):
                        peak = max(peak, rss_mib(pid))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                started = time.perf_counter()
                answer = api.put(
                    f"/volumed/v1/volumes/{uuid}/import", content=archive(args.entries)
                ).json()
                elapsed = time.perf_counter() - started
                done.set()
                sampler.join()
                item = answer["data"]["volumes"][0]
                if "error" in item:
                    raise SystemExit(f"import failed: {item['message']}")
                time.sleep(2)
                after = rss_mib(pid)
            print(f"# import of {args.entries:,} empty files into a {size_mb} MB volume")
            print(f"{'entries':>10} {'seconds':>8} {'entries/s':>10} {'RSS before':>11} "
                  f"{'peak':>7} {'after':>7}")  # fmt: skip
            print(
                f"{args.entries:>10,} {elapsed:>8.1f} {args.entries / elapsed:>10,.0f} "
                f"{before:>9.0f} M {peak:>5.0f} M {after:>5.0f} M"
            )
        finally:
            live.stop()


if __name__ == "__main__":
    main()
