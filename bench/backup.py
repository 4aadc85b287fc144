"""How long ``volumed backup`` and ``volumed restore`` take for N volumes, and how big
the backup is.

1. A fresh data directory and ``volumed serve`` (SQLite). ``--volumes`` (default 200)
   volumes of ``--size-mb`` (default 64), every other one ``static`` (fully reserved on
   the host) and the rest ``dynamic``, created in one request and waited for; each gets a
   tar of ``--data-mb`` (default 2) random bytes imported, so images have written blocks.
2. ``volumed backup DEST`` while the server runs (idle): wall time, rounds, and the
   backup's apparent and allocated size (``du``).
3. ``volumed restore DEST`` into a fresh data directory: wall time (this includes
   reserving the static volumes' host space again), then ``volumed fsck --no-e2fsck``.

Prints one line per step. Nothing is asserted.

Usage: ``.venv/bin/python bench/backup.py [--volumes 200] [--size-mb 64] [--data-mb 2]``
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paging import REPO, Server  # noqa: E402

VOLUMED = [sys.executable, "-m", "volumed"]


def admin(data_dir: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLUMED_")}
    env["VOLUMED_DATA_DIR"] = str(data_dir)
    started = time.perf_counter()
    done = subprocess.run(
        [*VOLUMED, *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"volumed {' '.join(args)}: {done.stdout}{done.stderr}")
    return elapsed, (done.stdout + done.stderr).strip()


def du(path: Path, *flags: str) -> str:
    out = subprocess.run(["du", "-sh", *flags, str(path)], capture_output=True, text=True)
    return out.stdout.split()[0]


def archive(data_mb: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        payload = os.urandom(data_mb * 2**20)
        info = tarfile.TarInfo("data.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def populate(server: Server, count: int, size_mb: int, data_mb: int) -> float:
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=300) as api:
        uuids: list[str] = []
        for first in range(0, count, 200):
            batch = [
                {
                    "name": f"bk-{n:04d}",
                    "size_mb": size_mb,
                    "quota_policy": "static" if n % 2 == 0 else "dynamic",
                }
                for n in range(first, min(count, first + 200))
            ]
            answer = api.post("/v1/volumes", json=batch).json()
            uuids += [v["uuid"] for v in answer["data"]["volumes"]]
        pending = set(uuids)
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            listed = api.get("/v1/volumes").json()["data"]["volumes"]
            pending = {v["uuid"] for v in listed if v["state"] != "available"} & pending
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"{len(pending)} volumes never became available")
        body = archive(data_mb)
        for uuid in uuids:
            done = api.put(f"/volumed/v1/volumes/{uuid}/import", content=body)
            if done.json().get("status") != "success":
                raise RuntimeError(f"import into {uuid}: {done.text}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--data-mb", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="volumed-backup-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        (root / "live").mkdir()
        server = Server(root / "live" / "data", secrets.token_hex(24))
        server.data_dir.mkdir()
        server.start()
        try:
            took = populate(server, args.volumes, args.size_mb, args.data_mb)
            print(
                f"populate: {args.volumes} volumes of {args.size_mb} MB, "
                f"{args.data_mb} MB imported into each: {took:.1f} s; "
                f"images {du(server.data_dir / 'images', '--apparent-size')} apparent, "
                f"{du(server.data_dir / 'images')} allocated"
            )
            dest = root / "backup"
            took, said = admin(server.data_dir, "backup", str(dest))
            print(f"backup (server running): {took:.2f} s wall; {said}")
            print(f"backup size: {du(dest, '--apparent-size')} apparent, {du(dest)} allocated")
        finally:
            server.stop()
        target = root / "restored" / "data"
        took, said = admin(target, "restore", str(dest))
        print(f"restore: {took:.2f} s wall; {said}")
        print(f"restored images: {du(target / 'images')} allocated")
        took, said = admin(target, "fsck", "--no-e2fsck")
        print(f"fsck --no-e2fsck after restore: {took:.2f} s; {said.splitlines()[-1]}")


if __name__ == "__main__":
    main()
