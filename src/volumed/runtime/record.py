"""The built-in runtime: an instance is the record volumes attach to, and nothing runs.

Start and stop complete at once, so the instance and its volumes still go through
``starting``/``stopping`` and ``mounted``/``idle`` exactly as with a runtime that boots
real guests, and clients can script against the API before such a runtime exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from volumed.domain.model import Instance
from volumed.domain.runtime import BootVolume


class RecordOnlyRuntime:
    """Keeps no process. ``started`` counts starts, for diagnostics and tests."""

    def __init__(self) -> None:
        self.started = 0

    async def start(self, instance: Instance, volumes: Sequence[BootVolume]) -> None:
        self.started += 1

    async def stop(self, instance: Instance, *, force: bool = False) -> None:
        return None
