"""Attach and detach: the link between a volume and a stopped instance.

Both ends of an attachment change in one store transaction (``Store.attach`` /
``Store.detach``), a compare-and-set on the volume's and the instance's states taken from
:mod:`transitions`. The checks made here first only give precise errors; when the
store's compare-and-set loses a race, the rows are read again and the checks report what
is there now.
"""

from __future__ import annotations

from typing import Protocol

from volumed.domain import errors, rules
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Instance, Ref, User, Volume
from volumed.domain.states import AccessMode
from volumed.domain.store import InstanceStore, VolumeStore
from volumed.domain.transitions import (
    InstanceOp,
    Op,
    check,
    check_instance,
    instance_states_allowing,
    op_step,
    states_allowing,
)
from volumed.domain.values import AttachOutcome

__all__ = ["AttachmentService", "attach_op", "attach_readonly", "find_instance", "label"]

_ATTEMPTS = 5
"""Compare-and-set rounds before giving up on a row that keeps changing."""


def label(thing: Volume | Instance) -> str:
    return f"'{thing.name}'"


def attach_op(volume: Volume) -> Op:
    """A read-only-many volume may join further instances; any other only one."""
    return Op.ATTACH_SHARED if volume.access_mode is AccessMode.ROX else Op.ATTACH


def attach_readonly(volume: Volume, readonly: bool | None) -> bool:
    """``readonly`` as requested (default false); a rox volume is always read-only, since
    ext4 cannot be written by one instance while others mount it."""
    if volume.access_mode is not AccessMode.ROX:
        return bool(readonly)
    if readonly is False:
        raise errors.Invalid(
            f"Volume {label(volume)} is read-only-many (rox) and can only be attached read-only"
        )
    return True


async def find_instance(store: InstanceStore, user: User, ref: Ref) -> Instance:
    instance = await store.get_instance(user.id, ref)
    if instance is None:
        raise errors.NotFound(f"No instance with {ref.describe()}")
    return instance


async def find_volume(store: VolumeStore, user: User, ref: Ref) -> Volume:
    volume = await store.get_volume(user.id, ref)
    if volume is None:
        raise errors.NotFound(f"No volume with {ref.describe()}")
    return volume


class AttachStore(InstanceStore, VolumeStore, Protocol):
    """What attaching and detaching read and write."""


class AttachmentService:
    def __init__(self, store: AttachStore, *, waits: JobWaits, volumes_per_instance: int) -> None:
        self._store = store
        self._waits = waits
        self._max = volumes_per_instance

    async def attach(
        self, user: User, volume_ref: Ref, instance_ref: Ref, at: str | None, readonly: bool | None
    ) -> Volume:
        if at is None:
            raise errors.Invalid("The mount path 'at' is required")
        at = rules.check_mount_path(at)
        volume = await find_volume(self._store, user, volume_ref)
        instance = await find_instance(self._store, user, instance_ref)
        for _ in range(_ATTEMPTS):
            op = attach_op(volume)
            volume = await self._waits.ready(user, volume, op)
            check(op, volume.state, label(volume))
            if any(a.uuid == instance.uuid for a in volume.attached_to):
                raise errors.Attached(
                    f"Volume {label(volume)} is already attached to instance {label(instance)}"
                )
            check_instance(InstanceOp.CHANGE_VOLUMES, instance.state, label(instance))
            ro = attach_readonly(volume, readonly)
            self._check_room(instance, at)
            outcome = await self._store.attach(
                user.id,
                volume.uuid,
                instance.uuid,
                at,
                ro,
                op_step(op),
                instance_states_allowing(InstanceOp.CHANGE_VOLUMES),
                self._max,
            )
            if outcome is AttachOutcome.DONE:
                return volume
            if outcome is AttachOutcome.INSTANCE_GONE:
                raise errors.NotFound(f"No instance with {instance_ref.describe()}")
            # Lost a race (or the instance filled up meanwhile): look again; the checks
            # above raise the error for what is there now.
            volume = await find_volume(self._store, user, Ref(uuid=volume.uuid))
            instance = await find_instance(self._store, user, Ref(uuid=instance.uuid))
        raise errors.FailedOperation(f"Volume {label(volume)} kept changing; try again")

    def _check_room(self, instance: Instance, at: str) -> None:
        if len(instance.volumes) >= self._max:
            raise errors.TooMany(
                f"Instance {label(instance)} already has {len(instance.volumes)} volume(s) "
                f"attached; at most {self._max} per instance"
            )
        if any(v.at == at for v in instance.volumes):
            raise errors.Invalid(f"Instance {label(instance)} already has a volume at '{at}'")

    async def detach(self, user: User, volume_ref: Ref, from_ref: Ref | None) -> Volume:
        volume = await find_volume(self._store, user, volume_ref)
        source = None if from_ref is None else await find_instance(self._store, user, from_ref)
        for _ in range(_ATTEMPTS):
            volume = await self._waits.ready(user, volume, Op.DETACH)
            check(Op.DETACH, volume.state, label(volume))
            holders = [a.uuid for a in volume.attached_to]
            if source is not None:
                if source.uuid not in holders:
                    raise errors.NotAttached(
                        f"Volume {label(volume)} is not attached to instance {label(source)}"
                    )
                holders = [source.uuid]
            for holder in holders:
                instance = await self._store.get_instance(user.id, Ref(uuid=holder))
                if instance is not None:
                    check_instance(InstanceOp.CHANGE_VOLUMES, instance.state, label(instance))
            outcome = await self._store.detach(
                user.id,
                volume.uuid,
                None if source is None else source.uuid,
                states_allowing(Op.DETACH),
                instance_states_allowing(InstanceOp.CHANGE_VOLUMES),
            )
            if outcome is AttachOutcome.DONE:
                return volume
            if outcome is AttachOutcome.NOT_ATTACHED and source is not None:
                raise errors.NotAttached(
                    f"Volume {label(volume)} is not attached to instance {label(source)}"
                )
            volume = await find_volume(self._store, user, Ref(uuid=volume.uuid))
            if source is not None:
                source = await find_instance(self._store, user, Ref(uuid=source.uuid))
        raise errors.FailedOperation(f"Volume {label(volume)} kept changing; try again")
