"""The fencing protocol on the real store (SQLite and PostgreSQL) and real images: a job
holder whose lease ran out and whose job was claimed again, even by a worker of the same
name (one process whose store calls stalled past its lease), can no longer commit; a
commit whose rename did not happen is finished by the next claim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.api.lifecycle_helpers import fsck_clean, put_file, read_file, superblock_size_mb
from tests.store.harness import ROOMY, tenant, to, volume
from tests.worker.test_reconciler import _fs_uuid, formatted
from volumed.bootstrap import Services
from volumed.domain.fencing import LeaseLost, publish, roll_forward
from volumed.domain.model import Ref
from volumed.domain.states import VolumeState
from volumed.domain.storage import Placed
from volumed.domain.transitions import End, Op, states_allowing, step
from volumed.domain.values import Job
from volumed.store.sql import SqlStore
from volumed.worker.reconciler import Reconciler, WorkerSettings
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


# A format makes a volume's first image: it puts its staged image in place only where
# there is no image yet (StorageDriver.place), and needs no commit before that.
_STARTS = {"format": step(End.FORMAT_STARTED)}


async def _format_owed(services: Services) -> tuple[str, str]:
    """A new volume owing its format, unclaimed (owner id, uuid)."""
    owner = await tenant(services.store)
    made = volume(owner, state=VolumeState.UNINITIALIZED, size_mb=16)
    await services.store.insert_volume_within_quota(made, "format", {}, ROOMY)
    return owner.id, made.uuid


async def _run_stale(services: Services, job: Job) -> None:
    """``job`` run to its end by a worker of its own (its holder, resumed)."""
    stale = Reconciler(services.store, services.storage, WorkerSettings())
    assert await stale.reserve(job.kind) is not None
    stale.start(job)
    await stale.drain()


async def test_an_image_placed_by_a_holder_that_died_is_kept_by_the_next_claim(
    services: Services,
) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _format_owed(services)
    first = await store.claim_job("w-a", 1, _STARTS)
    assert first is not None
    await driver.create(uuid, 16, reserve=False, stage=first.epoch)
    # Placed, then killed before its finish.
    assert await driver.place(uuid, first.epoch) is Placed.OURS
    placed = _fs_uuid(driver.image_path(uuid))
    await services.worker.drain()
    got = await store.get_volume(owner, Ref(uuid=uuid))
    assert got is not None and got.state == VolumeState.AVAILABLE
    assert _fs_uuid(driver.image_path(uuid)) == placed
    assert [n for n in os.listdir(driver.images_dir) if ".img.e" in n] == []


async def test_a_stale_format_never_replaces_the_image_of_the_holder_that_took_over(
    services: Services, tmp_path: Path
) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _format_owed(services)
    stale = await store.claim_job("w-a", 1, _STARTS)  # its lease is over at once
    assert stale is not None
    await services.worker.drain()  # the next claim formats it
    path = driver.image_path(uuid)
    put_file(path, "data", b"written by a guest", tmp_path)
    # The stale holder resumes: builds its image, finds one in place, loses its finish.
    await _run_stale(services, stale)
    assert read_file(path, "data") == b"written by a guest"
    got = await store.get_volume(owner, Ref(uuid=uuid))
    assert got is not None and got.state == VolumeState.AVAILABLE
    assert [n for n in os.listdir(driver.images_dir) if ".img.e" in n] == []


async def test_a_stale_format_of_a_volume_deleted_meanwhile_leaves_no_image(
    services: Services,
) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _format_owed(services)
    stale = await store.claim_job("w-a", 1, _STARTS)
    assert stale is not None
    # Its lease ran out: a delete cancels the format, and the volume is gone.
    assert await store.begin_delete(owner, uuid, states_allowing(Op.DELETE))
    await services.worker.drain()
    assert await store.job_holding(uuid) is None and not await store.image_wanted(uuid)
    await _run_stale(services, stale)  # places its image where there is none, loses
    assert os.listdir(driver.images_dir) == []


async def test_a_stale_format_placed_after_the_format_failed_is_removed(
    services: Services,
) -> None:
    store, driver = services.store, services.storage
    owner, uuid = await _format_owed(services)
    stale = await store.claim_job("w-a", 1, _STARTS)
    assert stale is not None
    # Every later attempt fails (their holders vanish): the format ends in error.
    for _ in range(WorkerSettings().max_attempts - 1):
        assert await store.claim_job("w-b", 1, _STARTS) is not None
    await services.worker.drain()
    got = await store.get_volume(owner, Ref(uuid=uuid))
    assert got is not None and got.state == VolumeState.ERROR
    assert not await store.image_wanted(uuid)
    await _run_stale(services, stale)  # places its image where there is none, loses
    assert os.listdir(driver.images_dir) == []
    got = await store.get_volume(owner, Ref(uuid=uuid))
    assert got is not None and got.state == VolumeState.ERROR
