"""Export throughput and memory of volumed, next to ``debugfs rdump`` + ``tar -c``.

Data sets, each written straight into a 320 MB volume's image with ``mke2fs -d`` (as a
guest would have left it; import is not measured here, see ``bench/transfer.py``):

* ``200 MB file``: one file of random bytes;
* ``1,000 small files``: 1 to 16 KiB each, random, in 50 directories;
* ``10 GB sparse``: one 10 GiB file holding 1 MiB of data in 16 places.

For each, N runs (default 3) of:

1. ``GET /volumed/v1/volumes/{uuid}/export`` through httpx in this process, the body
   read and dropped: the server's own speed; the server's resident set is sampled
   every 5 ms (``VmRSS``) and its peak printed;
2. ``volumed volume export NAME --output DIR``: the CLI unpacks the archive;
3. the bare tools on a copy of the image: ``debugfs -R "rdump / DIR"`` then
   ``tar -c`` of DIR into /dev/null (what export did before it read images itself),
   and the bytes that rdump wrote on the host.

MB/s is the data set's content (10^6 bytes, a sparse file's data only) divided by the
wall time.

Usage: ``.venv/bin/python bench/export.py [-n 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MIB = 2**20
SIZE_MB = 320


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_data(base: Path) -> dict[str, tuple[Path, int]]:
    """Each data set's directory and its content bytes."""
    rng = random.Random(5)
    big = base / "big"
    big.mkdir()
    with open(big / "blob.bin", "wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(1_000_000))
    tree = base / "tree"
    total = 0
    for n in range(1000):
        sub = tree / f"dir{n % 50:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 16384)
        (sub / f"file{n:04d}.dat").write_bytes(os.urandom(size))
        total += size
    sparse = base / "sparse"
    sparse.mkdir()
    with open(sparse / "disk.raw", "wb") as handle:
        for n in range(16):
            handle.seek(n * (10 * 2**30 // 16))
            handle.write(os.urandom(MIB // 16))
        handle.truncate(10 * 2**30)
    return {
        "200 MB file": (big, 200_000_000),
        "1,000 small files": (tree, total),
        "10 GB sparse": (sparse, MIB),
    }


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
    return time.perf_counter() - started


def api_export(api: httpx.Client, uuid: str) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    with api.stream("GET", f"/volumed/v1/volumes/{uuid}/export") as answer:
        if not answer.headers.get("content-type", "").startswith("application/x-tar"):
            raise SystemExit(f"export failed: {answer.read()!r}")
        for chunk in answer.iter_raw(MIB):
            total += len(chunk)
    return time.perf_counter() - started, total


def bare_export(image: Path, work: Path) -> tuple[float, int]:
    """``debugfs rdump`` + ``tar -c``: the seconds and the bytes written on the host."""
    out = work / "rdump"
    out.mkdir()
    started = time.perf_counter()
    subprocess.run(["debugfs", "-R", f"rdump / {out}", str(image)], check=True, capture_output=True)
    with open(os.devnull, "wb") as sink:
        subprocess.run(["tar", "-cf", "-", "-C", str(out), "."], check=True, stdout=sink)
    elapsed = time.perf_counter() - started
    used = int(subprocess.run(["du", "-sb", str(out)], capture_output=True, text=True, check=True)
               .stdout.split()[0])  # fmt: skip
    shutil.rmtree(out)
    return elapsed, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="volumed-bench-", dir=ROOT))
    data_dir = work / "data"
    port = free_port()
    token = "bench-" + secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VOLUMED_", "UKC_"))},
        "VOLUMED_DATA_DIR": str(data_dir),
        "VOLUMED_PORT": str(port),
        "VOLUMED_METRICS_PORT": str(free_port()),
        "VOLUMED_TOKEN": token,
        "VOLUMED_URL": f"http://127.0.0.1:{port}",
        "VOLUMED_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [PYTHON, "-m", "volumed", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    volumed = [PYTHON, "-m", "volumed"]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*volumed, "volume", "ls"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {(work / 'server.log').read_text()}")
            time.sleep(0.1)
        sets = make_data(work)
        print(f"# volumed export vs debugfs rdump + tar -c, {args.n} run(s), median")
        print(f"# {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs")
        print(
            f"{'data':18} {'MB':>6} {'API exp.':>10} {'CLI exp.':>10} {'rdump+tar':>10} "
            f"{'archive MB':>10} {'RSS MiB':>12} {'rdump wrote MB':>14}"
        )
        with httpx.Client(base_url=env["VOLUMED_URL"], headers=headers, timeout=600) as api:
            for label, (source, size) in sets.items():
                name = "bench-" + secrets.token_hex(3)
                run([*volumed, "volume", "create", "--name", name, "--size", str(SIZE_MB),
                     "--wait"], env)  # fmt: skip
                got = subprocess.run([*volumed, "volume", "get", name, "-o", "json"], env=env,
                                     capture_output=True, check=True)  # fmt: skip
                uuid = str(json.loads(got.stdout)[0]["uuid"])
                image = data_dir / "images" / f"{uuid}.img"
                run(["mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", "-d", str(source), str(image)])
                apis, clis, bares, peaks = [], [], [], []
                archive = wrote = before = 0
                for _ in range(args.n):
                    before = rss_kb(server.pid)
                    with Sampler(server.pid) as sampler:
                        elapsed, archive = api_export(api, uuid)
                    apis.append(elapsed)
                    peaks.append(sampler.peak)
                    out = work / f"out-{secrets.token_hex(3)}"
                    clis.append(
                        run([*volumed, "volume", "export", name, "--output", str(out)], env)
                    )
                    shutil.rmtree(out)
                    elapsed, wrote = bare_export(image, work)
                    bares.append(elapsed)

                def rate(times: list[float], size: int = size) -> str:
                    return f"{size / 1e6 / statistics.median(times):6.0f}/s"

                rss = f"{before / 1024:.0f}->{max(peaks) / 1024:.0f}"
                print(
                    f"{label:18} {size / 1e6:6.0f} {rate(apis):>10} {rate(clis):>10} "
                    f"{rate(bares):>10} {archive / 1e6:10.1f} {rss:>12} {wrote / 1e6:14.0f}"
                )
                print(
                    f"{'':18} {'':6} "
                    + " ".join(f"{statistics.median(c):>9.2f}s" for c in (apis, clis, bares))
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
