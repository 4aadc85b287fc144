"""Lease fencing: how a job's holder changes a volume's image only while it still holds
the job (issue 11; the protocol is in docs/design.md, "Lease fencing").

A holder whose lease ran out (a process frozen by SIGSTOP, a long GC pause, a network
partition) does not know it. Its epoch (:class:`~volumed.domain.values.Lease`) does: every
claim of the row makes a new one. So the holder builds the new image under a name of its
own epoch, then

1. :func:`publish` records, by a compare-and-set naming its epoch, that this staged image
   is the job's result; a stale holder loses here and drops its work;
2. renames it over the image (a rename of one staged file can only happen once);
3. ends the job with another compare-and-set naming its epoch.

Whoever claims the job next (after a crash or a freeze between 1 and 3) first calls
:func:`roll_forward`: it finishes a recorded rename and drops every other staged image.
"""

from __future__ import annotations

import contextlib

from volumed.domain.storage import ImageUsage, StorageDriver, StorageError
from volumed.domain.store import JobStore
from volumed.domain.values import Job, Lease

__all__ = ["LeaseLost", "committed_usage", "publish", "roll_forward", "sweep_unborn"]


class LeaseLost(Exception):
    """The job was claimed again since this holder claimed it: its work is dropped."""

    def __init__(self, uuid: str, lease: Lease) -> None:
        super().__init__(
            f"The job on volume {uuid} was taken over by another worker after the lease of "
            f"{lease.owner} (epoch {lease.epoch}) ran out; its work was dropped."
        )
        self.uuid = uuid
        self.lease = lease


async def publish(store: JobStore, storage: StorageDriver, uuid: str, lease: Lease) -> None:
    """Make the staged image of ``lease.epoch`` the volume's image, if ``lease`` still
    holds the job; otherwise drop it and raise :class:`LeaseLost`."""
    if not await store.commit_stage(uuid, lease):
        with contextlib.suppress(StorageError):
            await storage.discard_staged(uuid, lease.epoch)
        raise LeaseLost(uuid, lease)
    if not await storage.publish(uuid, lease.epoch):
        # Someone else renamed it: a later claim rolled it forward, so this holder is
        # stale. Never end the job as if the image were ours to describe.
        raise LeaseLost(uuid, lease)


async def roll_forward(storage: StorageDriver, job: Job) -> None:
    """On a new claim: finish the rename a previous holder committed, and drop the
    staged images of the earlier claims of this job (their holders can no longer commit
    them). Each claim took the next epoch, so those are the ``attempts`` epochs below
    this one: a few unlinks, no listing of the image directory. (A staged image older
    still, of a job a killed worker held long ago, is removed by the volume's delete or
    reported by ``volumed fsck``.) Epoch 0 is a new row's: nobody ever held it, so it
    has no staged image, and a row's first claim (epoch 1) has nothing to remove."""
    if job.published is not None:
        await storage.publish(job.uuid, job.published)
    for stale in range(max(1, job.epoch - job.attempts - 1), job.epoch):
        await storage.discard_staged(job.uuid, stale)


async def committed_usage(storage: StorageDriver, job: Job) -> ImageUsage | None:
    """The usage of the image a previous holder of ``job`` committed (and
    :func:`roll_forward` put in place); None if it committed none, or it is gone."""
    if job.published is None:
        return None
    try:
        return await storage.usage(job.uuid)
    except StorageError:
        return None


async def sweep_unborn(store: JobStore, storage: StorageDriver) -> list[str]:
    """Remove the staged images of volumes that have no row, and return their UUIDs.

    A create begins its volume's image while its insert commits (``format_ahead``): a
    process killed between the two leaves a staged image nobody will ever claim, with the
    whole size reserved for a static volume. Only while no other process can be creating
    volumes (a lone server as it starts): another's create may sit between the two.
    """
    staged = storage.list_staged()
    if not staged:
        return []
    known = await store.volumes_known(staged)
    unborn = [uuid for uuid in staged if uuid not in known]
    for uuid in unborn:
        await storage.discard_staged(uuid)
    return unborn
