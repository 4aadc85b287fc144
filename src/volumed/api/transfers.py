"""``/volumed/v1/volumes/{uuid}/import|export``: files in and out, as tar streams.

Outside the KraftCloud namespace (``/v1``): these are volumed's own. Both are
tenant-scoped like ``/v1/volumes``; another tenant's volume answers error 8 in a 200
envelope. Neither holds an archive in memory:

* ``PUT …/import`` is a streaming route: the app does not buffer its body, the handler
  hands the ASGI receive channel, chunk by chunk, to the service (which enforces the
  limits, derived from the volume's size) and answers the volumes envelope. A body
  that brings less than 64 KiB in ``import_idle_timeout_s`` is answered 408.
* ``GET …/export`` answers ``application/x-tar`` streamed chunk by chunk, or, when the
  volume cannot be exported, the volumes envelope with an error item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from volumed.api import views
from volumed.api.envelope import AnyItem, failed_item, items_envelope
from volumed.api.http import Request, RequestError
from volumed.api.items import each_item, path_ref
from volumed.api.routing import Response, Router
from volumed.domain import errors
from volumed.domain.transfers import TransferService

KEY = "volumes"
IMPORT_PATH = "/volumed/v1/volumes/{uuid}/import"
EXPORT_PATH = "/volumed/v1/volumes/{uuid}/export"
_NO_PARAMS: frozenset[str] = frozenset()
_PROGRESS_BYTES = 64 * 1024
"""What an import body must bring in each ``import_idle_timeout_s``."""
_DRAIN_MAX = 256 * 2**20
"""After a refusal, the rest of the upload is read and dropped (so the client gets the
answer instead of a broken pipe), up to this much; past it the connection is dropped."""


class _Body:
    """The request body of a streaming route as an async iterator of chunks. A body
    that brings less than ``_PROGRESS_BYTES`` in ``idle_s`` (nothing at all, or a trickle
    meant to hold an import slot) ends with HTTP 408 (and is not drained)."""

    def __init__(self, request: Request, idle_s: float) -> None:
        assert request.receive is not None, "import must be registered with streaming=True"
        self._receive = request.receive
        self._idle_s = idle_s
        self.done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        # Only time spent waiting for the client counts, not time the server took.
        budget, progress = self._idle_s, 0
        while not self.done:
            started = loop.time()
            try:
                async with asyncio.timeout(max(budget, 0)):
                    message = await self._receive()
            except TimeoutError:
                self.done = True
                raise RequestError(
                    408,
                    f"The import body sent less than {_PROGRESS_BYTES // 1024} KiB in "
                    f"{self._idle_s:g} s",
                ) from None
            budget -= loop.time() - started
            if message["type"] == "http.disconnect":
                self.done = True
                raise RequestError(400, "Client disconnected before sending the whole body")
            body = message.get("body", b"")
            self.done = not message.get("more_body", False)
            if isinstance(body, bytes) and body:
                progress += len(body)
                if progress >= _PROGRESS_BYTES:
                    budget, progress = self._idle_s, 0
                yield body

    async def drain(self) -> None:
        dropped = 0
        async for chunk in self.chunks():
            dropped += len(chunk)
            if dropped > _DRAIN_MAX:
                return


class TransferHandlers:
    def __init__(self, service: TransferService, *, idle_timeout_s: float = 30.0) -> None:
        self._service = service
        self._idle_timeout_s = idle_timeout_s

    def register(self, router: Router) -> None:
        router.add("PUT", IMPORT_PATH, self.import_archive, streaming=True)
        router.add("GET", EXPORT_PATH, self.export_archive)

    async def import_archive(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        request.query_values(_NO_PARAMS)
        raw = request.path_params["uuid"]
        body = _Body(request, self._idle_timeout_s)

        async def run(_: object) -> AnyItem:
            ref = path_ref(request)
            await self._service.check_import(user, ref)
            volume = await self._service.import_archive(user, ref, body.chunks())
            return views.volume_item(volume)

        try:
            results = await each_item([None], run, lambda _: {"uuid": raw})
        finally:
            # Read the rest so the client gets the answer, not a broken pipe (not when
            # shutting down: the connection closes anyway).
            if not body.done and not self._service.stopping:
                await body.drain()
        return Response(items_envelope(KEY, results, started))

    async def export_archive(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        request.query_values(_NO_PARAMS)
        if request.body.strip():
            raise RequestError(400, "An export takes no request body")
        raw = request.path_params["uuid"]
        try:
            volume, stream = await self._service.export_archive(user, path_ref(request))
        except errors.VolumedError as exc:
            item = failed_item(exc.code, exc.message, uuid=raw)
            return Response(items_envelope(KEY, [item], started))
        disposition = f'attachment; filename="{volume.name}.tar"'.encode()
        return Response(
            b"",
            headers=[(b"content-disposition", disposition)],
            content_type=b"application/x-tar",
            stream=stream,
        )
