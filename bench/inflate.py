"""CPU to read a compressed tar: ``tarfile``'s own inflating (``r|*``, what imports used
before issue 11) against volumed's :class:`~volumed.storage._decompress.InflatingReader`
under ``tarfile`` (``r|``, what imports use now), in this process, no server.

The archive: one file of ``--mb`` (200) MB, a quarter random and the rest zeros, gzip
level 1. Each round reads every member's content through; prints the CPU seconds
(``time.process_time``) of each way.

Usage: ``.venv/bin/python bench/inflate.py [--mb 200] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from volumed.storage._decompress import InflatingReader  # noqa: E402


def archive(mb: int) -> bytes:
    data = os.urandom(mb * 2**20 // 4) + bytes(mb * 2**20 - mb * 2**20 // 4)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_through(tar: tarfile.TarFile) -> float:
    started = time.process_time()
    for member in tar:
        content = tar.extractfile(member)
        while content is not None and content.read(1 << 20):
            pass
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    blob = archive(args.mb)
    print(f"# {args.mb} MB file, {len(blob) / 1e6:.0f} MB gzip; CPU seconds to read it through")
    print(f"{'round':>5} {'tarfile r|*':>12} {'InflatingReader':>16}")
    for n in range(1, args.rounds + 1):
        own = read_through(tarfile.open(fileobj=io.BytesIO(blob), mode="r|*", bufsize=1 << 16))
        reader = InflatingReader(
            io.BytesIO(blob), max_bytes=1 << 50, cpu_s=1e9, stop=threading.Event()
        )
        ours = read_through(tarfile.open(fileobj=reader, mode="r|", bufsize=1 << 16))
        print(f"{n:>5} {own:>11.2f}s {ours:>15.2f}s")


if __name__ == "__main__":
    main()
