"""A guest's console output, kept on disk and bounded.

Bytes are numbered from the guest's first byte on, so an offset keeps meaning the same
byte while older bytes are dropped. The log holds the newest bytes, between
``limit / 2`` and ``limit`` of them once it has filled: when an append would pass
``limit`` the older half is dropped by rewriting the file (written aside, then renamed).
``console.start`` holds the number of the first byte kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from volumed.domain.runtime import ConsoleSlice

__all__ = ["ConsoleLog"]


class ConsoleLog:
    """One guest's console log in ``directory``. Not safe across processes: only the
    server that runs the guest appends."""

    def __init__(self, directory: Path, limit: int) -> None:
        self._data = directory / "console.log"
        self._start_file = directory / "console.start"
        self._limit = max(limit, 2)
        self._first = _read_int(self._start_file)

    def append(self, chunk: bytes) -> None:
        size = self._data.stat().st_size if self._data.exists() else 0
        if size + len(chunk) <= self._limit:
            with self._data.open("ab") as handle:
                handle.write(chunk)
            return
        keep = self._limit // 2
        whole = (self._data.read_bytes() if size else b"") + chunk
        dropped = max(len(whole) - keep, 0)
        tmp = self._data.with_name("console.log.tmp")
        tmp.write_bytes(whole[dropped:])
        self._first += dropped
        _write_int(self._start_file, self._first)
        tmp.replace(self._data)

    def read(self, offset: int, limit: int) -> ConsoleSlice:
        """Up to ``limit`` bytes from byte ``offset``; a negative ``offset`` counts from
        the end. Offsets outside what is kept are moved to its nearest edge."""
        first = _read_int(self._start_file)
        try:
            with self._data.open("rb") as handle:
                end = first + os.fstat(handle.fileno()).st_size
                start = end + offset if offset < 0 else offset
                start = min(max(start, first), end)
                handle.seek(start - first)
                data = handle.read(max(limit, 0))
        except FileNotFoundError:
            return ConsoleSlice(b"", first, first, first)
        return ConsoleSlice(data, start, first, end)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_int(path: Path, value: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n", encoding="ascii")
    tmp.replace(path)
