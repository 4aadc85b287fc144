"""``GET /volumed/v1/volumes/{uuid}/events``: a volume's audit trail, oldest first.

A volumed extension, outside the KraftCloud namespace. The events of a deleted volume
stay readable by UUID for ``events_retention_days``; an unknown UUID, or another
tenant's, is an error item 8 as in ``GET /v1/volumes/{uuid}``.
"""

from __future__ import annotations

from volumed.api import views
from volumed.api.envelope import AnyItem, failed_item
from volumed.api.http import Request
from volumed.api.items import answers, path_ref
from volumed.api.routing import Router
from volumed.domain import errors
from volumed.domain.events import EventService
from volumed.domain.model import User

__all__ = ["EventHandlers"]

KEY = "events"


class EventHandlers:
    def __init__(self, service: EventService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/volumed/v1/volumes/{uuid}/events", self.list)

    @answers(KEY)
    async def list(self, user: User, request: Request) -> list[AnyItem]:
        request.query_values(frozenset())
        try:
            uuid = path_ref(request).uuid
            assert uuid is not None
            events = await self._service.list(user, uuid)
        except errors.VolumedError as exc:
            return [failed_item(exc.code, exc.message, uuid=request.path_params["uuid"])]
        return [views.event_item(e) for e in events]
