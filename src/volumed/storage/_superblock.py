"""Read the few ext4 superblock fields volumed reports, straight from an image file.

Reading 1 KiB ourselves costs microseconds, where ``dumpe2fs -h`` costs a process.
The layout is the on-disk format from the kernel's ``fs/ext4/ext4.h``: the primary
superblock always starts at byte 1024, whatever the block size.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NotExt4", "Superblock", "read_superblock"]

_OFFSET = 1024
_LENGTH = 1024
_MAGIC = 0xEF53
_INCOMPAT_64BIT = 0x80
# s_log_block_size above 6 (64 KiB blocks) is not a file system mke2fs makes.
_MAX_LOG_BLOCK_SIZE = 6


class NotExt4(Exception):
    """The file does not start with an ext2/3/4 superblock."""


@dataclass(slots=True, frozen=True)
class Superblock:
    block_size: int
    """Bytes per file-system block (1024 to 65536)."""
    blocks: int
    """Blocks in the file system, used and free."""
    free_blocks: int
    """Free blocks, including any reserved for root (volumed formats with ``-m 0``)."""
    is_64bit: bool
    """Whether the ``64bit`` feature is on, so the block counts have high halves."""


def read_superblock(path: Path) -> Superblock:
    """Parse the primary superblock of the image at ``path``.

    Raises ``OSError`` if the file cannot be read and :class:`NotExt4` if it holds no
    ext superblock. The counts are those of the last writer that closed the file
    system (mke2fs, e2fsck, resize2fs, debugfs or a guest kernel at unmount).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = os.pread(fd, _LENGTH, _OFFSET)
    finally:
        os.close(fd)
    if len(raw) < _LENGTH:
        raise NotExt4(f"{path.name} is too short to hold an ext4 superblock")
    return _parse(raw, path.name)


def _parse(raw: bytes, name: str) -> Superblock:
    (magic,) = struct.unpack_from("<H", raw, 0x38)
    if magic != _MAGIC:
        raise NotExt4(f"{name} has no ext4 superblock (magic {magic:#06x})")
    blocks_lo, _reserved_lo, free_lo = struct.unpack_from("<III", raw, 0x04)
    (log_block_size,) = struct.unpack_from("<I", raw, 0x18)
    (incompat,) = struct.unpack_from("<I", raw, 0x60)
    if log_block_size > _MAX_LOG_BLOCK_SIZE:
        raise NotExt4(f"{name} has an impossible block size (log {log_block_size})")
    is_64bit = bool(incompat & _INCOMPAT_64BIT)
    blocks, free = blocks_lo, free_lo
    if is_64bit:
        # The high halves are only meaningful with the 64bit feature; without it
        # those bytes may hold anything.
        blocks_hi, _reserved_hi, free_hi = struct.unpack_from("<III", raw, 0x150)
        blocks |= blocks_hi << 32
        free |= free_hi << 32
    return Superblock(
        block_size=1024 << log_block_size,
        blocks=blocks,
        free_blocks=free,
        is_64bit=is_64bit,
    )
