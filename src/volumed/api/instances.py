"""``/v1/instances`` handlers: parse the body and query, call the service per item, render.

Same envelope and rules as the volume handlers, under the key ``instances``.
"""

from __future__ import annotations

import asyncio
import math
import time

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, Item, failed_item, items_envelope
from volumed.api.http import Request, RequestError, query_bool
from volumed.api.items import each, each_item, each_named, named_ids, on_path, path_ref, to_ref
from volumed.api.listing import GET_PARAMS, details_only, named, parse_list_query
from volumed.api.routing import Response, Router
from volumed.domain import errors
from volumed.domain.instances import (
    CreateInstance,
    InstanceService,
    InstanceVolumeSpec,
    Transition,
)
from volumed.domain.model import Ref, User
from volumed.domain.states import InstanceState

KEY = "instances"
TIMED_OUT = "Operation timed out"
_WAIT_PARAMS = frozenset({"uuid", "name", "state", "timeout_s", "timeout_ms"})
_DEFAULT_WAIT_STATE = InstanceState.RUNNING.value


def _new_ids(body: bodies.CreateInstanceBody) -> Item:
    return {"name": body.name or None}


def _to_create(body: bodies.CreateInstanceBody) -> CreateInstance:
    unsupported = body.unsupported()
    if unsupported:
        raise errors.NotSupported(f"volumed does not support {', '.join(unsupported)}")
    if body.replicas:
        raise errors.NotSupported("volumed does not create replicas")
    if body.restart_policy not in (None, "never"):
        raise errors.NotSupported("volumed instances only have restart_policy 'never'")
    if body.features:
        raise errors.NotSupported(f"volumed does not support features {body.features}")
    image = body.image.url if isinstance(body.image, bodies.ImageBody) else body.image
    return CreateInstance(
        image=image,
        name=body.name,
        memory_mb=body.memory_mb,
        vcpus=body.vcpus,
        args=body.args,
        env=body.env,
        tags=body.tags,
        autostart=bool(body.autostart),
        volumes=[
            InstanceVolumeSpec(
                at=v.at,
                uuid=v.uuid,
                name=v.name,
                size_mb=v.size_mb,
                readonly=v.readonly,
                host_path=v.host_path,
                quota_policy=v.quota_policy,
                access_mode=v.access_mode,
                filesystem=v.filesystem,
                tags=v.tags,
            )
            for v in body.volumes or []
        ],
    )


def _timeout_s(timeout_s: int | None, timeout_ms: int | None) -> float | None:
    """``timeout_s`` wins; ``timeout_ms`` is rounded up to whole seconds, as documented."""
    if timeout_s is not None:
        return float(timeout_s)
    if timeout_ms is not None:
        return float(timeout_ms if timeout_ms < 0 else math.ceil(timeout_ms / 1000))
    return None


class InstanceHandlers:
    def __init__(self, service: InstanceService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("POST", "/v1/instances", self.create)
        router.add("GET", "/v1/instances", self.get_many)
        router.add("DELETE", "/v1/instances", self.delete_many)
        router.add("PUT", "/v1/instances/start", self.start_many)
        router.add("PUT", "/v1/instances/stop", self.stop_many)
        router.add("GET PUT", "/v1/instances/wait", self.wait_many)
        router.add("GET", "/v1/instances/{uuid}", self.get_one)
        router.add("DELETE", "/v1/instances/{uuid}", self.delete_one)
        router.add("PUT", "/v1/instances/{uuid}/start", self.start_one)
        router.add("PUT", "/v1/instances/{uuid}/stop", self.stop_one)
        router.add("GET PUT", "/v1/instances/{uuid}/wait", self.wait_one)

    # ------------------------------------------------------------------ create

    @each(KEY, bodies.CreateInstanceBody, ids=_new_ids)
    async def create(self, user: User, body: bodies.CreateInstanceBody) -> AnyItem:
        done = await self._service.create(user, _to_create(body))
        return views.instance_item(done.instance, message=done.message or None)

    # ------------------------------------------------------------------ get

    async def get_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(GET_PARAMS)
        details = query_bool(values, "details") is not False
        refs = named(request, values)
        if not refs:
            instances = await self._service.list_instances(user, parse_list_query(values))
            listed = [views.instance_item(i, details=details) for i in instances]
            return Response(items_envelope(KEY, listed, started))

        async def get_one(body: bodies.RefBody) -> AnyItem:
            instance = await self._service.get(user, to_ref(body, "instance"))
            return views.instance_item(instance, details=details)

        results = await each_item(refs, get_one, named_ids)
        return Response(items_envelope(KEY, results, started))

    @on_path(KEY, details_only)
    async def get_one(self, user: User, ref: Ref, details: bool) -> AnyItem:
        return views.instance_item(await self._service.get(user, ref), details=details)

    # ------------------------------------------------------------------ start / stop / delete

    async def _start(self, user: User, ref: Ref, body: bodies.StartByUuidBody) -> AnyItem:
        done = await self._service.start(user, ref)
        return views.instance_transition(done.instance, done.previous)

    start_many = each_named(KEY, bodies.StartInstanceBody, kind="instance")(_start)
    start_one = on_path(KEY, bodies.StartByUuidBody)(_start)

    async def _stop(self, user: User, ref: Ref, body: bodies.StopByUuidBody) -> AnyItem:
        if body.drain_timeout_ms is not None and body.drain_timeout_ms < 0:
            raise errors.Invalid("drain_timeout_ms must not be negative")
        done = await self._service.stop(
            user, ref, force=bool(body.force), drain_timeout_ms=body.drain_timeout_ms
        )
        return views.instance_transition(done.instance, done.previous)

    stop_many = each_named(KEY, bodies.StopInstanceBody, kind="instance")(_stop)
    stop_one = on_path(KEY, bodies.StopByUuidBody)(_stop)

    async def _delete(self, user: User, ref: Ref, body: bodies.DeleteInstanceByUuidBody) -> AnyItem:
        done: Transition = await self._service.delete(user, ref)
        return views.instance_deleted(done.instance, done.previous)

    delete_many = each_named(KEY, bodies.DeleteInstanceBody, kind="instance")(_delete)
    delete_one = on_path(KEY, bodies.DeleteInstanceByUuidBody)(_delete)

    # ------------------------------------------------------------------ wait

    async def wait_many(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_WAIT_PARAMS)
        items = _query_wait_items(values)
        items += bodies.parse_items(request.body, bodies.WaitInstanceBody, required=False)
        if not items:
            raise RequestError(400, "Name the instances to wait for (uuid or name)")
        if len(items) > bodies.MAX_ITEMS:
            raise RequestError(400, f"Too many items: at most {bodies.MAX_ITEMS}")

        async def one(body: bodies.WaitInstanceBody) -> AnyItem:
            try:
                ref = to_ref(body, "instance")
            except errors.VolumedError as exc:
                return failed_item(exc.code, exc.message, **named_ids(body))
            return await self._wait(user, ref, body, named_ids(body))

        # Concurrently: a request waits as long as its slowest item, not their sum.
        results = list(await asyncio.gather(*(one(item) for item in items)))
        return Response(_wait_envelope(results, started))

    async def wait_one(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        values = request.query_values(_WAIT_PARAMS - {"uuid", "name"})
        body = bodies.parse_object(request.body, bodies.WaitByUuidBody)
        query = _query_wait_items({"uuid": [request.path_params["uuid"]], **values})[0]
        merged = bodies.WaitInstanceBody(
            state=body.state or query.state,
            timeout_s=body.timeout_s if body.timeout_s is not None else query.timeout_s,
            timeout_ms=body.timeout_ms if body.timeout_ms is not None else query.timeout_ms,
        )
        raw = request.path_params["uuid"]
        try:
            ref = path_ref(request)
        except errors.VolumedError as exc:
            return Response(_wait_envelope([failed_item(exc.code, exc.message, uuid=raw)], started))
        result = await self._wait(user, ref, merged, {"uuid": raw})
        return Response(_wait_envelope([result], started))

    async def _wait(self, user: User, ref: Ref, body: bodies.WaitByUuidBody, ids: Item) -> AnyItem:
        state = body.state or _DEFAULT_WAIT_STATE
        try:
            instance = await self._service.wait(
                user, ref, state, _timeout_s(body.timeout_s, body.timeout_ms)
            )
        except errors.TimedOut as exc:
            item = failed_item(exc.code, exc.message, **ids)
            item["state"] = exc.state
            return item
        except errors.VolumedError as exc:
            return failed_item(exc.code, exc.message, **ids)
        if instance is None:
            return {"status": "success", **{k: v for k, v in ids.items() if v}, "state": state}
        return views.instance_waited(instance)


def _query_wait_items(values: dict[str, list[str]]) -> list[bodies.WaitInstanceBody]:
    """Wait items named in the query: ``state``/``timeout_*`` pair with the identifiers
    by position, or a single value applies to all."""
    refs = [("uuid", u) for u in values.get("uuid", [])] + [
        ("name", n) for n in values.get("name", [])
    ]

    def pick(key: str, index: int) -> str | None:
        found = values.get(key, [])
        if not found:
            return None
        return found[index] if index < len(found) else found[-1]

    items = []
    for index, (kind, value) in enumerate(refs):
        timeout_s = pick("timeout_s", index)
        timeout_ms = pick("timeout_ms", index)
        items.append(
            bodies.WaitInstanceBody(
                uuid=value if kind == "uuid" else None,
                name=value if kind == "name" else None,
                state=pick("state", index),
                timeout_s=_query_number("timeout_s", timeout_s),
                timeout_ms=_query_number("timeout_ms", timeout_ms),
            )
        )
    return items


def _query_number(key: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise RequestError(400, f"Query parameter '{key}' must be an integer") from None


def _wait_envelope(items: list[AnyItem], started: int) -> bytes:
    """As any envelope, but a lapsed wait says so: clients look for "timed out"."""
    if any(isinstance(i, dict) and i.get("error") == errors.TimedOut.code for i in items):
        return items_envelope(KEY, items, started, message=TIMED_OUT)
    return items_envelope(KEY, items, started)
