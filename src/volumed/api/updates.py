"""``PATCH /v1/volumes`` and ``PATCH /v1/volumes/{uuid}``: one property change per item.

Items are applied in order, so ``[{size_mb}, {tags}]`` for one volume (what the SDK's
``update(size_mb=…, tags=…)`` sends) grows it, then tags it. Every result item echoes
the request item's ``id``.
"""

from __future__ import annotations

from collections.abc import Callable

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, Item
from volumed.api.http import Request
from volumed.api.items import each_named, on_path
from volumed.api.routing import Router
from volumed.domain.model import Ref, User
from volumed.domain.updates import Change, UpdateService

__all__ = ["UpdateHandlers", "apply_change", "changes", "echo_id"]

KEY = "volumes"

ChangeBody = bodies.UpdateByUuidBody | bodies.UpdateTemplateByUuidBody


def echo_id(body: ChangeBody) -> Item:
    return {"id": body.id}


def changes(kind: type[ChangeBody]) -> Callable[[Request], list[ChangeBody]]:
    """A local-scope PATCH (``/{uuid}``) takes one change, or an array of them."""

    def parse(request: Request) -> list[ChangeBody]:
        return list(bodies.parse_items(request.body, kind))

    return parse


async def apply_change(
    service: UpdateService, user: User, ref: Ref, body: ChangeBody, *, template: bool
) -> AnyItem:
    volume = await service.apply(
        user, ref, Change(body.prop, body.op, body.value), template=template
    )
    return views.volume_updated(volume, body.id)


class UpdateHandlers:
    def __init__(self, service: UpdateService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("PATCH", "/v1/volumes", self.update_many)
        router.add("PATCH", "/v1/volumes/{uuid}", self.update_one)

    async def _update(self, user: User, ref: Ref, body: ChangeBody) -> AnyItem:
        return await apply_change(self._service, user, ref, body, template=False)

    update_many = each_named(KEY, bodies.UpdateBody, echo=echo_id)(_update)
    update_one = on_path(KEY, changes(bodies.UpdateByUuidBody), echo=echo_id)(_update)
