"""Files in and out of a volume (a volumed extension): import a tar archive, export one.

Import replaces the file system's contents. It needs the volume ``available`` and
unattached (``Op.IMPORT``); one compare-and-set makes it ``busy`` with an ``import`` job
leased to this process, which renews the lease while the archive streams in. Whatever
happens next (success, an archive that does not fit, a client that goes away), the
volume goes back to ``available``, with the new contents or exactly the old ones. If the
process dies, the lease runs out (or is released at the next start) and the reconciler
runs :meth:`TransferService.recover_import`: it drops the leftovers and keeps whichever
complete image is in place.

At most ``max_imports`` imports run at once in one process (each holds a thread of the
storage's import pool); one more is refused with error 5 before the volume is touched.
:meth:`TransferService.stop_imports` (on SIGTERM) ends the running ones at once: each
answers error 10, its volume unchanged, instead of holding the shutdown up.

The new image is built as the staged image of the import's fencing epoch and published
only by :func:`volumed.domain.fencing.publish`: a server frozen past its lease (its import
taken over and ended by the worker, another import acknowledged since) loses the
compare-and-set when it resumes, and its archive is dropped instead of overwriting the
newer contents.

Export streams the tree of a volume that no running instance has mounted (``Op.EXPORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from volumed.domain import errors
from volumed.domain.fencing import LeaseLost, publish
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Ref, User, Volume
from volumed.domain.states import QuotaPolicy
from volumed.domain.storage import ImportRefused, StorageDriver, StorageError
from volumed.domain.store import JobStore, MaintenanceStore, StoreUnavailable, VolumeStore
from volumed.domain.transitions import End, Op, check, op_step, step
from volumed.domain.values import Job, Lease

__all__ = ["IMPORT_JOB", "TransferService"]

log = logging.getLogger("volumed.transfers")

IMPORT_JOB = "import"
_STOPPING = "Import into volume {} stopped: the server is shutting down; its contents are unchanged"


class TransferStore(VolumeStore, MaintenanceStore, JobStore, Protocol):
    """What an import reads and writes: it holds its own job's lease while it streams."""


class TransferService:
    def __init__(
        self,
        store: TransferStore,
        storage: StorageDriver,
        *,
        waits: JobWaits,
        worker_id: str,
        lease_us: int,
        max_imports: int = 2,
    ) -> None:
        self._store = store
        self._waits = waits
        self._storage = storage
        self._worker_id = worker_id
        self._lease_us = lease_us
        self._max_imports = max_imports
        self._imports: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()

    async def get(self, user: User, ref: Ref) -> Volume:
        volume = await self._store.get_volume(user.id, ref)
        if volume is None:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        return volume

    # ------------------------------------------------------------------ import

    async def check_import(self, user: User, ref: Ref) -> Volume:
        """Refuse early what :meth:`import_archive` would refuse (before any byte is read)."""
        volume = await self._waits.ready(user, await self.get(user, ref), Op.IMPORT)
        self._check_importable(volume)
        return volume

    async def import_archive(self, user: User, ref: Ref, chunks: AsyncIterator[bytes]) -> Volume:
        """Replace the volume's contents with the tar archive arriving as ``chunks``."""
        volume = await self.get(user, ref)
        task = asyncio.current_task()
        assert task is not None
        if self._stopping.is_set():
            raise errors.FailedOperation(_STOPPING.format(f"'{volume.name}'"))
        if len(self._imports) >= self._max_imports:
            raise errors.TooMany(
                f"Import into volume '{volume.name}' refused: this server already runs "
                f"{self._max_imports} imports (setting import_concurrency); try again later"
            )
        self._imports.add(task)
        try:
            return await self._import(user, ref, volume, chunks)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            task.uncancel()
            raise errors.FailedOperation(_STOPPING.format(f"'{volume.name}'")) from None
        finally:
            self._imports.discard(task)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def stop_imports(self, timeout: float) -> None:
        """Shutting down: refuse new imports, end the running ones now and wait (up to
        ``timeout``) until each has handed its volume back."""
        self._stopping.set()
        running = list(self._imports)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout)

    async def _import(
        self, user: User, ref: Ref, volume: Volume, chunks: AsyncIterator[bytes]
    ) -> Volume:
        for _ in range(3):
            volume = await self._waits.ready(user, volume, Op.IMPORT)
            self._check_importable(volume)
            lease = await self._store.begin_import(
                user.id,
                volume.uuid,
                op_step(Op.IMPORT),
                self._worker_id,
                self._lease_us,
            )
            if lease is not None:
                break
            fresh = await self._store.get_volume(user.id, Ref(uuid=volume.uuid))
            if fresh is None:
                raise errors.NotFound(f"No volume with {ref.describe()}")
            volume = fresh
        else:
            raise errors.FailedOperation(f"Volume '{volume.name}' kept changing; try again")
        await self._run_import(volume, lease, chunks)
        return await self.get(user, Ref(uuid=volume.uuid))

    def _check_importable(self, volume: Volume) -> None:
        label = f"'{volume.name}'"
        check(Op.IMPORT, volume.state, label)
        if volume.attached_to:
            raise errors.Attached(
                f"Volume {label} is attached to an instance; import needs it detached"
            )

    async def _run_import(self, volume: Volume, lease: Lease, chunks: AsyncIterator[bytes]) -> None:
        label = f"'{volume.name}'"
        heartbeat = asyncio.create_task(self._renew(volume.uuid, lease))
        free_mb: int | None = None
        held = True
        try:
            usage = await self._storage.import_tar(
                volume.uuid,
                chunks,
                reserve=volume.quota_policy is QuotaPolicy.STATIC,
                stage=lease.epoch,
            )
            await publish(self._store, self._storage, volume.uuid, lease)
            free_mb = usage.free_mb
        except LeaseLost:
            held = False
            raise errors.FailedOperation(
                f"Import into volume {label} was abandoned: this server was held up past its "
                "lease and the volume was handed back meanwhile; the archive was not applied"
            ) from None
        except ImportRefused as exc:
            if exc.needed_mb is not None:
                raise errors.QuotaExceeded(
                    f"Import into volume {label} refused: {exc.message}"
                ) from None
            raise errors.Invalid(f"Import into volume {label} refused: {exc.message}") from None
        except StorageError as exc:
            raise errors.FailedOperation(
                f"Import into volume {label} failed, its contents are unchanged: {exc.message}"
            ) from None
        finally:
            heartbeat.cancel()
            # Every outcome, cancellation included, hands the volume back (if still ours).
            if held:
                if free_mb is None:
                    free_mb = await self._usage_or_none(volume.uuid)
                await self._hand_back(volume.uuid, lease, free_mb)

    async def _hand_back(self, uuid: str, lease: Lease, free_mb: int | None) -> None:
        """End the import job. If the store cannot write now (a full disk), the caller
        still gets the import's own answer; the job keeps its lease, and once that runs
        out the reconciler's ``import`` handler hands the volume back."""
        try:
            ended = await self._store.finish_job(
                uuid, lease, step(End.IMPORT_ENDED), free_mb=free_mb
            )
        except StoreUnavailable as exc:
            log.warning("import of %s: could not end the job now (%s); the worker will", uuid, exc)
            return
        self._waits.signals.ended(uuid)
        if not ended:
            log.warning("import of %s: lost the job before it ended", uuid)

    async def _renew(self, uuid: str, lease: Lease) -> None:
        interval = self._lease_us / 3_000_000
        while True:
            await asyncio.sleep(interval)
            if not await self._store.renew_lease(uuid, lease, self._lease_us):
                log.warning("import of %s: lost the lease", uuid)
                return

    async def _usage_or_none(self, uuid: str) -> int | None:
        with contextlib.suppress(StorageError):
            return (await self._storage.usage(uuid)).free_mb
        return None

    async def recover_import(self, job: Job) -> None:
        """Reconciler job ``import``: the process streaming an import died (or was held
        up past its lease). Drop its leftovers; the image in place is complete (the old
        one, or the new one if it was committed: the reconciler has finished that
        rename), so the volume goes back to ``available``."""
        await self._storage.discard_transfers(job.uuid)
        try:
            usage = await self._storage.usage(job.uuid)
        except StorageError as exc:
            await self._store.finish_job(
                job.uuid,
                job.lease,
                step(End.IMPORT_LOST),
                message=f"An interrupted import left no usable image: {exc.message}",
            )
            return
        await self._store.finish_job(
            job.uuid, job.lease, step(End.IMPORT_ENDED), free_mb=usage.free_mb
        )
        log.info("interrupted import of %s rolled back", job.uuid)

    # ------------------------------------------------------------------ export

    async def export_archive(self, user: User, ref: Ref) -> tuple[Volume, AsyncIterator[bytes]]:
        """The volume and its tree as a tar stream, dumped now (errors raise here)."""
        volume = await self._waits.ready(user, await self.get(user, ref), Op.EXPORT)
        check(Op.EXPORT, volume.state, f"'{volume.name}'")
        try:
            stream = await self._storage.export_tar(volume.uuid)
        except StorageError as exc:
            raise errors.FailedOperation(
                f"Export of volume '{volume.name}' failed: {exc.message}"
            ) from None
        return volume, stream
