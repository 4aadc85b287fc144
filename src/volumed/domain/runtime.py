"""The third port: what boots and stops an instance (``InstanceRuntime``).

The service moves an instance through ``starting``/``stopping`` in the store, calls the
runtime in between, and records the end state afterwards. The runtime therefore never
touches metadata, and a crash between the two store writes leaves an instance in a
transitional state that :meth:`InstanceService.recover` drives forward on the next start
by calling the runtime again; every method must tolerate that repetition.

Adapters live in :mod:`volumed.runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from volumed.domain.model import Instance

__all__ = ["BootVolume", "InstanceRuntime", "RuntimeFailure"]


@dataclass(slots=True, frozen=True)
class BootVolume:
    """A volume to hand to the guest: the image file and where the guest mounts it."""

    uuid: str
    image: Path
    at: str
    readonly: bool


class RuntimeFailure(Exception):
    """The runtime could not start or stop the instance. ``message`` is a sentence fit
    for the API user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InstanceRuntime(Protocol):
    """Boots and stops guests. Keyed by instance UUID; holds no metadata of its own."""

    async def start(self, instance: Instance, volumes: Sequence[BootVolume]) -> None:
        """Boot ``instance`` with ``volumes`` attached, returning once it runs.

        Idempotent: starting an instance that already runs succeeds. Raises
        RuntimeFailure if the guest cannot be booted; nothing may be left running then.
        """
        ...

    async def stop(self, instance: Instance, *, force: bool = False) -> None:
        """Shut the guest down (``force``: without giving it a chance to sync), returning
        once no process uses its volumes' images any more. Stopping what does not run
        succeeds."""
        ...
