"""Domain records rendered as wire items."""

from __future__ import annotations

from volumed.api import wire
from volumed.api.envelope import AnyItem, Item
from volumed.domain.listing import Page
from volumed.domain.model import Instance, Volume
from volumed.domain.quotas import QuotaReport
from volumed.domain.states import InstanceState


def rfc3339(us: int) -> str:
    """UTC with a ``Z``, to the second, as the hosted service prints it."""
    return wire.rfc3339(us // 1_000_000)


def volume_item(volume: Volume, *, details: bool = True) -> AnyItem:
    if not details:
        return {"status": "success", "uuid": volume.uuid, "name": volume.name}
    return wire.volume_item(volume)


def volume_created(volume: Volume) -> Item:
    item: Item = {
        "status": "success",
        "uuid": volume.uuid,
        "name": volume.name,
        "state": volume.state.value,
    }
    if volume.message is not None:
        item["message"] = volume.message  # why a new volume is in ``error``
    return item


def volume_ref(volume: Volume) -> Item:
    return {"status": "success", "uuid": volume.uuid, "name": volume.name}


# ---- instances and attachments


def instance_item(instance: Instance, *, details: bool = True) -> Item:
    if not details:
        return {"status": "success", "uuid": instance.uuid, "name": instance.name}
    item: Item = {
        "status": "success",
        "uuid": instance.uuid,
        "name": instance.name,
        "created_at": rfc3339(instance.created_at_us),
        "state": instance.state.value,
        "image": instance.image,
        "memory_mb": instance.memory_mb,
        "vcpus": instance.vcpus,
        "args": instance.args,
        "env": instance.env,
        "restart_policy": "never",
        "private_fqdn": f"{instance.name}.internal",
        "volumes": [
            {"uuid": v.uuid, "name": v.name, "at": v.at, "readonly": v.readonly}
            for v in instance.volumes
        ],
        "tags": instance.tags,
        "delete_lock": False,
        "features": [],
    }
    # Boot and stop facts, once there are any (the SDK's Instance model).
    if instance.started_at_us is not None:
        item["started_at"] = rfc3339(instance.started_at_us)
    if instance.stopped_at_us is not None and instance.state is InstanceState.STOPPED:
        item["stopped_at"] = rfc3339(instance.stopped_at_us)
    for key, value in (
        ("boot_time_us", instance.boot_time_us),
        ("stop_reason", instance.stop_reason),
        ("exit_code", instance.exit_code),
        ("stop_code", instance.stop_code),
    ):
        if value is not None:
            item[key] = value
    return item


def instance_transition(
    instance: Instance, previous: InstanceState, *, with_state: bool = True
) -> Item:
    """A start or stop item (``state`` and ``previous_state``); delete has no ``state``."""
    item: Item = {"status": "success", "uuid": instance.uuid, "name": instance.name}
    if with_state:
        item["state"] = instance.state.value
    item["previous_state"] = previous.value
    return item


def instance_waited(instance: Instance) -> Item:
    return {
        "status": "success",
        "uuid": instance.uuid,
        "name": instance.name,
        "state": instance.state.value,
    }


# ---- updates, clones, templates, quotas


def volume_updated(volume: Volume, item_id: str | None) -> Item:
    """An update item: the volume, and the ``id`` the request item carried."""
    item = volume_ref(volume)
    if item_id is not None:
        item["id"] = item_id
    return item


def quotas_item(user_id: str, report: QuotaReport) -> Item:
    """``GET /v1/users/quotas``, in the shape of the SDK's ``Quotas``."""
    used, limits = report.usage, report.limits
    return {
        "status": "success",
        "uuid": user_id,
        "used": {
            "instances": used.instances,
            "live_instances": used.live_instances,
            "live_vcpus": used.live_vcpus,
            "live_memory_mb": used.live_memory_mb,
            "volumes": used.volumes,
            "total_volume_mb": used.total_volume_mb,
        },
        "hard": {"volumes": limits.max_volumes, "total_volume_mb": limits.max_total_volume_mb},
        "limits": {"min_volume_mb": limits.min_volume_mb, "max_volume_mb": limits.max_volume_mb},
    }


def page_items(page: Page, *, details: bool) -> list[AnyItem]:
    """A listing page; a ``from`` cursor gone since is its first item, as a stub."""
    found = [volume_item(v, details=details) for v in page.volumes]
    if page.cursor is not None:
        uuid, name = page.cursor
        found.insert(0, {"status": "success", "uuid": uuid, "name": name})
    return found
