"""Volume rows: what goes in comes out, a tenant sees only its own, names are unique
per tenant, and listings page and filter as ``GET /v1/volumes`` promises."""

from __future__ import annotations

import dataclasses

import pytest

from tests.store.harness import ROOMY, tenant, volume
from volumed.domain.model import Ref, Volume
from volumed.domain.states import AccessMode, QuotaPolicy, VolumeState
from volumed.domain.store import NameTaken
from volumed.domain.values import ListQuery
from volumed.store.sql import SqlStore


async def test_a_volume_reads_back_as_it_was_written(store: SqlStore) -> None:
    owner = await tenant(store)
    written = volume(
        owner,
        "data",
        state=VolumeState.ERROR,
        size_mb=64,
        persistent=False,
        quota_policy=QuotaPolicy.STATIC,
        access_mode=AccessMode.ROX,
        delete_lock=True,
        free_mb=60,
        tags=["a", "b c"],
        message="went wrong",
    )
    await store.insert_volume_within_quota(written, None, {}, ROOMY)
    by_uuid = await store.get_volume(owner.id, Ref(uuid=written.uuid))
    by_name = await store.get_volume(owner.id, Ref(name="data"))
    assert by_uuid == written
    assert by_name == written


async def test_a_tenant_sees_only_its_own_volumes(store: SqlStore) -> None:
    alice, bob = await tenant(store), await tenant(store)
    mine = volume(alice, "same")
    await store.insert_volume_within_quota(mine, None, {}, ROOMY)
    # The same name is free for another tenant.
    await store.insert_volume_within_quota(volume(bob, "same"), None, {}, ROOMY)
    assert await store.get_volume(bob.id, Ref(uuid=mine.uuid)) is None
    listed = await store.list_volumes(bob.id, ListQuery())
    assert [v.owner_id for v in listed] == [bob.id]


async def test_a_name_is_taken_once_per_tenant(store: SqlStore) -> None:
    owner = await tenant(store)
    first = volume(owner, "data")
    await store.insert_volume_within_quota(first, "format", {}, ROOMY)
    with pytest.raises(NameTaken):
        await store.insert_volume_within_quota(volume(owner, "data"), "format", {}, ROOMY)
    assert [v.uuid for v in await store.list_volumes(owner.id, ListQuery())] == [first.uuid]


async def _five(store: SqlStore) -> tuple[str, list[Volume]]:
    owner = await tenant(store)
    made = [volume(owner, f"v{n}") for n in range(5)]
    for item in made:
        await store.insert_volume_within_quota(item, None, {}, ROOMY)
    return owner.id, made


def _uuids(volumes: list[Volume]) -> list[str]:
    return [v.uuid for v in volumes]


async def test_listings_are_in_creation_order_and_page_from_a_cursor(store: SqlStore) -> None:
    owner, made = await _five(store)
    assert _uuids(await store.list_volumes(owner, ListQuery())) == _uuids(made)
    newest_first = await store.list_volumes(owner, ListQuery(descending=True))
    assert _uuids(newest_first) == _uuids(made)[::-1]
    # A page of two, then the next one from the last item seen (the cursor is inclusive).
    page = await store.list_volumes(owner, ListQuery(count=2))
    assert _uuids(page) == _uuids(made[:2])
    after = await store.list_volumes(owner, ListQuery(count=2, from_uuid=page[-1].uuid))
    assert _uuids(after) == _uuids(made[1:3])
    back = await store.list_volumes(
        owner, ListQuery(count=2, from_uuid=made[3].uuid, descending=True)
    )
    assert _uuids(back) == [made[3].uuid, made[2].uuid]
    since = await store.list_volumes(owner, ListQuery(from_time_us=made[2].created_at_us))
    assert _uuids(since) == _uuids(made[2:])
    assert await store.list_volumes(owner, ListQuery(from_uuid="no-such-volume")) == []


async def test_a_cursor_deleted_meanwhile_still_marks_its_place(store: SqlStore) -> None:
    owner, made = await _five(store)
    cursor = made[2]
    assert await store.begin_delete(owner, cursor.uuid, [VolumeState.AVAILABLE])
    assert await store.purge_volume(cursor.uuid)
    after = await store.list_volumes(owner, ListQuery(from_uuid=cursor.uuid))
    assert _uuids(after) == _uuids(made[3:])
    assert await store.cursor_name(owner, cursor.uuid) == cursor.name
    assert await store.cursor_name(owner, "never-there") is None


async def test_listings_filter_by_state_persistence_and_tags(store: SqlStore) -> None:
    owner = await tenant(store)
    tagged = volume(owner, tags=["blue", "small"])
    prefix = volume(owner, tags=["bluer"])
    broken = volume(owner, state=VolumeState.ERROR, persistent=False)
    template = volume(owner, state=VolumeState.TEMPLATE)
    for item in (tagged, prefix, broken, template):
        await store.insert_volume_within_quota(item, None, {}, ROOMY)

    async def listed(query: ListQuery) -> set[str]:
        return {v.uuid for v in await store.list_volumes(owner.id, query)}

    assert await listed(ListQuery()) == {tagged.uuid, prefix.uuid, broken.uuid}
    assert await listed(ListQuery(templates=True)) == {template.uuid}
    assert await listed(ListQuery(states=(VolumeState.ERROR,))) == {broken.uuid}
    assert await listed(ListQuery(persistent=False)) == {broken.uuid}
    # A tag matches whole, never as a prefix of another; several tags must all match.
    assert await listed(ListQuery(tags=("blue",))) == {tagged.uuid}
    assert await listed(ListQuery(tags=("blue", "small"))) == {tagged.uuid}
    assert await listed(ListQuery(tags=("blue", "big"))) == set()


async def test_delete_is_a_compare_and_set_that_owes_a_delete_job(store: SqlStore) -> None:
    owner = await tenant(store)
    item, locked = volume(owner), volume(owner, delete_lock=True)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    await store.insert_volume_within_quota(locked, None, {}, ROOMY)
    assert not await store.begin_delete(owner.id, item.uuid, [VolumeState.IDLE])
    assert await store.get_volume(owner.id, Ref(uuid=item.uuid)) == item
    assert not await store.begin_delete(owner.id, locked.uuid, [VolumeState.AVAILABLE])
    assert await store.begin_delete(owner.id, item.uuid, [VolumeState.AVAILABLE])
    # Hidden at once, and deleted only once.
    assert await store.get_volume(owner.id, Ref(uuid=item.uuid)) is None
    assert not await store.begin_delete(owner.id, item.uuid, [VolumeState.AVAILABLE])
    job = await store.claim_job("w", 60_000_000)
    assert job is not None and (job.uuid, job.kind) == (item.uuid, "delete")
    # A row is purged only once it is deleted.
    assert not await store.purge_volume(locked.uuid)
    assert await store.purge_volume(item.uuid)
    assert [r["uuid"] for r in await store.fsck_rows()] == [locked.uuid]


async def test_tags_and_the_delete_lock_change_by_compare_and_set(store: SqlStore) -> None:
    owner = await tenant(store)
    item = volume(owner, tags=["a"])
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    assert not await store.set_tags(owner.id, item.uuid, ["b"], ["c"])
    assert await store.set_tags(owner.id, item.uuid, ["a"], ["a", "c"])
    assert await store.set_delete_lock(owner.id, item.uuid, True)
    other = await tenant(store)
    assert not await store.set_delete_lock(other.id, item.uuid, False)
    got = await store.get_volume(owner.id, Ref(uuid=item.uuid))
    assert got == dataclasses.replace(item, tags=["a", "c"], delete_lock=True)
