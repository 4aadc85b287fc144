"""``/v1/volumes/templates[/{uuid}]``: make templates, and get, list, delete and update
them like volumes. New volumes are made from a template by ``POST /v1/volumes`` with
``template`` (see :mod:`volumed.domain.clones`)."""

from __future__ import annotations

import time

import msgspec

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, items_envelope
from volumed.api.http import Request, RequestError, query_bool
from volumed.api.items import each_item, each_named, named_ids, on_path, to_ref
from volumed.api.listing import GET_PARAMS, details_only, named, parse_list_query
from volumed.api.routing import Response, Router
from volumed.api.updates import ChangeBody, apply_change, changes, echo_id
from volumed.domain.model import Ref, User
from volumed.domain.templates import TemplateService
from volumed.domain.updates import UpdateService

__all__ = ["TemplateHandlers", "parse_template_refs"]

KEY = "volumes"


def parse_template_refs(request: Request) -> list[bodies.RefBody]:
    """The three shapes clients send: ``[{uuid|name}, …]`` (the SDK), ``{ids: [...]}``
    (the 2025 OpenAPI spec) and ``{uuid|name}`` (the product docs)."""
    body = request.body
    if body.strip():
        value = bodies.decode(body, msgspec.json.decode)
        if isinstance(value, dict) and "ids" in value:
            try:
                refs = msgspec.convert(value, bodies.TemplateIdsBody).ids
            except msgspec.ValidationError as exc:
                raise RequestError(400, f"Invalid request body: {exc}") from None
            if len(refs) > bodies.MAX_ITEMS:
                raise RequestError(400, f"Too many items: at most {bodies.MAX_ITEMS}")
            return refs
    return bodies.parse_items(body, bodies.RefBody)


class TemplateHandlers:
    def __init__(self, templates: TemplateService, updates: UpdateService) -> None:
        self._templates = templates
        self._updates = updates

    def register(self, router: Router) -> None:
        base = "/v1/volumes/templates"
        router.add("POST", base, self.make)
        router.add("GET", base, self.get_many)
        router.add("DELETE", base, self.delete_many)
        router.add("PATCH", base, self.update_many)
        router.add("GET", base + "/{uuid}", self.get_one)
        router.add("DELETE", base + "/{uuid}", self.delete_one)
        router.add("PATCH", base + "/{uuid}", self.update_one)

    @each_named(KEY, parse_template_refs)
    async def make(self, user: User, ref: Ref, body: bodies.RefBody) -> AnyItem:
        return views.volume_created(await self._templates.make(user, ref))

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(GET_PARAMS)
        details = query_bool(values, "details") is not False
        refs = named(request, values)
        if not refs:
            query = parse_list_query(values, templates=True)
            results = views.page_items(await self._templates.page(user, query), details=details)
            return Response(items_envelope(KEY, results, started))

        async def get(body: bodies.RefBody) -> AnyItem:
            template = await self._templates.get(user, to_ref(body, "template"))
            return views.volume_item(template, details=details)

        results = await each_item(refs, get, named_ids)
        return Response(items_envelope(KEY, results, started))

    @on_path(KEY, details_only)
    async def get_one(self, user: User, ref: Ref, details: bool) -> AnyItem:
        return views.volume_item(await self._templates.get(user, ref), details=details)

    async def _delete(self, user: User, ref: Ref, body: bodies.Body) -> AnyItem:
        return views.volume_ref(await self._templates.delete(user, ref))

    delete_many = each_named(KEY, bodies.RefBody, kind="template")(_delete)
    delete_one = on_path(KEY, bodies.Body)(_delete)

    async def _update(self, user: User, ref: Ref, body: ChangeBody) -> AnyItem:
        return await apply_change(self._updates, user, ref, body, template=True)

    update_many = each_named(KEY, bodies.UpdateTemplateBody, kind="template", echo=echo_id)(_update)
    update_one = on_path(KEY, changes(bodies.UpdateTemplateByUuidBody), echo=echo_id)(_update)
