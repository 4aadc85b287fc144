"""``GET /v1/instances/log`` and ``GET /v1/instances/{uuid}/log``: console output.

Items name instances (body, or ``uuid``/``name`` in the query, with ``offset`` and
``limit`` pairing by position or applying to all). Each answer carries the bytes as
base64 ``output``, ``available`` (the bytes kept: ``start`` is the first, ``end`` one
past the newest, i.e. the number written so far) and ``range`` (what was returned, the
same way), so ``offset=range.end`` continues where an answer stopped. A negative
``offset`` counts from the end.
"""

from __future__ import annotations

import time

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, items_envelope
from volumed.api.http import Request, RequestError
from volumed.api.items import each_item, on_path
from volumed.api.routing import Response, Router
from volumed.domain import errors, rules
from volumed.domain.instances import InstanceService
from volumed.domain.model import Ref, User
from volumed.domain.values import ListQuery

__all__ = ["InstanceLogHandlers"]

KEY = "instances"
DEFAULT_LIMIT = 65_536
MAX_LIMIT = 4 * 1_048_576
_PARAMS = frozenset({"uuid", "name", "offset", "limit"})


def _window(request: Request) -> list[bodies.LogsByUuidBody]:
    """A local-scope request's ``offset`` and ``limit``: the body's, or the query's."""
    body = bodies.parse_object(request.body, bodies.LogsByUuidBody)
    query = _query_items({"uuid": ["-"], **request.query_values(_PARAMS - {"uuid", "name"})})[0]
    return [
        bodies.LogsByUuidBody(
            offset=body.offset if body.offset is not None else query.offset,
            limit=body.limit if body.limit is not None else query.limit,
        )
    ]


class InstanceLogHandlers:
    def __init__(self, service: InstanceService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/instances/log", self.get_many)
        router.add("GET", "/v1/instances/{uuid}/log", self.get_one)

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_PARAMS)
        items = _query_items(values)
        items += bodies.parse_items(request.body, bodies.LogsInstanceBody, required=False)
        if not items and not request.body.strip():
            # Nothing named, as GET /v1/instances lists them all: every instance's log
            # (each bounded by ``limit``), oldest instance first, up to MAX_ITEMS.
            items = await self._every_instance(user, values)
        elif not items:
            raise RequestError(400, "Name the instances whose logs to get (uuid or name)")
        if len(items) > bodies.MAX_ITEMS:
            raise RequestError(400, f"Too many items: at most {bodies.MAX_ITEMS}")

        async def one(body: bodies.LogsInstanceBody) -> AnyItem:
            ref = rules.check_ref(body.uuid, body.name, "instance")
            return await self._logs(user, ref, body.offset, body.limit)

        results = await each_item(items, one, lambda b: {"uuid": b.uuid, "name": b.name})
        return Response(items_envelope(KEY, results, started))

    async def _every_instance(
        self, user: User, values: dict[str, list[str]]
    ) -> list[bodies.LogsInstanceBody]:
        offsets = [_number("offset", v) for v in values.get("offset", [])]
        limits = [_number("limit", v) for v in values.get("limit", [])]
        listed = await self._service.list_instances(user, ListQuery(count=bodies.MAX_ITEMS))
        return [
            bodies.LogsInstanceBody(
                uuid=instance.uuid, offset=_pick(offsets, 0), limit=_pick(limits, 0)
            )
            for instance in listed
        ]

    @on_path(KEY, _window)
    async def get_one(self, user: User, ref: Ref, body: bodies.LogsByUuidBody) -> AnyItem:
        return await self._logs(user, ref, body.offset, body.limit)

    async def _logs(self, user: User, ref: Ref, offset: int | None, limit: int | None) -> AnyItem:
        if limit is not None and not 0 <= limit <= MAX_LIMIT:
            raise errors.Invalid(f"limit must be between 0 and {MAX_LIMIT}")
        instance = await self._service.get(user, ref)
        part = self._service.console(
            instance, offset or 0, DEFAULT_LIMIT if limit is None else limit
        )
        if part is None:
            data, start, first, end = b"", 0, 0, 0
        else:
            data, start, first, end = part.data, part.start, part.first, part.end
        return views.instance_log(instance, data, start, first, end)


def _query_items(values: dict[str, list[str]]) -> list[bodies.LogsInstanceBody]:
    refs = [("uuid", u) for u in values.get("uuid", [])] + [
        ("name", n) for n in values.get("name", [])
    ]
    offsets = [_number("offset", v) for v in values.get("offset", [])]
    limits = [_number("limit", v) for v in values.get("limit", [])]
    items = []
    for index, (key, value) in enumerate(refs):
        items.append(
            bodies.LogsInstanceBody(
                uuid=value if key == "uuid" else None,
                name=value if key == "name" else None,
                offset=_pick(offsets, index),
                limit=_pick(limits, index),
            )
        )
    return items


def _pick(values: list[int], index: int) -> int | None:
    if len(values) == 1:
        return values[0]
    return values[index] if index < len(values) else None


def _number(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise RequestError(400, f"{key} must be an integer") from None
