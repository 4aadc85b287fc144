"""The audit trail: each transition writes its event in its own transaction, in order,
for the volume's owner only; the trail outlives the volume and keeps its newest events."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.store.harness import ROOMY, database_url, open_empty, tenant, to, volume
from volumed.domain.audit import WORKER, VolumeEvent
from volumed.domain.states import VolumeState
from volumed.domain.transitions import End, step
from volumed.domain.values import Claim
from volumed.settings import Settings
from volumed.store.sql import SqlStore

NEW = (VolumeState.UNINITIALIZED, VolumeState.INITIALIZING)


def _steps(events: list[VolumeEvent]) -> list[tuple[str, str, str, str | None, str | None]]:
    return [(e.actor, e.action, e.result, e.state_from, e.state_to) for e in events]


async def test_a_format_leaves_its_trail_in_order(store: SqlStore) -> None:
    owner = await tenant(store, "alice")
    item = volume(owner, state=VolumeState.UNINITIALIZED)
    await store.insert_volume_within_quota(item, "format", {}, ROOMY)
    job = await store.claim_job("w", 60_000_000)
    assert job is not None
    assert await store.set_job_state(item.uuid, job.lease, to(VolumeState.INITIALIZING, *NEW))
    await store.add_volume_event(item.uuid, "format", "error", "Attempt 1 failed")
    assert await store.finish_job(item.uuid, job.lease, to(VolumeState.ERROR, *NEW), message="no")
    events = await store.volume_events(owner.id, item.uuid)
    assert _steps(events) == [
        ("alice", "create", "ok", None, "uninitialized"),
        (WORKER, "format", "ok", "uninitialized", "initializing"),
        (WORKER, "format", "error", None, None),
        (WORKER, "format", "error", "initializing", "error"),
    ]
    assert [e.message for e in events][2:] == ["Attempt 1 failed", "no"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.volume_uuid == item.uuid for e in events)


async def test_a_lost_compare_and_set_writes_no_event(store: SqlStore) -> None:
    owner = await tenant(store)
    item = volume(owner)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    assert not await store.begin_delete(owner.id, item.uuid, [VolumeState.IDLE])
    assert not await store.make_template(
        owner.id, item.uuid, to(VolumeState.TEMPLATE, VolumeState.ERROR)
    )
    assert [e.action for e in await store.volume_events(owner.id, item.uuid)] == ["create"]


async def test_the_trail_is_its_owners_and_outlives_the_volume(store: SqlStore) -> None:
    owner, other = await tenant(store), await tenant(store)
    item = volume(owner)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    assert await store.begin_delete(owner.id, item.uuid, [VolumeState.AVAILABLE])
    assert await store.purge_volume(item.uuid)
    assert await store.volume_events(other.id, item.uuid) == []
    trail = await store.volume_events(owner.id, item.uuid)
    assert [(e.action, e.state_from) for e in trail] == [("create", None), ("delete", "available")]


@pytest.fixture
def capped(tmp_path: Path) -> Settings:
    """Settings that keep three events per volume (made outside the test's loop: a new
    PostgreSQL database is made on a loop of its own)."""
    return Settings(data_dir=tmp_path, database_url=database_url(), events_per_volume=3)


async def test_the_trail_keeps_its_newest_events(capped: Settings) -> None:
    store = await open_empty(capped)
    try:
        owner = await tenant(store)
        item = volume(owner)
        await store.insert_volume_within_quota(item, None, {}, ROOMY)
        for n in range(5):
            await store.add_volume_event(item.uuid, "format", "error", f"attempt {n}")
        trail = await store.volume_events(owner.id, item.uuid)
    finally:
        await store.close()
    assert [e.message for e in trail] == ["attempt 2", "attempt 3", "attempt 4"]
    assert {e.actor for e in trail} == {WORKER}


@pytest.fixture
def single(tmp_path: Path) -> Settings:
    """Settings that keep one event per volume."""
    return Settings(data_dir=tmp_path, database_url=database_url(), events_per_volume=1)


async def test_a_claimed_create_keeps_its_newest_event_too(single: Settings) -> None:
    """A create skips the trim while its new volume's events fit; its claimed start is
    the second event, which does not fit one: the create's event goes."""
    store = await open_empty(single)
    try:
        owner = await tenant(store)
        item = volume(owner, state=VolumeState.UNINITIALIZED)
        claim = Claim("w", 60_000_000, step(End.FORMAT_STARTED))
        assert await store.insert_volume_within_quota(item, "format", {}, ROOMY, claim=claim)
        plain = volume(owner, state=VolumeState.UNINITIALIZED)
        await store.insert_volume_within_quota(plain, "format", {}, ROOMY)
        trail = await store.volume_events(owner.id, item.uuid)
        plain_trail = await store.volume_events(owner.id, plain.uuid)
    finally:
        await store.close()
    assert [(e.action, e.state_to) for e in trail] == [("format", "initializing")]
    assert [(e.action, e.state_to) for e in plain_trail] == [("create", "uninitialized")]
