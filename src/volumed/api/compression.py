"""gzip for answers that are worth it: JSON of a few KiB and more (a listing of thousands
of volumes shrinks about tenfold), when the client says it accepts gzip. Small answers
and streams (exports) go as they are."""

from __future__ import annotations

import gzip

__all__ = ["MIN_BYTES", "accepts_gzip", "compress"]

MIN_BYTES = 4096
"""Below this an answer fits in a few packets anyway; compressing it costs more than it
saves."""
_LEVEL = 5
"""zlib level: at 5 a 1.5 MiB listing compresses in a few milliseconds to about the size
level 9 reaches."""


def accepts_gzip(accept_encoding: bytes | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (present, and not with ``q=0``)."""
    if not accept_encoding:
        return False
    for part in accept_encoding.lower().split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip() in (b"gzip", b"*"):
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


def compress(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=_LEVEL, mtime=0)
