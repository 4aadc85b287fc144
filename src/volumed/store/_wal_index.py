"""Whether anything was committed to a SQLite database since a given moment, by any
connection of any process, told without a system call or a statement.

In WAL mode every connection to a database shares its WAL index, the ``-shm`` file beside
it, mapped into memory. Every commit rewrites the index's header: 48 bytes at offset 0,
with its change counter, its last valid frame and the WAL's salts, after the same 48 bytes
at offset 48 (SQLite's "WAL-index format" documentation). SQLite's own readers compare that
header to learn whether the database changed, and the format is fixed because connections
of different SQLite versions share it. So the header is a stamp of the committed state:
two equal stamps, no commit in between. A reader that finds the two copies different
caught a writer in the middle of its update and gets no stamp.

A CLI command writing to the same file from another process (``volumed job retry``, token
admin) changes the stamp like the server's own writes do. The ``-shm`` file is mapped
only after the server's connection has used it: from then on that connection holds the
database's shared lock, and SQLite removes or truncates the file only when the last
connection closes, so the mapping is never of an older file than the one in use.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

__all__ = ["WalIndexHeader"]

_HEADER = 48


class WalIndexHeader:
    def __init__(self, database: Path) -> None:
        self._path = Path(f"{database}-shm")
        self._map: mmap.mmap | None = None
        self._file: tuple[int, int] | None = None

    @property
    def mapped(self) -> bool:
        return self._map is not None

    def open(self) -> None:
        """Map the header; call it after a statement of the connection whose commits are
        to be seen (see the module's docstring). Stays unmapped if there is no WAL index
        yet (no statement has run) or it cannot be read."""
        if self._map is not None:
            return
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if st.st_size >= 2 * _HEADER:
                self._map = mmap.mmap(fd, 2 * _HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
                self._file = (st.st_dev, st.st_ino)
        except OSError:
            return
        finally:
            os.close(fd)

    def stamp(self) -> bytes | None:
        """The committed state's stamp now; None if unmapped or a commit is being written."""
        both = self._map[: 2 * _HEADER] if self._map is not None else None
        if both is None:
            return None
        first = both[:_HEADER]
        return first if first == both[_HEADER:] else None

    def is_current(self) -> bool:
        """Whether the mapped file is still the one beside the database (for health checks:
        by the reasoning above it always is while the connection is open)."""
        if self._file is None:
            return True
        try:
            st = os.stat(self._path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._file

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
