"""``POST /v1/volumes/clone`` and ``POST /v1/volumes/{uuid}/clone``: each item answers
with the new volume (``uninitialized`` at first, ``available`` once copied)."""

from __future__ import annotations

import time

from volumed.api import bodies, views
from volumed.api.envelope import Item, items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router
from volumed.api.volumes import KEY, each_item, path_ref
from volumed.domain import rules
from volumed.domain.clones import CloneService, CloneVolume

__all__ = ["CloneHandlers"]


def _request(body: bodies.CloneByUuidBody) -> CloneVolume:
    return CloneVolume(
        vol_name=body.vol_name,
        quota_policy=body.quota_policy,
        tags=body.tags,
        access_mode=body.access_mode,
    )


class CloneHandlers:
    def __init__(self, service: CloneService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/volumes/clone", self.clone_many)
        router.add("POST", "/v1/volumes/{uuid}/clone", self.clone_one)

    async def clone_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        items = bodies.parse_items(request.body, bodies.CloneBody)

        async def clone(body: bodies.CloneBody) -> Item:
            ref = rules.check_ref(body.uuid, body.name)
            return views.volume_created(await self._service.clone(user, ref, _request(body)))

        results = await each_item(items, clone, lambda b: {"uuid": b.uuid, "name": b.name})
        return Response(items_envelope(KEY, results, started))

    async def clone_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        # No body (or {}) clones with the source's settings.
        items = bodies.parse_items(request.body, bodies.CloneByUuidBody, required=False)
        raw = request.path_params["uuid"]

        async def clone(body: bodies.CloneByUuidBody) -> Item:
            new = await self._service.clone(user, path_ref(request), _request(body))
            return views.volume_created(new)

        results = await each_item(
            items or [bodies.CloneByUuidBody()], clone, lambda _: {"uuid": raw}
        )
        return Response(items_envelope(KEY, results, started))
