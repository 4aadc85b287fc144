"""The official Python SDK (``unikraft-cloud`` 0.3.0, a pinned dev dependency) driving a
live volumed server: the idiomatic layer for create, get, list, update, attach/detach
and delete, its errors, and the plumbing layer for clone and templates."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, TypeVar

import httpx
import pytest
from unikraft_cloud import (
    REMOVE,
    AlreadyExistsError,
    NotFoundError,
    Ref,
    UnikraftCloud,
    UnikraftCloudError,
)
from unikraft_cloud.api.platform import models

from tests.conftest import LiveServer

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def run(server: LiveServer, body: Callable[[UnikraftCloud], Awaitable[T]]) -> T:
    """Run ``body`` with a client pinned to the server, as a user would configure it."""

    async def main() -> T:
        async with UnikraftCloud(token=server.token, base_url=server.url) as ukc:
            return await body(ukc)

    return asyncio.run(main())


async def available(ukc: UnikraftCloud, uuid: str) -> Any:
    """The volume, read once: a create or clone answers once the volume is made."""
    volume = await ukc.volumes.get(uuid=uuid)
    assert volume.state == "available", volume
    return volume


def test_the_pinned_sdk_is_the_one_under_test() -> None:
    assert version("unikraft-cloud") == "0.3.0"


# ---------------------------------------------------------------------- idiomatic layer


def test_create_get_refresh_and_errors(sdk_server: LiveServer) -> None:
    name = unique("data")

    async def body(ukc: UnikraftCloud) -> None:
        created = await ukc.volumes.create(name=name, size_mb=32, tags=["sdk"])
        assert created.name == name and created.uuid and created.size_mb == 32
        assert created.metro == sdk_server.url
        volume = await available(ukc, created.uuid)
        assert volume.persistent is True and volume.tags == ["sdk"]
        assert volume.quota_policy == "static" and volume.access_mode == "rwo"
        assert volume.filesystem == "ext4" and 0 < (volume.free_mb or 0) < 32
        assert volume.attached_to == [] and volume.created_at is not None
        by_name = await ukc.volumes.get(name=name)
        assert by_name.uuid == created.uuid
        refreshed = await ukc.volumes.get(uuid=created.uuid).refresh()
        assert refreshed.name == name
        # An unnamed create gets a vol-XXXXX name (the SDK sends "name": null).
        unnamed = await ukc.volumes.create(name=None, size_mb=4, quota_policy="dynamic")
        assert unnamed.name is not None and unnamed.name.startswith("vol-")
        with pytest.raises(NotFoundError) as missing:
            await ukc.volumes.get(name=unique("missing"))
        assert missing.value.status == 404
        with pytest.raises(AlreadyExistsError) as clash:
            await ukc.volumes.create(name=name, size_mb=4)
        assert clash.value.status == 409
        with pytest.raises(UnikraftCloudError):
            await ukc.volumes.create(size_mb=4, access_mode="rwx")

    run(sdk_server, body)


def test_list_pages_through_everything_once(sdk_server: LiveServer) -> None:
    tag = unique("page")

    async def body(ukc: UnikraftCloud) -> None:
        made = [
            (await ukc.volumes.create(size_mb=1, quota_policy="dynamic", tags=[tag])).uuid
            for _ in range(23)
        ]
        listed = [v.uuid for v in await ukc.volumes.list(tags=[tag], page_size=5)]
        assert listed == made
        brief = await ukc.volumes.list(tags=[tag], details=False, page_size=100)
        assert [v.uuid for v in brief] == made and brief[0].size_mb is None

    run(sdk_server, body)


def test_list_while_volumes_come_and_go_yields_each_once(sdk_server: LiveServer) -> None:
    """Between pages: the cursor itself, the item before it and one not read yet are
    deleted, and new volumes are made. Each volume that lives through the listing is
    yielded exactly once, and none that was deleted before it was reached."""
    tag = unique("churn")

    async def make(ukc: UnikraftCloud) -> str:
        volume = await ukc.volumes.create(size_mb=1, quota_policy="dynamic", tags=[tag])
        assert volume.uuid is not None
        return volume.uuid

    async def body(ukc: UnikraftCloud) -> None:
        made = [await make(ukc) for _ in range(20)]
        deleted: set[str] = set()
        added: list[str] = []
        seen: list[str] = []
        async for volume in ukc.volumes.list(tags=[tag], page_size=4):
            assert volume.uuid is not None
            seen.append(volume.uuid)
            if len(seen) % 4 == 0:  # the end of a page: volume is the next cursor
                ahead = [u for u in made if u not in seen and u not in deleted]
                victims = [seen[-1], seen[-2]] + ahead[1:2]
                await ukc.volumes.delete([Ref(uuid=u) for u in victims])
                deleted.update(victims)
                added.append(await make(ukc))
        assert len(seen) == len(set(seen))
        survivors = [u for u in made if u not in deleted or u in seen]
        assert [u for u in seen if u in made] == survivors
        assert set(seen) - set(made) <= set(added)

    run(sdk_server, body)


def test_iterate_and_delete_everything(sdk_server: LiveServer) -> None:
    """The common clean-up loop: every volume read is deleted before the next page."""
    tag = unique("sweep")

    async def body(ukc: UnikraftCloud) -> None:
        made = [
            (await ukc.volumes.create(size_mb=1, quota_policy="dynamic", tags=[tag])).uuid
            for _ in range(11)
        ]
        for uuid in made:
            await available(ukc, str(uuid))
        swept = []
        async for volume in ukc.volumes.list(tags=[tag], page_size=3):
            swept.append(volume.uuid)
            await ukc.volumes.get(uuid=volume.uuid).delete()
        assert swept == made
        assert await ukc.volumes.list(tags=[tag]) == []

    run(sdk_server, body)


def test_update_through_the_handle(sdk_server: LiveServer) -> None:
    name = unique("upd")

    async def body(ukc: UnikraftCloud) -> None:
        created = await ukc.volumes.create(name=name, size_mb=16)
        await available(ukc, str(created.uuid))
        handle = ukc.volumes.get(name=name)
        updated = await handle.update(size_mb=48, tags=["prod", "eu"])
        assert updated.name == name and updated.status == "success"
        # update() returns after the PATCH; the next read shows the grown volume.
        volume = await ukc.volumes.get(name=name)
        assert (volume.size_mb, volume.tags, volume.state) == (48, ["prod", "eu"], "available")
        assert (volume.free_mb or 0) > 40
        await handle.edit().add(tags=["x"]).delete(tags=["eu"]).apply()
        assert (await ukc.volumes.get(name=name)).tags == ["prod", "x"]
        await handle.update(tags=REMOVE)
        assert (await ukc.volumes.get(name=name)).tags == []
        await handle.update(quota_policy="dynamic")
        assert (await ukc.volumes.get(name=name)).quota_policy == "dynamic"
        await handle.update(delete_lock=True)
        with pytest.raises(UnikraftCloudError) as locked:
            await handle.delete()
        assert "delete lock" in str(locked.value)
        await handle.update(delete_lock=False)
        with pytest.raises(UnikraftCloudError) as shrink:
            await handle.update(size_mb=8)
        assert "never shrink" in str(shrink.value)
        deleted = await handle.delete()
        assert deleted.uuid == created.uuid
        with pytest.raises(NotFoundError):
            await ukc.volumes.get(name=name)

    run(sdk_server, body)


def test_bulk_delete_reports_each_ref(sdk_server: LiveServer) -> None:
    async def body(ukc: UnikraftCloud) -> None:
        a = await ukc.volumes.create(name=unique("a"), size_mb=1, quota_policy="dynamic")
        b = await ukc.volumes.create(name=unique("b"), size_mb=1, quota_policy="dynamic")
        for volume in (a, b):
            await available(ukc, str(volume.uuid))
        gone = await ukc.volumes.delete([{"name": str(a.name)}, Ref(uuid=str(b.uuid))])
        assert {g.uuid for g in gone} == {a.uuid, b.uuid}
        with pytest.raises(NotFoundError) as missing:
            await ukc.volumes.delete([Ref(name=str(a.name))])
        assert missing.value.absent

    run(sdk_server, body)


def test_attach_and_detach_through_handles(sdk_server: LiveServer) -> None:
    """Needs the instances API (/v1/instances) of issue 3."""
    volume_name, instance_name = unique("vol"), unique("web")

    async def body(ukc: UnikraftCloud) -> None:
        created = await ukc.volumes.create(name=volume_name, size_mb=8, quota_policy="dynamic")
        await available(ukc, str(created.uuid))
        await ukc.instances.create(name=instance_name, image="nginx:latest")
        handle = ukc.volumes.get(name=volume_name)
        attached = await handle.attach(to=instance_name, at="/data")
        assert attached.uuid == created.uuid
        volume = await ukc.volumes.get(name=volume_name)
        assert volume.state == "idle"
        assert [(a.name, a.uuid is not None) for a in volume.attached_to or []] == [
            (instance_name, True)
        ]
        instance = await ukc.instances.get(name=instance_name)
        assert [(v.name, v.at) for v in instance.volumes or []] == [(volume_name, "/data")]
        with pytest.raises(UnikraftCloudError):
            await handle.delete()  # attached
        await ukc.instances.get(name=instance_name).start()
        mounted = await ukc.volumes.get(name=volume_name)
        assert mounted.state == "mounted" and mounted.mounted_by
        await ukc.instances.get(name=instance_name).stop()
        detached = await handle.detach(from_=instance_name)
        assert detached.name == volume_name
        assert (await ukc.volumes.get(name=volume_name)).state == "available"
        await handle.attach(to=Ref(name=instance_name), at="/mnt", readonly=True)
        await handle.detach()
        assert (await ukc.volumes.get(name=volume_name)).attached_to == []
        await ukc.instances.get(name=instance_name).delete()
        await handle.delete()

    run(sdk_server, body)


def test_quotas(sdk_server: LiveServer) -> None:
    async def body(ukc: UnikraftCloud) -> None:
        before = (await ukc.users.quotas())[0]
        await ukc.volumes.create(size_mb=3, quota_policy="dynamic")
        after = (await ukc.users.quotas())[0]
        assert after.used and before.used and after.hard and after.limits
        assert after.used.volumes == (before.used.volumes or 0) + 1
        assert after.used.total_volume_mb == (before.used.total_volume_mb or 0) + 3
        assert after.hard.volumes == 1024 and after.limits.min_volume_mb == 1
        assert after.metro == sdk_server.url

    run(sdk_server, body)


# ---------------------------------------------------------------------- plumbing layer


def test_clone_through_the_plumbing_layer(sdk_server: LiveServer) -> None:
    name = unique("src")

    async def body(ukc: UnikraftCloud) -> None:
        volumes = ukc.api.platform.volumes
        source = await ukc.volumes.create(name=name, size_mb=8, quota_policy="dynamic")
        await available(ukc, str(source.uuid))
        res = await volumes.clone_volumes(
            body=[models.CloneVolumesRequestItem(name=name, vol_name=name + "-copy", tags=["c"])]
        )
        assert res.status == "success" and res.data and res.data.volumes
        item = res.data.volumes[0]
        assert item.name == name + "-copy" and item.uuid != source.uuid
        clone = await available(ukc, str(item.uuid))
        assert (clone.size_mb, clone.tags, clone.quota_policy) == (8, ["c"], "dynamic")
        await available(ukc, str(source.uuid))
        res = await volumes.clone_volume_by_uuid(
            str(source.uuid), body=models.CloneVolumeByUUIDRequestBody(quota_policy="static")
        )
        assert res.data and res.data.volumes
        by_uuid = await available(ukc, str(res.data.volumes[0].uuid))
        assert by_uuid.quota_policy == "static"
        res = await volumes.clone_volumes(body=[models.CloneVolumesRequestItem(name="nope-x")])
        assert res.status == "error" and res.data and res.data.volumes
        assert res.data.volumes[0].error == 8

    run(sdk_server, body)


def test_templates_through_the_plumbing_layer(sdk_server: LiveServer) -> None:
    name = unique("tpl")

    async def body(ukc: UnikraftCloud) -> None:
        volumes = ukc.api.platform.volumes
        source = await ukc.volumes.create(name=name, size_mb=8, quota_policy="dynamic")
        await available(ukc, str(source.uuid))
        made = await volumes.create_template_volume(body=[models.NameOrUUID(name=name)])
        assert made.data and made.data.volumes and made.data.volumes[0].state == "template"
        listed = await volumes.get_template_volumes(name=[name])
        assert listed.data and listed.data.volumes
        assert listed.data.volumes[0].uuid == source.uuid
        one = await volumes.get_template_volume_by_uuid(str(source.uuid), details=True)
        assert one.data and one.data.volumes and one.data.volumes[0].state == "template"
        patched = await volumes.update_template_volumes(
            body=[
                models.UpdateTemplateVolumesRequestItem(
                    name=name, id="t", prop="tags", op="set", value=["golden"]
                )
            ]
        )
        assert patched.data and patched.data.volumes and patched.data.volumes[0].id == "t"
        await volumes.update_template_volume_by_uuid(
            str(source.uuid),
            body=models.UpdateTemplateVolumeByUUIDRequestBody(
                prop="delete_lock", op="set", value=False
            ),
        )
        # A new volume from the template, through the idiomatic create.
        copy = await ukc.volumes.create(name=name + "-new", template={"name": name})
        copy = await available(ukc, str(copy.uuid))
        assert copy.size_mb == 8 and copy.state == "available"
        # Immutable: an attach is refused (24) whatever the instance.
        with pytest.raises(UnikraftCloudError):
            await ukc.volumes.get(name=name).attach(to="anything", at="/data")
        gone = await volumes.delete_template_volumes(body=[models.NameOrUUID(name=name)])
        assert gone.status == "success"
        missing = await volumes.get_template_volume_by_uuid(str(source.uuid))
        assert missing.data and missing.data.volumes and missing.data.volumes[0].error == 8
        assert (await ukc.volumes.get(name=name + "-new")).tags == []

    run(sdk_server, body)


# ---------------------------------------------------------------------- discovery


def test_discovery_through_get_v1_metros(sdk_server: LiveServer) -> None:
    """Without a pinned URL the SDK asks the control plane for metros: pointed at
    volumed, it finds this server as the one metro and reads from it."""
    name = unique("disc")
    with httpx.Client(base_url=sdk_server.url, headers=_auth(sdk_server)) as api:
        made = api.post("/v1/volumes", json={"name": name, "size_mb": 1, "quota_policy": "dynamic"})
        assert made.json()["status"] == "success"

    async def main() -> None:
        async with UnikraftCloud(token=sdk_server.token, control_plane_url=sdk_server.url) as ukc:
            metros = await ukc.available_metros()
            assert [(m.metro, m.base_url) for m in metros] == [("loc", sdk_server.url)]
            volume = await ukc.volumes.get(name=name)
            assert volume.metro == "loc" and volume.name == name
            assert name in [v.name async for v in ukc.volumes.list()]

    asyncio.run(main())


def _auth(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def test_environment_configuration(sdk_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``UKC_METRO=http://host:port`` pins the SDK the way ``base_url`` does."""
    monkeypatch.setenv("UKC_METRO", sdk_server.url)
    monkeypatch.setenv("UKC_TOKEN", sdk_server.token)

    async def main() -> None:
        async with UnikraftCloud() as ukc:
            volume = await ukc.volumes.create(size_mb=1, quota_policy="dynamic")
            assert (await ukc.volumes.get(uuid=str(volume.uuid))).uuid == volume.uuid

    asyncio.run(main())
