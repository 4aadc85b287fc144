"""Domain records rendered as wire items (the structs of :mod:`volumed.api.wire`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from volumed.api import wire
from volumed.api.envelope import AnyItem
from volumed.domain.audit import VolumeEvent
from volumed.domain.listing import Page
from volumed.domain.model import Instance, Volume
from volumed.domain.quotas import QuotaReport
from volumed.domain.states import InstanceState
from volumed.domain.values import VolumeRows

VolumeView = wire.VolumeItem | wire.ItemRef


def rfc3339(us: int) -> str:
    """UTC with a ``Z``, to the second, as the hosted service prints it."""
    return wire.rfc3339(us // 1_000_000)


def volume_item(volume: Volume, *, details: bool = True) -> VolumeView:
    if not details:
        return volume_ref(volume)
    return wire.volume_item(volume)


def volume_created(volume: Volume) -> wire.VolumeCreated:
    # ``message`` says why a new volume is in ``error``.
    return wire.VolumeCreated("success", volume.uuid, volume.name, volume.state, volume.message)


def volume_ref(volume: Volume) -> wire.ItemRef:
    return wire.ItemRef("success", volume.uuid, volume.name)


def volume_entry(volume: Volume) -> wire.VolumeEntry:
    return wire.VolumeEntry(volume.uuid, volume.name)


# ---- instances and attachments


def instance_item(
    instance: Instance, *, details: bool = True, message: str | None = None
) -> wire.InstanceItem | wire.ItemRef:
    """An instance; ``message`` is a note on a new one."""
    if not details:
        return wire.ItemRef("success", instance.uuid, instance.name)
    stopped = instance.stopped_at_us if instance.state is InstanceState.STOPPED else None
    return wire.InstanceItem(
        status="success",
        uuid=instance.uuid,
        name=instance.name,
        created_at=rfc3339(instance.created_at_us),
        state=instance.state,
        image=instance.image,
        memory_mb=instance.memory_mb,
        vcpus=instance.vcpus,
        args=instance.args,
        env=instance.env,
        restart_policy="never",
        private_fqdn=f"{instance.name}.internal",
        volumes=[wire.InstanceVolume(v.uuid, v.name, v.at, v.readonly) for v in instance.volumes],
        tags=instance.tags,
        delete_lock=False,
        features=[],
        # Boot and stop facts, once there are any (the SDK's Instance model).
        started_at=_maybe_rfc3339(instance.started_at_us),
        stopped_at=_maybe_rfc3339(stopped),
        boot_time_us=instance.boot_time_us,
        stop_reason=instance.stop_reason,
        exit_code=instance.exit_code,
        stop_code=instance.stop_code,
        message=message,
    )


def _maybe_rfc3339(us: int | None) -> str | None:
    return None if us is None else rfc3339(us)


def instance_transition(instance: Instance, previous: InstanceState) -> wire.InstanceStateChange:
    """A start or stop item."""
    return wire.InstanceStateChange(
        "success", instance.uuid, instance.name, instance.state, previous
    )


def instance_deleted(instance: Instance, previous: InstanceState) -> wire.InstanceDeleted:
    return wire.InstanceDeleted("success", instance.uuid, instance.name, previous)


def instance_waited(instance: Instance) -> wire.InstanceWaited:
    return wire.InstanceWaited("success", instance.uuid, instance.name, instance.state)


def instance_log(
    instance: Instance, data: bytes, start: int, first: int, end: int
) -> wire.InstanceLog:
    """Console bytes ``data`` from ``start``, of those kept ``[first, end)``."""
    return wire.InstanceLog(
        status="success",
        uuid=instance.uuid,
        name=instance.name,
        state=instance.state,
        output=base64.b64encode(data).decode("ascii"),
        available=wire.ByteRange(first, end),
        range=wire.ByteRange(start, start + len(data)),
    )


# ---- updates, quotas, events


def volume_updated(volume: Volume, item_id: str | None) -> wire.VolumeUpdated:
    """An update item: the volume, and the ``id`` the request item carried."""
    return wire.VolumeUpdated("success", volume.uuid, volume.name, item_id)


def quotas_item(user_id: str, report: QuotaReport) -> wire.Quotas:
    """``GET /v1/users/quotas``, in the shape of the SDK's ``Quotas``."""
    used, limits = report.usage, report.limits
    return wire.Quotas(
        "success",
        user_id,
        wire.QuotasUsed(
            instances=used.instances,
            live_instances=used.live_instances,
            live_vcpus=used.live_vcpus,
            live_memory_mb=used.live_memory_mb,
            volumes=used.volumes,
            total_volume_mb=used.total_volume_mb,
        ),
        wire.QuotasHard(volumes=limits.max_volumes, total_volume_mb=limits.max_total_volume_mb),
        wire.QuotasLimits(min_volume_mb=limits.min_volume_mb, max_volume_mb=limits.max_volume_mb),
    )


def event_item(event: VolumeEvent) -> wire.VolumeEvent:
    at = datetime.fromtimestamp(event.at_us / 1_000_000, tz=UTC)
    return wire.VolumeEvent(
        id=event.id,
        at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        actor=event.actor,
        action=event.action,
        result=event.result,
        state_from=event.state_from,
        state_to=event.state_to,
        message=event.message,
    )


def page_items(page: Page, *, details: bool) -> list[AnyItem]:
    """A listing page; a ``from`` cursor gone since is its first item, as a stub."""
    found: list[AnyItem] = []
    if page.cursor is not None:
        uuid, name = page.cursor
        found.append(wire.ItemRef("success", uuid, name))
    if details:
        found += wire.volume_items(page.rows, page.attached_to, page.mounted_by)
    else:
        found += wire.volume_refs(page.rows)
    return found


def stored_volume_item(found: VolumeRows, *, details: bool = True) -> VolumeView:
    """One volume as stored (GET one): the same item :func:`volume_item` makes."""
    if not details:
        return wire.volume_refs(found.rows)[0]
    return wire.volume_items(found.rows, found.attached_to, found.mounted_by)[0]
