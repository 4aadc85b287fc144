"""Tar headers for names that are bytes: POSIX pax, as GNU tar and Python's ``tarfile``
read them.

A name is carried byte for byte: it is decoded with ``surrogateescape`` and handed to
``tarfile``'s pax writer, which then writes ``hdrcharset=BINARY`` and the original
bytes whenever they are not UTF-8; a name or link longer than the 100 bytes of the
classic header goes into a pax record (no length limit). Owners are numeric.

A file with holes is written in the GNU pax sparse format 1.0 (what ``tar --sparse
--format=pax`` writes): the member's data starts with the map of the regions that hold
data, in decimal text, and only those regions follow, so a 10 GB file with 1 MB in it
costs 1 MB of archive.
"""

from __future__ import annotations

import struct
import tarfile
from typing import NamedTuple

__all__ = ["BLOCK", "END", "Attrs", "entry", "padding", "sparse_entry"]

BLOCK = 512
END = b"\0" * (2 * BLOCK)
"""Two zero blocks end an archive."""


class Attrs(NamedTuple):
    mode: int
    """Permission bits, setuid, setgid and sticky included."""
    uid: int
    gid: int
    mtime: int
    """Seconds since the epoch."""


_ENCODING = "utf-8"
_ERRORS = "surrogateescape"
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_CHECKSUM = slice(148, 156)
_SMALL = 8**7  # what 7 octal digits hold
_LARGE = 8**11


def _text(raw: bytes) -> str:
    return raw.decode(_ENCODING, _ERRORS)


def entry(
    name: bytes,
    kind: bytes,
    attrs: Attrs,
    *,
    size: int = 0,
    link: bytes = b"",
) -> bytes:
    """The header (pax records included) of one member; ``kind`` is a tarfile type."""
    plain = _ustar(name, kind, attrs, size, link)
    if plain is not None:
        return plain
    info = tarfile.TarInfo(_text(name))
    info.type = kind
    info.mode, info.uid, info.gid, info.mtime = attrs
    info.size = size
    info.linkname = _text(link)
    return info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)


def _ustar(name: bytes, kind: bytes, attrs: Attrs, size: int, link: bytes) -> bytes | None:
    """The header ``tarfile`` writes when nothing needs a pax record (ASCII names and
    links of at most 100 bytes, numbers that fit), made directly: ``TarInfo.tobuf``
    costs ten times as much, and most members of most trees are like this."""
    if kind == tarfile.DIRTYPE and not name.endswith(b"/"):
        name += b"/"
    mode, uid, gid, mtime = attrs
    if not (
        len(name) <= 100
        and len(link) <= 100
        and name.isascii()
        and link.isascii()
        and 0 <= uid < _SMALL
        and 0 <= gid < _SMALL
        and 0 <= size < _LARGE
        and 0 <= mtime < _LARGE
    ):
        return None
    header = _USTAR.pack(
        name,
        b"%07o\0" % (mode & 0o7777),
        b"%07o\0" % uid,
        b"%07o\0" % gid,
        b"%011o\0" % size,
        b"%011o\0" % mtime,
        b" " * 8,
        kind,
        link,
        tarfile.POSIX_MAGIC,
        b"",
        b"",
        b"",
        b"",
        b"",
    )
    return header[: _CHECKSUM.start] + b"%06o\0 " % sum(header) + header[_CHECKSUM.stop :]


def sparse_entry(
    name: bytes,
    attrs: Attrs,
    *,
    size: int,
    regions: list[tuple[int, int]],
) -> tuple[bytes, int]:
    """The header and sparse map of a file of ``size`` bytes whose data is the
    ``(offset, length)`` regions; returns them and the bytes of data to follow."""
    stored = sum(length for _offset, length in regions)
    pairs = list(regions)
    if not pairs or pairs[-1][0] + pairs[-1][1] < size:
        # Like GNU tar: a file ending in a hole ends its map with an empty region
        # at its size, which sets the length.
        pairs.append((size, 0))
    lines = [str(len(pairs))]
    for offset, length in pairs:
        lines += [str(offset), str(length)]
    sparse_map = ("\n".join(lines) + "\n").encode("ascii")
    sparse_map += padding(len(sparse_map))
    info = tarfile.TarInfo("./GNUSparseFile.0/" + _text(name.rsplit(b"/", 1)[-1]))
    info.type = tarfile.REGTYPE
    info.mode, info.uid, info.gid, info.mtime = attrs
    # The size goes in below: from 8 GiB on, tarfile would move it into a pax "size"
    # record, which its own reader then lets override the real size (and loses the
    # next member); GNU tar and tarfile both read a base-256 size field instead.
    info.size = 0
    # Order matters to tarfile's reader: it applies records in turn, and the real name
    # and size must come after the placeholder path.
    info.pax_headers = {
        "path": info.name,
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": _text(name),
        "GNU.sparse.realsize": str(size),
    }
    headers = info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)
    main = bytearray(headers[-BLOCK:])
    main[124:136] = _size_field(len(sparse_map) + stored)
    main[_CHECKSUM] = b" " * 8
    main[_CHECKSUM] = b"%06o\0 " % sum(main)
    return headers[:-BLOCK] + bytes(main) + sparse_map, stored


def _size_field(size: int) -> bytes:
    """12 bytes: octal, or GNU base-256 (a leading 0x80) past 11 octal digits."""
    if size < _LARGE:
        return b"%011o\0" % size
    return b"\x80" + size.to_bytes(11, "big")


def padding(size: int) -> bytes:
    """Zeros that round ``size`` bytes of member data up to a whole tar block."""
    return b"\0" * (-size % BLOCK)
