"""Jobs and leases: a job is claimed by one worker at a time, under a lease that runs out;
every claim takes a new fencing epoch, and only the holder of the current one can change
the row; failed jobs back off, then park until an operator retries them."""

from __future__ import annotations

import asyncio

from tests.store.harness import ROOMY, tenant, to, volume
from volumed.domain.model import Ref, User
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.values import Job, Lease
from volumed.store.sql import SqlStore

MINUTE_US = 60_000_000
EXPIRED_US = 1
"""A lease that is over by the time anyone looks again."""

NEW = (VolumeState.UNINITIALIZED, VolumeState.INITIALIZING)
BUSY = VolumeState.BUSY


async def _owing(store: SqlStore, owner: User, job: str = "format") -> str:
    item = volume(owner, state=VolumeState.UNINITIALIZED)
    await store.insert_volume_within_quota(item, job, {}, ROOMY)
    return item.uuid


async def _claim(store: SqlStore, worker: str, lease_us: int = MINUTE_US) -> Job:
    job = await store.claim_job(worker, lease_us)
    assert job is not None
    return job


async def test_the_oldest_job_is_claimed_once_while_its_lease_lasts(store: SqlStore) -> None:
    owner = await tenant(store)
    assert await store.claim_job("w-a", MINUTE_US) is None
    first, second = await _owing(store, owner), await _owing(store, owner)
    await store.insert_volume_within_quota(volume(owner), None, {}, ROOMY)  # owes nothing
    a = await _claim(store, "w-a")
    assert (a.uuid, a.kind, a.state, a.attempts, a.lease_owner) == (
        first,
        "format",
        VolumeState.UNINITIALIZED,
        1,
        "w-a",
    )
    b = await _claim(store, "w-b")
    assert b.uuid == second
    assert await store.claim_job("w-c", MINUTE_US) is None


async def test_a_lapsed_lease_is_claimed_again_under_a_new_epoch(store: SqlStore) -> None:
    uuid = await _owing(store, await tenant(store))
    stale = await _claim(store, "w-a", EXPIRED_US)
    fresh = await _claim(store, "w-a")  # the same name: only the epoch tells them apart
    assert fresh.uuid == uuid
    assert fresh.epoch > stale.epoch and fresh.attempts == stale.attempts + 1
    assert not await store.renew_lease(uuid, stale.lease, MINUTE_US)
    assert not await store.commit_stage(uuid, stale.lease)
    assert not await store.set_job_state(uuid, stale.lease, to(VolumeState.INITIALIZING, *NEW))
    assert not await store.finish_job(uuid, stale.lease, to(VolumeState.AVAILABLE, *NEW), free_mb=1)
    assert not await store.retry_job_later(uuid, stale.lease, 0)
    assert not await store.park_job(uuid, stale.lease, "stale")
    # The current holder still holds it.
    assert await store.renew_lease(uuid, fresh.lease, MINUTE_US)
    assert await store.job_holding(uuid) == "format"


async def test_the_holder_moves_the_state_and_ends_the_job(store: SqlStore) -> None:
    owner = await tenant(store)
    uuid = await _owing(store, owner)
    job = await _claim(store, "w")
    assert not await store.set_job_state(
        uuid, job.lease, to(VolumeState.INITIALIZING, VolumeState.AVAILABLE)
    )
    assert await store.set_job_state(uuid, job.lease, to(VolumeState.INITIALIZING, *NEW))
    assert not await store.finish_job(
        uuid, job.lease, to(VolumeState.AVAILABLE, VolumeState.UNINITIALIZED)
    )
    assert await store.finish_job(
        uuid, job.lease, to(VolumeState.AVAILABLE, VolumeState.INITIALIZING), free_mb=12
    )
    got = await store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None and (got.state, got.free_mb) == (VolumeState.AVAILABLE, 12)
    assert await store.job_holding(uuid) is None
    # The job is over: its lease cannot be renewed, nothing is left to claim.
    assert not await store.renew_lease(uuid, job.lease, MINUTE_US)
    assert await store.claim_job("w", MINUTE_US) is None


async def test_a_claim_starts_the_job_it_names_in_its_own_transaction(
    store: SqlStore,
) -> None:
    owner = await tenant(store)
    starts = {"format": to(VolumeState.INITIALIZING, *NEW)}
    uuid = await _owing(store, owner)
    other = await _owing(store, owner, "delete")  # a kind the claim does not start
    job = await store.claim_job("w", EXPIRED_US, starts)
    assert job is not None and (job.uuid, job.state) == (uuid, VolumeState.INITIALIZING)
    got = await store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None and got.state == VolumeState.INITIALIZING
    trail = [(e.action, e.state_from, e.state_to, e.message) for e in
             await store.volume_events(owner.id, uuid)]  # fmt: skip
    assert trail[1:] == [("format", "uninitialized", "initializing", "Started (attempt 1)")]
    untouched = await store.claim_job("w", MINUTE_US, starts)
    assert untouched is not None and untouched.uuid == other
    assert untouched.state == VolumeState.UNINITIALIZED
    # Claimed again (the lease ran out): already started, no second event.
    again = await store.claim_job("w", MINUTE_US, starts)
    assert again is not None and (again.uuid, again.state) == (uuid, VolumeState.INITIALIZING)
    assert len(await store.volume_events(owner.id, uuid)) == len(trail)
    # Nothing to claim: nothing changes.
    assert await store.claim_job("w", MINUTE_US, starts) is None


async def test_a_failed_job_ends_in_error_with_its_message(store: SqlStore) -> None:
    owner = await tenant(store)
    uuid = await _owing(store, owner)
    job = await _claim(store, "w")
    assert await store.finish_job(
        uuid, job.lease, to(VolumeState.ERROR, *NEW), message="Formatting failed: no space"
    )
    got = await store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None
    assert (got.state, got.message) == (VolumeState.ERROR, "Formatting failed: no space")


async def test_a_committed_stage_is_handed_to_the_next_holder(store: SqlStore) -> None:
    uuid = await _owing(store, await tenant(store))
    first = await _claim(store, "w-a", EXPIRED_US)
    assert first.published is None
    assert await store.commit_stage(uuid, first.lease)
    second = await _claim(store, "w-b")
    assert second.published == first.epoch


async def test_a_job_retried_later_waits_out_its_back_off(store: SqlStore) -> None:
    uuid = await _owing(store, await tenant(store))
    job = await _claim(store, "w")
    assert await store.retry_job_later(uuid, job.lease, MINUTE_US)
    assert await store.claim_job("w", MINUTE_US) is None
    soon = await _owing(store, await tenant(store))
    again = await _claim(store, "w")
    assert await store.retry_job_later(soon, again.lease, 1_000)
    await asyncio.sleep(0.01)
    assert (await _claim(store, "w")).uuid == soon


async def test_a_parked_job_waits_for_an_operator(store: SqlStore) -> None:
    uuid = await _owing(store, await tenant(store))
    job = await _claim(store, "w", EXPIRED_US)
    assert await store.park_job(uuid, job.lease, "gave up")
    assert await store.claim_job("w", MINUTE_US) is None
    parked = await store.parked_jobs()
    assert [(p["uuid"], p["job"], p["reason"]) for p in parked] == [(uuid, "format", "gave up")]
    assert (await store.stats()).parked_jobs == 1
    assert await store.unpark_job(uuid)
    assert not await store.unpark_job(uuid)
    retried = await _claim(store, "w")
    assert (retried.uuid, retried.attempts) == (uuid, 1)


async def test_released_leases_are_claimable_at_once(store: SqlStore) -> None:
    owner = await tenant(store)
    mine, theirs = await _owing(store, owner), await _owing(store, owner)
    await _claim(store, "w-mine")
    await _claim(store, "w-theirs")
    assert await store.release_leases("w-mine") == 1
    assert (await _claim(store, "w-new")).uuid == mine
    assert await store.release_leases() == 2
    assert {(await _claim(store, "w")).uuid, (await _claim(store, "w")).uuid} == {mine, theirs}


async def test_an_import_is_leased_to_its_streamer(store: SqlStore) -> None:
    owner = await tenant(store)
    item = volume(owner)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    assert await store.begin_import(owner.id, item.uuid, to(BUSY, VolumeState.IDLE), "w", 1) is None
    lease = await store.begin_import(
        owner.id, item.uuid, to(BUSY, VolumeState.AVAILABLE), "w", MINUTE_US
    )
    assert isinstance(lease, Lease) and lease.owner == "w"
    got = await store.get_volume(owner.id, Ref(uuid=item.uuid))
    assert got is not None and got.state == VolumeState.BUSY
    assert await store.job_holding(item.uuid) == "import"
    # Held: no second import, and no worker claims it while the streamer renews.
    assert (
        await store.begin_import(owner.id, item.uuid, to(BUSY, VolumeState.BUSY), "w2", 1) is None
    )
    assert await store.claim_job("w2", MINUTE_US) is None
    assert await store.renew_lease(item.uuid, lease, MINUTE_US)


async def test_host_space_promised_to_pending_jobs(store: SqlStore) -> None:
    owner = await tenant(store)
    assert await store.pending_reserved_mb() == 0
    await store.insert_volume_within_quota(
        volume(owner, state=VolumeState.UNINITIALIZED, size_mb=100), "format", {}, ROOMY
    )
    static = volume(
        owner, state=VolumeState.UNINITIALIZED, size_mb=30, quota_policy=QuotaPolicy.STATIC
    )
    await store.insert_volume_within_quota(static, "format", {}, ROOMY)
    # Only the static one reserves host space.
    assert await store.pending_reserved_mb() == 30


async def test_stats_count_live_volumes_tenants_and_jobs(store: SqlStore) -> None:
    owner = await tenant(store)
    await tenant(store)
    await _owing(store, owner)
    await store.insert_volume_within_quota(volume(owner, size_mb=10, free_mb=4), None, {}, ROOMY)
    stats = await store.stats()
    assert stats.volumes_by_state == {VolumeState.UNINITIALIZED: 1, VolumeState.AVAILABLE: 1}
    assert (stats.provisioned_mb, stats.used_mb, stats.tenants, stats.jobs) == (26, 6, 2, 1)
