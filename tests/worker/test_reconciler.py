"""The reconciler on a real store and real images, without a server: rows that owe a job
are written to the store, ``drain`` runs every job that can run now, and the test reads
the rows and the images it left."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.api.lifecycle_helpers import allocated_mb, fsck_clean, put_file, read_file
from tests.api.lifecycle_helpers import superblock_size_mb as size_mb_of
from tests.store.harness import ROOMY, tenant, to, volume
from volumed.bootstrap import Services
from volumed.domain import errors
from volumed.domain.model import Ref, User, Volume
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.volumes import CreateVolume
from volumed.worker.reconciler import BUSY_REQUESTS

MINUTE_US = 60_000_000


async def formatted(services: Services, owner: User, **fields: Any) -> Volume:
    """A volume made as a create makes it (a row owing a format), formatted."""
    made = volume(owner, state=VolumeState.UNINITIALIZED, **fields)
    await services.store.insert_volume_within_quota(made, "format", {}, ROOMY)
    await services.worker.drain()
    return await _row(services, owner, made.uuid)


async def _row(services: Services, owner: User, uuid: str) -> Volume:
    got = await services.store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None
    return got


def _leftovers(services: Services) -> list[str]:
    """Files in the image directory other than images: temporary or staged ones."""
    return sorted(n for n in os.listdir(services.storage.images_dir) if not n.endswith(".img"))


def _fs_uuid(path: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(path)], capture_output=True, text=True).stdout
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Filesystem UUID"))


async def test_a_format_makes_the_image_and_the_volume_available(services: Services) -> None:
    owner = await tenant(services.store)
    dynamic = await formatted(services, owner, size_mb=24)
    static = await formatted(services, owner, size_mb=24, quota_policy=QuotaPolicy.STATIC)
    for made in (dynamic, static):
        assert made.state == VolumeState.AVAILABLE and made.message is None
        path = services.storage.image_path(made.uuid)
        assert size_mb_of(path) == 24
        fsck_clean(path)
        assert made.free_mb is not None and 0 < made.free_mb < 24
    # A static image holds every block on the host; a dynamic one stays sparse.
    assert allocated_mb(services.storage.image_path(static.uuid)) >= 24
    assert allocated_mb(services.storage.image_path(dynamic.uuid)) < 12
    assert _leftovers(services) == []
    assert await services.store.claim_job("w", MINUTE_US) is None


async def test_a_create_claims_its_format_itself_while_a_worker_slot_is_free(
    services: Services,
) -> None:
    """Issue 15: the insert of a create claims the format for this process's worker and
    the worker runs it at once, no claim of its own; with every slot busy the format is
    left for the worker to claim, as before."""
    owner = await tenant(services.store)
    worker = services.worker
    item = CreateVolume(size_mb=8, quota_policy="dynamic")
    made = await services.volumes.create(owner, item)
    # Committed with the insert, before the job ran a step: started, and leased.
    assert (await _row(services, owner, made.uuid)).state == VolumeState.INITIALIZING
    assert worker.running_jobs == 1
    assert await services.store.claim_job("another", MINUTE_US) is None
    (done,) = await services.volumes.settled(owner, [made])
    assert done.state == VolumeState.AVAILABLE and worker.running_jobs == 0
    fsck_clean(services.storage.image_path(made.uuid))

    slots = []
    while (claim := await worker.reserve("format")) is not None:
        slots.append(claim)
    assert len(slots) == services.settings.worker_concurrency
    left = await services.volumes.create(owner, item)
    assert (await _row(services, owner, left.uuid)).state == VolumeState.UNINITIALIZED
    assert worker.running_jobs == 0
    for _ in slots:
        worker.release()
    await worker.drain()
    assert (await _row(services, owner, left.uuid)).state == VolumeState.AVAILABLE
    assert _leftovers(services) == []


async def _no_leftovers_soon(services: Services) -> list[str]:
    """The files other than images once a dropped image is gone (it goes in the
    background), or after 10 s."""
    deadline = time.monotonic() + 10
    while _leftovers(services) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return _leftovers(services)


async def test_a_format_takes_the_image_its_create_began_ahead(services: Services) -> None:
    """Issue 15: on SQLite a create begins its image while its insert commits and its
    format takes that image instead of making one. (The image begun here is larger than
    the row says, to tell the two apart; a create begins exactly its row's size.) On
    PostgreSQL nothing is begun ahead: the format makes the image after the commit."""
    owner = await tenant(services.store)
    worker = services.worker
    made = volume(owner, state=VolumeState.UNINITIALIZED, size_mb=8)
    claim = await worker.reserve("format", waited=True)
    assert claim is not None
    worker.format_ahead(made.uuid, 16, reserve=False)
    job = await services.store.insert_volume_within_quota(made, "format", {}, ROOMY, claim=claim)
    assert job is not None
    worker.start(job)
    (done,) = await services.volumes.settled(owner, [made])
    assert done.state == VolumeState.AVAILABLE
    image = services.storage.image_path(made.uuid)
    assert size_mb_of(image) == (16 if services.settings.is_sqlite else 8)
    fsck_clean(image)
    assert _leftovers(services) == []


async def test_a_create_whose_insert_fails_drops_the_image_it_began(services: Services) -> None:
    """A create refused at its insert (here: the name is taken) gives its worker slot
    back and leaves no image it began ahead."""
    owner = await tenant(services.store)
    item = CreateVolume(name="taken", size_mb=256, quota_policy="static")
    first = await services.volumes.create(owner, item)
    await services.volumes.settled(owner, [first])
    for _ in range(3):
        with pytest.raises(errors.AlreadyExists):
            await services.volumes.create(owner, item)
    assert await _no_leftovers_soon(services) == []
    assert os.listdir(services.storage.images_dir) == [f"{first.uuid}.img"]
    slots = [await services.worker.reserve("format") for _ in range(8)]
    assert sum(claim is not None for claim in slots) == services.settings.worker_concurrency


async def test_a_stopping_worker_drops_an_image_begun_for_no_job(services: Services) -> None:
    """An image begun ahead that no job took by the time the worker stops (its create
    was cancelled between the two) is removed, its tool stopped."""
    worker = services.worker
    assert await worker.reserve("format") is not None
    uuid = str(uuid4())
    worker.format_ahead(uuid, 262_144, reserve=False)
    await asyncio.sleep(0.005)  # its mke2fs runs
    await worker.stop()
    assert _leftovers(services) == []


async def test_a_delete_removes_the_image_then_the_row(services: Services) -> None:
    owner = await tenant(services.store)
    made = await formatted(services, owner)
    assert await services.store.begin_delete(owner.id, made.uuid, [VolumeState.AVAILABLE])
    assert services.storage.image_path(made.uuid).exists()
    await services.worker.drain()
    assert not services.storage.image_path(made.uuid).exists()
    assert await services.store.fsck_rows() == []
    # Its place in the list order is remembered (a listing cursor).
    assert await services.store.cursor_name(owner.id, made.uuid) == made.name
    assert _leftovers(services) == []


async def test_a_grow_grows_the_file_system_and_keeps_its_files(
    services: Services, tmp_path: Path
) -> None:
    owner = await tenant(services.store)
    made = await formatted(services, owner, size_mb=16)
    path = services.storage.image_path(made.uuid)
    put_file(path, "kept", b"still here", tmp_path)
    assert await services.store.begin_grow(
        owner.id, made.uuid, to(VolumeState.BUSY, VolumeState.AVAILABLE), 16, 40, ROOMY
    )
    await services.worker.drain()
    grown = await _row(services, owner, made.uuid)
    assert (grown.state, grown.size_mb) == (VolumeState.AVAILABLE, 40)
    assert grown.free_mb is not None and grown.free_mb > 16
    assert size_mb_of(path) == 40
    fsck_clean(path)
    assert read_file(path, "kept") == b"still here"
    assert _leftovers(services) == []


async def test_a_clone_is_a_copy_with_its_own_identity(services: Services, tmp_path: Path) -> None:
    owner = await tenant(services.store)
    source = await formatted(services, owner, size_mb=16)
    source_path = services.storage.image_path(source.uuid)
    put_file(source_path, "data", b"copied", tmp_path)
    # Made from a smaller source, as a volume made from a template: copied, then grown.
    clone = volume(owner, state=VolumeState.UNINITIALIZED, size_mb=24)
    assert await services.store.begin_clone(
        source.uuid, to(VolumeState.BUSY, VolumeState.AVAILABLE), clone, ROOMY
    )
    await services.worker.drain()
    copied = await _row(services, owner, clone.uuid)
    assert copied.state == VolumeState.AVAILABLE
    assert (await _row(services, owner, source.uuid)).state == VolumeState.AVAILABLE
    clone_path = services.storage.image_path(clone.uuid)
    assert read_file(clone_path, "data") == b"copied"
    assert size_mb_of(clone_path) == 24 and size_mb_of(source_path) == 16
    assert _fs_uuid(clone_path) != _fs_uuid(source_path)
    fsck_clean(clone_path)
    assert _leftovers(services) == []


async def test_a_worker_that_lost_its_lease_mid_format_only_places_a_first_image(
    services: Services,
) -> None:
    """The worker is overtaken while mke2fs runs (as if it froze past its lease): the row
    stays the new holder's, and the worker's image, complete, is put in place only
    because there was none (a format makes a volume's first image; see
    test_fencing.py for the cases where there is one, or nobody wants it), where the new
    holder keeps it."""
    store, storage = services.store, services.storage
    owner = await tenant(store)
    made = volume(owner, state=VolumeState.UNINITIALIZED)
    await store.insert_volume_within_quota(made, "format", {}, ROOMY)
    running = asyncio.create_task(services.worker.drain())
    staged = storage.images_dir / f"{made.uuid}.img.e1"
    while not staged.exists():  # the first claim's epoch is 1: mke2fs has begun
        assert not running.done(), "the job ended before it could be overtaken"
        await asyncio.sleep(0.001)
    assert await store.release_leases(services.worker.worker_id) == 1
    taker = await store.claim_job("w-taker", MINUTE_US)
    assert taker is not None
    # Overtaken mid-job: past the first step, and nothing committed yet.
    assert (taker.state, taker.published, taker.epoch) == (VolumeState.INITIALIZING, None, 2)
    await running
    placed = _fs_uuid(storage.image_path(made.uuid))
    assert _leftovers(services) == []
    row = await _row(services, owner, made.uuid)
    assert (row.state, row.free_mb) == (VolumeState.INITIALIZING, None)
    assert await store.renew_lease(made.uuid, taker.lease, MINUTE_US)
    # The new holder's claim is the one that finishes the job, with that image.
    await store.release_leases("w-taker")
    await services.worker.drain()
    assert (await _row(services, owner, made.uuid)).state == VolumeState.AVAILABLE
    assert _fs_uuid(storage.image_path(made.uuid)) == placed
    fsck_clean(storage.image_path(made.uuid))


async def most_running_until_formatted(services: Services, owner: User, made: list[Volume]) -> int:
    """The most jobs the worker ran at once until every volume of ``made`` was formatted."""
    most = 0
    deadline = time.monotonic() + 60
    left = {v.uuid for v in made}
    while left:
        assert time.monotonic() < deadline
        most = max(most, services.worker.running_jobs)
        for uuid in list(left):
            if (await _row(services, owner, uuid)).state == VolumeState.AVAILABLE:
                left.discard(uuid)
        await asyncio.sleep(0.001)
    return most


async def test_background_jobs_yield_to_a_busy_event_loop(services: Services) -> None:
    """Issue 15: while the event loop is busy (with requests, here a task that holds it
    up) and no request waits for a job, the worker runs one job at a time; once a
    request waits for one, it runs as many as it has slots for."""
    owner = await tenant(services.store)
    worker = services.worker
    busy = True

    async def requests_load() -> None:
        # The loop held up 3 ms at a time, as requests' statements and commits hold it
        # (with the GIL released, as sqlite3 releases it: threads still run).
        while busy:
            time.sleep(0.003)
            await asyncio.sleep(0)

    async def owing_formats(count: int) -> list[Volume]:
        made = [volume(owner, state=VolumeState.UNINITIALIZED, size_mb=1) for _ in range(count)]
        for one in made:
            await services.store.insert_volume_within_quota(one, "format", {}, ROOMY)
        return made

    load = asyncio.create_task(requests_load())
    running = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 30
        while not worker.loop_busy:  # the worker has seen the load
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        alone = await owing_formats(6)
        worker.wake()
        while worker.running_jobs == 0:
            await asyncio.sleep(0.001)
        # A create that will not wait for its format claims no slot now; one that will,
        # does (its creator is about to wait for it).
        assert await worker.reserve("format") is None
        assert await worker.reserve("format", waited=True) is not None
        worker.release()
        assert await most_running_until_formatted(services, owner, alone) == 1
        waited = await owing_formats(6)
        waiting = asyncio.create_task(services.volumes.settled(owner, [waited[-1]]))
        while not worker.waited_for:  # the request waits before the worker looks
            await asyncio.sleep(0.001)
        worker.wake()
        assert await most_running_until_formatted(services, owner, waited) > 1
        (done,) = await waiting
        assert done.state == VolumeState.AVAILABLE
    finally:
        busy = False
        await load
        await worker.stop()
        await running


async def test_background_jobs_yield_to_many_requests_in_flight(services: Services) -> None:
    """The loop's lag misses a saturated API whose clients each wait for their answer
    (few tasks ready at once): BUSY_REQUESTS requests in flight count as busy too, and a
    slot a create reserved counts as a job running."""
    owner = await tenant(services.store)
    worker = services.worker
    worker.count_requests(lambda: BUSY_REQUESTS)
    claim = await worker.reserve("format")  # a create's, its job not started yet
    assert claim is not None
    assert await worker.reserve("format") is None
    worker.release()
    made = [volume(owner, state=VolumeState.UNINITIALIZED, size_mb=1) for _ in range(6)]
    for one in made:
        await services.store.insert_volume_within_quota(one, "format", {}, ROOMY)
    running = asyncio.create_task(worker.run())
    try:
        most = await most_running_until_formatted(services, owner, made)
    finally:
        await worker.stop()
        await running
    assert most == 1
