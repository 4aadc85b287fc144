"""Quotas: a tenant's overrides, and the usage counters a create is checked against in
its own transaction (kept by triggers: they must agree with the rows)."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.harness import ROOMY, instance, tenant, to, volume
from volumed.domain.states import InstanceState, VolumeState
from volumed.domain.store import QuotaRefused
from volumed.domain.values import ListQuery, QuotaLimits, QuotaOverrides, QuotaUsage
from volumed.store.sql import SqlStore

LIMITS = QuotaLimits(max_volumes=3, max_total_volume_mb=100, min_volume_mb=1, max_volume_mb=100)


async def test_overrides_are_replaced_whole_and_removed_by_nones(store: SqlStore) -> None:
    owner = await tenant(store)
    assert await store.quota_overrides(owner.id) is None
    await store.set_quota_overrides(owner.id, QuotaOverrides(max_volumes=5))
    await store.set_quota_overrides(owner.id, QuotaOverrides(max_total_volume_mb=50))
    assert await store.quota_overrides(owner.id) == QuotaOverrides(max_total_volume_mb=50)
    await store.set_quota_overrides(owner.id, QuotaOverrides())
    assert await store.quota_overrides(owner.id) is None


async def test_creates_within_quota_stop_at_the_count_and_the_total(store: SqlStore) -> None:
    owner = await tenant(store)
    await store.insert_volume_within_quota(volume(owner, size_mb=60), "format", {}, LIMITS)
    with pytest.raises(QuotaRefused) as refused:
        await store.insert_volume_within_quota(volume(owner, size_mb=41), "format", {}, LIMITS)
    assert refused.value.usage == QuotaUsage(1, 60)
    await store.insert_volume_within_quota(volume(owner, size_mb=40), "format", {}, LIMITS)
    await store.insert_volume_within_quota(volume(owner, size_mb=0), "format", {}, LIMITS)
    with pytest.raises(QuotaRefused):
        await store.insert_volume_within_quota(volume(owner, size_mb=0), "format", {}, LIMITS)
    assert len(await store.list_volumes(owner.id, ListQuery())) == 3


async def test_concurrent_creates_cannot_overshoot(store: SqlStore) -> None:
    owner = await tenant(store)
    outcomes = await asyncio.gather(
        *(
            store.insert_volume_within_quota(volume(owner, size_mb=10), "format", {}, LIMITS)
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 3
    assert all(o is None or isinstance(o, QuotaRefused) for o in outcomes)
    assert (await store.quota_usage(owner.id)).volumes == 3


async def test_usage_follows_inserts_grows_deletes_and_purges(store: SqlStore) -> None:
    owner = await tenant(store)
    kept, gone, grown = volume(owner), volume(owner), volume(owner)
    for item in (kept, gone, grown):
        await store.insert_volume_within_quota(item, None, {}, ROOMY)
    assert await store.quota_usage(owner.id) == QuotaUsage(3, 48)
    await store.insert_volume_within_quota(
        volume(owner, state=VolumeState.TEMPLATE, size_mb=4), None, {}, ROOMY
    )
    assert await store.quota_usage(owner.id) == QuotaUsage(4, 52)
    assert await store.begin_grow(
        owner.id, grown.uuid, to(VolumeState.BUSY, VolumeState.AVAILABLE), 16, 40, ROOMY
    )
    assert await store.quota_usage(owner.id) == QuotaUsage(4, 76)
    # A deleted volume stops counting at once, not when its image is gone.
    assert await store.begin_delete(owner.id, gone.uuid, [VolumeState.AVAILABLE])
    assert await store.quota_usage(owner.id) == QuotaUsage(3, 60)
    assert await store.purge_volume(gone.uuid)
    assert await store.quota_usage(owner.id) == QuotaUsage(3, 60)
    # Another tenant's rows count for nobody else.
    other = await tenant(store)
    assert await store.quota_usage(other.id) == QuotaUsage(0, 0)


async def test_usage_counts_instances_and_what_live_ones_take(store: SqlStore) -> None:
    owner = await tenant(store)
    stopped, running = instance(owner), instance(owner, state=InstanceState.RUNNING)
    running.vcpus, running.memory_mb = 2, 256
    for item in (stopped, running):
        assert (await store.insert_instance(item, [], [])).result == "done"
    usage = await store.quota_usage(owner.id)
    assert (usage.instances, usage.live_instances, usage.live_vcpus, usage.live_memory_mb) == (
        2,
        1,
        2,
        256,
    )
