"""The fencing protocol on the real store (SQLite and PostgreSQL) and real images: a job
holder whose lease ran out and whose job was claimed again, even by a worker of the same
name (one process whose store calls stalled past its lease), can no longer commit; a
commit whose rename did not happen is finished by the next claim."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.lifecycle_helpers import fsck_clean, image, new_volume, superblock_size_mb
from tests.conftest import LiveServer
from volumed.domain.fencing import LeaseLost, publish, roll_forward
from volumed.domain.ports import Job, QuotaLimits
from volumed.storage import Ext4ImageDriver
from volumed.store.sql import SqlStore
from volumed.worker.volume_jobs import VolumeJobs

_LIMITS = QuotaLimits(
    max_volumes=100, max_total_volume_mb=10_000, min_volume_mb=1, max_volume_mb=10_000
)
_MINUTE_US = 60_000_000


def _grow_owed(fresh_server: Callable[..., LiveServer]) -> tuple[LiveServer, str, str]:
    """A stopped server's volume of 16 MB (owner id, uuid): the store is ours alone."""
    live = fresh_server()
    with live.client() as api:
        uuid = new_volume(api, size_mb=16, quota_policy="dynamic")["uuid"]
    live.stop()
    owner = live.sql("SELECT owner_id FROM volumes WHERE uuid = ?", (uuid,))[0][0]
    return live, str(owner), uuid


async def _claim(store: SqlStore, worker: str, lease_us: int) -> Job:
    job = await store.claim_job(worker, lease_us)
    assert job is not None
    return job


def test_a_holder_claimed_again_cannot_commit_even_under_the_same_name(
    fresh_server: Callable[..., LiveServer],
) -> None:
    live, owner, uuid = _grow_owed(fresh_server)
    driver = Ext4ImageDriver(live.data_dir / "images", timeout_s=60)

    async def scenario(store: SqlStore) -> None:
        assert await store.begin_grow(owner, uuid, "available", 16, 32, _LIMITS)
        stale = await _claim(store, "w-same", 1)  # its lease is over at once
        await driver.grow(uuid, 32, reserve=False, stage=stale.epoch)
        # The same worker claims the job again: only the epoch tells the claims apart.
        fresh = await _claim(store, "w-same", _MINUTE_US)
        assert fresh.lease_owner == stale.lease_owner and fresh.epoch > stale.epoch
        await roll_forward(driver, fresh)
        assert not driver.staged_path(uuid, stale.epoch).exists()
        await VolumeJobs(store, driver).grow(fresh)
        # Grown again, to 48, through a new job.
        assert await store.begin_grow(owner, uuid, "available", 32, 48, _LIMITS)
        newer = await _claim(store, "w-other", _MINUTE_US)
        await roll_forward(driver, newer)
        # The stale holder, still running, builds its staged image again meanwhile.
        await driver.grow(uuid, 32, reserve=False, stage=stale.epoch)
        await VolumeJobs(store, driver).grow(newer)
        # ... and then tries to commit it.
        with pytest.raises(LeaseLost):
            await publish(store, driver, uuid, stale.lease)
        assert not driver.staged_path(uuid, stale.epoch).exists()
        assert not await store.renew_lease(uuid, stale.lease, _MINUTE_US)
        assert not await store.finish_grow(uuid, stale.lease, "available", size_mb=32, free_mb=1)

    live.with_store(scenario)
    path = image(live, uuid)
    assert superblock_size_mb(path) == 48
    fsck_clean(path)
    assert [n for n in os.listdir(path.parent) if ".img.e" in n] == []
    row = live.sql("SELECT state, size_mb, job FROM volumes WHERE uuid = ?", (uuid,))[0]
    assert tuple(row) == ("available", 48, None)


def test_a_committed_image_is_put_in_place_by_the_next_claim(
    fresh_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    live, owner, uuid = _grow_owed(fresh_server)
    driver = Ext4ImageDriver(live.data_dir / "images", timeout_s=60)

    async def scenario(store: SqlStore) -> None:
        assert await store.begin_grow(owner, uuid, "available", 16, 40, _LIMITS)
        first = await _claim(store, "w-a", 1)
        await driver.grow(uuid, 40, reserve=False, stage=first.epoch)
        # Committed, then frozen (or killed) before the rename.
        assert await store.commit_stage(uuid, first.lease)
        second = await _claim(store, "w-b", _MINUTE_US)
        assert second.published == first.epoch
        await roll_forward(driver, second)
        await VolumeJobs(store, driver).grow(second)
        # The first holder's own rename, late, finds nothing to rename.
        assert not await driver.publish(uuid, first.epoch)

    live.with_store(scenario)
    path = image(live, uuid)
    assert superblock_size_mb(path) == 40
    fsck_clean(path)
    row = live.sql("SELECT state, size_mb, job FROM volumes WHERE uuid = ?", (uuid,))[0]
    assert tuple(row) == ("available", 40, None)
