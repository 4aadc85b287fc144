"""Static files held in memory: read (and gzip-compressed) on first use, off the event
loop, so a server start pays nothing for them; answered with an ETag, compressed when the
client accepts it, and revalidated on every use (``Cache-Control: no-cache``), so a new
release is picked up by the next page load without stale mixtures of modules."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from volumed.api.compression import accepts_gzip
from volumed.api.http import Request
from volumed.api.routing import Response

__all__ = ["Asset", "AssetSet"]

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}
_COMPRESSIBLE = frozenset({".html", ".js", ".css", ".svg"})
_NOT_FOUND = b"Not found\n"


@dataclass(slots=True, frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    """The body gzip-compressed, when that is smaller; None otherwise."""
    etag: bytes
    content_type: bytes


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    suffix = path.suffix
    content_type = _TYPES.get(suffix)
    if content_type is None:
        guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        content_type = guessed.encode()
    gzipped = None
    if suffix in _COMPRESSIBLE:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
    return Asset(body, gzipped, etag, content_type)


class AssetSet:
    """Files by name (flat: a name never contains ``/``), with the response headers every
    answer carries (the Content-Security-Policy, for one)."""

    def __init__(self, files: Iterable[Path], headers: list[tuple[bytes, bytes]]) -> None:
        self._paths = {path.name: path for path in files}
        self._assets: dict[str, Asset] = {}
        self._headers = headers

    async def _load(self, name: str) -> Asset | None:
        asset = self._assets.get(name)
        if asset is None and name in self._paths:
            asset = await asyncio.to_thread(_asset, self._paths[name])
            self._assets[name] = asset
        return asset

    async def respond(self, request: Request, name: str) -> Response:
        asset = await self._load(name)
        if asset is None:
            return Response(_NOT_FOUND, 404, list(self._headers), b"text/plain; charset=utf-8")
        headers = [*self._headers, (b"etag", asset.etag), (b"cache-control", b"no-cache")]
        headers.append((b"vary", b"accept-encoding"))
        if _matches(request.headers.get(b"if-none-match"), asset.etag):
            return Response(b"", 304, headers, asset.content_type)
        body = asset.body
        if asset.gzipped is not None and accepts_gzip(request.headers.get(b"accept-encoding")):
            body = asset.gzipped
            headers.append((b"content-encoding", b"gzip"))
        return Response(body, 200, headers, asset.content_type)


def _matches(if_none_match: bytes | None, etag: bytes) -> bool:
    if not if_none_match:
        return False
    return any(tag.strip().removeprefix(b"W/") == etag for tag in if_none_match.split(b","))
