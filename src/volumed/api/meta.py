"""Routes about the service itself: the root and the OpenAPI document (the probes are
in :mod:`volumed.api.health`)."""

from __future__ import annotations

import time

from volumed import __version__
from volumed.api import wire
from volumed.api.envelope import data_envelope, encode
from volumed.api.http import Request
from volumed.api.routing import Response, Router


class MetaHandlers:
    def __init__(self, router: Router) -> None:
        self._router = router
        self._openapi: bytes | None = None

    def register(self, router: Router) -> None:
        router.add("GET", "/", self.root)
        router.add("GET", "/openapi.json", self.openapi, public=True)

    async def root(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        info = wire.Service("volumed", __version__, request.tenant().name)
        return Response(data_envelope("service", info, started))

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            from volumed.api.openapi import openapi_document

            self._openapi = encode(openapi_document())
        return Response(self._openapi)
