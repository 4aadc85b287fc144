"""Clone time of a 1 GB volume holding 400 MB of data, next to a plain ``cp --sparse=always``
of the same image file.

1. ``volumed serve`` is started on a fresh temporary data directory (on the file system
   that holds ``--dir``, default the system temp directory) and a 1024 MB volume is made
   (``--policy``, default dynamic, as in dataplane-notes §3) and awaited.
2. 400 MB of random data are written into its image as ``/data.bin`` with
   ``debugfs -w`` (the volume is unattached; nothing else touches the image).
3. Interleaved, ``-n`` times (default 3), each after ``sync`` and, when permitted,
   ``echo 3 > /proc/sys/vm/drop_caches``:
   * volumed: ``POST /v1/volumes/{uuid}/clone``, then ``GET /v1/volumes/{clone}`` every
     5 ms until it is ``available``: the clock runs from before the POST to that answer.
     The worker copies (reflink if possible, else ``cp --sparse=always``), runs
     ``e2fsck -fy`` and ``tune2fs -U random`` on the copy, reserves it if static, and
     fsyncs it and the directory, all before it reports the clone available. The clone
     is deleted afterwards. The worker's own time for the job is read from the server log.
   * bare: ``cp --sparse=always`` of the same image file to a file beside it, then
     ``sync -f`` of that file (what the worker's fsync amounts to), timed with
     ``time.perf_counter``; and, apart, the ``e2fsck -fy`` + ``tune2fs -U random`` of
     that copy, to show where the rest of volumed's time goes.

Prints each run and the min/median per line, and ``du`` of source and copy. Nothing is
asserted.

Usage: ``.venv/bin/python bench/clone.py [-n 3] [--policy dynamic|static] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
VOLUMED = [sys.executable, "-m", "volumed", "serve"]
SIZE_MB = 1024
DATA_MB = 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def du_mb(path: Path) -> float:
    return path.stat().st_blocks * 512 / 2**20


def run_tool(cmd: list[str], ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in ok:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr}{done.stdout}")


def wait_available(api: httpx.Client, uuid: str, poll_s: float = 0.005) -> dict[str, object]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        item: dict[str, object] = api.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]
        if item.get("state") == "available":
            return item
        if item.get("state") == "error":
            raise RuntimeError(f"volume {uuid} is in error: {item.get('message')}")
        time.sleep(poll_s)
    raise RuntimeError(f"volume {uuid} did not become available")


def stats(label: str, values: list[float]) -> str:
    runs = ", ".join(f"{v * 1000:.0f}" for v in values)
    return (
        f"{label:<48} min {min(values) * 1000:7.0f} ms   median "
        f"{statistics.median(values) * 1000:7.0f} ms   (runs: {runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--policy", choices=("dynamic", "static"), default="dynamic")
    parser.add_argument("--dir", type=Path, default=None, help="where the data directory goes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="volumed-bench-clone-", dir=args.dir) as tmp:
        root = Path(tmp)
        port, token = free_port(), "bench-" + secrets.token_hex(16)
        env = {
            **os.environ,
            "VOLUMED_DATA_DIR": str(root / "data"),
            "VOLUMED_PORT": str(port),
            "VOLUMED_TOKEN": token,
            "VOLUMED_LOG_LEVEL": "info",
            "VOLUMED_METRICS_PORT": "0",
            "VOLUMED_WORKER_POLL_S": "0.05",
        }
        with open(root / "server.log", "ab") as log:
            server = subprocess.Popen(
                VOLUMED, env=env, stdout=log, stderr=log, start_new_session=True, cwd=REPO
            )
        try:
            url = f"http://127.0.0.1:{port}"
            api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("volumed did not come up")
                time.sleep(0.05)
            body = {"name": "source", "size_mb": SIZE_MB, "quota_policy": args.policy}
            source = api.post("/v1/volumes", json=body).json()["data"]["volumes"][0]
            wait_available(api, source["uuid"])
            image = root / "data" / "images" / f"{source['uuid']}.img"
            data = root / "data.bin"
            with open(data, "wb") as out:
                for _ in range(DATA_MB):
                    out.write(os.urandom(2**20))
            run_tool(["debugfs", "-w", "-R", f"write {data} /data.bin", str(image)])
            data.unlink()
            print(
                f"source: {SIZE_MB} MB {args.policy} volume, {DATA_MB} MB of random data, "
                f"du {du_mb(image):.0f} MB, on {root}"
            )

            volumed_s: list[float] = []
            bare_s: list[float] = []
            fixup_s: list[float] = []
            dropped = True
            clone_du = copy_du = 0.0
            for _ in range(args.n):
                dropped &= drop_caches()
                began = time.perf_counter()
                reply = api.post(f"/v1/volumes/{source['uuid']}/clone", json={})
                clone = reply.json()["data"]["volumes"][0]
                wait_available(api, clone["uuid"])
                volumed_s.append(time.perf_counter() - began)
                wait_available(api, source["uuid"])
                clone_du = du_mb(root / "data" / "images" / f"{clone['uuid']}.img")
                api.delete(f"/v1/volumes/{clone['uuid']}")

                dropped &= drop_caches()
                copy = root / "copy.img"
                began = time.perf_counter()
                run_tool(["cp", "--sparse=always", "--", str(image), str(copy)])
                run_tool(["sync", "-f", str(copy)])
                bare_s.append(time.perf_counter() - began)
                copy_du = du_mb(copy)
                began = time.perf_counter()
                run_tool(["e2fsck", "-fy", str(copy)], ok=(0, 1))
                run_tool(["tune2fs", "-U", "random", str(copy)])
                fixup_s.append(time.perf_counter() - began)
                copy.unlink()
            api.close()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

        log_text = (root / "server.log").read_text(errors="replace")
    job_s = [
        float(found[1]) / 1000
        for line in log_text.splitlines()
        if "job clone on" in line and "ended: ok" in line
        if (found := re.search(r"duration_ms\"?[:=]\s*([\d.]+)", line))
    ]
    caches = "dropped before each run" if dropped else "NOT dropped (no permission)"
    print(f"page cache: {caches}")
    print(stats("volumed clone (POST -> available)", volumed_s))
    if job_s:
        print(stats("  of which the worker's clone job", job_s))
    print(stats("cp --sparse=always + sync", bare_s))
    print(stats("  e2fsck -fy + tune2fs -U random of the copy", fixup_s))
    print(f"du: volumed's clone {clone_du:.0f} MB, cp's copy {copy_du:.0f} MB")


if __name__ == "__main__":
    main()
