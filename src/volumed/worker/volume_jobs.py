"""Background jobs of updates and clones, registered with the reconciler:

* ``clone`` (on the new volume's row): copy the source image, grow the copy if the new
  volume is larger (a volume made from a template), then make the clone ``available``
  and the source its previous state again, in one transaction.
* ``grow``: ``e2fsck`` + extend + ``resize2fs`` (on a copy), then ``busy`` → the previous state
  with the new ``size_mb`` and ``free_mb``.
* ``reserve`` / ``release``: allocate every block of the image on the host (static
  quota policy) or punch the unused ones back into holes (dynamic), then ``busy`` → the
  previous state with the new policy.

Each job builds a staged image (the image itself is only read) and publishes it through
:func:`volumed.domain.fencing.publish`, so a worker frozen past its lease cannot touch a
volume another worker has taken over; a job claimed again after a ``kill -9`` finds the
image a previous holder committed, or runs again. A job that runs out of host space
gives up at once and leaves the volume as it was (a clone goes to ``error``); any other
failure is retried, and after ``max_attempts`` the volume goes to ``error`` with the
reason in its ``message``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from volumed.domain.fencing import LeaseLost, committed_usage, publish
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.storage import ImageUsage, StorageDriver, StorageError
from volumed.domain.store import JobStore, MaintenanceStore
from volumed.domain.transitions import End, Step, restored, step
from volumed.domain.values import Job
from volumed.worker.reconciler import Reconciler

__all__ = ["VolumeJobs"]

log = logging.getLogger("volumed.worker")


class VolumeJobStore(JobStore, MaintenanceStore, Protocol):
    """What the volume jobs write: their steps, and the end of each maintenance job."""


class VolumeJobs:
    def __init__(
        self, store: VolumeJobStore, storage: StorageDriver, *, max_attempts: int = 5
    ) -> None:
        self._store = store
        self._storage = storage
        self._max_attempts = max_attempts

    def register(self, reconciler: Reconciler) -> None:
        reconciler.register("clone", self.clone)
        reconciler.register("grow", self.grow)
        reconciler.register("reserve", self.reservation)
        reconciler.register("release", self.reservation)

    # ------------------------------------------------------------------ clone

    async def clone(self, job: Job) -> None:
        source = str(job.args["source"])
        # None: the source was not made busy (a template, or mounted read-only only).
        recorded = job.args.get("source_state")
        restore = None if recorded is None else restored(End.SOURCE_RETURNED, recorded)
        if job.attempts > self._max_attempts:
            await self._fail_clone(job, source, restore, f"failed {job.attempts - 1} times")
            return
        if not await self._store.set_job_state(job.uuid, job.lease, step(End.COPY_STARTED)):
            return
        try:
            usage = await self._clone_image(job, source)
        except StorageError as exc:
            if exc.no_space or job.attempts >= self._max_attempts:
                await self._fail_clone(job, source, restore, exc.message)
                return
            raise
        if not await self._end_clone(job, step(End.COPIED), source, restore, usage.free_mb):
            raise LeaseLost(job.uuid, job.lease)

    async def _end_clone(
        self,
        job: Job,
        end: Step[VolumeState],
        source: str,
        restore: VolumeState | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        """End the clone job and, in the same transaction, give the source back."""
        back = None if restore is None else step(End.SOURCE_RETURNED, previous=restore)
        return await self._store.finish_clone(
            job.uuid,
            job.lease,
            end,
            source_uuid=source,
            source_back=back,
            free_mb=free_mb,
            message=message,
        )

    async def _clone_image(self, job: Job, source: str) -> ImageUsage:
        """Copy (then grow, for a copy of a smaller template) into the staged image,
        and publish it; a new claim finds the image a previous holder committed."""
        reserve = job.quota_policy == QuotaPolicy.STATIC
        usage = await committed_usage(self._storage, job)
        if usage is not None:
            return usage
        usage = await self._storage.clone(source, job.uuid, reserve=reserve, stage=job.epoch)
        if usage.size_mb < job.size_mb:
            # The staged copy exists: grow grows it, not a copy of it.
            usage = await self._storage.grow(
                job.uuid, job.size_mb, reserve=reserve, stage=job.epoch
            )
        await publish(self._store, self._storage, job.uuid, job.lease)
        return usage

    async def _fail_clone(
        self, job: Job, source: str, restore: VolumeState | None, why: str
    ) -> None:
        """The clone goes to ``error`` without an image; the source is itself again."""
        with contextlib.suppress(StorageError):
            await self._storage.discard_staged(job.uuid, job.epoch)
        message = f"Cloning volume {source} failed: {why}"
        if not await self._end_clone(
            job, step(End.COPY_FAILED), source, restore, None, message=message
        ):
            raise LeaseLost(job.uuid, job.lease)
        with contextlib.suppress(StorageError):
            await self._storage.delete(job.uuid)
        log.warning("volume %s is in error: %s", job.uuid, message)

    # ------------------------------------------------------------------ grow

    async def grow(self, job: Job) -> None:
        size_mb = int(str(job.args["size_mb"]))
        previous = restored(End.GROWN, job.args["previous_state"])
        failed = f"Growing to {size_mb} MB failed"
        if job.attempts > self._max_attempts:
            await self._end_grow(
                job, End.GROW_FAILED, previous, None, None, f"{failed} {job.attempts - 1} times"
            )
            return
        try:
            usage = await self._storage.usage(job.uuid)
            # Already this size: a previous holder published the grow and was stopped
            # before it could end the job.
            if usage.size_mb < size_mb:
                usage = await self._storage.grow(
                    job.uuid,
                    size_mb,
                    reserve=job.quota_policy == QuotaPolicy.STATIC,
                    stage=job.epoch,
                )
                await publish(self._store, self._storage, job.uuid, job.lease)
        except StorageError as exc:
            if exc.no_space or job.attempts >= self._max_attempts:
                # Out of host space the file system is untouched: the volume keeps its
                # size and state. Anything else, tried this often, needs an engineer.
                end = End.GROW_UNDONE if exc.no_space else End.GROW_FAILED
                await self._end_grow(job, end, previous, None, None, f"{failed}: {exc.message}")
                return
            raise
        if not await self._end_grow(job, End.GROWN, previous, size_mb, usage.free_mb):
            raise LeaseLost(job.uuid, job.lease)

    async def _end_grow(
        self,
        job: Job,
        end: End,
        previous: VolumeState,
        size_mb: int | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        return await self._store.finish_grow(
            job.uuid,
            job.lease,
            step(end, previous=previous),
            size_mb=size_mb,
            free_mb=free_mb,
            message=message,
        )

    # ------------------------------------------------------------------ reserve / release

    async def reservation(self, job: Job) -> None:
        reserve = job.kind == "reserve"
        policy = QuotaPolicy.STATIC if reserve else QuotaPolicy.DYNAMIC
        previous = restored(End.POLICY_SWITCHED, job.args["previous_state"])
        failed = f"Switching to the {policy.value} quota policy failed"
        if job.attempts > self._max_attempts:
            await self._end_reservation(
                job, End.POLICY_FAILED, previous, None, None, f"{failed} {job.attempts - 1} times"
            )
            return
        try:
            usage = await committed_usage(self._storage, job)
            if usage is None:
                usage = await self._storage.set_reservation(
                    job.uuid, reserve=reserve, stage=job.epoch
                )
                await publish(self._store, self._storage, job.uuid, job.lease)
        except StorageError as exc:
            if exc.no_space or job.attempts >= self._max_attempts:
                # A reservation that runs out of space is handed back by the driver.
                end = End.POLICY_KEPT if exc.no_space else End.POLICY_FAILED
                await self._end_reservation(
                    job, end, previous, None, None, f"{failed}: {exc.message}"
                )
                return
            raise
        if not await self._end_reservation(
            job, End.POLICY_SWITCHED, previous, policy, usage.free_mb
        ):
            raise LeaseLost(job.uuid, job.lease)

    async def _end_reservation(
        self,
        job: Job,
        end: End,
        previous: VolumeState,
        policy: QuotaPolicy | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        return await self._store.finish_reservation(
            job.uuid,
            job.lease,
            step(end, previous=previous),
            quota_policy=policy,
            free_mb=free_mb,
            message=message,
        )
