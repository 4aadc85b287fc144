"""Changing one property of a volume (``PATCH /v1/volumes``): one request item per call.

* ``tags`` and ``delete_lock`` are metadata: one compare-and-set each, in any state.
* ``size_mb`` grows the image and its file system; ``quota_policy`` reserves or releases
  the image's host space. Both are data-plane work: the volume goes ``busy`` and owes a
  job in one compare-and-set, the worker does the work (so a ``kill -9`` only delays it),
  and the volume returns to its previous state with the new size or policy.

The call waits for such a job (within the bound of :mod:`~volumed.domain.job_waits`,
after which it answers and the job carries on) so that the next read shows the change:
the SDK's ``update()`` returns after the PATCH, and its callers read the volume again
right away. Growing takes tens of milliseconds (dataplane-notes §3). A volume that is
held by another short job when the PATCH arrives is waited for first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from volumed.domain import errors, rules
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Ref, User, Volume
from volumed.domain.quotas import QuotaService, refusal
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.storage import StorageDriver, StorageError
from volumed.domain.store import MaintenanceStore, QuotaRefused, VolumeStore
from volumed.domain.transitions import KEEP, TRANSITIONAL, Op, check, op_step

__all__ = ["Change", "UpdateService"]

PatchValue = bool | int | str | list[str] | None
_ATTEMPTS = 3


@dataclass(slots=True, frozen=True)
class Change:
    """One update item: ``prop`` and ``op`` are already known names (the API's types)."""

    prop: str
    op: str
    value: PatchValue = None


class UpdateStore(VolumeStore, MaintenanceStore, Protocol):
    """What updating a volume reads and writes."""


class UpdateService:
    def __init__(
        self,
        store: UpdateStore,
        storage: StorageDriver,
        quotas: QuotaService,
        *,
        waits: JobWaits,
        wake_worker: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._quotas = quotas
        self._waits = waits
        self._wake_worker = wake_worker

    async def apply(
        self, user: User, ref: Ref, change: Change, *, template: bool = False
    ) -> Volume:
        """Apply ``change`` to the volume (or, with ``template``, the template) ``ref``."""
        volume = await self._find(user, ref, template)
        if change.prop == "tags":
            return await self._set_tags(user, volume, change)
        if change.prop == "delete_lock":
            return await self._set_delete_lock(user, volume, change)
        if change.prop == "size_mb":
            return await self._grow(user, volume, change)
        if change.prop == "quota_policy":
            return await self._switch_policy(user, volume, change)
        raise errors.Invalid(f"Property '{change.prop}' cannot be changed")

    # ------------------------------------------------------------------ metadata

    async def _set_tags(self, user: User, volume: Volume, change: Change) -> Volume:
        values = _tag_values(change)
        for _ in range(_ATTEMPTS):
            tags = _changed_tags(volume.tags, change.op, values)
            check(Op.UPDATE, volume.state, _label(volume))
            if tags == volume.tags:
                return volume
            if await self._store.set_tags(user.id, volume.uuid, volume.tags, tags):
                volume.tags = tags
                return volume
            volume = await self._reread(user, volume)
        raise _kept_changing(volume)

    async def _set_delete_lock(self, user: User, volume: Volume, change: Change) -> Volume:
        _only_set(change)
        if change.value is not None and not isinstance(change.value, bool):
            raise errors.Invalid("The value of delete_lock is true or false")
        locked = bool(change.value)
        check(Op.UPDATE, volume.state, _label(volume))
        if not await self._store.set_delete_lock(user.id, volume.uuid, locked):
            raise errors.NotFound(f"No volume with uuid '{volume.uuid}'")
        volume.delete_lock = locked
        return volume

    # ------------------------------------------------------------------ data plane

    async def _grow(self, user: User, volume: Volume, change: Change) -> Volume:
        _only_set(change)
        size_mb = change.value
        if size_mb is None:
            raise errors.Invalid("size_mb cannot be cleared; give the new size in MB")
        if isinstance(size_mb, bool) or not isinstance(size_mb, int):
            raise errors.Invalid("The value of size_mb is a whole number of MB")
        limits = await self._quotas.limits_for(user)
        for _ in range(_ATTEMPTS):
            volume = await self._waits.ready(user, volume, Op.GROW)
            label = _label(volume)
            if size_mb < volume.size_mb:
                raise errors.Invalid(
                    f"Volume {label} is {volume.size_mb} MB and volumes never shrink: "
                    f"size_mb must be at least {volume.size_mb}"
                )
            if size_mb == volume.size_mb:
                return volume
            _check_offline(Op.GROW, volume)
            rules.check_size(size_mb, limits.max_volume_mb, limits.min_volume_mb)
            growth_mb = size_mb - volume.size_mb
            if volume.quota_policy is QuotaPolicy.STATIC:
                await self._quotas.check_free_space(growth_mb, f"growing volume {label}")
            try:
                won = await self._store.begin_grow(
                    user.id,
                    volume.uuid,
                    op_step(Op.GROW, volume.state),
                    volume.size_mb,
                    size_mb,
                    limits,
                )
            except QuotaRefused as refused:
                raise refusal(limits, refused, 0, growth_mb) from None
            if won:
                self._wake_worker()
                return await self._finished(
                    user, volume, lambda v: v.size_mb == size_mb, f"Growing volume {label}"
                )
            volume = await self._reread(user, volume)
        raise _kept_changing(volume)

    async def _switch_policy(self, user: User, volume: Volume, change: Change) -> Volume:
        _only_set(change)
        if change.value is not None and not isinstance(change.value, str):
            raise errors.Invalid("The value of quota_policy is static or dynamic")
        # ``set`` without a value clears the policy back to the default.
        policy = rules.check_quota_policy(change.value or QuotaPolicy.STATIC.value)
        reserve = policy is QuotaPolicy.STATIC
        for _ in range(_ATTEMPTS):
            volume = await self._waits.ready(user, volume, Op.RESERVE)
            label = _label(volume)
            if volume.quota_policy is policy:
                return volume
            _check_offline(Op.RESERVE, volume)
            if reserve:
                await self._quotas.check_free_space(
                    volume.size_mb - await self._allocated_mb(volume),
                    f"reserving volume {label}",
                )
            if await self._store.begin_reservation(
                user.id, volume.uuid, op_step(Op.RESERVE, volume.state), reserve
            ):
                self._wake_worker()
                return await self._finished(
                    user,
                    volume,
                    lambda v: v.quota_policy is policy,
                    f"Switching volume {label} to the {policy.value} quota policy",
                )
            volume = await self._reread(user, volume)
        raise _kept_changing(volume)

    async def _finished(
        self, user: User, volume: Volume, done: Callable[[Volume], bool], what: str
    ) -> Volume:
        """Wait for the volume's job: the volume as it ends, or still ``busy`` at the
        bound (the job carries on); FailedOperation if the job did not do it."""
        fresh = (await self._waits.settle(user, [volume.uuid])).get(volume.uuid)
        if fresh is None:
            raise errors.NotFound(f"No volume with uuid '{volume.uuid}'")
        if fresh.state in TRANSITIONAL or done(fresh):
            return fresh
        raise errors.FailedOperation(fresh.message or f"{what} failed")

    async def _allocated_mb(self, volume: Volume) -> int:
        try:
            return (await self._storage.usage(volume.uuid)).allocated_mb
        except StorageError as exc:
            raise errors.FailedOperation(exc.message) from None

    # ------------------------------------------------------------------ lookups

    async def _find(self, user: User, ref: Ref, template: bool) -> Volume:
        volume = await self._store.get_volume(user.id, ref)
        if template and volume is not None and volume.state is not VolumeState.TEMPLATE:
            volume = None
        if volume is None:
            raise errors.NotFound(
                f"No {'template' if template else 'volume'} with {ref.describe()}"
            )
        return volume

    async def _reread(self, user: User, volume: Volume) -> Volume:
        """After a lost compare-and-set: the row as it is now."""
        fresh = await self._store.get_volume(user.id, Ref(uuid=volume.uuid))
        if fresh is None:
            raise errors.NotFound(f"No volume with uuid '{volume.uuid}'")
        return fresh


def _label(volume: Volume) -> str:
    return f"'{volume.name}'"


def _only_set(change: Change) -> None:
    if change.op != "set":
        raise errors.Invalid(f"{change.prop} can only be set (op 'set'), not '{change.op}'")


def _check_offline(op: Op, volume: Volume) -> None:
    """Ask the table (a mounted volume's refusal says why, and what to do)."""
    target = check(op, volume.state, _label(volume))
    assert target is not KEEP


def _tag_values(change: Change) -> list[str]:
    value = change.value
    if value is None:
        if change.op == "set":
            return []  # ``set`` without a value clears the tags
        raise errors.Invalid(f"Tags op '{change.op}' needs a value: a list of tags")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise errors.Invalid("The value of tags is a list of strings")


def _changed_tags(current: list[str], op: str, values: list[str]) -> list[str]:
    if op == "set":
        tags = values
    elif op == "add":
        tags = current + values
    else:
        removed = set(values)
        tags = [tag for tag in current if tag not in removed]
    return rules.check_tags(tags)


def _kept_changing(volume: Volume) -> errors.FailedOperation:
    return errors.FailedOperation(f"Volume {_label(volume)} kept changing; try again")
