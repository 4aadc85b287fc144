"""``/v1/volumes`` handlers: parse the body and query, call the service per item, render."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from volumed.api import bodies, views
from volumed.api.envelope import (
    AnyItem,
    Item,
    failed_item,
    items_envelope,
    op_time_us,
    streamed_items_envelope,
)
from volumed.api.http import Request, RequestError, query_bool
from volumed.api.items import (
    answers,
    each,
    each_item,
    each_named,
    named_ids,
    on_path,
    path_ref,
    to_ref,
)
from volumed.api.listing import GET_PARAMS, named, parse_list_query
from volumed.api.routing import Response, Router
from volumed.domain import errors
from volumed.domain.listing import Page
from volumed.domain.model import Ref, User, Volume
from volumed.domain.states import VolumeState
from volumed.domain.values import ListQuery
from volumed.domain.volumes import CreateVolume, VolumeService

KEY = "volumes"
_LIST_PARAMS = frozenset({"persistent", "state"})


def new_ids(body: bodies.CreateVolumeBody) -> Item:
    return {"name": body.name or None}


class VolumeHandlers:
    def __init__(self, service: VolumeService) -> None:
        self._service = service
        self._answers: dict[tuple[str, str, bool], bytes] = {}
        """GET one's successful answers up to their ``op_time_us`` value, by (tenant,
        uuid as asked, details), made while the store's stamp was ``_answered_at``."""
        self._answered_at: bytes | None = None

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/volumes", self.create)
        router.add("GET", "/v1/volumes", self.get_many)
        router.add("DELETE", "/v1/volumes", self.delete_many)
        router.add("GET", "/v1/volumes/list", self.list_legacy)
        router.add("GET", "/v1/volumes/{uuid}", self.get_one)
        router.add("DELETE", "/v1/volumes/{uuid}", self.delete_one)

    async def _settled(self, user: User, made: Sequence[Volume]) -> Sequence[Volume]:
        return await self._service.settled(user, made)

    @each(KEY, bodies.CreateVolumeBody, ids=new_ids, settle=_settled)
    async def create(self, user: User, body: bodies.CreateVolumeBody) -> Volume:
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

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(GET_PARAMS)
        details = query_bool(values, "details") is not False
        refs = named(request, values)
        if not refs:
            query = parse_list_query(values)
            if not query.count:
                pages = self._service.pages(user, query, _STREAM_PAGE)
                return await whole_listing(KEY, pages, details, started)
            page = await self._service.page(user, query)
            results = views.page_items(page, details=details)
            return Response(items_envelope(KEY, results, started))

        async def get_one(body: bodies.RefBody) -> AnyItem:
            found = await self._service.get_row(user, to_ref(body))
            return views.stored_volume_item(found, details=details)

        found = await each_item(refs, get_one, named_ids)
        return Response(items_envelope(KEY, found, started))

    async def get_one(self, request: Request) -> Response:
        # The most frequent request of all: no per-item machinery on its path.
        started = time.perf_counter_ns()
        user = request.tenant()
        details = True
        if request.raw_query:
            values = request.query_values(frozenset({"details"}))
            details = query_bool(values, "details") is not False
        _no_identifiers_in_body(request)
        # Asked again while nothing was committed since (by anyone): the same answer, its
        # op_time_us apart. Reused only within one stamp, for the tenant it was made for.
        stamp = self._service.committed_stamp()
        key = (user.id, request.path_params["uuid"], details)
        if stamp is not None:
            if stamp == self._answered_at:
                kept = self._answers.get(key)
                if kept is not None:
                    return Response(b"%s%d}" % (kept, op_time_us(started)))
            else:
                self._answers.clear()
                self._answered_at = stamp
        item: AnyItem
        try:
            found = await self._service.get_row(user, path_ref(request))
            item = views.stored_volume_item(found, details=details)
        except errors.VolumedError as exc:
            item = failed_item(exc.code, exc.message, uuid=request.path_params["uuid"])
        body = items_envelope(KEY, [item], started)
        # The read saw the stamp's state or a later one: a later one changes the stamp,
        # and what was kept under this stamp is never answered again. A failed item is
        # not kept (its code must reach the access log and the metrics every time).
        if stamp is not None and stamp == self._answered_at and item.__class__ is not dict:
            if len(self._answers) >= _ANSWERS_KEPT:
                self._answers.clear()
            self._answers[key] = body[: body.rindex(b":") + 1]
        return Response(body)

    @answers(KEY)
    async def list_legacy(self, user: User, request: Request) -> list[AnyItem]:
        """The seed's ``/v1/volumes/list``: filters from the query or a JSON body."""
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
        return [views.volume_entry(v) for v in volumes]

    async def _delete(self, user: User, ref: Ref, body: bodies.Body) -> AnyItem:
        return views.volume_ref(await self._service.delete(user, ref))

    delete_many = each_named(KEY, bodies.RefBody)(_delete)
    delete_one = on_path(KEY, bodies.Body)(_delete)


_STREAM_PAGE = 1000
"""Volumes a listing without ``count`` reads and sends at a time."""
_ANSWERS_KEPT = 1024
"""GET one answers kept per stamp (~400 bytes each); past it, they are forgotten."""


async def whole_listing(
    key: str, pages: AsyncIterator[Page], details: bool, started_ns: int
) -> Response:
    """A listing without ``count``, streamed page by page: its memory stays that of one
    page whatever the tenant holds (100,000 volumes once peaked at 225 MiB). The first
    page is read before the answer starts, so a store that is down still gets its 503.
    A listing of one page (the second is known before any query: the first was not
    full) is sent at once, as a counted one is: the same bytes, in one message."""
    first = await anext(pages)
    second = await anext(pages, None)
    if second is None:
        return Response(items_envelope(key, views.page_items(first, details=details), started_ns))

    async def items() -> AsyncIterator[list[AnyItem]]:
        yield views.page_items(first, details=details)
        yield views.page_items(second, details=details)
        async for page in pages:
            yield views.page_items(page, details=details)

    return Response(stream=streamed_items_envelope(key, items(), started_ns))


def _no_identifiers_in_body(request: Request) -> None:
    """Local scope takes its identifier from the path; a body may not name another."""
    if request.body.strip():
        body = bodies.parse_object(request.body, bodies.Body)
        del body
