"""``GET /volumed/v1/volumes/{uuid}/events``: a volume's audit trail, oldest first.

A volumed extension, outside the KraftCloud namespace. The events of a deleted volume
stay readable by UUID for ``events_retention_days``; an unknown UUID, or another
tenant's, is an error item 8 as in ``GET /v1/volumes/{uuid}``.
"""

from __future__ import annotations

import time

from volumed.api import views
from volumed.api.envelope import failed_item, items_envelope
from volumed.api.http import Request
from volumed.api.items import path_ref
from volumed.api.routing import Response, Router
from volumed.domain import errors
from volumed.domain.events import EventService

__all__ = ["EventHandlers"]

KEY = "events"


class EventHandlers:
    def __init__(self, service: EventService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/volumed/v1/volumes/{uuid}/events", self.list)

    async def list(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        request.query_values(frozenset())
        try:
            uuid = path_ref(request).uuid
            assert uuid is not None
            events = await self._service.list(user, uuid)
        except errors.VolumedError as exc:
            failed = failed_item(exc.code, exc.message, uuid=request.path_params["uuid"])
            return Response(items_envelope(KEY, [failed], started))
        return Response(items_envelope(KEY, [views.event_item(e) for e in events], started))
