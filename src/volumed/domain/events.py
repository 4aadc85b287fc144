"""A volume's audit trail: who did what to it, when, and how it ended.

The store writes an event in the same transaction as the change it describes (create,
delete, a job's start and end, attach, detach), so the trail never disagrees with the
volume. It keeps the last ``events_per_volume`` events of each volume, and those of a
deleted volume for ``events_retention_days`` after they happened, so that "why is my
volume in error" and "why did it disappear" are both answerable by UUID.
"""

from __future__ import annotations

from typing import Protocol

from volumed.domain import errors
from volumed.domain.audit import WORKER, EventAction, EventResult, VolumeEvent
from volumed.domain.model import Ref, User
from volumed.domain.store import EventStore, VolumeStore

__all__ = ["WORKER", "EventAction", "EventResult", "EventService", "VolumeEvent"]


class TrailStore(EventStore, VolumeStore, Protocol):
    """What reading a volume's audit trail needs."""


class EventService:
    def __init__(self, store: TrailStore) -> None:
        self._store = store

    async def list(self, user: User, uuid: str) -> list[VolumeEvent]:
        """The tenant's events of a volume, oldest first; NotFound if it has none and no
        such volume exists (anyone else's volume included)."""
        events = await self._store.volume_events(user.id, uuid)
        if not events:
            ref = Ref(uuid=uuid)
            if await self._store.get_volume(user.id, ref) is None:
                raise errors.NotFound(f"No volume with {ref.describe()}")
        return events
