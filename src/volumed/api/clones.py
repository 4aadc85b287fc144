"""``POST /v1/volumes/clone`` and ``POST /v1/volumes/{uuid}/clone``: each item answers
with the new volume once it is copied (``available``, or ``error`` with the reason), or
as it is when the wait's bound runs out."""

from __future__ import annotations

import time

from volumed.api import bodies
from volumed.api.envelope import items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router
from volumed.api.volumes import KEY, each_new_volume, path_ref
from volumed.domain import rules
from volumed.domain.clones import CloneService, CloneVolume
from volumed.domain.model import Volume

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

        async def clone(body: bodies.CloneBody) -> Volume:
            ref = rules.check_ref(body.uuid, body.name)
            return await self._service.clone(user, ref, _request(body))

        results = await each_new_volume(
            items,
            clone,
            lambda b: {"uuid": b.uuid, "name": b.name},
            lambda made: self._service.settled(user, made),
        )
        return Response(items_envelope(KEY, results, started))

    async def clone_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        # No body (or {}) clones with the source's settings.
        items = bodies.parse_items(request.body, bodies.CloneByUuidBody, required=False)
        raw = request.path_params["uuid"]

        async def clone(body: bodies.CloneByUuidBody) -> Volume:
            return await self._service.clone(user, path_ref(request), _request(body))

        results = await each_new_volume(
            items or [bodies.CloneByUuidBody()],
            clone,
            lambda _: {"uuid": raw},
            lambda made: self._service.settled(user, made),
        )
        return Response(items_envelope(KEY, results, started))
