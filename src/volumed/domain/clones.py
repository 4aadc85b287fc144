"""Copying a volume into a new one: ``POST /v1/volumes/clone``, and ``POST /v1/volumes``
with ``template``, which is the same copy made from a template.

The new row is inserted owing a ``clone`` job in the same transaction that takes the
source: an ``available`` or ``idle`` source goes ``busy``, so nothing attaches, starts,
grows or deletes it while its image is read; a template (immutable) or a volume that is
mounted read-only only is copied as it is. The worker copies the image (a reflink where
the file system has them, else a sparse copy) and, in one transaction, makes the clone
``available`` and puts the source back in its previous state. The request waits for
that (:mod:`~volumed.domain.job_waits`, within its bound) and answers with the clone's
real state; a source held by a short job of its own is waited for first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from volumed.domain import errors, rules
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Ref, User, Volume
from volumed.domain.quotas import QuotaService, refusal
from volumed.domain.states import QuotaPolicy
from volumed.domain.storage import StorageDriver, StorageError
from volumed.domain.store import MaintenanceStore, NameTaken, QuotaRefused, VolumeStore
from volumed.domain.transitions import INITIAL, Op, check, op_step
from volumed.domain.values import QuotaLimits
from volumed.domain.volumes import CreateVolume

__all__ = ["CloneService", "CloneVolume"]

_ATTEMPTS = 3
_NAME_ATTEMPTS = 20


@dataclass(slots=True)
class CloneVolume:
    """A clone request item, as primitives. Unset fields take the source's values,
    except ``tags``, which a clone does not inherit (they usually name one volume)."""

    vol_name: str | None = None
    quota_policy: str | None = None
    tags: list[str] | None = None
    access_mode: str | None = None


@dataclass(slots=True)
class _Copy:
    """What the new volume will be, validated."""

    name: str | None
    size_mb: int | None
    quota_policy: QuotaPolicy | None
    access_mode: str | None
    tags: list[str]


class CloneStore(VolumeStore, MaintenanceStore, Protocol):
    """What cloning reads and writes."""


class CloneService:
    def __init__(
        self,
        store: CloneStore,
        storage: StorageDriver,
        quotas: QuotaService,
        *,
        waits: JobWaits,
        wake_worker: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._waits = waits
        self._storage = storage
        self._quotas = quotas
        self._wake_worker = wake_worker

    async def settled(self, user: User, clones: Sequence[Volume]) -> Sequence[Volume]:
        """New clones as they are once copied, or when the bound runs out."""
        return await self._waits.settled(user, clones)

    async def clone(self, user: User, ref: Ref, item: CloneVolume) -> Volume:
        """Start copying the volume ``ref`` into a new volume; returns the new volume
        (``uninitialized``: the caller waits with ``VolumeService.settled``)."""
        source = await self._store.get_volume(user.id, ref)
        if source is None:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        return await self._copy(
            user,
            source,
            _Copy(
                name=item.vol_name or None,
                size_mb=None,
                quota_policy=_policy(item.quota_policy),
                access_mode=item.access_mode,
                tags=rules.check_tags(item.tags or []),
            ),
        )

    async def create_from_template(self, user: User, item: CreateVolume) -> Volume:
        """``POST /v1/volumes`` with ``template``: a copy of the template, at least as
        large as it (a larger ``size_mb`` grows the copy)."""
        assert item.template is not None
        template = await self._store.get_volume(user.id, item.template)
        if template is None:
            raise errors.NotFound(f"No template with {item.template.describe()}")
        check(Op.COPY_TEMPLATE, template.state, f"'{template.name}'")
        rules.check_filesystem(item.filesystem or template.filesystem)
        if item.size_mb is not None and item.size_mb < template.size_mb:
            raise errors.Invalid(
                f"Template '{template.name}' is {template.size_mb} MB: a volume made "
                f"from it needs size_mb of at least {template.size_mb}"
            )
        return await self._copy(
            user,
            template,
            _Copy(
                name=item.name or None,
                size_mb=item.size_mb,
                quota_policy=_policy(item.quota_policy),
                access_mode=item.access_mode,
                tags=rules.check_tags(item.tags or []),
            ),
        )

    async def _copy(self, user: User, source: Volume, spec: _Copy) -> Volume:
        if spec.name is not None:
            rules.check_name(spec.name)
        mode = rules.check_access_mode(spec.access_mode or source.access_mode.value)
        limits = await self._quotas.limits_for(user)
        for _ in range(_ATTEMPTS):
            source = await self._waits.ready(user, source, Op.CLONE)
            label = f"'{source.name}'"
            check(Op.CLONE, source.state, label)
            if any(not m.readonly for m in source.mounted_by):
                raise errors.CannotBeUsed(
                    f"Volume {label} is mounted read-write by a running instance; a clone "
                    "needs it stopped, or mounted read-only"
                )
            policy = spec.quota_policy or source.quota_policy
            size_mb = max(spec.size_mb or source.size_mb, source.size_mb)
            rules.check_size(size_mb, limits.max_volume_mb, limits.min_volume_mb)
            needed_mb = (
                size_mb if policy is QuotaPolicy.STATIC else await self._allocated_mb(source)
            )
            await self._quotas.check_free_space(needed_mb, f"a copy of volume {label}")
            clone = Volume(
                uuid=rules.new_uuid(),
                owner_id=user.id,
                name=spec.name or rules.random_name(),
                state=INITIAL,
                size_mb=size_mb,
                persistent=True,
                created_at_us=time.time_ns() // 1000,
                quota_policy=policy,
                access_mode=mode,
                filesystem=source.filesystem,
                tags=spec.tags,
            )
            if await self._insert(source, clone, limits, explicit=spec.name is not None):
                self._wake_worker()
                return clone
            fresh = await self._store.get_volume(user.id, Ref(uuid=source.uuid))
            if fresh is None:
                raise errors.NotFound(f"No volume with uuid '{source.uuid}'")
            source = fresh
        raise errors.FailedOperation(f"Volume '{source.name}' kept changing; try again")

    async def _insert(
        self, source: Volume, clone: Volume, limits: QuotaLimits, *, explicit: bool
    ) -> bool:
        """One transaction: take the source, insert the clone. False if the source
        changed meanwhile; a taken random name is drawn again."""
        for _ in range(_NAME_ATTEMPTS):
            try:
                # An available or idle source goes busy; a template, or a volume mounted
                # read-only only, is copied as it is (Op.CLONE).
                return await self._store.begin_clone(
                    source.uuid,
                    op_step(Op.CLONE, source.state),
                    clone,
                    limits,
                    # Copied while running instances read it: none may write it.
                    all_readonly=bool(source.mounted_by),
                )
            except QuotaRefused as refused:
                raise refusal(limits, refused, 1, clone.size_mb) from None
            except NameTaken:
                if explicit:
                    raise errors.AlreadyExists(
                        f"Volume with name '{clone.name}' already exists"
                    ) from None
                clone.name = rules.random_name()
        raise errors.FailedOperation("Could not find a free random volume name")

    async def _allocated_mb(self, source: Volume) -> int:
        """Host space a sparse copy of the source takes."""
        try:
            return (await self._storage.usage(source.uuid)).allocated_mb
        except StorageError as exc:
            raise errors.FailedOperation(exc.message) from None


def _policy(value: str | None) -> QuotaPolicy | None:
    return rules.check_quota_policy(value) if value else None
