"""gzip for answers that are worth it: JSON of a few KiB and more (a listing of thousands
of volumes shrinks about tenfold), when the client says it accepts gzip. Small answers
and streams (exports) go as they are."""

from __future__ import annotations

import asyncio
import gzip

__all__ = ["MIN_BYTES", "accepts_gzip", "compress"]

MIN_BYTES = 4096
"""Below this an answer fits in a few packets anyway; compressing it costs more than it
saves."""
_LEVEL = 5
"""zlib level: a 1.7 MB listing of 5,000 volumes becomes ~140 KB in ~20–40 ms (level 1:
~160 KB in half the time); 100 volumes (35 KB) take 0.2 ms."""
THREAD_BYTES = 256 * 1024
"""Larger bodies are compressed in a worker thread (zlib releases the GIL), so one big
listing does not hold up every other request for tens of milliseconds."""


def accepts_gzip(accept_encoding: bytes | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (present, and not with ``q=0``)."""
    if not accept_encoding:
        return False
    for part in accept_encoding.lower().split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip() in (b"gzip", b"*"):
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def compress(body: bytes) -> bytes:
    if len(body) >= THREAD_BYTES:
        return await asyncio.to_thread(gzip.compress, body, _LEVEL, mtime=0)
    return gzip.compress(body, compresslevel=_LEVEL, mtime=0)
