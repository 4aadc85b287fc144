"""Tar archives into a directory, streamed: no archive is ever held in memory.

:func:`extract_stream` reads an archive from an async iterator of chunks and extracts it
member by member (``tarfile`` in stream mode, in a worker thread fed through a small
bounded queue) into a directory, refusing anything unsafe:

* names with a ``..`` component, or that would land outside the directory by following
  a symlink extracted earlier (leading ``/`` are stripped, as GNU tar does);
* hard links whose target is outside the directory;
* device nodes and FIFOs (a volume is data, not a root file system's ``/dev``).

Modes (setuid, sticky and group-write bits included), owners (numeric, when running as
root), symlinks (any target: they are resolved inside the guest, never here),
directories and modification times are kept. Directory attributes are applied at the
end, so a read-only directory can still be filled.

The bytes the tree will need are counted as it arrives; past ``limit_bytes`` (or past
``max_entries`` entries) nothing more is written, the rest of the stream is only
counted (up to ``count_cap_bytes`` of archive), and :class:`TooLarge` says how much
would have been needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import tarfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchiveError", "ExtractStats", "TooLarge", "extract_stream"]

_BLOCK = 4096
_QUEUE_CHUNKS = 16
_READ_CHUNK = 1 << 16


class ArchiveError(Exception):
    """The stream is not a tar archive volumed accepts; the message says which member."""


@dataclass(slots=True)
class ExtractStats:
    files: int = 0
    """Entries of every kind (files, directories, links)."""
    data_bytes: int = 0
    """Bytes of file content."""
    needed_bytes: int = 0
    """Content rounded up to 4 KiB blocks, plus a block per directory and long symlink:
    about what the tree occupies in an ext4 file system, metadata aside."""
    archive_bytes: int = 0
    """Bytes of the archive read (compressed size for a compressed archive)."""
    complete: bool = True
    """False when counting stopped at the cap: the figures are lower bounds."""
    too_many_files: bool = False
    """More entries than the file system has inodes."""


class TooLarge(Exception):
    """The tree needs more than the limit; ``stats`` has the (maybe partial) count."""

    def __init__(self, stats: ExtractStats) -> None:
        super().__init__("archive too large")
        self.stats = stats


class _Aborted(Exception):
    """The producer stopped feeding (client gone): end the extraction."""


class _ChunkReader(io.RawIOBase):
    """A blocking file for ``tarfile`` fed from the event loop through a bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore) -> None:
        self._loop = loop
        self._slots = slots
        self._queue: queue.SimpleQueue[bytes | None | BaseException] = queue.SimpleQueue()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.consumed = 0
        self.finished = threading.Event()

    # ---- called on the event loop
    def put(self, item: bytes | None | BaseException) -> None:
        self._queue.put(item)

    # ---- called in the worker thread
    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        while self._pos >= len(self._buf):
            if self._eof:
                return b""
            item = self._queue.get()
            self._loop.call_soon_threadsafe(self._slots.release)
            if item is None:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                raise _Aborted() from item
            self._buf, self._pos = item, 0
        out = self._buf[self._pos : self._pos + size]
        self._pos += len(out)
        self.consumed += len(out)
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


async def extract_stream(
    chunks: AsyncIterator[bytes],
    dest: Path,
    *,
    limit_bytes: int,
    count_cap_bytes: int,
    max_entries: int,
) -> ExtractStats:
    """Extract the archive arriving as ``chunks`` into the existing directory ``dest``.

    Raises :class:`ArchiveError` for a malformed or unsafe archive, :class:`TooLarge`
    when the tree needs more than ``limit_bytes``, and whatever ``chunks`` raises (the
    extraction is then abandoned). On any error ``dest`` is left partly filled: the
    caller removes it.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(_QUEUE_CHUNKS)
    reader = _ChunkReader(loop, slots)
    stats = ExtractStats()
    work = asyncio.ensure_future(
        asyncio.to_thread(
            _extract, reader, dest, stats, (limit_bytes, count_cap_bytes, max_entries)
        )
    )
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            acquire = asyncio.ensure_future(slots.acquire())
            await asyncio.wait({acquire, work}, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                acquire.cancel()
            if work.done():
                break
            stats.archive_bytes += len(chunk)
            reader.put(chunk)
        reader.put(None)
    except BaseException as exc:
        reader.put(exc)
        with contextlib.suppress(BaseException):
            await asyncio.shield(work)
        raise
    return await work


def _extract(
    reader: _ChunkReader, dest: Path, stats: ExtractStats, limits: tuple[int, int, int]
) -> ExtractStats:
    try:
        return _extract_all(reader, dest, stats, *limits)
    except _Aborted:
        raise
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
        raise ArchiveError(f"The request body is not a valid tar archive: {exc}") from exc
    finally:
        reader.finished.set()


def _extract_all(
    reader: _ChunkReader, dest: Path, stats: ExtractStats, limit: int, cap: int, entries: int
) -> ExtractStats:
    root = os.path.realpath(dest)
    directories: list[tuple[tarfile.TarInfo, str]] = []
    too_large = False
    numeric_owner = True
    with tarfile.open(fileobj=reader, mode="r|*", bufsize=_READ_CHUNK) as archive:
        for member in archive:
            name = _safe_name(member, root)
            stats.files += 1
            stats.data_bytes += member.size if member.isreg() else 0
            stats.needed_bytes += _needed(member)
            if stats.needed_bytes > limit:
                too_large = True
            if stats.files > entries:
                stats.too_many_files = True
                too_large = True
            if too_large:
                if reader.consumed > cap:
                    stats.complete = False
                    break
                continue
            target = os.path.join(root, name) if name else root
            member = member.replace(name=name or ".", deep=False)
            if member.islnk():
                link = _safe_link(member, root)
                member = member.replace(linkname=link, deep=False)
            if member.isdir():
                directories.append((member, target))
                if name:
                    archive.extract(
                        member, root, set_attrs=False, numeric_owner=numeric_owner, filter=_keep
                    )
                continue
            archive.extract(member, root, numeric_owner=numeric_owner, filter=_keep)
        if too_large:
            raise TooLarge(stats)
        # Like extractall: deepest directories first, so setting a parent read-only
        # comes after its children are done.
        directories.sort(key=lambda d: d[1], reverse=True)
        for member, target in directories:
            archive.chown(member, target, numeric_owner)
            archive.utime(member, target)
            archive.chmod(member, target)
    stats.archive_bytes = max(stats.archive_bytes, reader.consumed)
    return stats


def _keep(member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo:
    """The member as checked by :func:`_safe_name`: extract it unchanged."""
    return member


def _safe_name(member: tarfile.TarInfo, root: str) -> str:
    """The member's path relative to the root ("" for the root itself), or ArchiveError."""
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "a FIFO" if member.isfifo() else "a device node"
        raise ArchiveError(
            f"Archive member '{member.name}' is {kind}; volumed imports files, "
            "directories and links only"
        )
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"Archive member '{member.name}' has an unsupported type")
    name = _relative(member.name, member.name)
    if name:
        # A symlink extracted earlier must not carry this member out of the tree.
        parent = os.path.realpath(os.path.join(root, os.path.dirname(name)))
        if os.path.commonpath([parent, root]) != root:
            raise ArchiveError(
                f"Archive member '{member.name}' would be written outside the volume "
                "through a symbolic link"
            )
        target = os.path.join(parent, os.path.basename(name))
        if os.path.islink(target) and not member.issym():
            resolved = os.path.realpath(target)
            if os.path.commonpath([resolved, root]) != root:
                raise ArchiveError(
                    f"Archive member '{member.name}' would overwrite the target of a "
                    "symbolic link outside the volume"
                )
    return name


def _safe_link(member: tarfile.TarInfo, root: str) -> str:
    link = _relative(member.linkname, member.name)
    if not link:
        raise ArchiveError(f"Archive member '{member.name}' is a hard link to a directory")
    resolved = os.path.realpath(os.path.join(root, link))
    if os.path.commonpath([resolved, root]) != root:
        raise ArchiveError(f"Archive member '{member.name}' links outside the volume")
    return link


def _relative(path: str, member: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"Archive member '{member}' has a '..' component in its path")
    if any("\0" in p for p in parts):
        raise ArchiveError(f"Archive member '{member}' has a NUL byte in its path")
    return "/".join(parts)


def _needed(member: tarfile.TarInfo) -> int:
    if member.isreg():
        return -(-member.size // _BLOCK) * _BLOCK
    if member.isdir():
        return _BLOCK
    if member.issym() and len(member.linkname.encode()) >= 60:
        # ext4 keeps targets shorter than 60 bytes in the inode itself.
        return _BLOCK
    return 0
