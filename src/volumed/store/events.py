"""The SQL store's audit trail as the domain reads it; the SQL is in
:mod:`volumed.store._events`.
"""

from __future__ import annotations

from volumed.domain.audit import WORKER, VolumeEvent
from volumed.store._base import SqlBase

__all__ = ["SqlEvents"]


class SqlEvents(SqlBase):
    """The audit trail (:class:`~volumed.domain.store.EventStore`)."""

    async def volume_events(self, owner_id: str, uuid: str) -> list[VolumeEvent]:
        return await self._events.list(self._db, owner_id, uuid)

    async def add_volume_event(self, uuid: str, action: str, result: str, message: str) -> None:
        async with self._db.transaction() as db:
            await self._events.record(db, uuid, action, result, actor=WORKER, message=message)
