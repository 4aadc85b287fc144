"""How the store maps rows to the domain's model and back: the column lists, the
enum columns, and the small helpers every room shares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from volumed.domain.model import Instance, Volume
from volumed.domain.states import AccessMode, InstanceState, QuotaPolicy, VolumeState
from volumed.domain.values import VOLUME_ROW

__all__ = [
    "_ACCESS_MODES",
    "_INSTANCE_STATES",
    "_QUOTA_POLICIES",
    "_VOLUME_COLUMNS",
    "_VOLUME_STATES",
    "_chunks",
    "_instance_from_row",
    "_instance_values",
    "_marks",
    "_volume_from_row",
    "_volume_values",
]


_VOLUME_COLUMNS = ", ".join(VOLUME_ROW)
"""The volume columns reads select, in the order of the domain's ``VolumeRow``."""
_VOLUME_STATES = {s.value: s for s in VolumeState}
_INSTANCE_STATES = {s.value: s for s in InstanceState}
_QUOTA_POLICIES = {p.value: p for p in QuotaPolicy}
_ACCESS_MODES = {m.value: m for m in AccessMode}


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _as_json(value: list[Any] | dict[str, Any]) -> str:
    """``json.dumps``, without its cost for the empty list or object most rows hold (a
    create's tags and job arguments: ~1 % of the server's time under creates)."""
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def _volume_values(v: Volume) -> tuple[Any, ...]:
    return (
        v.uuid,
        v.owner_id,
        v.name,
        v.state.value,
        v.size_mb,
        int(v.persistent),
        v.created_at_us,
        v.quota_policy.value,
        v.access_mode.value,
        int(v.delete_lock),
        v.free_mb,
        v.filesystem,
        _as_json(v.tags),
        v.message,
    )


def _volume_from_row(row: Any) -> Volume:
    return Volume(
        uuid=row[0],
        owner_id=row[1],
        name=row[2],
        state=_VOLUME_STATES[row[3]],
        size_mb=row[4],
        persistent=bool(row[5]),
        created_at_us=row[6],
        quota_policy=_QUOTA_POLICIES[row[7]],
        access_mode=_ACCESS_MODES[row[8]],
        delete_lock=bool(row[9]),
        free_mb=row[10],
        filesystem=row[11],
        tags=json.loads(row[12]) if row[12] != "[]" else [],
        message=row[13],
    )


def _instance_values(i: Instance) -> tuple[Any, ...]:
    return (
        i.uuid,
        i.owner_id,
        i.name,
        i.state.value,
        i.created_at_us,
        i.image,
        i.memory_mb,
        i.vcpus,
        json.dumps(i.args),
        json.dumps(i.env),
        json.dumps(i.tags),
    )


def _instance_from_row(row: Any) -> Instance:
    return Instance(
        uuid=row["uuid"],
        owner_id=row["owner_id"],
        name=row["name"],
        state=_INSTANCE_STATES[row["state"]],
        created_at_us=row["created_at_us"],
        image=row["image"],
        memory_mb=row["memory_mb"],
        vcpus=row["vcpus"],
        args=json.loads(row["args"]),
        env=json.loads(row["env"]),
        tags=json.loads(row["tags"]),
        node=row["node"],
        boot_time_us=row["boot_time_us"],
        started_at_us=row["started_at_us"],
        stopped_at_us=row["stopped_at_us"],
        stop_reason=row["stop_reason"],
        exit_code=row["exit_code"],
        stop_code=row["stop_code"],
    )
