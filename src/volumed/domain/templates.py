"""Template volumes (``/v1/volumes/templates``): an ``available``, unattached volume is
turned, irreversibly, into an immutable template that new volumes are copied from
(:meth:`~volumed.domain.clones.CloneService.create_from_template`). A template cannot be
attached, grown or have its quota policy switched; its tags and delete lock can change
(:class:`~volumed.domain.updates.UpdateService` with ``template=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from volumed.domain import errors, listing
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Ref, User, Volume
from volumed.domain.states import VolumeState
from volumed.domain.storage import StorageDriver, StorageError
from volumed.domain.store import MaintenanceStore, VolumeStore
from volumed.domain.transitions import GONE, Op, check, op_step, states_allowing
from volumed.domain.values import ListQuery

__all__ = ["TemplateService"]

log = logging.getLogger("volumed.templates")

_ATTEMPTS = 3


class TemplateStore(VolumeStore, MaintenanceStore, Protocol):
    """What making and deleting templates reads and writes."""


class TemplateService:
    def __init__(
        self,
        store: TemplateStore,
        storage: StorageDriver,
        *,
        waits: JobWaits,
        wake_worker: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._waits = waits
        self._storage = storage
        self._wake_worker = wake_worker

    async def make(self, user: User, ref: Ref) -> Volume:
        """Turn the volume ``ref`` into a template."""
        volume = await self._store.get_volume(user.id, ref)
        if volume is None:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        for _ in range(_ATTEMPTS):
            volume = await self._waits.ready(user, volume, Op.MAKE_TEMPLATE)
            label = f"'{volume.name}'"
            target = check(Op.MAKE_TEMPLATE, volume.state, label)
            assert isinstance(target, VolumeState)
            if volume.attached_to:
                raise errors.Attached(f"Volume {label} is attached to an instance")
            step = op_step(Op.MAKE_TEMPLATE, volume.state)
            if await self._store.make_template(user.id, volume.uuid, step):
                volume.state = target
                return volume
            volume = await self._reread(user, volume.uuid, ref)
        raise errors.FailedOperation(f"Volume '{volume.name}' kept changing; try again")

    async def get(self, user: User, ref: Ref) -> Volume:
        volume = await self._store.get_volume(user.id, ref)
        if volume is None or volume.state is not VolumeState.TEMPLATE:
            raise errors.NotFound(f"No template with {ref.describe()}")
        return volume

    async def page(self, user: User, query: ListQuery) -> listing.Page:
        """A page of templates; see :mod:`volumed.domain.listing`."""
        assert query.templates
        return await listing.page(self._store, user.id, query)

    async def delete(self, user: User, ref: Ref) -> Volume:
        template = await self.get(user, ref)
        for _ in range(_ATTEMPTS):
            label = f"'{template.name}'"
            target = check(Op.DELETE_TEMPLATE, template.state, label)
            assert target is GONE
            if template.delete_lock:
                raise errors.NotAllowed(
                    f"Template {label} has a delete lock; remove it with PATCH first"
                )
            if await self._store.has_active_clones(template.uuid):
                await self._waits.copies_done(template)
            expected = states_allowing(Op.DELETE_TEMPLATE)
            if await self._store.begin_delete(user.id, template.uuid, expected):
                await self._purge(template.uuid)
                return template
            template = await self._reread(user, template.uuid, ref)
            if template.state is not VolumeState.TEMPLATE:
                raise errors.NotFound(f"No template with {ref.describe()}")
        raise errors.FailedOperation(f"Template '{template.name}' kept changing; try again")

    async def _purge(self, uuid: str) -> None:
        """Remove the image now; if that fails the worker finishes the owed delete."""
        try:
            await self._storage.delete(uuid)
        except StorageError as exc:
            log.warning("delete of image %s deferred to the worker: %s", uuid, exc.message)
            self._wake_worker()
            return
        await self._store.purge_volume(uuid)

    async def _reread(self, user: User, uuid: str, ref: Ref) -> Volume:
        fresh = await self._store.get_volume(user.id, Ref(uuid=uuid))
        if fresh is None:
            raise errors.NotFound(f"No volume with {ref.describe()}")
        return fresh
