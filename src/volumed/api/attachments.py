"""``PUT /v1/volumes[/{uuid}]/attach|detach``: parse, call the service per item, render."""

from __future__ import annotations

import time

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, Item, items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router
from volumed.api.volumes import each_item, path_ref, to_ref
from volumed.domain import errors, rules
from volumed.domain.attachments import AttachmentService
from volumed.domain.model import Ref

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


def _ids(body: bodies.AttachBody | bodies.DetachBody) -> Item:
    return {"uuid": body.uuid, "name": body.name}


def _volume_ref(body: bodies.AttachBody | bodies.DetachBody) -> Ref:
    return rules.check_ref(body.uuid, body.name)


class AttachmentHandlers:
    def __init__(self, service: AttachmentService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("PUT", "/v1/volumes/attach", self.attach_many)
        router.add("PUT", "/v1/volumes/{uuid}/attach", self.attach_one)
        router.add("PUT", "/v1/volumes/detach", self.detach_many)
        router.add("PUT", "/v1/volumes/{uuid}/detach", self.detach_one)

    async def attach_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        items = bodies.parse_items(request.body, bodies.AttachBody)

        async def attach(body: bodies.AttachBody) -> AnyItem:
            volume = await self._service.attach(
                user, _volume_ref(body), _attach_to(body.attach_to), body.at, body.readonly
            )
            return views.volume_ref(volume)

        results = await each_item(items, attach, _ids)
        return Response(items_envelope(KEY, results, started))

    async def attach_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        body = bodies.parse_object(request.body, bodies.AttachByUuidBody)
        raw = request.path_params["uuid"]

        async def attach(_: object) -> AnyItem:
            volume = await self._service.attach(
                user, path_ref(request), _attach_to(body.attach_to), body.at, body.readonly
            )
            return views.volume_ref(volume)

        results = await each_item([None], attach, lambda _: {"uuid": raw})
        return Response(items_envelope(KEY, results, started))

    async def detach_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        items = bodies.parse_items(request.body, bodies.DetachBody)

        async def detach(body: bodies.DetachBody) -> AnyItem:
            volume = await self._service.detach(user, _volume_ref(body), instance_ref(body.from_))
            return views.volume_ref(volume)

        results = await each_item(items, detach, _ids)
        return Response(items_envelope(KEY, results, started))

    async def detach_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        # The seed's curl sends no body at all; the SDK sends {} or {"from": …}.
        body = bodies.parse_object(request.body, bodies.DetachByUuidBody)
        raw = request.path_params["uuid"]

        async def detach(_: object) -> AnyItem:
            volume = await self._service.detach(user, path_ref(request), instance_ref(body.from_))
            return views.volume_ref(volume)

        results = await each_item([None], detach, lambda _: {"uuid": raw})
        return Response(items_envelope(KEY, results, started))
