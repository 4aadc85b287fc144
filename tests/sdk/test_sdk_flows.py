"""The flows people script with the official SDK, call after call with nothing in
between: no sleep, no polling. Each step may rely on the one before it having finished,
as it can against the hosted service (issue 12)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from unikraft_cloud import NotFoundError, Ref, UnikraftCloud
from unikraft_cloud.api.platform import models

from tests.api import attach_helpers
from tests.conftest import LiveServer
from tests.sdk.test_sdk_volumes import run


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_create_attach_start_stop_detach_clone_delete_both(sdk_server: LiveServer) -> None:
    name, web, copy = unique("flow"), unique("web"), unique("flow-copy")

    async def body(ukc: UnikraftCloud) -> None:
        created = await ukc.volumes.create(name=name, size_mb=16)
        assert created.state == "available" and (created.free_mb or 0) > 0
        await ukc.instances.create(name=web, image="nginx:latest")
        await ukc.volumes.get(name=name).attach(to=web, at="/data")
        await ukc.instances.get(name=web).start()
        assert (await ukc.volumes.get(name=name)).state == "mounted"
        await ukc.instances.get(name=web).stop()
        await ukc.volumes.get(name=name).detach(from_=web)
        res = await ukc.api.platform.volumes.clone_volumes(
            body=[models.CloneVolumesRequestItem(name=name, vol_name=copy)]
        )
        assert res.data and res.data.volumes and res.data.volumes[0].state == "available"
        await ukc.volumes.get(name=name).delete()
        assert (await ukc.volumes.get(name=copy)).state == "available"
        await ukc.volumes.get(name=copy).delete()
        for gone in (name, copy):
            with pytest.raises(NotFoundError):
                await ukc.volumes.get(name=gone)
        await ukc.instances.get(name=web).delete()

    run(sdk_server, body)


def test_create_with_tags_list_grow_delete(sdk_server: LiveServer) -> None:
    name, tag = unique("grow"), unique("tag")

    async def body(ukc: UnikraftCloud) -> None:
        await ukc.volumes.create(name=name, size_mb=16, tags=[tag, "sdk"])
        listed = await ukc.volumes.list(tags=[tag])
        assert [(v.name, v.state, v.tags) for v in listed] == [(name, "available", [tag, "sdk"])]
        await ukc.volumes.get(name=name).update(size_mb=32)
        grown = await ukc.volumes.get(name=name)
        assert (grown.size_mb, grown.state) == (32, "available") and (grown.free_mb or 0) > 16
        await ukc.volumes.get(name=name).delete()
        assert await ukc.volumes.list(tags=[tag]) == []

    run(sdk_server, body)


def test_bulk_create_list_in_pages_bulk_delete(sdk_server: LiveServer) -> None:
    tag = unique("bulk")

    async def body(ukc: UnikraftCloud) -> None:
        made = await asyncio.gather(
            *(ukc.volumes.create(size_mb=4, quota_policy="dynamic", tags=[tag]) for _ in range(50))
        )
        assert {v.state for v in made} == {"available"}
        listed = [v async for v in ukc.volumes.list(tags=[tag], page_size=7)]
        assert sorted(str(v.uuid) for v in listed) == sorted(str(v.uuid) for v in made)
        assert {v.state for v in listed} == {"available"}
        gone = await ukc.volumes.delete([Ref(uuid=str(v.uuid)) for v in made])
        assert len(gone) == 50
        assert await ukc.volumes.list(tags=[tag]) == []

    run(sdk_server, body)


def test_instance_with_a_new_volume_starts_at_once(sdk_server: LiveServer) -> None:
    web, data = unique("web"), unique("data")

    async def body(ukc: UnikraftCloud) -> None:
        await ukc.instances.create(
            name=web, image="nginx:latest", volumes=[{"name": data, "size_mb": 8, "at": "/data"}]
        )
        assert (await ukc.volumes.get(name=data)).state == "idle"
        await ukc.instances.get(name=web).start()
        assert (await ukc.instances.get(name=web)).state == "running"
        assert (await ukc.volumes.get(name=data)).state == "mounted"
        await ukc.instances.get(name=web).stop()
        await ukc.instances.get(name=web).delete()
        with pytest.raises(NotFoundError):
            await ukc.volumes.get(name=data)  # made with the instance, gone with it

    run(sdk_server, body)


def test_create_then_delete_at_once(sdk_server: LiveServer) -> None:
    async def body(ukc: UnikraftCloud) -> None:
        created = await ukc.volumes.create(size_mb=8)
        deleted = await ukc.volumes.get(uuid=str(created.uuid)).delete()
        assert deleted.uuid == created.uuid
        with pytest.raises(NotFoundError):
            await ukc.volumes.get(uuid=str(created.uuid))

    run(sdk_server, body)


def test_official_sdk_attach_detach_and_instance_calls(sdk_server: LiveServer) -> None:
    """(Moved from tests/api/test_attach.py, which runs in process: the SDK needs a real
    server.)"""
    vol_name, inst_name = attach_helpers.unique("sdkv"), attach_helpers.unique("sdki")
    with sdk_server.client() as api:
        attach_helpers.new_volume(api, vol_name)

    async def scenario() -> None:
        async with UnikraftCloud(token=sdk_server.token, base_url=sdk_server.url) as ukc:
            web = await ukc.instances.create(image="nginx:latest", name=inst_name)
            assert web.state == "stopped"
            await ukc.volumes.get(name=vol_name).attach(to=inst_name, at="/data")
            await ukc.instances.get(name=inst_name).start()
            await ukc.instances.get(name=inst_name).wait(state="running", timeout_seconds=5)
            got = await ukc.volumes.get(name=vol_name)
            assert got.state == "mounted" and got.attached_to is not None
            assert got.attached_to[0].name == inst_name
            await ukc.instances.get(name=inst_name).stop()
            await ukc.volumes.get(name=vol_name).detach(from_=inst_name)
            await ukc.instances.get(name=inst_name).delete()

    asyncio.run(scenario())
    with sdk_server.client() as api:
        uuid = str(attach_helpers.ok(api.get("/v1/volumes", params={"name": vol_name}))["uuid"])
        assert attach_helpers.volume(api, uuid)["state"] == "available"
