"""Creating an instance: validate the request, build the instance row and the rows of
its new volumes, and insert them with every attachment in one store transaction, so a
failing ``volumes`` item leaves neither an instance nor a volume behind."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from volumed.domain import errors, rules
from volumed.domain.attachments import (
    AttachStore,
    attach_op,
    attach_readonly,
    find_volume,
    label,
)
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Instance, Ref, User, Volume
from volumed.domain.quotas import refusal
from volumed.domain.store import QuotaRefused
from volumed.domain.transitions import INITIAL_INSTANCE, check, op_step
from volumed.domain.values import AttachOutcome, NewAttachment
from volumed.domain.volumes import CreateVolume, VolumeService

__all__ = ["CreateInstance", "InstanceFactory", "InstanceLimits", "InstanceVolumeSpec"]

_NAME_ATTEMPTS = 20


@dataclass(slots=True, frozen=True)
class InstanceLimits:
    volumes_per_instance: int = 1
    min_memory_mb: int = 16
    max_memory_mb: int = 65_536
    max_vcpus: int = 64
    wait_default_s: float = 30.0
    wait_max_s: float = 300.0


@dataclass(slots=True)
class InstanceVolumeSpec:
    """An item of ``volumes`` in a create request: an existing volume by uuid or name, or
    a new one when ``size_mb`` (or ``host_path``) is given."""

    at: str | None
    uuid: str | None = None
    name: str | None = None
    size_mb: int | None = None
    readonly: bool | None = None
    host_path: str | None = None
    quota_policy: str | None = None
    access_mode: str | None = None
    filesystem: str | None = None
    tags: list[str] | None = None


@dataclass(slots=True)
class CreateInstance:
    image: str | None
    name: str | None = None
    memory_mb: int | None = None
    vcpus: int | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    tags: list[str] | None = None
    autostart: bool = False
    volumes: list[InstanceVolumeSpec] = field(default_factory=list)


class InstanceFactory:
    """Builds and inserts new instances (their volumes' checks come from VolumeService)."""

    def __init__(
        self, store: AttachStore, volumes: VolumeService, waits: JobWaits, limits: InstanceLimits
    ) -> None:
        self._store = store
        self._waits = waits
        self._volumes = volumes
        self._limits = limits

    async def insert(self, user: User, item: CreateInstance) -> Instance:
        """Validate ``item`` and insert the instance (``stopped``), its new volumes and
        its attachments, or raise the error of the first item that cannot be done."""
        instance = self._new_instance(user, item)
        if len(item.volumes) > self._limits.volumes_per_instance:
            raise errors.TooMany(
                f"An instance has at most {self._limits.volumes_per_instance} volume(s), "
                f"got {len(item.volumes)}"
            )
        new_volumes: list[Volume] = []
        links: list[NewAttachment] = []
        for index, spec in enumerate(item.volumes):
            try:
                link, volume = await self._volume_link(user, spec, links)
            except errors.VolumedError as exc:
                raise _for_item(exc, index) from None
            links.append(link)
            if volume is not None:
                new_volumes.append(volume)
        await self._insert(user, instance, item, new_volumes, links)
        return instance

    def _new_instance(self, user: User, item: CreateInstance) -> Instance:
        image = (item.image or "").strip()
        if not image:
            raise errors.Invalid("image is required")
        if len(image) > 1024 or not image.isprintable():
            raise errors.Invalid("image is not a valid image reference")
        memory_mb = 128 if item.memory_mb is None else item.memory_mb
        lim = self._limits
        if not lim.min_memory_mb <= memory_mb <= lim.max_memory_mb:
            raise errors.Invalid(
                f"memory_mb must be between {lim.min_memory_mb} and {lim.max_memory_mb}"
            )
        vcpus = 1 if item.vcpus is None else item.vcpus
        if not 1 <= vcpus <= lim.max_vcpus:
            raise errors.Invalid(f"vcpus must be between 1 and {lim.max_vcpus}")
        name = item.name or None
        if name is not None:
            rules.check_name(name, "instance")
        return Instance(
            uuid=rules.new_uuid(),
            owner_id=user.id,
            name=name or _random_name(image),
            state=INITIAL_INSTANCE,
            created_at_us=time.time_ns() // 1000,
            image=image,
            memory_mb=memory_mb,
            vcpus=vcpus,
            args=list(item.args or []),
            env=dict(item.env or {}),
            tags=rules.check_tags(item.tags or []),
        )

    async def _volume_link(
        self, user: User, spec: InstanceVolumeSpec, links: list[NewAttachment]
    ) -> tuple[NewAttachment, Volume | None]:
        """The attachment for one ``volumes`` item, and the new volume if it makes one."""
        if spec.at is None:
            raise errors.Invalid("Every volume needs a mount path 'at'")
        at = rules.check_mount_path(spec.at)
        if any(link.at == at for link in links):
            raise errors.Invalid(f"Two volumes cannot both be mounted at '{at}'")
        if spec.size_mb is not None or spec.host_path is not None:
            if spec.uuid is not None:
                raise errors.Invalid("A new volume (size_mb) takes a name, not a uuid")
            volume = await self._volumes.new_volume(
                user,
                CreateVolume(
                    name=spec.name,
                    size_mb=spec.size_mb,
                    quota_policy=spec.quota_policy,
                    access_mode=spec.access_mode,
                    filesystem=spec.filesystem,
                    tags=spec.tags,
                    host_path=spec.host_path,
                    # Lives and dies with the instance, unless detached first.
                    persistent=False,
                ),
            )
            return NewAttachment(volume.uuid, at, attach_readonly(volume, spec.readonly)), volume
        volume = await find_volume(self._store, user, rules.check_ref(spec.uuid, spec.name))
        if any(link.volume_uuid == volume.uuid for link in links):
            raise errors.Invalid(f"Volume {label(volume)} is listed twice")
        op = attach_op(volume)
        volume = await self._waits.ready(user, volume, op)
        check(op, volume.state, label(volume))
        readonly = attach_readonly(volume, spec.readonly)
        return NewAttachment(volume.uuid, at, readonly, op_step(op)), None

    async def _insert(
        self,
        user: User,
        instance: Instance,
        item: CreateInstance,
        new_volumes: list[Volume],
        links: list[NewAttachment],
    ) -> None:
        """Insert everything in one transaction, choosing new random names on clashes and
        reporting an existing volume that changed meanwhile. New volumes count against the
        tenant's quota like any created through ``POST /v1/volumes``."""
        limits = await self._volumes.limits_for(user)
        for _ in range(_NAME_ATTEMPTS):
            try:
                outcome = await self._store.insert_instance(instance, new_volumes, links, limits)
            except QuotaRefused as refused:
                size_mb = sum(v.size_mb for v in new_volumes)
                raise refusal(limits, refused, len(new_volumes), size_mb) from None
            if outcome.result is AttachOutcome.DONE:
                return
            if outcome.result is AttachOutcome.NAME_TAKEN and outcome.index is None:
                if item.name:
                    raise errors.AlreadyExists(f"Instance with name '{item.name}' already exists")
                instance.name = _random_name(instance.image)
                continue
            assert outcome.index is not None
            spec = item.volumes[outcome.index]
            if outcome.result is AttachOutcome.NAME_TAKEN:
                if spec.name:
                    raise _for_item(
                        errors.AlreadyExists(f"Volume with name '{spec.name}' already exists"),
                        outcome.index,
                    )
                uuid = links[outcome.index].volume_uuid
                for volume in new_volumes:
                    if volume.uuid == uuid:
                        volume.name = rules.random_name()
                continue
            # An existing volume was taken or changed since it was checked.
            try:
                ref = Ref(uuid=links[outcome.index].volume_uuid)
                volume = await find_volume(self._store, user, ref)
                check(attach_op(volume), volume.state, label(volume))
            except errors.VolumedError as exc:
                raise _for_item(exc, outcome.index) from None
        raise errors.FailedOperation("Could not create the instance; try again")


def _random_name(image: str) -> str:
    """``<image base name>-xxxxx``, as the hosted service names unnamed instances."""
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    base = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "-") else "-" for ch in base)
    base = base.strip("-")[:40] or "instance"
    if not base[0].isalnum():
        base = "instance"
    return rules.random_name(base)


def _for_item(exc: errors.VolumedError, index: int) -> errors.VolumedError:
    """The same error, its message saying which ``volumes`` item it is about."""
    renamed = errors.VolumedError(f"volumes[{index}]: {exc.message}")
    renamed.code = exc.code
    return renamed
