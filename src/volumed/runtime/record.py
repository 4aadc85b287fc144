"""The record runtime: an instance is the record volumes attach to, and nothing runs.

Start and stop complete at once, so the instance and its volumes still go through
``starting``/``stopping`` and ``mounted``/``idle`` exactly as with a runtime that boots
real guests. It is the runtime when QEMU's assets are missing (or ``runtime=record``),
and the one race and chaos tests use: they test the metadata, not the guests.
"""

from __future__ import annotations

from collections.abc import Sequence

from volumed.domain.model import Instance
from volumed.domain.runtime import (
    BootInfo,
    BootVolume,
    ConsoleSlice,
    ExitHandler,
    GuestExit,
    StopReason,
)

_CLEAN_USER_STOP = GuestExit(
    StopReason.USER | StopReason.PLATFORM | StopReason.APP | StopReason.KERNEL,
    exit_code=0,
    stop_code=0,
)
_FORCED_USER_STOP = GuestExit(StopReason.USER | StopReason.PLATFORM | StopReason.FORCED)


class RecordOnlyRuntime:
    """Keeps no process. ``started`` counts starts, for diagnostics and tests."""

    name = "record"
    node_bound = False
    accel = "none"

    def __init__(self) -> None:
        self.started = 0

    def watch(self, on_exit: ExitHandler) -> None:
        return None

    async def start(self, instance: Instance, volumes: Sequence[BootVolume]) -> BootInfo:
        self.started += 1
        return BootInfo()

    async def stop(
        self, instance: Instance, *, force: bool = False, drain_timeout_ms: int | None = None
    ) -> GuestExit:
        return _FORCED_USER_STOP if force else _CLEAN_USER_STOP

    async def adopt(self, running: Sequence[Instance]) -> dict[str, GuestExit]:
        return {}

    def console(
        self, instance_uuid: str, node: str | None, offset: int, limit: int
    ) -> ConsoleSlice | None:
        return None

    async def forget(self, instance_uuid: str) -> None:
        return None

    async def close(self) -> None:
        return None
