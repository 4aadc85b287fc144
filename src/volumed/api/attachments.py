"""``PUT /v1/volumes[/{uuid}]/attach|detach``: parse, call the service per item, render."""

from __future__ import annotations

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem
from volumed.api.items import each_named, on_path, to_ref
from volumed.api.routing import Router
from volumed.domain import errors, rules
from volumed.domain.attachments import AttachmentService
from volumed.domain.model import Ref, User

KEY = "volumes"


def instance_ref(value: bodies.RefBody | str | None) -> Ref | None:
    """``attach_to``/``from`` as an object, or as the bare string legacy clients sent (a
    UUID, or failing that a name)."""
    if value is None:
        return None
    if isinstance(value, str):
        if rules.looks_like_uuid(value):
            return Ref(uuid=rules.canonical_uuid(value))
        return Ref(name=value)
    return to_ref(value, "instance")


def _attach_to(value: bodies.RefBody | str | None) -> Ref:
    ref = instance_ref(value)
    if ref is None:
        raise errors.MissingId("The instance to attach to ('attach_to') is missing")
    return ref


class AttachmentHandlers:
    def __init__(self, service: AttachmentService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("PUT", "/v1/volumes/attach", self.attach_many)
        router.add("PUT", "/v1/volumes/{uuid}/attach", self.attach_one)
        router.add("PUT", "/v1/volumes/detach", self.detach_many)
        router.add("PUT", "/v1/volumes/{uuid}/detach", self.detach_one)

    async def _attach(self, user: User, ref: Ref, body: bodies.AttachByUuidBody) -> AnyItem:
        volume = await self._service.attach(
            user, ref, _attach_to(body.attach_to), body.at, body.readonly
        )
        return views.volume_ref(volume)

    attach_many = each_named(KEY, bodies.AttachBody)(_attach)
    attach_one = on_path(KEY, bodies.AttachByUuidBody)(_attach)

    async def _detach(self, user: User, ref: Ref, body: bodies.DetachByUuidBody) -> AnyItem:
        volume = await self._service.detach(user, ref, instance_ref(body.from_))
        return views.volume_ref(volume)

    detach_many = each_named(KEY, bodies.DetachBody)(_detach)
    # The seed's curl sends no body at all; the SDK sends {} or {"from": …}.
    detach_one = on_path(KEY, bodies.DetachByUuidBody)(_detach)
