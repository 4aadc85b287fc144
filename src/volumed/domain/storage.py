"""The data-plane port: what the domain asks of the images that make volumes real.

The adapter lives in :mod:`volumed.storage`; it imports from here, never the other
way round.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

__all__ = ["ImageUsage", "ImportRefused", "Placed", "StorageDriver", "StorageError"]


class StorageError(Exception):
    """A data-plane operation failed. ``message`` is a sentence fit for the API user."""

    def __init__(self, message: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.no_space = no_space


class ImportRefused(StorageError):
    """An import the volume cannot take, its old contents untouched: the archive is not
    a tar archive or has an unsafe member, or (``needed_mb`` set) its files do not fit
    in a file system of the volume's size (``capacity_mb`` free when empty)."""

    def __init__(
        self, message: str, *, needed_mb: int | None = None, capacity_mb: int | None = None
    ) -> None:
        super().__init__(message)
        self.needed_mb = needed_mb
        self.capacity_mb = capacity_mb


@dataclass(slots=True, frozen=True)
class ImageUsage:
    size_mb: int
    """Size of the file system in MiB."""
    free_mb: int
    """Free space inside the file system in MiB (no blocks are reserved for root)."""
    allocated_mb: int
    """Space the image occupies on the host (sparse images occupy less than their size)."""


class Placed(Enum):
    """What :meth:`StorageDriver.place` did with a staged image."""

    OURS = "ours"
    """It is the volume's image now."""
    TAKEN = "taken"
    """The volume had an image already (another holder of the same job placed its own
    first); the staged image was removed."""
    GONE = "gone"
    """There was no such staged image: a later claim or a delete removed it."""


class StorageDriver(Protocol):
    """Makes volumes real. Images are named by volume UUID, never by a user-chosen name.

    Every method is idempotent with respect to a crash: calling it again after a
    ``kill -9`` in the middle of a previous call finishes the job or redoes it.
    """

    def image_path(self, uuid: str) -> Path:
        """Where the image of ``uuid`` lives (whether or not it exists yet)."""
        ...

    async def create(
        self, uuid: str, size_mb: int, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Allocate and format a fresh ext4 image, and nothing else.

        The image appears under its final name only once it is fully formatted (it is
        built under a temporary name and renamed), so a crash leaves either no image or
        a complete one. ``reserve`` allocates every block on the host (static quota
        policy); otherwise the image stays sparse. An existing image is replaced.

        With ``stage`` (the job's fencing epoch) every builder below leaves its result
        as the *staged image* of that epoch instead, and the volume's image is untouched
        until :meth:`publish` renames it into place; the usage returned is the staged
        image's.
        """
        ...

    async def delete(self, uuid: str) -> None:
        """Remove the image and any leftovers. Succeeds if they are already gone."""
        ...

    async def clone(
        self, source_uuid: str, target_uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Copy the source image to the target (reflink if possible, else sparse copy)."""
        ...

    async def grow(
        self, uuid: str, size_mb: int, *, reserve: bool | None = None, stage: int | None = None
    ) -> ImageUsage:
        """Grow the image and its file system to ``size_mb`` (offline). ``reserve`` says
        whether the added space is allocated on the host (None: as the image was). With
        ``stage``, a copy is grown and the image itself is only read."""
        ...

    async def set_reservation(
        self, uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Reserve every block on the host (``True``) or release unused ones (``False``).
        With ``stage``, on a copy."""
        ...

    async def publish(self, uuid: str, stage: int) -> bool:
        """Rename the staged image of epoch ``stage`` over the volume's image, durably.
        False if it is not there (already published, or discarded): a staged image can
        be published once at most, whoever tries."""
        ...

    async def place(self, uuid: str, stage: int) -> Placed:
        """Make the staged image of epoch ``stage`` the volume's *first* image, durably:
        it is renamed into place only if the volume has no image yet, never over one, so
        of several holders of one job (a stale one among them) the first to get there
        wins and nobody's image is ever replaced."""
        ...

    async def discard_staged(self, uuid: str, stage: int | None = None) -> None:
        """Remove the staged image of epoch ``stage`` (every staged image of the volume
        when None). Succeeds if they are already gone."""
        ...

    async def usage(self, uuid: str) -> ImageUsage:
        """Read size and free space from the image's superblock."""
        ...

    async def check(self, uuid: str) -> tuple[bool, str]:
        """Run a read-only file system check; returns (clean, output)."""
        ...

    async def replay_journal(self, uuid: str) -> None:
        """Bring the file system of an image its guest did not unmount (a crash, a
        forced stop) to a consistent state by replaying its journal; nothing else is
        checked or repaired. Only while no guest has the image open."""
        ...

    def list_images(self) -> list[str]:
        """UUIDs of every image (and leftover temporary file) in the data directory."""
        ...

    def list_staged(self) -> list[str]:
        """UUIDs that have a staged image, sorted, each once."""
        ...

    def free_bytes(self) -> int:
        """Free space on the host file system that holds the images."""
        ...

    # ---- files in and out (volumed extension)

    async def import_tar(
        self, uuid: str, chunks: AsyncIterator[bytes], *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Replace the file system's contents with the tar archive arriving as ``chunks``,
        atomically: the old image stays untouched until a complete new one is renamed
        over it. Raises ``ImportRefused`` (old contents kept) for an unsafe archive or
        one that does not fit. Never holds the archive in memory."""
        ...

    async def export_tar(self, uuid: str) -> AsyncIterator[bytes]:
        """Snapshot the file tree now (errors raise here) and return it as a tar stream."""
        ...

    async def discard_transfers(self, uuid: str | None = None) -> None:
        """Remove what an interrupted import of ``uuid`` left (every transfer leftover
        when None: only while no transfer can be running)."""
        ...
