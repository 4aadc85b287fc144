"""``GET /v1/metros``: this server as the one metro there is, so that an SDK left to
discover its metros (``UnikraftCloud(control_plane_url=…)``) finds its way here."""

from __future__ import annotations

import time
import uuid as uuid_lib

from volumed.api import wire
from volumed.api.envelope import data_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router

__all__ = ["METRO_CODE", "MetroHandlers"]

METRO_CODE = "loc"
"""The metro's IATA-like code; the SDK tags every result it reads here with it."""


class MetroHandlers:
    def __init__(self, *, public_url: str = "", fallback_host: str = "127.0.0.1:8080") -> None:
        self._public_url = public_url.rstrip("/")
        self._fallback_host = fallback_host

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/metros", self.list_metros)

    async def list_metros(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        request.query_values(frozenset())
        base = self._public_url or self._url_of(request)
        metro = wire.Metro(
            uuid=str(uuid_lib.uuid5(uuid_lib.NAMESPACE_URL, base)),
            endpoint=base.removesuffix("/v1") + "/v1",
            name="volumed",
            iata_code=METRO_CODE.upper(),
        )
        return Response(data_envelope("metros", [metro], started))

    def _url_of(self, request: Request) -> str:
        """The URL the client reached us by (``public_url`` overrides it behind a proxy)."""
        host = request.headers.get(b"host", b"").decode("latin-1") or self._fallback_host
        scheme = request.headers.get(b"x-forwarded-proto", b"http").decode("latin-1")
        scheme = scheme.split(",")[0].strip().lower()
        return f"{'https' if scheme == 'https' else 'http'}://{host}"
