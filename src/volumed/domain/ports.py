"""The two ports the domain uses: metadata (``Store``) and data plane (``StorageDriver``).

Adapters live in :mod:`volumed.store` and :mod:`volumed.storage`; they import from
here, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ImageUsage", "StorageDriver", "StorageError"]


class StorageError(Exception):
    """A data-plane operation failed. ``message`` is a sentence fit for the API user."""

    def __init__(self, message: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.no_space = no_space


@dataclass(slots=True, frozen=True)
class ImageUsage:
    size_mb: int
    """Size of the file system in MiB."""
    free_mb: int
    """Free space inside the file system in MiB (no blocks are reserved for root)."""
    allocated_mb: int
    """Space the image occupies on the host (sparse images occupy less than their size)."""


class StorageDriver(Protocol):
    """Makes volumes real. Images are named by volume UUID, never by a user-chosen name.

    Every method is idempotent with respect to a crash: calling it again after a
    ``kill -9`` in the middle of a previous call finishes the job or redoes it.
    """

    def image_path(self, uuid: str) -> Path:
        """Where the image of ``uuid`` lives (whether or not it exists yet)."""
        ...

    async def create(self, uuid: str, size_mb: int, *, reserve: bool) -> ImageUsage:
        """Allocate and format a fresh ext4 image, and nothing else.

        The image appears under its final name only once it is fully formatted (it is
        built under a temporary name and renamed), so a crash leaves either no image or
        a complete one. ``reserve`` allocates every block on the host (static quota
        policy); otherwise the image stays sparse. An existing image is replaced.
        """
        ...

    async def delete(self, uuid: str) -> None:
        """Remove the image and any leftovers. Succeeds if they are already gone."""
        ...

    async def clone(self, source_uuid: str, target_uuid: str, *, reserve: bool) -> ImageUsage:
        """Copy the source image to the target (reflink if possible, else sparse copy)."""
        ...

    async def grow(self, uuid: str, size_mb: int) -> ImageUsage:
        """Grow the image and its file system to ``size_mb`` (offline)."""
        ...

    async def set_reservation(self, uuid: str, *, reserve: bool) -> ImageUsage:
        """Reserve every block on the host (``True``) or release unused ones (``False``)."""
        ...

    async def usage(self, uuid: str) -> ImageUsage:
        """Read size and free space from the image's superblock."""
        ...

    async def check(self, uuid: str) -> tuple[bool, str]:
        """Run a read-only file system check; returns (clean, output)."""
        ...

    def list_images(self) -> list[str]:
        """UUIDs of every image (and leftover temporary file) in the data directory."""
        ...

    def free_bytes(self) -> int:
        """Free space on the host file system that holds the images."""
        ...
