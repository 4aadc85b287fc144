"""``/v1/volumes`` handlers: parse the body and query, call the service per item, render."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from volumed.api import bodies, views
from volumed.api.envelope import (
    AnyItem,
    Item,
    failed_item,
    items_envelope,
    streamed_items_envelope,
)
from volumed.api.http import Request, RequestError, query_bool, query_int
from volumed.api.routing import Response, Router
from volumed.domain import errors, rules
from volumed.domain.listing import Page
from volumed.domain.model import Ref, Volume
from volumed.domain.states import VolumeState
from volumed.domain.values import ListQuery
from volumed.domain.volumes import CreateVolume, VolumeService

KEY = "volumes"
_GET_PARAMS = frozenset({"uuid", "name", "details", "count", "from", "order", "sortby", "tags"})
_LIST_PARAMS = frozenset({"persistent", "state"})


async def each_item(
    values: list[Any], action: Callable[[Any], Awaitable[AnyItem]], ids: Callable[[Any], Item]
) -> list[AnyItem]:
    """Run ``action`` per item; a domain error becomes that item's failure."""
    results: list[AnyItem] = []
    for value in values:
        try:
            results.append(await action(value))
        except errors.VolumedError as exc:
            results.append(failed_item(exc.code, exc.message, **ids(value)))
    return results


async def each_new_volume(
    values: list[Any],
    action: Callable[[Any], Awaitable[Volume]],
    ids: Callable[[Any], Item],
    settled: Callable[[Sequence[Volume]], Awaitable[Sequence[Volume]]],
) -> list[AnyItem]:
    """Run ``action`` per item, each recording a new volume with its job, then wait for
    all those jobs at once (the worker runs them in parallel) and render every new
    volume in the state it has then."""
    outcomes: list[Volume | Item] = []
    for value in values:
        try:
            outcomes.append(await action(value))
        except errors.VolumedError as exc:
            outcomes.append(failed_item(exc.code, exc.message, **ids(value)))
    fresh = iter(await settled([o for o in outcomes if isinstance(o, Volume)]))
    return [views.volume_created(next(fresh)) if isinstance(o, Volume) else o for o in outcomes]


def ref_ids(body: bodies.RefBody) -> Item:
    return {"uuid": body.uuid, "name": body.name}


def to_ref(body: bodies.RefBody, kind: str = "volume") -> Ref:
    return rules.check_ref(body.uuid, body.name, kind)


def path_ref(request: Request) -> Ref:
    return Ref(uuid=rules.canonical_uuid(request.path_params["uuid"]))


def parse_list_query(values: dict[str, list[str]], *, templates: bool = False) -> ListQuery:
    order = values.get("order", ["asc"])[-1]
    if order not in ("asc", "desc"):
        raise RequestError(400, "Query parameter 'order' must be asc or desc")
    sortby = values.get("sortby", ["create_time"])[-1]
    if sortby != "create_time":
        raise RequestError(400, "Query parameter 'sortby' must be create_time")
    tags = tuple(t for raw in values.get("tags", []) for t in raw.split(",") if t)
    from_uuid = from_time = None
    if "from" in values:
        start = values["from"][-1]
        if rules.looks_like_uuid(start):
            from_uuid = rules.canonical_uuid(start)
        else:
            from_time = _parse_time(start)
    return ListQuery(
        templates=templates,
        tags=tags,
        from_uuid=from_uuid,
        from_time_us=from_time,
        count=query_int(values, "count") or 0,
        descending=order == "desc",
    )


def _parse_time(value: str) -> int:
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(
            400, "Query parameter 'from' must be a volume UUID or an RFC 3339 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000)


class VolumeHandlers:
    def __init__(self, service: VolumeService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/volumes", self.create)
        router.add("GET", "/v1/volumes", self.get_many)
        router.add("DELETE", "/v1/volumes", self.delete_many)
        router.add("GET", "/v1/volumes/list", self.list_legacy)
        router.add("GET", "/v1/volumes/{uuid}", self.get_one)
        router.add("DELETE", "/v1/volumes/{uuid}", self.delete_one)

    # ------------------------------------------------------------------ create

    async def create(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        items = bodies.parse_items(request.body, bodies.CreateVolumeBody)

        async def create_one(body: bodies.CreateVolumeBody) -> Volume:
            template = to_ref(body.template, "template") if body.template is not None else None
            return await self._service.create(
                user,
                CreateVolume(
                    name=body.name,
                    size_mb=body.size_mb,
                    quota_policy=body.quota_policy,
                    access_mode=body.access_mode,
                    filesystem=body.filesystem,
                    tags=body.tags,
                    template=template,
                    host_path=body.host_path,
                ),
            )

        results = await each_new_volume(
            items,
            create_one,
            lambda b: {"name": b.name or None},
            lambda made: self._service.settled(user, made),
        )
        return Response(items_envelope(KEY, results, started))

    # ------------------------------------------------------------------ get

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_GET_PARAMS)
        details = query_bool(values, "details")
        details = True if details is None else details
        refs: list[bodies.RefBody] = [bodies.RefBody(uuid=u) for u in values.get("uuid", [])]
        refs += [bodies.RefBody(name=n) for n in values.get("name", [])]
        if len(refs) > bodies.MAX_ITEMS:
            raise RequestError(400, f"Too many query identifiers: at most {bodies.MAX_ITEMS}")
        refs += bodies.parse_items(request.body, bodies.RefBody, required=False)
        if not refs:
            query = parse_list_query(values)
            if not query.count:
                pages = self._service.pages(user, query, _STREAM_PAGE)
                return await whole_listing(KEY, pages, details, started)
            page = await self._service.page(user, query)
            results = views.page_items(page, details=details)
            return Response(items_envelope(KEY, results, started))

        async def get_one(body: bodies.RefBody) -> AnyItem:
            volume = await self._service.get(user, to_ref(body))
            return views.volume_item(volume, details=details)

        results = await each_item(refs, get_one, ref_ids)
        return Response(items_envelope(KEY, results, started))

    async def get_one(self, request: Request) -> Response:
        # The most frequent request of all: no per-item machinery on its path.
        started = time.perf_counter_ns()
        user = request.tenant()
        details = True
        if request.raw_query:
            values = request.query_values(frozenset({"details"}))
            details = query_bool(values, "details") is not False
        _no_identifiers_in_body(request)
        item: AnyItem
        try:
            volume = await self._service.get(user, path_ref(request))
            item = views.volume_item(volume, details=details)
        except errors.VolumedError as exc:
            item = failed_item(exc.code, exc.message, uuid=request.path_params["uuid"])
        return Response(items_envelope(KEY, [item], started))

    async def list_legacy(self, request: Request) -> Response:
        """The seed's ``/v1/volumes/list``: filters from the query or a JSON body."""
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_LIST_PARAMS)
        body = bodies.parse_object(request.body, bodies.ListFilterBody)
        persistent = query_bool(values, "persistent")
        if persistent is None:
            persistent = body.persistent
        state = values["state"][-1] if "state" in values else body.state
        states: tuple[VolumeState, ...] = ()
        if state is not None:
            try:
                states = (VolumeState(state),)
            except ValueError:
                raise RequestError(400, f"Unknown volume state '{state[:64]}'") from None
        query = ListQuery(persistent=persistent, states=states)
        volumes = await self._service.list(user, query)
        # The seed lists bare {uuid, name} items, without a per-item status.
        results: list[AnyItem] = [views.volume_entry(v) for v in volumes]
        return Response(items_envelope(KEY, results, started))

    # ------------------------------------------------------------------ delete

    async def delete_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        refs = bodies.parse_items(request.body, bodies.RefBody)

        async def delete(body: bodies.RefBody) -> AnyItem:
            return views.volume_ref(await self._service.delete(user, to_ref(body)))

        results = await each_item(refs, delete, ref_ids)
        return Response(items_envelope(KEY, results, started))

    async def delete_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        _no_identifiers_in_body(request)
        raw = request.path_params["uuid"]

        async def delete(_: object) -> AnyItem:
            return views.volume_ref(await self._service.delete(user, path_ref(request)))

        results = await each_item([None], delete, lambda _: {"uuid": raw})
        return Response(items_envelope(KEY, results, started))


_STREAM_PAGE = 1000
"""Volumes a listing without ``count`` reads and sends at a time."""


async def whole_listing(
    key: str, pages: AsyncIterator[Page], details: bool, started_ns: int
) -> Response:
    """A listing without ``count``, streamed page by page: its memory stays that of one
    page whatever the tenant holds (100,000 volumes once peaked at 225 MiB). The first
    page is read before the answer starts, so a store that is down still gets its 503."""
    first = await anext(pages)

    async def items() -> AsyncIterator[list[AnyItem]]:
        yield views.page_items(first, details=details)
        async for page in pages:
            yield views.page_items(page, details=details)

    return Response(stream=streamed_items_envelope(key, items(), started_ns))


def _no_identifiers_in_body(request: Request) -> None:
    """Local scope takes its identifier from the path; a body may not name another."""
    if request.body.strip():
        body = bodies.parse_object(request.body, bodies.Body)
        del body
