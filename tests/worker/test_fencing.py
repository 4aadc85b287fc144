"""The fencing protocol on the real store (SQLite and PostgreSQL) and real images: a job
holder whose lease ran out and whose job was claimed again, even by a worker of the same
name (one process whose store calls stalled past its lease), can no longer commit; a
commit whose rename did not happen is finished by the next claim."""

from __future__ import annotations

import os

import pytest

from tests.api.lifecycle_helpers import fsck_clean, superblock_size_mb
from tests.store.harness import ROOMY, tenant, to
from tests.worker.test_reconciler import formatted
from volumed.bootstrap import Services
from volumed.domain.fencing import LeaseLost, publish, roll_forward
from volumed.domain.model import Ref
from volumed.domain.states import VolumeState
from volumed.domain.values import Job
from volumed.store.sql import SqlStore
from volumed.worker.volume_jobs import VolumeJobs

GROW = to(VolumeState.BUSY, VolumeState.AVAILABLE)

_MINUTE_US = 60_000_000


async def _grow_owed(services: Services) -> tuple[str, str]:
    """A formatted volume of 16 MB (owner id, uuid); no worker runs but the test's."""
    owner = await tenant(services.store)
    made = await formatted(services, owner, size_mb=16)
    return owner.id, made.uuid


async def _ended(services: Services, owner: str, uuid: str, size_mb: int) -> None:
    """The grow is over: the volume is available at ``size_mb`` and owes nothing."""
    got = await services.store.get_volume(owner, Ref(uuid=uuid))
    assert got is not None and (got.state, got.size_mb) == (VolumeState.AVAILABLE, size_mb)
    assert await services.store.job_holding(uuid) is None


async def _claim(store: SqlStore, worker: str, lease_us: int) -> Job:
    job = await store.claim_job(worker, lease_us)
    assert job is not None
    return job


async def test_a_holder_claimed_again_cannot_commit_even_under_the_same_name(
    services: Services,
) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _grow_owed(services)
    assert await store.begin_grow(owner, uuid, GROW, 16, 32, ROOMY)
    stale = await _claim(store, "w-same", 1)  # its lease is over at once
    await driver.grow(uuid, 32, reserve=False, stage=stale.epoch)
    # The same worker claims the job again: only the epoch tells the claims apart.
    fresh = await _claim(store, "w-same", _MINUTE_US)
    assert fresh.lease_owner == stale.lease_owner and fresh.epoch > stale.epoch
    await roll_forward(driver, fresh)
    assert not driver.staged_path(uuid, stale.epoch).exists()
    await VolumeJobs(store, driver).grow(fresh)
    # Grown again, to 48, through a new job.
    assert await store.begin_grow(owner, uuid, GROW, 32, 48, ROOMY)
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
    assert not await store.finish_grow(
        uuid, stale.lease, to(VolumeState.AVAILABLE, VolumeState.BUSY), size_mb=32, free_mb=1
    )

    path = driver.image_path(uuid)
    assert superblock_size_mb(path) == 48
    fsck_clean(path)
    assert [n for n in os.listdir(path.parent) if ".img.e" in n] == []
    await _ended(services, owner, uuid, 48)


async def test_a_committed_image_is_put_in_place_by_the_next_claim(services: Services) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _grow_owed(services)
    assert await store.begin_grow(owner, uuid, GROW, 16, 40, ROOMY)
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

    path = driver.image_path(uuid)
    assert superblock_size_mb(path) == 40
    fsck_clean(path)
    await _ended(services, owner, uuid, 40)
