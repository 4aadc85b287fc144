"""``POST /v1/volumes/clone`` and ``POST /v1/volumes/{uuid}/clone``: each item answers
with the new volume once it is copied (``available``, or ``error`` with the reason), or
as it is when the wait's bound runs out."""

from __future__ import annotations

from collections.abc import Sequence

from volumed.api import bodies
from volumed.api.http import Request
from volumed.api.items import each_named, on_path
from volumed.api.routing import Router
from volumed.domain.clones import CloneService, CloneVolume
from volumed.domain.model import Ref, User, Volume

__all__ = ["CloneHandlers"]

KEY = "volumes"


def _request(body: bodies.CloneByUuidBody) -> CloneVolume:
    return CloneVolume(
        vol_name=body.vol_name,
        quota_policy=body.quota_policy,
        tags=body.tags,
        access_mode=body.access_mode,
    )


def _options(request: Request) -> list[bodies.CloneByUuidBody]:
    # No body (or {}) clones with the source's settings.
    items = bodies.parse_items(request.body, bodies.CloneByUuidBody, required=False)
    return items or [bodies.CloneByUuidBody()]


class CloneHandlers:
    def __init__(self, service: CloneService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/volumes/clone", self.clone_many)
        router.add("POST", "/v1/volumes/{uuid}/clone", self.clone_one)

    async def _clone(self, user: User, ref: Ref, body: bodies.CloneByUuidBody) -> Volume:
        return await self._service.clone(user, ref, _request(body))

    async def _settled(self, user: User, made: Sequence[Volume]) -> Sequence[Volume]:
        return await self._service.settled(user, made)

    clone_many = each_named(KEY, bodies.CloneBody, settle=_settled)(_clone)
    clone_one = on_path(KEY, _options, settle=_settled)(_clone)
