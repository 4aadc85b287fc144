"""What lease fencing costs: grow, clone and import latency without fencing (the image
changed in place or renamed at once, as before issue 11) and with it (a staged image,
the fenced commit on the store, the rename).

In process, on real images and a real SQLite store (``--database-url`` for PostgreSQL):
each operation runs ``--rounds`` times per mode on a ``--size-mb`` volume holding
``--data-mb`` of random data, alternating the modes. Prints the median and p90 in ms per
operation and mode, and the fenced commit statement alone. Nothing is asserted.

Usage: ``.venv/bin/python bench/fencing.py [--rounds 15] [--size-mb 256] [--data-mb 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid as uuids
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from volumed.bootstrap import open_store  # noqa: E402
from volumed.domain.fencing import publish  # noqa: E402
from volumed.domain.model import User, Volume  # noqa: E402
from volumed.domain.states import QuotaPolicy, VolumeState  # noqa: E402
from volumed.domain.values import Lease, QuotaLimits  # noqa: E402
from volumed.settings import Settings  # noqa: E402
from volumed.storage import Ext4ImageDriver  # noqa: E402
from volumed.store.sql import SqlStore  # noqa: E402

Timed = Callable[[], Awaitable[None]]


def _put_data(path: Path, megabytes: int, tmp: Path) -> None:
    blob = tmp / "blob"
    blob.write_bytes(os.urandom(megabytes * 2**20))
    subprocess.run(
        ["debugfs", "-w", "-R", f"write {blob} data", str(path)], check=True, capture_output=True
    )
    blob.unlink()


def _archive(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for n in range(8):
            data = os.urandom(megabytes * 2**20 // 8)
            info = tarfile.TarInfo(f"f{n}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 1 << 20):
        yield data[at : at + (1 << 20)]


class Bench:
    def __init__(
        self, store: SqlStore, driver: Ext4ImageDriver, owner: str, args: argparse.Namespace
    ) -> None:
        self.store = store
        self.driver = driver
        self.owner = owner
        self.size_mb = int(args.size_mb)
        self.data_mb = int(args.data_mb)
        self.archive = _archive(self.data_mb)

    async def leased_volume(self) -> tuple[str, Lease]:
        """A row holding a job leased to us (what a claim gives a worker)."""
        uuid = str(uuids.uuid4())
        volume = Volume(
            uuid=uuid,
            owner_id=self.owner,
            name=f"b-{uuid[:8]}",
            state=VolumeState.BUSY,
            size_mb=self.size_mb,
            persistent=True,
            created_at_us=time.time_ns() // 1000,
            quota_policy=QuotaPolicy.DYNAMIC,
        )
        roomy = QuotaLimits(
            max_volumes=10**6, max_total_volume_mb=10**9, min_volume_mb=1, max_volume_mb=10**9
        )
        await self.store.insert_volume_within_quota(volume, "grow", {}, roomy)
        job = await self.store.claim_job("w-bench", 3_600_000_000)
        assert job is not None and job.uuid == uuid
        return uuid, job.lease

    async def image_with_data(self) -> tuple[str, Lease]:
        uuid, lease = await self.leased_volume()
        await self.driver.create(uuid, self.size_mb, reserve=False)
        _put_data(self.driver.image_path(uuid), self.data_mb, self.driver.images_dir)
        return uuid, lease

    async def grow(self, fenced: bool) -> Timed:
        uuid, lease = await self.image_with_data()
        size = self.size_mb * 2

        async def run() -> None:
            if fenced:
                await self.driver.grow(uuid, size, reserve=False, stage=lease.epoch)
                await publish(self.store, self.driver, uuid, lease)
            else:
                await self.driver.grow(uuid, size, reserve=False)

        return run

    async def clone(self, fenced: bool) -> Timed:
        source, _ = await self.image_with_data()
        uuid, lease = await self.leased_volume()

        async def run() -> None:
            if fenced:
                await self.driver.clone(source, uuid, reserve=False, stage=lease.epoch)
                await publish(self.store, self.driver, uuid, lease)
            else:
                await self.driver.clone(source, uuid, reserve=False)

        return run

    async def import_(self, fenced: bool) -> Timed:
        uuid, lease = await self.leased_volume()
        await self.driver.create(uuid, self.size_mb, reserve=False)

        async def run() -> None:
            chunks = _chunks(self.archive)
            if fenced:
                await self.driver.import_tar(uuid, chunks, reserve=False, stage=lease.epoch)
                await publish(self.store, self.driver, uuid, lease)
            else:
                await self.driver.import_tar(uuid, chunks, reserve=False)

        return run

    async def commit_only(self, _fenced: bool) -> Timed:
        uuid, lease = await self.leased_volume()

        async def run() -> None:
            assert await self.store.commit_stage(uuid, lease)

        return run


async def _time(rounds: int, prepare: Callable[[], Awaitable[Timed]]) -> list[float]:
    out = []
    for _ in range(rounds):
        run = await prepare()
        started = time.perf_counter()
        await run()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="volumed-fencing-") as tmp_dir:
        tmp = Path(tmp_dir)
        store = await open_store(Settings(data_dir=tmp, database_url=args.database_url or ""))
        owner = User(id=f"u-{uuids.uuid4().hex[:8]}", name=f"bench-{uuids.uuid4().hex[:6]}")
        await store.create_user(owner)
        bench = Bench(store, Ext4ImageDriver(tmp / "images", timeout_s=600), owner.id, args)
        cases = [("grow", bench.grow), ("clone", bench.clone), ("import", bench.import_)]
        for name, make in cases:
            for fenced in (False, True):
                key = f"{name:<16} {'fenced' if fenced else 'unfenced':<8}"
                results[key] = await _time(args.rounds, lambda m=make, f=fenced: m(f))
        key = f"{'commit statement':<16} {'fenced':<8}"
        results[key] = await _time(args.rounds, lambda: bench.commit_only(True))
        await store.close()
    store_name = "PostgreSQL" if args.database_url else "SQLite (FULL)"
    print(
        f"{args.size_mb} MB volumes, {args.data_mb} MB of data, {args.rounds} rounds, "
        f"{store_name}; ms"
    )
    print(f"{'operation':<16} {'mode':<8} {'median':>8} {'p90':>8}")
    for key, times in results.items():
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        print(f"{key} {statistics.median(times):8.1f} {p90:8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--data-mb", type=int, default=64)
    parser.add_argument("--database-url", default="")
    asyncio.run(main(parser.parse_args()))
