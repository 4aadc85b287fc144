"""``/v1/volumes/templates[/{uuid}]``: make templates, and get, list, delete and update
them like volumes. New volumes are made from a template by ``POST /v1/volumes`` with
``template`` (see :mod:`volumed.domain.clones`)."""

from __future__ import annotations

import time

import msgspec

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, items_envelope
from volumed.api.http import Request, RequestError, query_bool
from volumed.api.routing import Response, Router
from volumed.api.updates import update_global, update_local
from volumed.api.volumes import KEY, each_item, parse_list_query, path_ref, ref_ids, to_ref
from volumed.domain.templates import TemplateService
from volumed.domain.updates import UpdateService

__all__ = ["TemplateHandlers", "parse_template_refs"]

_GET_PARAMS = frozenset({"uuid", "name", "details", "count", "from", "order", "sortby", "tags"})


def parse_template_refs(body: bytes) -> list[bodies.RefBody]:
    """The three shapes clients send: ``[{uuid|name}, …]`` (the SDK), ``{ids: [...]}``
    (the 2025 OpenAPI spec) and ``{uuid|name}`` (the product docs)."""
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


def _no_identifiers_in_body(request: Request) -> None:
    """Local scope takes its identifier from the path; a body may not name another."""
    if request.body.strip():
        bodies.parse_object(request.body, bodies.Body)


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

    async def make(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        refs = parse_template_refs(request.body)

        async def make_one(body: bodies.RefBody) -> AnyItem:
            return views.volume_created(await self._templates.make(user, to_ref(body)))

        results = await each_item(refs, make_one, ref_ids)
        return Response(items_envelope(KEY, results, started))

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_GET_PARAMS)
        details = query_bool(values, "details") is not False
        refs = [bodies.RefBody(uuid=u) for u in values.get("uuid", [])]
        refs += [bodies.RefBody(name=n) for n in values.get("name", [])]
        if len(refs) > bodies.MAX_ITEMS:
            raise RequestError(400, f"Too many query identifiers: at most {bodies.MAX_ITEMS}")
        refs += bodies.parse_items(request.body, bodies.RefBody, required=False)
        if not refs:
            query = parse_list_query(values, templates=True)
            results = views.page_items(await self._templates.page(user, query), details=details)
            return Response(items_envelope(KEY, results, started))

        async def get(body: bodies.RefBody) -> AnyItem:
            template = await self._templates.get(user, to_ref(body, "template"))
            return views.volume_item(template, details=details)

        results = await each_item(refs, get, ref_ids)
        return Response(items_envelope(KEY, results, started))

    async def get_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        details = query_bool(request.query_values(frozenset({"details"})), "details")
        _no_identifiers_in_body(request)

        async def get(_: object) -> AnyItem:
            template = await self._templates.get(user, path_ref(request))
            return views.volume_item(template, details=details is not False)

        raw = request.path_params["uuid"]
        results = await each_item([None], get, lambda _: {"uuid": raw})
        return Response(items_envelope(KEY, results, started))

    async def delete_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        refs = bodies.parse_items(request.body, bodies.RefBody)

        async def delete(body: bodies.RefBody) -> AnyItem:
            template = await self._templates.delete(user, to_ref(body, "template"))
            return views.volume_ref(template)

        results = await each_item(refs, delete, ref_ids)
        return Response(items_envelope(KEY, results, started))

    async def delete_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        _no_identifiers_in_body(request)

        async def delete(_: object) -> AnyItem:
            return views.volume_ref(await self._templates.delete(user, path_ref(request)))

        raw = request.path_params["uuid"]
        results = await each_item([None], delete, lambda _: {"uuid": raw})
        return Response(items_envelope(KEY, results, started))

    async def update_many(self, request: Request) -> Response:
        return await update_global(request, self._updates, bodies.UpdateTemplateBody, template=True)

    async def update_one(self, request: Request) -> Response:
        return await update_local(
            request, self._updates, bodies.UpdateTemplateByUuidBody, template=True
        )
