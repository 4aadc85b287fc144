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
only after the server's connection has used it: from then on that connection holds its
locks on the database and on the ``-shm`` file, and SQLite resets the file only for the
first connection (none holding those locks) and removes it only with the last, so the
mapping is of the file in use, at its full size.

The descriptor opened for the mapping stays open until the database connection is closed:
closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included (seen: the next process to connect found the ``-shm`` file unlocked and reset it
under the server, which died of SIGBUS reading the mapping).
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
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._file: tuple[int, int] | None = None
        self._dropped = False

    def open(self) -> None:
        """Map the header; call it after a statement of the connection whose commits are
        to be seen (see the module's docstring). Stays unmapped while there is no WAL
        index yet (no statement has run) or it cannot be read."""
        if self._map is not None or self._dropped:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(self._fd)
            if st.st_size >= 2 * _HEADER:
                self._map = mmap.mmap(self._fd, 2 * _HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
                self._file = (st.st_dev, st.st_ino)
        except OSError:
            return

    def stamp(self) -> bytes | None:
        """The committed state's stamp now; None if unmapped or a commit is being written."""
        if self._map is None or self._dropped:
            return None
        both = self._map[: 2 * _HEADER]
        first = both[:_HEADER]
        return first if first == both[_HEADER:] else None

    def check(self) -> None:
        """Stop giving stamps if the mapped file is no longer the one beside the database
        (for health checks: by the reasoning above it always is while the connection is
        open). The descriptor stays open all the same: see the module's docstring."""
        if self._file is None:
            return
        try:
            st = os.stat(self._path)
        except OSError:
            self._dropped = True
            return
        if (st.st_dev, st.st_ino) != self._file:
            self._dropped = True

    def close(self) -> None:
        """Only once the database connection is closed (its locks go with the descriptor)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
