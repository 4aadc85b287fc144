"""Export: an image's tree as a tar stream, read straight from the image. Used by
:class:`~volumed.storage.ext4.Ext4ImageDriver`, which checks the uuid and owns the image.

The image is a tenant's: its guest wrote it, so it is hostile input. Nothing of it is
ever written on the host and no tool sees its names: :mod:`volumed.storage._ext4fs`
reads the file system from the image file (opened once, read-only), and each entry
goes straight into the tar the client receives (:mod:`volumed.storage._tarout`).

1. :meth:`ImageExports.export_tar` first walks the whole tree without its file data
   (directories, inodes, extent trees, symlinks), in a worker thread, within the
   storage timeout. Whatever is wrong with the image (a directory loop, an extent
   outside the file system, a name with a ``/``, a path longer than
   :data:`MAX_PATH_BYTES`, a feature the reader cannot read) is raised here, as a
   ``StorageError`` naming the file, before the response starts.
2. The stream walks it again, now reading the data, in chunks of at most
   :data:`CHUNK_BYTES`: memory stays flat whatever the volume holds. The image file
   stays open, so an import that replaces it meanwhile does not change what is sent.

What the archive holds, as ``tar -c`` of the tree would (names start with ``./``):
directories, regular files, symlinks, modes (setuid, setgid and sticky included),
numeric owners and whole-second modification times. A file with several names is
written once and then as hard links to its first name. A file with holes is written
sparse (pax sparse 1.0), with at most :data:`MAX_REGIONS` data regions. Device nodes,
FIFOs and sockets are left out, as ``debugfs rdump`` left them out and as import
refuses them; so is an empty ``lost+found`` at the root (every ext4 file system has
one). Extended attributes and ACLs are not exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from volumed.domain.storage import StorageError
from volumed.storage._ext4fs import ROOT_INO, Budget, Corrupt, DirEntry, Ext4Image, Inode, Run
from volumed.storage._process import storage_errors
from volumed.storage._tarout import END, Attrs, entry, padding, sparse_entry

__all__ = ["CHUNK_BYTES", "MAX_PATH_BYTES", "MAX_REGIONS", "ImageExports"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""The most bytes one step of the stream reads and hands on."""
MAX_PATH_BYTES = 32768
"""The longest path exported (8 times Linux's PATH_MAX): each member's header holds
its whole path, so without a bound a deep tree's archive grows as its depth squared."""
MAX_REGIONS = 65536
"""The most separate data regions of one sparse file: its map is held while its
header is written."""
_MAX_LINK_NAMES_BYTES = 64 << 20
"""Paths kept to write later names of hard-linked files as links."""
_BUDGET_SLACK = 64
_KEPT_RUNS = 256
_SHOWN_PATH = 200
_THREADS = 2
_T = TypeVar("_T")


class ImageExports:
    """Exports read in threads of their own, at most :data:`_THREADS` at once: a hostile
    image that keeps its check busy until the storage timeout holds an export thread,
    never one of the shared threads that format, grow and import volumes. They are
    daemon threads, which only read: one still walking never holds up the process's
    exit."""

    def __init__(self, images_dir: Path, *, timeout_s: float) -> None:
        self._images = images_dir
        self._timeout = timeout_s
        self._slots: asyncio.Semaphore | None = None

    async def export_tar(self, uuid: str, image: Path) -> AsyncIterator[bytes]:
        """Check the whole tree now (errors raise here) and return the archive stream."""
        action = f"Could not export volume {uuid}"
        limits = _Limits(time.monotonic() + self._timeout)
        with storage_errors(action, hide_dir=self._images):
            if not image.exists():
                raise StorageError(f"{action}: its image does not exist.")
            try:
                fs = await self._run(limits, _open, image)
            except Corrupt as exc:
                raise StorageError(f"{action}: {exc}.") from None
            try:
                summary = await self._run(limits, _check, fs, limits)
            except Corrupt as exc:
                fs.close()
                raise StorageError(f"{action}: {exc}.") from None
            except BaseException:
                fs.close()
                raise
        if summary.skipped:
            log.info(
                "export of %s leaves out %d device nodes, FIFOs or sockets",
                uuid,
                summary.skipped,
            )
        return self._stream(fs)

    async def _run(self, limits: _Limits, fn: Callable[..., _T], *args: object) -> _T:
        """``fn(*args)`` in an export thread. On cancellation the walk is told to stop,
        and waited for: nothing reads the image once its caller has closed it."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(_THREADS)
        async with self._slots:
            future = _in_daemon_thread(fn, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                limits.stop.set()
                with contextlib.suppress(Exception):
                    await future
                raise

    async def _stream(self, fs: Ext4Image) -> AsyncIterator[bytes]:
        """Yield the archive, each piece made in the export pool; the image is closed at
        the end, also when the consumer stops early."""
        limits = _Limits(float("inf"))
        pieces = _archive(fs, limits)
        try:
            while True:
                piece = await self._run(limits, next, pieces, None)
                if piece is None:
                    break
                yield piece
        except Corrupt as exc:
            # The check walked the same tree: only an image changed under us gets here.
            raise OSError(f"the export stopped: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                await self._run(limits, pieces.close)
            fs.close()


def _in_daemon_thread(fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def work() -> None:
        try:
            deliver = functools.partial(_resolve, future, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            deliver = functools.partial(_fail, future, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver)

    threading.Thread(target=work, name="volumed-export", daemon=True).start()
    return future


def _resolve(future: asyncio.Future[_T], result: _T) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[_T], failure: BaseException) -> None:
    if not future.done():
        future.set_exception(failure)


class _Limits:
    """When a walk must give up: past its deadline, or once told to stop."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stop = threading.Event()

    def check(self, members: int) -> None:
        if self.stop.is_set():
            raise Corrupt("the export was cancelled")
        if time.monotonic() > self.deadline:
            raise Corrupt(
                f"reading its tree took longer than the storage timeout ({members} entries read)"
            )


def _open(image: Path) -> Ext4Image:
    fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        return Ext4Image(fd)
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------------- the walk


@dataclass(slots=True, frozen=True)
class _Member:
    path: bytes
    """``.`` or ``./a/b``: the member's name in the archive."""
    inode: Inode
    first_name: bytes = b""
    """For a later name of a hard-linked file: the path it was written under."""
    target: bytes = b""
    """For a symlink: its target."""


@dataclass(slots=True)
class _Summary:
    members: int = 0
    skipped: int = 0


def _shown(path: bytes) -> str:
    text = path.decode("utf-8", "backslashreplace")
    if len(text) > _SHOWN_PATH:
        text = text[: _SHOWN_PATH // 2] + "…" + text[-_SHOWN_PATH // 2 :]
    return f"'{text}'"


class _FirstNames:
    """The first path of each file with several names, to write the others as links."""

    def __init__(self) -> None:
        self._paths: dict[int, bytes] = {}
        self._bytes = 0

    def first(self, inode: Inode, path: bytes) -> bytes:
        """The path ``inode`` was first written under, or b"" if this is the first."""
        if inode.links < 2:
            return b""
        first = self._paths.get(inode.number)
        if first is not None:
            return first
        self._bytes += len(path)
        if self._bytes > _MAX_LINK_NAMES_BYTES:
            raise Corrupt("the file system has more hard-linked files than export can follow")
        self._paths[inode.number] = path
        return b""


@dataclass(slots=True)
class _Directory:
    """A directory being walked: the rest of its entries and its symlinks' names."""

    path: bytes
    entries: Iterator[DirEntry]
    links: set[bytes] = field(default_factory=set)

    def child(self, name: bytes) -> bytes:
        """The child's path; a name that repeats a symlink's is refused, since a tar
        tool would write what follows through that link (on the client's side)."""
        if name in self.links:
            raise Corrupt(
                f"{_shown(self.path + b'/' + name)} is named twice in its directory, once "
                "as a symbolic link (a damaged file system)"
            )
        return self.path + b"/" + name


def _walk(fs: Ext4Image, budget: Budget, summary: _Summary, limits: _Limits) -> Iterator[_Member]:
    """Every member in archive order (a directory before what it holds), depth first
    with an explicit stack: no recursion, whatever the depth."""
    root = fs.inode(ROOT_INO)
    if root.kind != stat.S_IFDIR:
        raise Corrupt("the root of the file system is not a directory")
    seen_dirs = bytearray(fs.inodes_count // 8 + 1)
    seen_dirs[ROOT_INO >> 3] |= 1 << (ROOT_INO & 7)
    first_names = _FirstNames()
    yield _Member(b".", root)
    stack = [_Directory(b".", fs.entries(root, budget, "the root directory"))]
    while stack:
        limits.check(summary.members + summary.skipped)
        parent = stack[-1]
        found = next(parent.entries, None)
        if found is None:
            stack.pop()
            continue
        path = parent.child(found.name)
        where = _shown(path)
        if len(path) > MAX_PATH_BYTES:
            raise Corrupt(f"the path {where} is longer than {MAX_PATH_BYTES} bytes")
        inode = fs.inode(found.inode)
        if inode.links == 0 or inode.mode == 0:
            raise Corrupt(f"{where} names a deleted inode ({inode.number})")
        kind = inode.kind
        if kind == stat.S_IFDIR:
            bit = 1 << (inode.number & 7)
            if seen_dirs[inode.number >> 3] & bit:
                raise Corrupt(
                    f"the directory {where} has a second name (a loop or a damaged file system)"
                )
            seen_dirs[inode.number >> 3] |= bit
            if path == b"./lost+found" and _is_empty(fs, inode, where):
                continue
            yield _Member(path, inode)
            stack.append(_Directory(path, fs.entries(inode, budget, where)))
        elif kind == stat.S_IFREG:
            yield _Member(path, inode, first_name=first_names.first(inode, path))
        elif kind == stat.S_IFLNK:
            # At most one block, read for each name: its own budget, not the tree's.
            target = fs.symlink_target(inode, Budget(_BUDGET_SLACK), where)
            parent.links.add(found.name)
            yield _Member(path, inode, target=target)
        else:
            summary.skipped += 1


def _is_empty(fs: Ext4Image, inode: Inode, where: str) -> bool:
    return next(fs.entries(inode, Budget(fs.blocks_count), where), None) is None


@dataclass(slots=True)
class _Layout:
    regions: list[tuple[int, int]] | None
    """The byte regions holding data, or None when the data has no hole."""
    runs: list[Run] | None
    """The runs read to find them, kept when few (to read the data without walking
    the extent tree again)."""


def _layout(fs: Ext4Image, inode: Inode, budget: Budget, where: str) -> _Layout:
    bs = fs.block_size
    regions: list[tuple[int, int]] = []
    runs: list[Run] | None = []
    for run in fs.runs(inode, budget, where):
        if runs is not None:
            runs.append(run)
            if len(runs) > _KEPT_RUNS:
                runs = None
        start = run.logical * bs
        length = min(run.count * bs, inode.size - start)
        if regions and regions[-1][0] + regions[-1][1] == start:
            regions[-1] = (regions[-1][0], regions[-1][1] + length)
            continue
        if len(regions) >= MAX_REGIONS:
            raise Corrupt(
                f"{where} has more than {MAX_REGIONS} separate data regions, more than "
                "export writes for one sparse file"
            )
        regions.append((start, length))
    if inode.size == 0 or regions == [(0, inode.size)]:
        return _Layout(None, runs)
    return _Layout(regions, runs)


def _check(fs: Ext4Image, limits: _Limits) -> _Summary:
    """Walk everything but the file data; raise :class:`Corrupt` for what is wrong."""
    summary = _Summary()
    budget = Budget(fs.blocks_count + _BUDGET_SLACK)
    for member in _walk(fs, budget, summary, limits):
        summary.members += 1
        if member.inode.kind == stat.S_IFREG and not member.first_name:
            where = _shown(member.path)
            if fs.inline_data(member.inode, where) is None:
                _layout(fs, member.inode, budget, where)
    return summary


# ---------------------------------------------------------------------- the archive


def _archive(fs: Ext4Image, limits: _Limits) -> Generator[bytes, None, None]:
    """The archive in pieces of at most :data:`CHUNK_BYTES` (small members batched)."""
    pending = bytearray()
    # The check walked the same tree within one budget; this walk reads each file's
    # map twice (regions, then data), and stays bounded should the image change.
    budget = Budget(2 * (fs.blocks_count + _BUDGET_SLACK))
    for member in _walk(fs, budget, _Summary(), limits):
        for piece in _member(fs, member, budget):
            if len(pending) + len(piece) > CHUNK_BYTES and pending:
                yield bytes(pending)
                pending.clear()
            if len(piece) >= CHUNK_BYTES:
                yield piece
            else:
                pending += piece
    pending += END
    yield bytes(pending)


def _member(fs: Ext4Image, member: _Member, budget: Budget) -> Iterator[bytes]:
    inode = member.inode
    owner = Attrs(stat.S_IMODE(inode.mode), inode.uid, inode.gid, inode.mtime)
    kind = inode.kind
    if kind == stat.S_IFDIR:
        yield entry(member.path, tarfile.DIRTYPE, owner)
    elif kind == stat.S_IFLNK:
        yield entry(member.path, tarfile.SYMTYPE, owner, link=member.target)
    elif member.first_name:
        yield entry(member.path, tarfile.LNKTYPE, owner, link=member.first_name)
    else:
        where = _shown(member.path)
        inline = fs.inline_data(inode, where)
        if inline is not None:
            yield entry(member.path, tarfile.REGTYPE, owner, size=inode.size)
            yield inline
            yield padding(len(inline))
            return
        layout = _layout(fs, inode, budget, where)
        if layout.regions is None:
            yield entry(member.path, tarfile.REGTYPE, owner, size=inode.size)
        else:
            header, _stored = sparse_entry(
                member.path, owner, size=inode.size, regions=layout.regions
            )
            yield header
        runs = layout.runs if layout.runs is not None else fs.runs(inode, budget, where)
        written = yield from _data(fs, inode, runs)
        yield padding(written)


def _data(fs: Ext4Image, inode: Inode, runs: Iterable[Run]) -> Generator[bytes, None, int]:
    """The file's data regions, back to back; returns their length."""
    bs = fs.block_size
    per_read = max(1, CHUNK_BYTES // bs)
    written = 0
    for run in runs:
        for first in range(0, run.count, per_read):
            count = min(per_read, run.count - first)
            data = fs.read_blocks(run.physical + first, count)
            end = (run.logical + first) * bs + len(data)
            if end > inode.size:
                data = data[: len(data) - (end - inode.size)]
            written += len(data)
            yield data
    return written
