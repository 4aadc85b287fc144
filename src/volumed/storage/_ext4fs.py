"""A small read-only ext2/3/4 reader for images that a tenant's guest wrote: hostile input.

Export reads a volume's tree with this instead of ``debugfs``: no tool that follows
links ever sees the tree, no text output is parsed for names, and nothing is written
on the host. It reads what export needs and nothing more: the superblock, group
descriptors (``meta_bg`` included), inodes, extent trees and the older block maps,
directories (an htree directory is read linearly: its index blocks look like empty
entries to a linear reader, by design of the format), symlinks, and files and
directories stored inside their inode (``inline_data``). Checksums are not
verified and the journal is not replayed (``debugfs`` did neither).

Every number read from the image is checked before it is used, and every walk is
bounded, so a damaged or hostile image raises :class:`Corrupt` with a sentence that
names the problem, in time proportional to the image's size:

* a block number must lie inside the file system; an extent tree is at most 5 levels
  deep, each level exactly one below its parent, its extents in increasing order;
* :class:`Budget` counts the blocks a walk reads or maps: a sound file system never
  reads more blocks than it has (a directory is read once, a hard-linked file's data
  once), so past that some blocks are shared and the walk stops.

The layout is the on-disk format of the kernel's ``fs/ext4/ext4.h``.
"""

from __future__ import annotations

import os
import stat
import struct
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Budget", "Corrupt", "DirEntry", "Ext4Image", "Inode", "Run"]

ROOT_INO = 2
_SB_OFFSET = 1024
_MAGIC = 0xEF53
_MAX_LOG_BLOCK_SIZE = 6

# s_feature_incompat bits.
_IN_COMPRESSION = 0x1
_IN_FILETYPE = 0x2
_IN_JOURNAL_DEV = 0x8
_IN_META_BG = 0x10
_IN_64BIT = 0x80
_IN_DIRDATA = 0x1000
_IN_KNOWN = 0x0002 | 0x0004 | 0x0010 | 0x0040 | 0x0080 | 0x0100 | 0x0200 | 0x0400
_IN_KNOWN |= 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000
_IN_UNREADABLE = {
    _IN_COMPRESSION: "compression",
    _IN_JOURNAL_DEV: "journal_dev",
    _IN_DIRDATA: "dirdata",
}
_RO_SPARSE_SUPER = 0x1

# i_flags bits.
_FL_ENCRYPT = 0x800
_FL_EXTENTS = 0x80000
_FL_INLINE_DATA = 0x10000000

_EXT_MAGIC = 0xF30A
_EXT_MAX_DEPTH = 5
_EXT_INIT_MAX_LEN = 32768
_EXT_HEADER = struct.Struct("<HHHHI")  # magic, entries, max, depth, generation
_EXT_ENTRY = struct.Struct("<IHHI")  # leaf: block, len, start_hi, start_lo
_EXT_INDEX = struct.Struct("<IIH2x")  # index: block, leaf_lo, leaf_hi
_DIRENT = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type
_INODE = struct.Struct("<HHIIIIIHHII4x60sI4xI")
_INODE_OSD2 = struct.Struct("<HHHH")  # blocks_hi, file_acl_hi, uid_hi, gid_hi at 0x74
_FAST_SYMLINK_MAX = 60
_XATTR_MAGIC = 0xEA020000
_XATTR_ENTRY = struct.Struct("<BBHIII")  # name_len, index, value_offs, value_inum, size, hash
_XATTR_SYSTEM = 7


def _system_data(raw: bytes, where: str) -> bytes:
    """The value of the ``system.data`` extended attribute in the inode's own attribute
    area (after ``i_extra_isize``), or b"" if there is none."""
    if len(raw) < 0x84:
        return b""
    start = 128 + struct.unpack_from("<H", raw, 0x80)[0]
    if start + 4 > len(raw) or struct.unpack_from("<I", raw, start)[0] != _XATTR_MAGIC:
        return b""
    first = pos = start + 4
    while pos + _XATTR_ENTRY.size <= len(raw) and raw[pos : pos + 4] != b"\0\0\0\0":
        name_len, index, value_at, value_inode, value_size, _hash = _XATTR_ENTRY.unpack_from(
            raw, pos
        )
        name = raw[pos + _XATTR_ENTRY.size : pos + _XATTR_ENTRY.size + name_len]
        if index == _XATTR_SYSTEM and name == b"data":
            value = raw[first + value_at : first + value_at + value_size]
            if value_inode or len(value) != value_size:
                raise Corrupt(f"{where} has a damaged inline data attribute")
            return value
        pos += (_XATTR_ENTRY.size + name_len + 3) & ~3
    return b""


class Corrupt(Exception):
    """The image is not a file system this reader can walk safely; the message says
    what is wrong, and where when it is about one file."""


@dataclass(slots=True, frozen=True)
class Run:
    """``count`` blocks of data from file block ``logical`` on, at block ``physical``."""

    logical: int
    physical: int
    count: int


@dataclass(slots=True, frozen=True)
class Inode:
    number: int
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    links: int
    flags: int
    block: bytes
    """``i_block``: the extent tree's root, a block map, or a fast symlink's target."""
    inline: bytes | None = None
    """With inline data: the ``system.data`` attribute, where what does not fit in
    ``i_block`` goes on (b"" when all of it fits); None without inline data."""

    @property
    def kind(self) -> int:
        return stat.S_IFMT(self.mode)


@dataclass(slots=True, frozen=True)
class DirEntry:
    name: bytes
    inode: int


class Budget:
    """Blocks a walk may still read or map; :meth:`spend` raises :class:`Corrupt` past it."""

    def __init__(self, blocks: int) -> None:
        self.left = blocks

    def spend(self, blocks: int, where: str) -> None:
        self.left -= blocks
        if self.left < 0:
            raise Corrupt(
                f"{where} reaches blocks already read for other files or directories "
                "(blocks shared between files: a damaged file system)"
            )


class Ext4Image:
    """An open image file, taken over (closed by :meth:`close`, ``with``, or when the
    object is collected); a failing constructor leaves the descriptor to the caller."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        raw = self._pread(1024, _SB_OFFSET, "the superblock")
        (magic,) = struct.unpack_from("<H", raw, 0x38)
        if magic != _MAGIC:
            raise Corrupt("the image holds no ext4 file system (no superblock magic)")
        self.inodes_count, blocks_lo = struct.unpack_from("<II", raw, 0x00)
        (self.first_data_block, log_block_size) = struct.unpack_from("<II", raw, 0x14)
        (self.blocks_per_group,) = struct.unpack_from("<I", raw, 0x20)
        (self.inodes_per_group,) = struct.unpack_from("<I", raw, 0x28)
        (rev_level,) = struct.unpack_from("<I", raw, 0x4C)
        (inode_size,) = struct.unpack_from("<H", raw, 0x58)
        _compat, incompat, ro_compat = struct.unpack_from("<III", raw, 0x5C)
        (desc_size,) = struct.unpack_from("<H", raw, 0xFE)
        (self.first_meta_bg,) = struct.unpack_from("<I", raw, 0x104)
        (blocks_hi,) = struct.unpack_from("<I", raw, 0x150)
        for bit, name in _IN_UNREADABLE.items():
            if incompat & bit:
                raise Corrupt(
                    f"the file system uses the '{name}' feature, which export cannot read"
                )
        if incompat & ~_IN_KNOWN:
            raise Corrupt(f"the file system uses unknown features ({incompat & ~_IN_KNOWN:#x})")
        if log_block_size > _MAX_LOG_BLOCK_SIZE:
            raise Corrupt(f"the superblock has an impossible block size (log {log_block_size})")
        self.block_size = 1024 << log_block_size
        self.is_64bit = bool(incompat & _IN_64BIT)
        self.blocks_count = blocks_lo | (blocks_hi << 32 if self.is_64bit else 0)
        self.has_filetype = bool(incompat & _IN_FILETYPE)
        self.meta_bg = bool(incompat & _IN_META_BG)
        self.sparse_super = bool(ro_compat & _RO_SPARSE_SUPER)
        self.inode_size = inode_size if rev_level >= 1 else 128
        self.desc_size = desc_size if self.is_64bit else 32
        if not (128 <= self.inode_size <= self.block_size) or self.inode_size & (
            self.inode_size - 1
        ):
            raise Corrupt(f"the superblock has an impossible inode size ({self.inode_size})")
        if self.is_64bit and not (
            32 <= self.desc_size <= 1024 and desc_size & (desc_size - 1) == 0
        ):
            raise Corrupt(f"the superblock has an impossible descriptor size ({desc_size})")
        if not (0 < self.blocks_per_group <= 8 * self.block_size) or not (
            0 < self.inodes_per_group <= 8 * self.block_size
        ):
            raise Corrupt("the superblock has impossible group sizes")
        if self.first_data_block >= self.blocks_count:
            raise Corrupt("the superblock has an impossible block count")
        self.groups = -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)
        if self.inodes_count > self.groups * self.inodes_per_group:
            raise Corrupt("the superblock counts more inodes than its groups hold")
        image_bytes = os.fstat(fd).st_size
        if image_bytes < self.blocks_count * self.block_size:
            raise Corrupt(
                f"the image ({image_bytes} bytes) is shorter than its file system "
                f"({self.blocks_count} blocks of {self.block_size} bytes)"
            )
        self._inode_tables: dict[int, int] = {}
        # Taken over only now that it is open: a stream never consumed (its finally
        # never runs) still releases the image when it is collected.
        self._closer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> Ext4Image:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ raw reads

    def _pread(self, length: int, offset: int, what: str) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise Corrupt(f"{what} lies past the end of the image")
        return data

    def read_blocks(self, physical: int, count: int) -> bytes:
        """``count`` blocks from ``physical`` on (checked by the caller's mapping)."""
        return self._pread(count * self.block_size, physical * self.block_size, "a data block")

    def _check_block(self, block: int, count: int, where: str) -> None:
        if block < self.first_data_block or block + count > self.blocks_count or count < 0:
            raise Corrupt(f"{where} points outside the file system (block {block})")

    # ------------------------------------------------------------------ inodes

    def _inode_table(self, group: int) -> int:
        table = self._inode_tables.get(group)
        if table is None:
            per_block = self.block_size // self.desc_size
            desc_block = self._descriptor_block(group // per_block)
            raw = self._pread(
                self.desc_size,
                desc_block * self.block_size + (group % per_block) * self.desc_size,
                "a group descriptor",
            )
            (table,) = struct.unpack_from("<I", raw, 0x08)
            if self.is_64bit and self.desc_size >= 64:
                table |= struct.unpack_from("<I", raw, 0x28)[0] << 32
            table_blocks = -(-self.inodes_per_group * self.inode_size // self.block_size)
            self._check_block(table, table_blocks, f"the inode table of group {group}")
            self._inode_tables[group] = table
        return int(table)

    def _descriptor_block(self, index: int) -> int:
        """Where the ``index``-th block of group descriptors is (after e2fsprogs'
        ``ext2fs_descriptor_block_loc2``)."""
        if not self.meta_bg or index < self.first_meta_bg:
            block = self.first_data_block + 1 + index
        else:
            group = index * (self.block_size // self.desc_size)
            block = self.first_data_block + group * self.blocks_per_group
            block += 1 if self._has_superblock(group) else 0
        self._check_block(block, 1, "a group descriptor block")
        return int(block)

    def _has_superblock(self, group: int) -> bool:
        if not self.sparse_super or group <= 1:
            return True
        for base in (3, 5, 7):
            power = base
            while power < group:
                power *= base
            if power == group:
                return True
        return False

    def inode(self, number: int) -> Inode:
        if not 1 <= number <= self.inodes_count:
            raise Corrupt(
                f"inode {number} does not exist (the file system has {self.inodes_count})"
            )
        group, index = divmod(number - 1, self.inodes_per_group)
        offset = self._inode_table(group) * self.block_size + index * self.inode_size
        raw = self._pread(self.inode_size, offset, f"inode {number}")
        (mode, uid, size_lo, _atime, _ctime, mtime, _dtime, gid, links, _blocks, flags) = (
            _INODE.unpack_from(raw, 0)[:11]
        )
        block, _generation, size_hi = _INODE.unpack_from(raw, 0)[11:]
        _blocks_hi, _acl_hi, uid_hi, gid_hi = _INODE_OSD2.unpack_from(raw, 0x74)
        mtime = mtime - (1 << 32) if mtime & (1 << 31) else mtime
        if len(raw) >= 0x8C and struct.unpack_from("<H", raw, 0x80)[0] >= 12:
            # The high bits of the seconds live in the low 2 bits of i_mtime_extra.
            mtime += (struct.unpack_from("<I", raw, 0x88)[0] & 3) << 32
        return Inode(
            number=number,
            mode=mode,
            uid=uid | uid_hi << 16,
            gid=gid | gid_hi << 16,
            size=size_lo | size_hi << 32,
            mtime=mtime,
            links=links,
            flags=flags,
            block=block,
            inline=_system_data(raw, f"inode {number}") if flags & _FL_INLINE_DATA else None,
        )

    # ------------------------------------------------------------------ data

    def runs(self, inode: Inode, budget: Budget, where: str) -> Iterator[Run]:
        """The file's blocks that hold data, in file order (holes and unwritten
        extents left out), up to its size; block numbers checked, blocks spent."""
        if inode.inline is not None:
            raise Corrupt(f"{where} has inline data but is read as blocks (a damaged inode)")
        if inode.flags & _FL_ENCRYPT:
            raise Corrupt(f"{where} is encrypted; export cannot read it")
        limit = -(-inode.size // self.block_size)
        if limit > 1 << 32:
            raise Corrupt(f"{where} has an impossible size ({inode.size} bytes)")
        if inode.flags & _FL_EXTENTS:
            return self._extent_runs(inode.block, limit, budget, where)
        return self._mapped_runs(inode.block, limit, budget, where)

    def _extent_runs(self, root: bytes, limit: int, budget: Budget, where: str) -> Iterator[Run]:
        node_max = (self.block_size - 12) // 12
        # Each frame: a node's bytes, its depth, the next entry to visit.
        stack: list[tuple[bytes, int, int]] = []
        root_depth = self._extent_header(root, 4, where)
        stack.append((root, root_depth, 0))
        next_logical = 0
        while stack:
            node, depth, i = stack.pop()
            entries = _EXT_HEADER.unpack_from(node, 0)[1]
            if i >= entries:
                continue
            stack.append((node, depth, i + 1))
            at = 12 + 12 * i
            if depth == 0:
                logical, length, start_hi, start_lo = _EXT_ENTRY.unpack_from(node, at)
                unwritten = length > _EXT_INIT_MAX_LEN
                length -= _EXT_INIT_MAX_LEN if unwritten else 0
                physical = start_lo | start_hi << 32
                if logical < next_logical or length == 0:
                    raise Corrupt(f"{where} has overlapping or out-of-order extents")
                next_logical = logical + length
                self._check_block(physical, length, f"an extent of {where}")
                budget.spend(length, where)
                if logical >= limit:
                    continue
                if not unwritten:
                    yield Run(logical, physical, min(length, limit - logical))
                continue
            logical, leaf_lo, leaf_hi = _EXT_INDEX.unpack_from(node, at)
            if logical < next_logical:
                raise Corrupt(f"{where} has an out-of-order extent index")
            child = leaf_lo | leaf_hi << 32
            self._check_block(child, 1, f"an extent index of {where}")
            budget.spend(1, where)
            data = self.read_blocks(child, 1)
            child_depth = self._extent_header(data, node_max, where)
            if child_depth != depth - 1:
                raise Corrupt(f"{where} has an extent tree whose levels do not add up")
            stack.append((data, child_depth, 0))

    def _extent_header(self, node: bytes, capacity: int, where: str) -> int:
        magic, entries, most, depth, _gen = _EXT_HEADER.unpack_from(node, 0)
        if magic != _EXT_MAGIC:
            raise Corrupt(f"{where} has a damaged extent tree (bad magic)")
        if entries > most or most > capacity or depth > _EXT_MAX_DEPTH:
            raise Corrupt(f"{where} has a damaged extent tree (impossible header)")
        return int(depth)

    def _mapped_runs(self, block: bytes, limit: int, budget: Budget, where: str) -> Iterator[Run]:
        """An ext2/ext3 block map, its single blocks merged into runs."""
        pending: Run | None = None
        for logical, physical in self._mapped_blocks(block, limit, budget, where):
            if (
                pending
                and pending.logical + pending.count == logical
                and (pending.physical + pending.count == physical)
            ):
                pending = Run(pending.logical, pending.physical, pending.count + 1)
                continue
            if pending:
                yield pending
            pending = Run(logical, physical, 1)
        if pending:
            yield pending

    def _mapped_blocks(
        self, block: bytes, limit: int, budget: Budget, where: str
    ) -> Iterator[tuple[int, int]]:
        """12 direct pointers, then a single, a double and a triple indirect block;
        a zero pointer is a hole."""
        pointers = struct.unpack("<15I", block)
        for logical, ptr in enumerate(pointers[:12]):
            if logical >= limit:
                return
            if ptr:
                self._check_block(ptr, 1, f"a block pointer of {where}")
                budget.spend(1, where)
                yield logical, ptr
        first = 12
        per = self.block_size // 4
        for level, ptr in ((1, pointers[12]), (2, pointers[13]), (3, pointers[14])):
            if first >= limit:
                return
            if ptr:
                yield from self._indirect(ptr, level, first, limit, budget, where)
            first += per**level

    def _indirect(
        self, ptr: int, level: int, first: int, limit: int, budget: Budget, where: str
    ) -> Iterator[tuple[int, int]]:
        # Recursion at most 3 deep: the levels are fixed by the format.
        self._check_block(ptr, 1, f"a block pointer of {where}")
        budget.spend(1, where)
        inner = struct.unpack(f"<{self.block_size // 4}I", self.read_blocks(ptr, 1))
        span = (self.block_size // 4) ** (level - 1)
        for i, child in enumerate(inner):
            logical = first + i * span
            if logical >= limit:
                return
            if not child:
                continue
            if level == 1:
                self._check_block(child, 1, f"a block pointer of {where}")
                budget.spend(1, where)
                yield logical, child
            else:
                yield from self._indirect(child, level - 1, logical, limit, budget, where)

    # ------------------------------------------------------------------ names

    def inline_data(self, inode: Inode, where: str) -> bytes | None:
        """A file's contents when it is stored in its inode (inline_data), else None."""
        if inode.inline is None:
            return None
        data = (inode.block + inode.inline)[: inode.size]
        if len(data) != inode.size:
            raise Corrupt(f"{where} has damaged inline data (shorter than its size)")
        return data

    def entries(self, inode: Inode, budget: Budget, where: str) -> Iterator[DirEntry]:
        """The directory's entries other than ``.`` and ``..``, in on-disk order."""
        if inode.inline is not None:
            # i_block: the parent's inode number, then entries; the attribute: more.
            yield from self._block_entries(inode.block[4:], len(inode.block) - 4, where)
            yield from self._block_entries(inode.inline, len(inode.inline), where)
            return
        bs = self.block_size
        for run in self.runs(inode, budget, where):
            for n in range(run.count):
                data = self.read_blocks(run.physical + n, 1)
                yield from self._block_entries(data, bs, where)

    def _block_entries(self, data: bytes, bs: int, where: str) -> Iterator[DirEntry]:
        pos = 0
        while pos < bs:
            if pos + 8 > bs:
                raise Corrupt(f"{where} has a damaged directory block")
            ino, rec_len, name_len, file_type = _DIRENT.unpack_from(data, pos)
            if not self.has_filetype:
                name_len |= file_type << 8
            if bs == 65536 and rec_len in (0, 65535):
                rec_len = 65536
            if rec_len < 8 or rec_len % 4 or pos + rec_len > bs or 8 + name_len > rec_len:
                raise Corrupt(f"{where} has a damaged directory entry")
            name = data[pos + 8 : pos + 8 + name_len]
            pos += rec_len
            if ino == 0 or name in (b".", b".."):
                continue
            if not name or b"/" in name or b"\0" in name:
                raise Corrupt(f"{where} has an entry with an impossible name ({name!r})")
            yield DirEntry(name, ino)

    def symlink_target(self, inode: Inode, budget: Budget, where: str) -> bytes:
        if inode.size > self.block_size or inode.size == 0:
            raise Corrupt(f"{where} is a symbolic link of impossible length ({inode.size})")
        inline = self.inline_data(inode, where)
        if inline is not None:
            target = inline
        elif inode.size < _FAST_SYMLINK_MAX and not inode.flags & _FL_EXTENTS:
            target = inode.block[: inode.size]
        else:
            target = b"".join(
                self.read_blocks(run.physical, run.count) for run in self.runs(inode, budget, where)
            )[: inode.size]
        if len(target) != inode.size or b"\0" in target:
            raise Corrupt(f"{where} is a damaged symbolic link")
        return target
