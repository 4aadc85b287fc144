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
    info = tarfile.TarInfo(_text(name))
    info.type = kind
    info.mode, info.uid, info.gid, info.mtime = attrs
    info.size = size
    info.linkname = _text(link)
    return info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)


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
    info.size = len(sparse_map) + stored
    # Order matters to tarfile's reader: it applies records in turn, and the real name
    # and size must come after the placeholder path.
    info.pax_headers = {
        "path": info.name,
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": _text(name),
        "GNU.sparse.realsize": str(size),
    }
    return info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS) + sparse_map, stored


def padding(size: int) -> bytes:
    """Zeros that round ``size`` bytes of member data up to a whole tar block."""
    return b"\0" * (-size % BLOCK)
