"""The compare-and-sets of maintenance work: grow, quota-policy switch, clone, template,
and fsck's repair. Each wins only from the state (and size) its caller read, owes its
job in the same transaction, and its end puts the volume back as the job found it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.harness import ROOMY, tenant, to, volume
from volumed.domain.model import Ref, User, Volume
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.store import QuotaRefused
from volumed.domain.values import Job, QuotaLimits
from volumed.store.sql import SqlStore

BUSY = VolumeState.BUSY
TEMPLATE = VolumeState.TEMPLATE

MINUTE_US = 60_000_000


async def _available(store: SqlStore, owner: User, **fields: Any) -> Volume:
    item = volume(owner, **fields)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    return item


async def _read(store: SqlStore, owner: User, uuid: str) -> Volume:
    got = await store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None
    return got


async def _claim(store: SqlStore) -> Job:
    job = await store.claim_job("w", MINUTE_US)
    assert job is not None
    return job


async def test_grow_wins_only_from_the_state_and_size_read(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner, size_mb=16)
    assert not await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.IDLE), 16, 32, ROOMY
    )
    assert not await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 20, 32, ROOMY
    )
    assert not await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 8, 32, ROOMY
    )
    assert (await _read(store, owner, item.uuid)).state == VolumeState.AVAILABLE
    assert await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 16, 32, ROOMY
    )
    assert (await _read(store, owner, item.uuid)).state == VolumeState.BUSY
    # Counted at its new size at once; a second grow finds it busy.
    assert (await store.quota_usage(owner.id)).total_volume_mb == 32
    assert not await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 16, 48, ROOMY
    )
    job = await _claim(store)
    assert (job.kind, job.args) == ("grow", {"size_mb": 32, "previous_state": "available"})
    assert await store.finish_grow(
        item.uuid, job.lease, to(VolumeState.AVAILABLE, BUSY), size_mb=32, free_mb=30
    )
    grown = await _read(store, owner, item.uuid)
    assert (grown.state, grown.size_mb, grown.free_mb) == (VolumeState.AVAILABLE, 32, 30)


async def test_a_grow_that_did_not_happen_keeps_the_size(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner, size_mb=16)
    assert await store.begin_grow(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 16, 32, ROOMY
    )
    job = await _claim(store)
    assert await store.finish_grow(
        item.uuid,
        job.lease,
        to(VolumeState.AVAILABLE, BUSY),
        size_mb=None,
        free_mb=None,
        message="full",
    )
    kept = await _read(store, owner, item.uuid)
    assert (kept.state, kept.size_mb, kept.message) == (VolumeState.AVAILABLE, 16, "full")
    assert (await store.quota_usage(owner.id)).total_volume_mb == 16


async def test_a_grow_past_the_tenants_total_is_refused_whole(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner, size_mb=16)
    tight = QuotaLimits(max_volumes=10, max_total_volume_mb=20, min_volume_mb=1, max_volume_mb=100)
    with pytest.raises(QuotaRefused) as refused:
        await store.begin_grow(owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), 16, 32, tight)
    assert refused.value.usage.total_volume_mb == 16
    kept = await _read(store, owner, item.uuid)
    assert (kept.state, kept.size_mb) == (VolumeState.AVAILABLE, 16)
    assert await store.claim_job("w", MINUTE_US) is None


async def test_a_policy_switch_wins_only_from_the_other_policy(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner, quota_policy=QuotaPolicy.DYNAMIC)
    assert not await store.begin_reservation(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), False
    )
    assert not await store.begin_reservation(owner.id, item.uuid, to(BUSY, VolumeState.IDLE), True)
    assert await store.begin_reservation(owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), True)
    job = await _claim(store)
    assert job.kind == "reserve"
    assert await store.finish_reservation(
        item.uuid,
        job.lease,
        to(VolumeState.AVAILABLE, BUSY),
        quota_policy=QuotaPolicy.STATIC,
        free_mb=9,
    )
    switched = await _read(store, owner, item.uuid)
    assert (switched.state, switched.quota_policy) == (VolumeState.AVAILABLE, QuotaPolicy.STATIC)


async def test_a_clone_takes_its_source_and_gives_it_back(store: SqlStore) -> None:
    owner = await tenant(store)
    source = await _available(store, owner, size_mb=16)
    clone = volume(owner, state=VolumeState.UNINITIALIZED, size_mb=16)
    assert not await store.begin_clone(source.uuid, to(BUSY, VolumeState.IDLE), clone, ROOMY)
    assert await store.get_volume(owner.id, Ref(uuid=clone.uuid)) is None
    assert await store.begin_clone(source.uuid, to(BUSY, VolumeState.AVAILABLE), clone, ROOMY)
    assert (await _read(store, owner, source.uuid)).state == VolumeState.BUSY
    assert await store.has_active_clones(source.uuid)
    assert await store.job_holding(source.uuid) == "clone"
    # The source cannot be deleted while it is copied.
    assert not await store.begin_delete(owner.id, source.uuid, [VolumeState.BUSY])
    job = await _claim(store)
    assert (job.uuid, job.kind, job.args["source"]) == (clone.uuid, "clone", source.uuid)
    assert await store.finish_clone(
        clone.uuid,
        job.lease,
        to(VolumeState.AVAILABLE, VolumeState.UNINITIALIZED, VolumeState.INITIALIZING),
        source_uuid=source.uuid,
        source_back=to(VolumeState.AVAILABLE, BUSY),
        free_mb=15,
    )
    assert (await _read(store, owner, source.uuid)).state == VolumeState.AVAILABLE
    assert (await _read(store, owner, clone.uuid)).state == VolumeState.AVAILABLE
    assert not await store.has_active_clones(source.uuid)


async def test_a_clone_over_quota_inserts_nothing_and_leaves_the_source(store: SqlStore) -> None:
    owner = await tenant(store)
    source = await _available(store, owner, size_mb=16)
    tight = QuotaLimits(max_volumes=1, max_total_volume_mb=100, min_volume_mb=1, max_volume_mb=100)
    clone = volume(owner, state=VolumeState.UNINITIALIZED)
    with pytest.raises(QuotaRefused):
        await store.begin_clone(source.uuid, to(BUSY, VolumeState.AVAILABLE), clone, tight)
    assert (await _read(store, owner, source.uuid)).state == VolumeState.AVAILABLE
    assert await store.get_volume(owner.id, Ref(uuid=clone.uuid)) is None


async def test_a_template_is_made_only_from_the_state_read(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner)
    assert not await store.make_template(owner.id, item.uuid, to(TEMPLATE, VolumeState.IDLE))
    assert await store.make_template(owner.id, item.uuid, to(TEMPLATE, VolumeState.AVAILABLE))
    assert (await _read(store, owner, item.uuid)).state == VolumeState.TEMPLATE
    assert not await store.make_template(owner.id, item.uuid, to(TEMPLATE, VolumeState.AVAILABLE))


async def test_a_missing_image_puts_an_idle_row_in_error(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _available(store, owner)
    busy = volume(owner, state=VolumeState.UNINITIALIZED)
    await store.insert_volume_within_quota(busy, "format", {}, ROOMY)
    assert not await store.mark_image_missing(busy.uuid, "gone")  # a job holds it
    assert await store.mark_image_missing(item.uuid, "gone")
    marked = await _read(store, owner, item.uuid)
    assert (marked.state, marked.message) == (VolumeState.ERROR, "gone")
