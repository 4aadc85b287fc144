"""Give back host blocks that were reserved but never written (unwritten extents).

``posix_fallocate`` reserves space as *unwritten* extents: allocated on the host, read
as zeros. Releasing a reservation means punching exactly those extents back into
holes, which also read as zeros, so the image's bytes do not change.

``fallocate --dig-holes`` cannot do this: it walks the file with ``SEEK_DATA``, which on
ext4 skips unwritten extents, so it never looks at them (measured: a reserved 64 MiB
image stays at 64 MiB). Hence a direct ``FS_IOC_FIEMAP`` walk and
``fallocate(PUNCH_HOLE)`` through libc. Linux only, like the rest of this backend.

The same walk gives :func:`copy_written`, the copy ``volumed backup`` and ``restore``
make of an image: only the written extents are read (a reserved 64 GiB image that holds
1 GiB is a 1 GiB copy), and the copy is sparse.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from collections.abc import Iterator

__all__ = ["copy_written", "punch_unwritten", "unwritten_extents", "written_extents"]

# From <linux/fs.h> and <linux/fiemap.h>.
_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_UNWRITTEN = 0x800
_FIEMAP_HEADER = struct.Struct("=QQIII4x")  # start, length, flags, mapped, count
_FIEMAP_EXTENT = struct.Struct("=QQQ16xI12x")  # logical, physical, length, flags
_BATCH = 256
# From <linux/falloc.h>.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def unwritten_extents(fd: int) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, length)`` in bytes of every unwritten extent of the file.

    ``FIEMAP_FLAG_SYNC`` flushes dirty pages first, so data still in the page cache
    shows up as written rather than as an unwritten extent we would punch.
    """
    for logical, length, flags in _extents(fd):
        if flags & _FIEMAP_EXTENT_UNWRITTEN:
            yield logical, length


def written_extents(fd: int) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, length)`` of every extent holding written data: neither a hole
    nor reserved-but-unwritten space (both read as zeros)."""
    for logical, length, flags in _extents(fd):
        if not flags & _FIEMAP_EXTENT_UNWRITTEN:
            yield logical, length


def _extents(fd: int) -> Iterator[tuple[int, int, int]]:
    """Every mapped extent of the file, ``(logical offset, length, flags)``, after a sync."""
    buf = bytearray(_FIEMAP_HEADER.size + _BATCH * _FIEMAP_EXTENT.size)
    start = 0
    while True:
        _FIEMAP_HEADER.pack_into(buf, 0, start, 2**64 - 1 - start, _FIEMAP_FLAG_SYNC, 0, _BATCH)
        fcntl.ioctl(fd, _FS_IOC_FIEMAP, buf)
        mapped = _FIEMAP_HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return
        last = False
        for i in range(mapped):
            logical, _physical, length, flags = _FIEMAP_EXTENT.unpack_from(
                buf, _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size
            )
            yield logical, length, flags
            start = logical + length
            last = bool(flags & _FIEMAP_EXTENT_LAST)
        if last:
            return


def copy_written(source: int, target: int) -> int:
    """Copy the written extents of ``source`` into ``target`` (an empty file, given the
    source's size first), in the kernel; holes and unwritten extents stay holes. Returns
    the bytes copied."""
    size = os.fstat(source).st_size
    os.ftruncate(target, size)
    copied = 0
    for offset, length in written_extents(source):
        end = min(offset + length, size)
        while offset < end:
            done = os.copy_file_range(source, target, end - offset, offset, offset)
            if done == 0:
                break  # the file ended before the extent did
            offset += done
            copied += done
    return copied


def punch_unwritten(fd: int) -> int:
    """Turn every unwritten extent of the file into a hole; return the bytes released.

    The file must not be written concurrently: a write landing in an extent between
    the FIEMAP walk and the punch would be lost. Callers only do this to images that
    no instance has attached.
    """
    extents = list(unwritten_extents(fd))
    released = 0
    for offset, length in extents:
        if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        released += length
    return released
