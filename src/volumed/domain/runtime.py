"""The third port: what boots and stops an instance (``InstanceRuntime``).

The service moves an instance through ``starting``/``stopping`` in the store, calls the
runtime in between, and records the end state afterwards. The runtime therefore never
touches metadata, and a crash between the two store writes leaves an instance in a
transitional state that :meth:`InstanceService.recover` drives forward on the next start
by calling the runtime again; every method must tolerate that repetition.

A guest may also end by itself (its workload exits, it crashes): the runtime reports
that through the callback given to :meth:`InstanceRuntime.watch`, and the service
records the instance ``stopped`` with the :class:`GuestExit` it was given.

Adapters live in :mod:`volumed.runtime`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntFlag
from pathlib import Path
from typing import Protocol

from volumed.domain.model import Instance

__all__ = [
    "BootInfo",
    "BootVolume",
    "ConsoleSlice",
    "ExitHandler",
    "GuestExit",
    "InstanceRuntime",
    "RuntimeFailure",
    "StopReason",
]


class StopReason(IntFlag):
    """The bits of the API's ``stop_reason``, as the SDK's Instance model documents."""

    KERNEL = 1
    """The kernel exited; ``stop_code`` says how."""
    APP = 2
    """The workload exited; ``exit_code`` says how."""
    PLATFORM = 4
    """volumed initiated the stop (every user stop also carries this bit)."""
    USER = 8
    """A user asked for the stop."""
    FORCED = 16
    """The guest was given no chance to shut down cleanly."""


@dataclass(slots=True, frozen=True)
class GuestExit:
    """How a guest ended: the ``stop_reason`` bits and the codes they promise."""

    reason: StopReason
    exit_code: int | None = None
    stop_code: int | None = None

    @property
    def unclean(self) -> bool:
        """The guest did not unmount its volumes: forced, or ended without a word."""
        return bool(self.reason & StopReason.FORCED) or self.reason in (
            StopReason(0),
            StopReason.KERNEL,
        )


@dataclass(slots=True, frozen=True)
class BootInfo:
    boot_time_us: int | None = None
    """From the start of the VMM to the workload about to run; None if nothing boots."""


@dataclass(slots=True, frozen=True)
class BootVolume:
    """A volume to hand to the guest: the image file and where the guest mounts it."""

    uuid: str
    image: Path
    at: str
    readonly: bool


@dataclass(slots=True, frozen=True)
class ConsoleSlice:
    """Part of a console log: ``data`` starts at byte ``start``; the log keeps bytes
    ``first`` to ``end`` (exclusive)."""

    data: bytes
    start: int
    first: int
    end: int


class RuntimeFailure(Exception):
    """The runtime could not start or stop the instance. ``message`` is a sentence fit
    for the API user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


ExitHandler = Callable[[str, GuestExit], Awaitable[None]]
"""Called with an instance UUID and how its guest ended by itself."""


class InstanceRuntime(Protocol):
    """Boots and stops guests. Keyed by instance UUID; holds no metadata of its own."""

    name: str
    """``qemu`` or ``record``, for the logs."""
    node_bound: bool
    """Guests live on the node that started them: only that node can stop them."""

    def watch(self, on_exit: ExitHandler) -> None:
        """Report every guest that ends by itself (not through :meth:`stop`) to
        ``on_exit``."""
        ...

    async def start(self, instance: Instance, volumes: Sequence[BootVolume]) -> BootInfo:
        """Boot ``instance`` with ``volumes`` attached, returning once its workload is
        about to run. Idempotent: a guest left over from an earlier attempt is ended
        first. Raises RuntimeFailure if the guest cannot be booted (the message says
        why, e.g. a volume that does not mount); nothing is left running then.
        """
        ...

    async def stop(
        self, instance: Instance, *, force: bool = False, drain_timeout_ms: int | None = None
    ) -> GuestExit:
        """Ask the guest to shut down cleanly within ``drain_timeout_ms`` (None: the
        runtime's default), then force it; ``force`` forces at once. Returns once no
        process uses its volumes' images any more. Stopping what does not run succeeds.
        """
        ...

    async def adopt(self, running: Sequence[Instance]) -> dict[str, GuestExit]:
        """After a restart: take back the guests of ``running`` (the instances the
        store has running on this node), end any other guest found, and return how
        each of ``running`` whose guest is gone ended."""
        ...

    def console(
        self, instance_uuid: str, node: str | None, offset: int, limit: int
    ) -> ConsoleSlice | None:
        """Up to ``limit`` bytes of the instance's console (kept by ``node``, which ran
        it) from ``offset`` (negative: from the end), or None if none is kept."""
        ...

    async def forget(self, instance_uuid: str) -> None:
        """Drop what is kept of a deleted instance (its console log)."""
        ...

    async def close(self) -> None:
        """Let go of the guests at shutdown (they keep running, to be adopted)."""
        ...
