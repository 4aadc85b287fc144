"""``GET /volumed/v1/volumes/{uuid}/events``: a volume's audit trail, oldest first.

A volumed extension, outside the KraftCloud namespace. The events of a deleted volume
stay readable by UUID for ``events_retention_days``; an unknown UUID, or another
tenant's, is an error item 8 as in ``GET /v1/volumes/{uuid}``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from volumed.api.envelope import Item, failed_item, items_envelope
from volumed.api.http import Request
from volumed.api.items import path_ref
from volumed.api.routing import Response, Router
from volumed.domain import errors
from volumed.domain.audit import VolumeEvent
from volumed.domain.events import EventService

__all__ = ["EventHandlers"]

KEY = "events"


def event_item(event: VolumeEvent) -> Item:
    at = datetime.fromtimestamp(event.at_us / 1_000_000, tz=UTC)
    return {
        "id": event.id,
        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": event.actor,
        "action": event.action,
        "result": event.result,
        "state_from": event.state_from,
        "state_to": event.state_to,
        "message": event.message,
    }


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
        return Response(items_envelope(KEY, [event_item(e) for e in events], started))
