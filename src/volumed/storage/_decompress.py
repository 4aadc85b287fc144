"""An upload as ``tarfile`` reads it: decompressed here, on the fly, with every byte counted.

``tarfile``'s own decompression (``r|*``) gives no handle on how much it inflates: a
10 MB gzip of zeros becomes 10 GB inside one call. :class:`InflatingReader` recognises
gzip, bzip2 and xz by their magic bytes (anything else is read as a plain tar) and
inflates at most ``_STEP`` bytes per step, so between two steps it can check:

* the bytes produced against ``max_bytes`` (:class:`StreamTooLong`);
* the thread's CPU time against ``cpu_s`` (:class:`CpuExhausted`);
* a ``stop`` event set from outside (:class:`Stopped`): a gone client, a shutdown.

Concatenated members (``cat a.gz b.gz``) are read one after the other, as gzip does.
"""

from __future__ import annotations

import bz2
import io
import lzma
import threading
import time
import zlib
from collections.abc import Callable
from typing import Protocol

__all__ = ["BadCompression", "CpuExhausted", "InflatingReader", "Stopped", "StreamTooLong"]

_STEP = 1 << 20
_IN = 1 << 16
_MAGIC_BYTES = 6
_EMPTY_READS = 64


class BadCompression(ValueError):
    """The compressed stream is corrupt."""


class StreamTooLong(Exception):
    """The uncompressed archive is longer than ``max_bytes``."""


class CpuExhausted(Exception):
    """Unpacking used more than ``cpu_s`` seconds of CPU."""


class Stopped(Exception):
    """The ``stop`` event was set."""


class _Inflater(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int, /) -> bytes: ...


class _Zlib:
    """``zlib.decompressobj`` keeps its unread input apart (``unconsumed_tail``); this
    keeps it inside, like the bz2 and lzma decompressors."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""
        self._full = False

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def needs_input(self) -> bool:
        # A call that filled its output may have more to give without new input.
        return not self._tail and not self._full

    def decompress(self, data: bytes, max_length: int, /) -> bytes:
        out = self._d.decompress(self._tail + data, max_length)
        self._tail = self._d.unconsumed_tail
        self._full = len(out) == max_length
        return out


_FORMATS: tuple[tuple[bytes, Callable[[], _Inflater]], ...] = (
    (b"\x1f\x8b", _Zlib),
    (b"BZh", bz2.BZ2Decompressor),
    (b"\xfd7zXZ\x00", lzma.LZMADecompressor),
)


class InflatingReader(io.RawIOBase):
    """The uncompressed bytes of ``source`` (a blocking raw reader), within the limits
    above. Only one thread may read it; its CPU time is the one counted."""

    def __init__(
        self,
        source: io.RawIOBase,
        *,
        max_bytes: int,
        cpu_s: float,
        stop: threading.Event,
    ) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._cpu_s = cpu_s
        self._stop = stop
        self._cpu_start: float | None = None
        self._make: Callable[[], _Inflater] | None = None
        self._magic = b""
        self._inflater: _Inflater | None = None
        self._pending = b""
        self._started = False
        self._ended = False
        self._empty_reads = 0
        self.produced = 0
        """Uncompressed bytes handed out so far."""
        self.compressed = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if self._stop.is_set():
            raise Stopped()
        now = time.thread_time()
        if self._cpu_start is None:
            self._cpu_start = now
        elif now - self._cpu_start > self._cpu_s:
            raise CpuExhausted()
        if size is None or size < 0 or size > _STEP:
            size = _STEP
        if not self._started:
            self._start()
        out = self._next(size)
        if not out and size:
            # tarfile skips a member's data with one read per 64 KiB and no end check: a
            # header claiming 10^26 bytes at the end of the stream would spin for good.
            self._empty_reads += 1
            if self._empty_reads > _EMPTY_READS:
                raise EOFError("the archive ends before the data its headers announce")
        self.produced += len(out)
        if self.produced > self._max_bytes:
            raise StreamTooLong()
        return out

    def _start(self) -> None:
        self._started = True
        head = b""
        while len(head) < _MAGIC_BYTES:
            more = self._source.read(_MAGIC_BYTES - len(head))
            if not more:
                break
            head += more
        self._pending = head
        for magic, make in _FORMATS:
            if head.startswith(magic):
                self._make, self._magic = make, magic
                self._inflater = make()
                self.compressed = True

    def _next(self, size: int) -> bytes:
        if self._inflater is None:
            if self._pending:
                out, self._pending = self._pending[:size], self._pending[size:]
                return out
            return self._source.read(size) or b""
        return self._inflate(self._inflater, size)

    def _inflate(self, inflater: _Inflater, size: int) -> bytes:
        while not self._ended:
            if inflater.eof:
                inflater = self._next_member(inflater)
                continue
            data = b""
            if self._pending:
                data, self._pending = self._pending, b""
            elif getattr(inflater, "needs_input", True):
                data = self._source.read(_IN) or b""
                if not data:
                    raise EOFError("the compressed stream ends before its end marker")
            try:
                out = inflater.decompress(data, size)
            except (zlib.error, lzma.LZMAError, OSError) as exc:
                # bz2 reports a corrupt stream as an OSError without errno.
                raise BadCompression(f"the compressed stream is corrupt: {exc}") from None
            if out:
                return out
        return b""

    def _next_member(self, done: _Inflater) -> _Inflater:
        """After one compressed member: the next one, if the bytes that follow start one
        of the same format; anything else ends the stream."""
        rest = done.unused_data or self._pending or (self._source.read(_IN) or b"")
        self._pending = b""
        while 0 < len(rest) < _MAGIC_BYTES:
            more = self._source.read(_IN)
            if not more:
                break
            rest += more
        assert self._make is not None
        fresh = self._make()
        if rest.startswith(self._magic):
            self._pending = rest
            self._inflater = fresh
        else:
            self._ended = True
        return fresh
