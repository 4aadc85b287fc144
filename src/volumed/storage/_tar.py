"""Tar archives into a directory, streamed: no archive is ever held in memory.

:func:`extract_stream` reads an archive from an async iterator of chunks and extracts it
member by member, in a thread of the caller's executor fed through a small bounded queue:

* a compressed archive (gzip, bzip2, xz) is inflated by
  :class:`~volumed.storage._decompress.InflatingReader`, which counts the uncompressed
  bytes, the thread's CPU time and a stop event between steps of at most 1 MiB;
* ``tarfile`` reads it in stream mode, and forgets each member once written (it would
  otherwise keep every ``TarInfo`` of the archive);
* :class:`~volumed.storage._tree.TreeWriter` writes each member by file descriptor,
  never following a link, within the depth and path-length limits.

Refused: names with a ``..`` component (leading ``/`` are stripped, as GNU tar does),
paths through a symbolic link, hard links to anything but an earlier file or link,
device nodes and FIFOs (a volume is data, not a root file system's ``/dev``), and
extended headers over 1 MiB. Modes (setuid, sticky and group-write bits included),
owners (numeric, when running as root), symlinks (any target: they are resolved inside
the guest, never here), directories and modification times are kept.

The bytes the tree will need are counted as it arrives; past ``limit_bytes`` (or past
``max_entries`` entries) nothing more is written, the rest of the stream is only
counted (up to ``count_cap_bytes`` of uncompressed archive), and :class:`TooLarge` says
how much would have been needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import tarfile
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from volumed.storage._decompress import CpuExhausted, InflatingReader, Stopped, StreamTooLong
from volumed.storage._tree import ArchiveError, FileContent, TreeWriter, shown

__all__ = ["ArchiveError", "ExtractStats", "ImportLimits", "TooLarge", "extract_stream"]

_BLOCK = 4096
_QUEUE_CHUNKS = 16
_READ_CHUNK = 1 << 16
_MAX_HEADER_BYTES = 1 << 20
"""A pax or GNU long-name header is read whole by ``tarfile``: keep it small."""
_MAX_EXTENTS = 65_536
"""Extents of one sparse file (its map is held in memory)."""


@dataclass(frozen=True, slots=True)
class ImportLimits:
    max_depth: int = 256
    """Directory levels of a member's path (``mke2fs -d`` 1.47.0 aborts past ~1,000)."""
    max_path_bytes: int = 4095
    """Bytes of a member's path or a link's target (``PATH_MAX`` less its NUL)."""
    cpu_s: float = 3600.0
    """CPU seconds the unpacking thread may use (inflating and writing)."""


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
    stream_bytes: int = 0
    """Bytes of the uncompressed archive read."""
    complete: bool = True
    """False when counting stopped at the cap: the figures are lower bounds."""
    too_many_files: bool = False
    """More entries than the file system has inodes."""
    marks: str = ""
    """The directory of links to files whose setuid/setgid bits are in ``special_modes``
    (see :mod:`volumed.storage._tree`); empty if there are none."""
    special_modes: list[int] = field(default_factory=list)


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
    limits: ImportLimits,
    executor: Executor,
) -> ExtractStats:
    """Extract the archive arriving as ``chunks`` into the existing directory ``dest``.

    Raises :class:`ArchiveError` for a malformed or unsafe archive, :class:`TooLarge`
    when the tree needs more than ``limit_bytes``, and whatever ``chunks`` raises (the
    extraction is then stopped; so it is on cancellation, within one inflating step).
    On any error ``dest`` is left partly filled: the caller removes it.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(_QUEUE_CHUNKS)
    reader = _ChunkReader(loop, slots)
    stop = threading.Event()
    stats = ExtractStats()
    work = loop.run_in_executor(
        executor,
        _extract,
        InflatingReader(reader, max_bytes=count_cap_bytes, cpu_s=limits.cpu_s, stop=stop),
        dest,
        stats,
        (limit_bytes, max_entries, limits),
    )
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            acquire = asyncio.ensure_future(slots.acquire())
            waits: set[asyncio.Future[Any]] = {acquire, work}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                acquire.cancel()
            if work.done():
                break
            stats.archive_bytes += len(chunk)
            reader.put(chunk)
        reader.put(None)
    except BaseException as exc:
        stop.set()
        reader.put(exc)
        with contextlib.suppress(BaseException):
            await asyncio.shield(work)
        raise
    return await work


def _extract(
    source: InflatingReader,
    dest: Path,
    stats: ExtractStats,
    limits: tuple[int, int, ImportLimits],
) -> ExtractStats:
    try:
        return _extract_all(source, dest, stats, *limits)
    except (_Aborted, Stopped):
        raise
    except StreamTooLong:
        stats.complete = False
        raise TooLarge(stats) from None
    except CpuExhausted:
        raise ArchiveError(
            f"Unpacking the archive took more than {limits[2].cpu_s:g} s of CPU time "
            "(setting import_cpu_s)"
        ) from None
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
        raise ArchiveError(f"The request body is not a valid tar archive: {exc}") from exc
    finally:
        stats.stream_bytes = source.produced


def _extract_all(
    source: InflatingReader, dest: Path, stats: ExtractStats, limit: int, entries: int,
    limits: ImportLimits,
) -> ExtractStats:  # fmt: skip
    too_large = False
    writer = TreeWriter(str(dest), max_depth=limits.max_depth, max_path_bytes=limits.max_path_bytes)
    try:
        with tarfile.open(
            fileobj=source, mode="r|", bufsize=_READ_CHUNK, tarinfo=_BoundedInfo
        ) as archive:
            while (member := archive.next()) is not None:
                # Stream mode keeps every member it has read; nothing here needs them.
                archive.members.clear()  # type: ignore[attr-defined]
                _check_type(member)
                parts = writer.parts(member)
                stats.files += 1
                stats.data_bytes += member.size if member.isreg() else 0
                stats.needed_bytes += _needed(member)
                if stats.needed_bytes > limit:
                    too_large = True
                if stats.files > entries:
                    stats.too_many_files = True
                    too_large = True
                if too_large:
                    continue
                writer.add(member, parts, _content(archive, member) if member.isreg() else None)
        if too_large:
            raise TooLarge(stats)
        writer.close()
        if writer.special_modes:
            stats.marks, stats.special_modes = writer.marks, writer.special_modes
    finally:
        writer.abandon()
    return stats


class _BoundedInfo(tarfile.TarInfo):
    """``tarfile`` reads a pax or GNU long-name header whole, whatever size it claims, and
    a GNU sparse file's whole map of extents, however long: both are bounded here."""

    def _proc_gnulong(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header(self)
        return super()._proc_gnulong(archive)  # type: ignore[misc, no-any-return]

    def _proc_pax(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header(self)
        return super()._proc_pax(archive)  # type: ignore[misc, no-any-return]

    def _proc_sparse(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        """An old GNU sparse header and its extension blocks (21 extents each); as
        ``tarfile`` does, with the number of extents bounded."""
        structs, extended, real_size = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        while extended:
            _check_extents(self, len(structs))
            block = archive.fileobj.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                raise EOFError("the archive ends inside a sparse file's header")
            for pos in range(0, 21 * 24, 24):
                try:
                    offset = _nti(block[pos : pos + 12])
                    length = _nti(block[pos + 12 : pos + 24])
                except ValueError:
                    break
                if offset and length:
                    structs.append((offset, length))
            extended = bool(block[504])
        self.sparse = structs
        self.offset_data = archive.fileobj.tell()
        archive.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = real_size
        return self

    def _proc_gnusparse_10(
        self, following: tarfile.TarInfo, _pax: dict[str, str], archive: tarfile.TarFile
    ) -> None:
        """A pax (1.0) sparse map, stored before the data; as ``tarfile`` does, with the
        number of extents bounded."""
        numbers: list[int] = []
        buf = archive.fileobj.read(tarfile.BLOCKSIZE)
        count_text, buf = buf.split(b"\n", 1)
        count = int(count_text)
        _check_extents(following, count)
        while len(numbers) < count * 2:
            if b"\n" not in buf:
                more = archive.fileobj.read(tarfile.BLOCKSIZE)
                if not more:
                    raise EOFError("the archive ends inside a sparse file's map")
                buf += more
            number, buf = buf.split(b"\n", 1)
            numbers.append(int(number))
        following.offset_data = archive.fileobj.tell()
        following.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))  # type: ignore[assignment]


_nti = tarfile.nti  # type: ignore[attr-defined]


def _check_extents(info: tarfile.TarInfo, count: int) -> None:
    if count > _MAX_EXTENTS:
        raise ArchiveError(
            f"Archive member {shown(info.name)} is a sparse file of more than {_MAX_EXTENTS} "
            "extents"
        )


def _check_header(info: tarfile.TarInfo) -> None:
    if info.size > _MAX_HEADER_BYTES:
        raise ArchiveError(
            f"The archive has an extended header of {info.size} bytes; volumed reads at "
            f"most {_MAX_HEADER_BYTES}"
        )


def _check_type(member: tarfile.TarInfo) -> None:
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "a FIFO" if member.isfifo() else "a device node"
        raise ArchiveError(
            f"Archive member {shown(member.name)} is {kind}; volumed imports files, "
            "directories and links only"
        )
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"Archive member {shown(member.name)} has an unsupported type")


def _content(archive: tarfile.TarFile, member: tarfile.TarInfo) -> FileContent:
    extents = _extents(member)
    if extents is None:
        data = archive.extractfile(member)
        assert data is not None
        return FileContent(data, [(0, member.size)])
    # A sparse file: its extents are stored one after the other, holes left out; read
    # them as they are instead of through tarfile, which would hand out every hole as
    # zeros (a map may claim terabytes of them).
    stored = archive.offset - member.offset_data
    if sum(length for _, length in extents) > stored:
        raise ArchiveError(f"Archive member {shown(member.name)} has an invalid sparse map")
    return FileContent(cast("IO[bytes]", archive.fileobj), extents)


def _extents(member: tarfile.TarInfo) -> list[tuple[int, int]] | None:
    sparse: list[tuple[int, int]] | None = getattr(member, "sparse", None)
    return list(sparse) if sparse else None


def _needed(member: tarfile.TarInfo) -> int:
    extents = _extents(member) if member.isreg() else None
    if extents is not None:
        # Blocks an extent touches; the holes take none.
        return sum(
            (-(-(offset + length) // _BLOCK) - offset // _BLOCK) * _BLOCK
            for offset, length in extents
            if length > 0
        )
    if member.isreg():
        return -(-member.size // _BLOCK) * _BLOCK
    if member.isdir():
        return _BLOCK
    if member.issym() and len(member.linkname.encode(errors="surrogateescape")) >= 60:
        # ext4 keeps targets shorter than 60 bytes in the inode itself.
        return _BLOCK
    return 0
