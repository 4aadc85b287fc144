"""``PATCH /v1/volumes`` and ``PATCH /v1/volumes/{uuid}``: one property change per item.

Items are applied in order, so ``[{size_mb}, {tags}]`` for one volume (what the SDK's
``update(size_mb=…, tags=…)`` sends) grows it, then tags it. Every result item echoes
the request item's ``id``.
"""

from __future__ import annotations

import time

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router
from volumed.api.volumes import KEY, each_item, path_ref
from volumed.domain import rules
from volumed.domain.updates import Change, UpdateService

__all__ = ["UpdateHandlers", "update_global", "update_local"]

GlobalBody = bodies.UpdateBody | bodies.UpdateTemplateBody
LocalBody = bodies.UpdateByUuidBody | bodies.UpdateTemplateByUuidBody


async def update_global(
    request: Request, service: UpdateService, kind: type[GlobalBody], *, template: bool
) -> Response:
    """A global-scope PATCH: each item names its volume (or template)."""
    started = time.perf_counter_ns()
    user = request.tenant()
    items: list[GlobalBody] = list(bodies.parse_items(request.body, kind))
    noun = "template" if template else "volume"

    async def update(body: GlobalBody) -> AnyItem:
        ref = rules.check_ref(body.uuid, body.name, noun)
        change = Change(body.prop, body.op, body.value)
        volume = await service.apply(user, ref, change, template=template)
        return views.volume_updated(volume, body.id)

    results = await each_item(items, update, lambda b: {"uuid": b.uuid, "name": b.name, "id": b.id})
    return Response(items_envelope(KEY, results, started))


async def update_local(
    request: Request, service: UpdateService, kind: type[LocalBody], *, template: bool
) -> Response:
    """A local-scope PATCH (``/{uuid}``): one change, or an array of them, to one volume."""
    started = time.perf_counter_ns()
    user = request.tenant()
    items: list[LocalBody] = list(bodies.parse_items(request.body, kind))
    raw = request.path_params["uuid"]

    async def update(body: LocalBody) -> AnyItem:
        change = Change(body.prop, body.op, body.value)
        volume = await service.apply(user, path_ref(request), change, template=template)
        return views.volume_updated(volume, body.id)

    results = await each_item(items, update, lambda b: {"uuid": raw, "id": b.id})
    return Response(items_envelope(KEY, results, started))


class UpdateHandlers:
    def __init__(self, service: UpdateService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("PATCH", "/v1/volumes", self.update_many)
        router.add("PATCH", "/v1/volumes/{uuid}", self.update_one)

    async def update_many(self, request: Request) -> Response:
        return await update_global(request, self._service, bodies.UpdateBody, template=False)

    async def update_one(self, request: Request) -> Response:
        return await update_local(request, self._service, bodies.UpdateByUuidBody, template=False)
