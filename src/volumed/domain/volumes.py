"""Volume use cases: create, get, list, delete. Each call handles one item of a request.

A service function validates with :mod:`rules`, asks :mod:`transitions` whether the
operation is allowed, and performs it as one compare-and-set in the store. When the
compare-and-set loses a race it re-reads the row and reports what it actually found.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from volumed.domain import errors, listing, rules
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Ref, User, Volume
from volumed.domain.quotas import QuotaService, refusal
from volumed.domain.states import AccessMode, QuotaPolicy
from volumed.domain.storage import StorageDriver, StorageError
from volumed.domain.store import NameTaken, QuotaRefused, QuotaStore, VolumeStore
from volumed.domain.transitions import GONE, INITIAL, TRANSITIONAL, Op, check, states_allowing
from volumed.domain.values import Claim, Job, ListQuery, QuotaLimits, VolumeRows

log = logging.getLogger("volumed.volumes")

MIB = 1024 * 1024
_NAME_ATTEMPTS = 20
_FORMAT = "format"


@dataclass(slots=True, frozen=True)
class VolumeLimits:
    max_volume_mb: int = 1_048_576
    min_volume_mb: int = 1
    free_space_margin_mb: int = 64
    """Host space kept free beyond every reservation, so metadata writes never hit ENOSPC."""


@dataclass(slots=True)
class CreateVolume:
    """A create request item, as primitives (the API layer parsed the JSON types)."""

    name: str | None = None
    size_mb: int | None = None
    quota_policy: str | None = None
    access_mode: str | None = None
    filesystem: str | None = None
    tags: list[str] | None = None
    template: Ref | None = None
    host_path: str | None = None
    persistent: bool = True


class VolumeServiceStore(VolumeStore, QuotaStore, Protocol):
    """What the volume service reads and writes: volume rows, created within quota."""


class JobRunner(Protocol):
    """The worker, as a create sees it: a create whose worker has a free slot claims
    its format in the transaction that inserts the volume and hands the job straight
    to the worker, which runs it as it runs the jobs it claims itself (lease renewal,
    fencing, retries, the end signalled to waiters). Without a free slot the job is
    left for the worker to claim, as before (issue 15)."""

    async def reserve(self, kind: str, *, waited: bool = False) -> Claim | None:
        """Take a free slot for a job of ``kind`` now (never waits): the claim the
        insert is to make; None when every slot is busy, the worker is stopping, or
        it keeps its slots back from jobs nobody waits for (``waited``: the creator
        will wait for this one)."""
        ...

    def format_ahead(self, uuid: str, size_mb: int, *, reserve: bool) -> None:
        """Begin the image of the volume whose claimed format is being inserted, so
        that the insert's commit overlaps the format (:meth:`start` hands it over), or
        do nothing (a runner that cannot clean up after a crash between the two)."""
        ...

    def release(self, uuid: str | None = None) -> None:
        """Give back a slot :meth:`reserve` took, when no job was inserted, and drop the
        image begun ahead for ``uuid``."""
        ...

    def start(self, job: Job) -> None:
        """Run ``job``, inserted claimed with :meth:`reserve`'s claim, in its slot."""
        ...


class VolumeService:
    def __init__(
        self,
        store: VolumeServiceStore,
        storage: StorageDriver,
        limits: VolumeLimits,
        *,
        waits: JobWaits,
        wake_worker: Callable[[], None] = lambda: None,
        runner: JobRunner | None = None,
        quotas: QuotaService | None = None,
        from_template: Callable[[User, CreateVolume], Awaitable[Volume]] | None = None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._limits = limits
        self._quotas = quotas
        self._from_template = from_template
        self._waits = waits
        self._wake_worker = wake_worker
        self._runner = runner

    # ------------------------------------------------------------------ reads

    async def get(self, user: User, ref: Ref) -> Volume:
        volume = await self._store.get_volume(user.id, ref)
        if volume is None:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        return volume

    async def get_row(self, user: User, ref: Ref) -> VolumeRows:
        """:meth:`get` as stored, for showing it (GET one)."""
        found = await self._store.get_volume_row(user.id, ref)
        if not found.rows:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        return found

    def committed_stamp(self) -> bytes | None:
        """See :meth:`VolumeStore.committed_stamp`: a GET one's answer is reused while
        it is unchanged."""
        return self._store.committed_stamp()

    async def list(self, user: User, query: ListQuery) -> list[Volume]:
        return await self._store.list_volumes(user.id, query)

    async def page(self, user: User, query: ListQuery) -> listing.Page:
        """A page of ``GET /v1/volumes``; see :mod:`volumed.domain.listing`."""
        return await listing.page(self._store, user.id, query)

    def pages(self, user: User, query: ListQuery, size: int) -> AsyncIterator[listing.Page]:
        """The whole listing in pages of ``size``; see :func:`listing.pages`."""
        return listing.pages(self._store, user.id, query, size)

    # ------------------------------------------------------------------ create

    async def settled(self, user: User, volumes: Sequence[Volume]) -> Sequence[Volume]:
        """New volumes as they are once their first job (format, copy) has ended, or
        when the bound runs out: a request creates all its items, then waits for them
        together, so the worker formats them in parallel."""
        return await self._waits.settled(user, volumes)

    async def create(self, user: User, item: CreateVolume) -> Volume:
        """Insert the volume owing its format (or copy) and return it as inserted: the
        caller waits with :meth:`settled`. When the worker has a slot free the insert
        claims the format for it and the worker starts it at once (:class:`JobRunner`);
        otherwise the worker is woken to claim it."""
        if item.template is not None and item.host_path is None and self._from_template:
            return await self._from_template(user, item)
        limits = await self.limits_for(user)
        volume = await self.new_volume(user, item, limits)
        claim = (
            await self._runner.reserve(_FORMAT, waited=self._waits.bound_s > 0)
            if self._runner is not None
            else None
        )
        if self._runner is not None and claim is not None:
            # A kill -9 before the insert commits leaves this staged image without a
            # row: a lone server removes such images as it starts (sweep_unborn).
            self._runner.format_ahead(
                volume.uuid, volume.size_mb, reserve=volume.quota_policy is QuotaPolicy.STATIC
            )
        try:
            job = await self._insert(volume, limits, explicit_name=item.name or None, claim=claim)
        except BaseException:
            if self._runner is not None and claim is not None:
                self._runner.release(volume.uuid)
            raise
        if self._runner is not None and job is not None:
            self._runner.start(job)
            return replace(volume, state=job.state)  # as inserted: claimed and started
        self._wake_worker()
        return volume

    async def _insert(
        self, volume: Volume, limits: QuotaLimits, *, explicit_name: str | None, claim: Claim | None
    ) -> Job | None:
        for _ in range(_NAME_ATTEMPTS):
            try:
                # Counted and inserted in one transaction: concurrent creates cannot
                # overshoot the tenant's quota together.
                return await self._store.insert_volume_within_quota(
                    volume, _FORMAT, {}, limits, claim=claim
                )
            except QuotaRefused as refused:
                raise refusal(limits, refused, 1, volume.size_mb) from None
            except NameTaken:
                if explicit_name is not None:
                    raise errors.AlreadyExists(
                        f"Volume with name '{explicit_name}' already exists"
                    ) from None
                volume.name = rules.random_name()
        raise errors.FailedOperation("Could not find a free random volume name")

    async def new_volume(
        self, user: User, item: CreateVolume, limits: QuotaLimits | None = None
    ) -> Volume:
        """Validate ``item`` and build its ``uninitialized`` row without storing it (the
        instance service inserts volumes made with an instance in its own transaction);
        ``limits``: the tenant's, when the caller read them already."""
        if item.host_path is not None:
            raise errors.NotSupported("Managed host_path volumes are not supported by volumed")
        if item.template is not None:
            raise errors.NotSupported("Creating a volume from a template is not supported yet")
        policy = rules.check_quota_policy(item.quota_policy or QuotaPolicy.STATIC.value)
        mode = rules.check_access_mode(item.access_mode or AccessMode.RWO.value)
        filesystem = rules.check_filesystem(item.filesystem or "ext4")
        tags = rules.check_tags(item.tags or [])
        if item.size_mb is None:
            raise errors.Invalid("size_mb is required")
        if limits is None:
            limits = await self.limits_for(user)
        size_mb = rules.check_size(item.size_mb, limits.max_volume_mb, limits.min_volume_mb)
        if policy is QuotaPolicy.STATIC:
            await self._check_free_space(size_mb)
        explicit_name = item.name if item.name else None
        if explicit_name is not None:
            rules.check_name(explicit_name)
        return Volume(
            uuid=rules.new_uuid(),
            owner_id=user.id,
            name=explicit_name or rules.random_name(),
            state=INITIAL,
            size_mb=size_mb,
            persistent=item.persistent,
            created_at_us=time.time_ns() // 1000,
            quota_policy=policy,
            access_mode=mode,
            filesystem=filesystem,
            tags=tags,
        )

    async def limits_for(self, user: User) -> QuotaLimits:
        """The tenant's quota limits (without a quota service: sizes only)."""
        if self._quotas is not None:
            return await self._quotas.limits_for(user)
        unlimited = 2**62
        return QuotaLimits(
            unlimited, unlimited, self._limits.min_volume_mb, self._limits.max_volume_mb
        )

    async def _check_free_space(self, size_mb: int) -> None:
        """Refuse up front what cannot be reserved: a static volume owns its whole size."""
        promised_mb = await self._store.pending_reserved_mb()
        free_mb = (
            self._storage.free_bytes() // MIB - promised_mb - self._limits.free_space_margin_mb
        )
        if size_mb > free_mb:
            raise errors.QuotaExceeded(
                f"Not enough free disk space for a {size_mb} MB volume: "
                f"{max(free_mb, 0)} MB can still be reserved"
            )

    # ------------------------------------------------------------------ delete

    async def delete(self, user: User, ref: Ref) -> Volume:
        volume = await self.get(user, ref)
        for _ in range(3):
            volume = await self._waits.ready(user, volume, Op.DELETE)
            label = f"'{volume.name}'"
            target = check(Op.DELETE, volume.state, label)
            assert target is GONE
            if volume.delete_lock:
                raise errors.NotAllowed(
                    f"Volume {label} has a delete lock; remove it with PATCH first"
                )
            if volume.attached_to:
                raise errors.Attached(f"Volume {label} is attached to an instance")
            if await self._store.has_active_clones(volume.uuid):
                await self._waits.copies_done(volume)
            if await self._store.begin_delete(user.id, volume.uuid, states_allowing(Op.DELETE)):
                await self._purge(volume.uuid)
                return volume
            # Lost a race: report what the row looks like now.
            fresh = await self._store.get_volume(user.id, Ref(uuid=volume.uuid))
            if fresh is None:
                raise errors.NotFound(f"No volume with {ref.describe()}")
            if fresh.state in TRANSITIONAL:
                # A worker holds its format (or a clone is copied in): wait for it.
                fresh = await self._waits.after_job(user, fresh)
            volume = fresh
        raise errors.FailedOperation(f"Volume '{volume.name}' kept changing; try again")

    async def _purge(self, uuid: str) -> None:
        """Remove the image now; if that fails the worker finishes the owed delete."""
        try:
            await self._storage.delete(uuid)
        except StorageError as exc:
            log.warning("delete of image %s deferred to the worker: %s", uuid, exc.message)
            self._wake_worker()
            return
        await self._store.purge_volume(uuid)
