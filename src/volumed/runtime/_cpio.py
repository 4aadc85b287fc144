"""A writer of the ``newc`` cpio format, the one Linux unpacks an initramfs from.

Several archives may follow one another in one file: the kernel unpacks them in order,
which is how a guest's own configuration is laid over the shared base archive.
"""

from __future__ import annotations

import io
import stat

__all__ = ["CpioWriter"]

_MAGIC = b"070701"


class CpioWriter:
    """Collects directories and files in memory; :meth:`finish` returns the archive."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def directory(self, path: str, mode: int = 0o755) -> None:
        self._entry(path, stat.S_IFDIR | mode, b"")

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        return self._out.getvalue()

    def _entry(self, path: str, mode: int, data: bytes) -> None:
        name = path.lstrip("/").encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0)
        self._ino += 1
        header = _MAGIC + b"".join(b"%08X" % value for value in fields)
        self._out.write(header + name)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))
