"""The direct ustar header is exactly what ``tarfile`` writes, and pax takes over where
it must (long, non-ASCII or non-UTF-8 names, numbers that do not fit)."""

from __future__ import annotations

import io
import tarfile

import pytest

from volumed.storage._tarout import END, Attrs, entry, padding, sparse_entry

# Runs in the SQLite pass only: tar writing alone: no metadata store is involved.
pytestmark = pytest.mark.store_independent

PLAIN = Attrs(0o4755, 1000, 100, 1_700_000_000)


def by_tarfile(name: bytes, kind: bytes, attrs: Attrs, size: int = 0, link: bytes = b"") -> bytes:
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    info.type = kind
    info.mode, info.uid, info.gid, info.mtime = attrs
    info.size = size
    info.linkname = link.decode("utf-8", "surrogateescape")
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("name", "kind", "attrs", "size", "link"),
    [
        (b"./a/file", tarfile.REGTYPE, PLAIN, 12345, b""),
        (b"./dir", tarfile.DIRTYPE, PLAIN, 0, b""),
        (b"./" + b"n" * 98, tarfile.REGTYPE, PLAIN, 0, b""),  # exactly 100 bytes
        (b"./" + b"n" * 99, tarfile.REGTYPE, PLAIN, 0, b""),  # 101: a pax path
        (b"./link", tarfile.SYMTYPE, PLAIN, 0, b"/etc/" + b"x" * 95),
        (b"./link", tarfile.SYMTYPE, PLAIN, 0, b"/etc/" + b"x" * 96),
        (b"./hard", tarfile.LNKTYPE, PLAIN, 0, b"./a/file"),
        (b"./new\nline", tarfile.REGTYPE, PLAIN, 1, b""),
        (b"./\xc3\xa9t\xc3\xa9", tarfile.REGTYPE, PLAIN, 1, b""),
        (b"./bad\xff", tarfile.REGTYPE, PLAIN, 1, b"\xfe"),
        (b"./big", tarfile.REGTYPE, PLAIN, 8**11, b""),
        (b"./ids", tarfile.REGTYPE, Attrs(0o644, 8**7, 2**32 - 1, 0), 0, b""),
        (b"./old", tarfile.REGTYPE, Attrs(0o644, 0, 0, -5), 0, b""),
    ],
)
def test_headers_are_what_tarfile_writes(
    name: bytes, kind: bytes, attrs: Attrs, size: int, link: bytes
) -> None:
    header = entry(name, kind, attrs, size=size, link=link)
    assert header == by_tarfile(name, kind, attrs, size, link)
    archive = header + b"\0" * (size if size < 2**20 else 0) + padding(size) + END
    if size < 2**20:
        member = tarfile.open(fileobj=io.BytesIO(archive)).getmembers()[0]
        assert member.name.encode("utf-8", "surrogateescape") == name
        assert (member.mode, member.uid, member.gid, member.mtime) == tuple(attrs)
        assert member.linkname.encode("utf-8", "surrogateescape") == link


def test_a_sparse_member_reads_back_with_its_holes() -> None:
    regions = [(0, 3), (4096, 5)]
    header, stored = sparse_entry(b"./d/\xffsparse", PLAIN, size=10_000, regions=regions)
    archive = header + b"abc" + b"defgh" + padding(stored) + END
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.getmembers()[0]
        assert member.name.encode("utf-8", "surrogateescape") == b"./d/\xffsparse"
        assert member.size == 10_000 and member.issparse()
        data = tar.extractfile(member)
        assert data is not None
        content = data.read()
    assert content == b"abc" + b"\0" * 4093 + b"defgh" + b"\0" * (10_000 - 4101)


class _Zeros(io.RawIOBase):
    """``head``, then ``zeros`` zero bytes, then ``tail``, without holding the zeros."""

    def __init__(self, head: bytes, zeros: int, tail: bytes) -> None:
        self._parts = (head, zeros, tail)
        self._size = len(head) + zeros + len(tail)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        head, zeros, tail = self._parts
        start = self._pos
        if start < len(head):
            data = head[start : start + len(buffer)]
        elif start < len(head) + zeros:
            data = b"\0" * min(len(buffer), len(head) + zeros - start)
        else:
            offset = start - len(head) - zeros
            data = tail[offset : offset + len(buffer)]
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def test_a_sparse_member_holding_more_than_8_gib_reads_back() -> None:
    """Its stored size needs base-256: a pax "size" record would make tarfile take
    the stored size for the real one and lose the next member."""
    gib = 2**30
    header, stored = sparse_entry(b"./vm.img", PLAIN, size=20 * gib, regions=[(0, 9 * gib)])
    after = entry(b"./after", tarfile.REGTYPE, PLAIN, size=3) + b"abc" + padding(3) + END
    archive = _Zeros(header, stored, padding(stored) + after)
    with tarfile.open(fileobj=io.BufferedReader(archive), mode="r:") as tar:
        members = tar.getmembers()
    assert [(m.name, m.size) for m in members] == [("./vm.img", 20 * gib), ("./after", 3)]
    # typeshed types TarInfo.sparse as bytes | None; tarfile keeps the (offset, size) list.
    sparse: object = members[0].sparse
    assert sparse == [(0, 9 * gib), (20 * gib, 0)]
