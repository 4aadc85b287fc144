"""Import and export throughput of volumed, next to the bare data plane on the same data.

Data (made in a temporary directory on the data directory's file system):

* ``big``: one 200 MB file of random bytes;
* ``tree``: 1,000 small files (1 to 16 KiB, random) in 50 directories.

For each data set, N runs (default 3) of:

1. ``volumed volume import NAME --source DIR`` (the CLI as a subprocess: it tars the
   directory on the fly and streams it; the server extracts the stream, runs
   ``mke2fs -d``, ``e2fsck -fn`` and renames the new image into place);
2. ``volumed volume export NAME --output DIR`` (the server runs ``debugfs rdump`` and
   streams ``tar``; the CLI unpacks it);
   and the same two through the API alone (httpx in this process: a tar file made
   beforehand streamed up, the export streamed into /dev/null), to tell the server's
   share from the CLI's;
3. the bare data plane: ``truncate`` + ``mke2fs -q -F -t ext4 -m 0 -E
   lazy_itable_init=1,lazy_journal_init=1 -d DIR`` into a fresh image of the same size,
   and ``debugfs -R "rdump / OUT"`` out of it.

MB/s is the data set's content size (10^6 bytes) divided by the wall time. The
server's resident set is sampled every 5 ms during the 200 MB imports (``VmRSS`` of
``/proc/<pid>/status``); its peak is printed next to the RSS before the import.

Usage: ``.venv/bin/python bench/transfer.py [-n 3]``
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MKFS = [
    "mke2fs",
    "-q",
    "-F",
    "-t",
    "ext4",
    "-m",
    "0",
    "-E",
    "lazy_itable_init=1,lazy_journal_init=1",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_data(base: Path) -> dict[str, Path]:
    rng = random.Random(5)
    big = base / "big"
    big.mkdir()
    with open(big / "blob.bin", "wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(1_000_000))
    tree = base / "tree"
    for n in range(1000):
        sub = tree / f"dir{n % 50:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{n:04d}.dat").write_bytes(os.urandom(rng.randint(1024, 16384)))
    return {"200 MB file": big, "1,000 small files": tree}


def content_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


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


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
    return elapsed


def volume_uuid(volumed: list[str], name: str, env: dict[str, str]) -> str:
    import json

    done = subprocess.run(
        [*volumed, "volume", "get", name, "-o", "json"], env=env, capture_output=True, check=True
    )
    return str(json.loads(done.stdout)[0]["uuid"])


def api_import(env: dict[str, str], uuid: str, archive: Path) -> float:
    import httpx

    def chunks() -> object:
        with open(archive, "rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk

    headers = {"Authorization": f"Bearer {env['VOLUMED_TOKEN']}"}
    started = time.perf_counter()
    with httpx.Client(base_url=env["VOLUMED_URL"], headers=headers, timeout=600) as api:
        answer = api.put(f"/volumed/v1/volumes/{uuid}/import", content=chunks())
    elapsed = time.perf_counter() - started
    if answer.json()["status"] != "success":
        raise SystemExit(f"API import failed: {answer.text}")
    return elapsed


def api_export(env: dict[str, str], uuid: str) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {env['VOLUMED_TOKEN']}"}
    started = time.perf_counter()
    with (
        httpx.Client(base_url=env["VOLUMED_URL"], headers=headers, timeout=600) as api,
        api.stream("GET", f"/volumed/v1/volumes/{uuid}/export") as answer,
    ):
        for _ in answer.iter_raw(1 << 20):
            pass
    return time.perf_counter() - started


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
        "VOLUMED_METRICS_PORT": str(free_port()),  # a busy one refuses to start
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
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*volumed, "volume", "ls"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.1)
        sets = make_data(work)
        print(f"# volumed import/export vs mke2fs -d / debugfs rdump, {args.n} run(s), median")
        print(f"# {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs")
        print(
            f"{'data':20} {'MB':>6} {'import':>9} {'API imp.':>9} {'mke2fs -d':>10} "
            f"{'export':>9} {'API exp.':>9} {'rdump':>9}"
        )
        for label, source in sets.items():
            size = content_bytes(source)
            volume = "bench-" + secrets.token_hex(3)
            timed([*volumed, "volume", "create", "--name", volume, "--size", "320", "--wait"], env)
            imports, exports, mkfs, rdumps, peaks, before = [], [], [], [], [], []
            api_imports, api_exports = [], []
            archive = work / "data.tar"
            with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
                tar.add(source, arcname=".")
            uuid = volume_uuid(volumed, volume, env)
            for _ in range(args.n):
                before.append(rss_kb(server.pid))
                with Sampler(server.pid) as sampler:
                    imports.append(
                        timed(
                            [
                                *volumed,
                                "volume",
                                "import",
                                volume,
                                "--source",
                                str(source),
                                "--yes",
                            ],
                            env,
                        )
                    )
                peaks.append(sampler.peak)
                api_imports.append(api_import(env, uuid, archive))
                api_exports.append(api_export(env, uuid))
                out = work / f"out-{secrets.token_hex(3)}"
                exports.append(
                    timed([*volumed, "volume", "export", volume, "--output", str(out)], env)
                )
                shutil.rmtree(out)
                image = work / "bare.img"
                image.unlink(missing_ok=True)
                started = time.perf_counter()
                subprocess.run(["truncate", "-s", "320M", str(image)], check=True)
                subprocess.run([*MKFS, "-d", str(source), str(image)], check=True)
                mkfs.append(time.perf_counter() - started)
                out.mkdir()
                started = time.perf_counter()
                subprocess.run(
                    ["debugfs", "-R", f"rdump / {out}", str(image)],
                    check=True,
                    capture_output=True,
                )
                rdumps.append(time.perf_counter() - started)
                shutil.rmtree(out)

            def rate(times: list[float], size: int = size) -> str:
                return f"{size / 1e6 / statistics.median(times):7.0f}/s"

            columns = (imports, api_imports, mkfs, exports, api_exports, rdumps)
            widths = (9, 9, 10, 9, 9, 9)
            print(
                f"{label:20} {size / 1e6:6.0f} "
                + " ".join(f"{rate(c):>{w}}" for c, w in zip(columns, widths, strict=True))
            )
            print(
                f"{'':20} {'':6} "
                + " ".join(
                    f"{statistics.median(c):>{w - 1}.2f}s"
                    for c, w in zip(columns, widths, strict=True)
                )
            )
            archive.unlink()
            if label.startswith("200"):
                print(
                    f"# server RSS during the 200 MB imports: before {max(before) / 1024:.0f} MiB, "
                    f"peak {max(peaks) / 1024:.0f} MiB"
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
