"""Removing a directory tree of any depth, without recursion and without following links.

``shutil.rmtree`` (Python 3.11) recurses once per level, so a 1,200-level tree left by an
import raises ``RecursionError``, and it builds host paths that a deep enough tree makes
longer than ``PATH_MAX``. :func:`remove_tree` walks down by file descriptor (``openat``
with ``O_NOFOLLOW``), one level at a time, and climbs back through ``..``; it keeps the
names of the current path, and the open listings of the top ``_OPEN_LEVELS`` levels (a
deeper level is listed again after each of its subdirectories is gone), so neither
descriptors nor memory grow with the size of the tree. Read-only directories are made
writable on the way in, so they do not stop it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["remove_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_LEVELS = 64


def remove_tree(path: Path) -> None:
    """Remove ``path``, whatever it is (a missing one is fine); a link is removed, not
    followed."""
    parent = os.open(path.parent, _DIR_FLAGS)
    try:
        try:
            top = os.open(path.name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        except OSError:
            # Not a directory (or a link to one): the name alone goes.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.name, dir_fd=parent)
            return
        _empty(top)
        os.rmdir(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def _empty(top: int) -> None:
    """Empty the directory open as ``top`` (and close it)."""
    names: list[str] = []
    listings: list[Iterator[os.DirEntry[str]] | None] = []
    fd = top
    listing: Iterator[os.DirEntry[str]] | None = None
    try:
        while True:
            if listing is None:
                _writable(fd)
                listing = os.scandir(fd)
            child = _next_subdir(fd, listing)
            if child is not None:
                sub = os.open(child, _DIR_FLAGS, dir_fd=fd)
                names.append(child)
                # Deep down, drop the listing and list again when back (few descriptors).
                listings.append(listing if len(names) <= _OPEN_LEVELS else None)
                if len(names) > _OPEN_LEVELS:
                    _close(listing)
                os.close(fd)
                fd, listing = sub, None
                continue
            _close(listing)
            if not names:
                return
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(names.pop(), dir_fd=fd)
            listing = listings.pop()
    finally:
        _close(listing)
        for left in listings:
            _close(left)
        os.close(fd)


def _next_subdir(fd: int, listing: Iterator[os.DirEntry[str]]) -> str | None:
    """Unlink entries until a subdirectory comes up; its name, or None at the end."""
    for entry in listing:
        if entry.is_dir(follow_symlinks=False):
            return entry.name
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.name, dir_fd=fd)
    return None


def _writable(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o700)


def _close(listing: Iterator[os.DirEntry[str]] | None) -> None:
    if listing is not None:
        listing.close()  # type: ignore[attr-defined]
