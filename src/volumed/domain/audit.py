"""The records of a volume's audit trail (see :mod:`volumed.domain.events`).

Kept apart from the service that reads them, so that the store port can name them
without importing the service that uses the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["WORKER", "EventAction", "EventResult", "VolumeEvent"]

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
