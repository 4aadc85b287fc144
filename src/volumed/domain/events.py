"""A volume's audit trail: who did what to it, when, and how it ended.

The store writes an event in the same transaction as the change it describes (create,
delete, a job's start and end, attach, detach), so the trail never disagrees with the
volume. It keeps the last ``events_per_volume`` events of each volume, and those of a
deleted volume for ``events_retention_days`` after they happened, so that "why is my
volume in error" and "why did it disappear" are both answerable by UUID.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from volumed.domain import errors
from volumed.domain.model import Ref, User

if TYPE_CHECKING:
    from volumed.domain.ports import Store

__all__ = ["WORKER", "EventAction", "EventResult", "EventService", "VolumeEvent"]

WORKER = "worker"
"""The actor of everything the background worker does."""


class EventAction(StrEnum):
    CREATE = "create"
    """A tenant created the volume (it now owes a format)."""
    DELETE = "delete"
    """A tenant deleted the volume (the row is hidden; the image goes next)."""
    ATTACH = "attach"
    DETACH = "detach"
    FORMAT = "format"
    CLONE = "clone"
    GROW = "grow"
    IMPORT = "import"
    STATE = "state"
    """Any other change of state (an instance started or stopped, a PATCH)."""


class EventResult(StrEnum):
    OK = "ok"
    ERROR = "error"
    """The operation failed; ``message`` says why (and whether it will be retried)."""


@dataclass(slots=True, frozen=True)
class VolumeEvent:
    id: str
    """Sorts in the order the events happened."""
    volume_uuid: str
    at_us: int
    actor: str
    """The tenant's user name, or ``worker``."""
    action: str
    result: str
    state_from: str | None
    state_to: str | None
    message: str | None


class EventService:
    def __init__(self, store: Store) -> None:
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
