"""One request, many items: the skeleton the handlers share.

A KraftCloud handler takes one item or an array of them, each naming what it acts on
(global scope), or acts on what its path names (local scope, ``/{uuid}/…``); it runs its
action item by item, a domain error failing only its own item, and answers the envelope
of api-reference §3 with ``op_time_us`` counted from its start. The decorators here own
that skeleton (the clock, the tenant, the parse, the loop, the envelope), so a handler
says only what is its own: what it parses, and what one item does.

* :func:`each`: the body's items (creates: nothing named yet);
* :func:`each_named`: the body's items, each naming a volume (or an instance) by
  ``uuid`` or ``name``;
* :func:`on_path`: the path's volume (or instance), with the body's options.

The action is a method taking the tenant, the item's :class:`Ref` (not for :func:`each`)
and the parsed body. It answers a wire item, or, with ``settle``, a new volume: the
request then waits for all its new volumes at once (the worker formats or copies them
in parallel) and answers each in the state it has then.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar

from volumed.api import bodies, views
from volumed.api.envelope import AnyItem, Item, failed_item, items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response
from volumed.domain import errors, rules
from volumed.domain.model import Ref, User, Volume

__all__ = [
    "Named",
    "each",
    "each_item",
    "each_named",
    "named_ids",
    "on_path",
    "path_ref",
    "to_ref",
]


class Named(Protocol):
    """A request item that names a volume or an instance."""

    @property
    def uuid(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...


S = TypeVar("S")
"""The handler object whose method is decorated."""
B = TypeVar("B")
"""One item as parsed."""
N = TypeVar("N", bound=Named)

Outcome = AnyItem | Volume
"""What an action answers: a wire item, or a new volume to settle."""
Method = Callable[[S, Request], Awaitable[Response]]
Settle = Callable[[S, User, Sequence[Volume]], Awaitable[Sequence[Volume]]]
Parse = type[B] | Callable[[Request], list[B]]
"""A body type (an object, or an array of them where the scope takes several), or a
function reading the request's items itself."""
_Unit = tuple[Item, Callable[[], Awaitable[Outcome]]]
"""One item: what its failure echoes, and its action."""
_Settled = Callable[[Sequence[Volume]], Awaitable[Sequence[Volume]]]


def named_ids(body: Named) -> Item:
    return {"uuid": body.uuid, "name": body.name}


def to_ref(body: Named, kind: str = "volume") -> Ref:
    return rules.check_ref(body.uuid, body.name, kind)


def path_ref(request: Request) -> Ref:
    return Ref(uuid=rules.canonical_uuid(request.path_params["uuid"]))


def _no_echo(body: object) -> Item:
    return {}


def each(
    key: str,
    parse: Parse[B],
    *,
    ids: Callable[[B], Item],
    settle: Settle[S] | None = None,
) -> Callable[[Callable[[S, User, B], Awaitable[Outcome]]], Method[S]]:
    """A global-scope handler whose items name nothing yet: ``action(tenant, item)``;
    a failed item echoes ``ids(item)``."""

    def decorate(action: Callable[[S, User, B], Awaitable[Outcome]]) -> Method[S]:
        async def handler(self: S, request: Request) -> Response:
            started = time.perf_counter_ns()
            user = request.tenant()
            units = [(ids(b), partial(action, self, user, b)) for b in _items(parse, request)]
            return await _answer(key, started, units, _bound(settle, self, user))

        return handler

    return decorate


def each_named(
    key: str,
    parse: Parse[N],
    *,
    kind: str = "volume",
    echo: Callable[[N], Item] = _no_echo,
    settle: Settle[S] | None = None,
) -> Callable[[Callable[[S, User, Ref, N], Awaitable[Outcome]]], Method[S]]:
    """A global-scope handler whose items name a ``kind`` by ``uuid`` or ``name``:
    ``action(tenant, ref, item)``; a failed item echoes its names and ``echo(item)``."""

    def decorate(action: Callable[[S, User, Ref, N], Awaitable[Outcome]]) -> Method[S]:
        async def named(self: S, user: User, body: N) -> Outcome:
            return await action(self, user, to_ref(body, kind), body)

        return each(key, parse, ids=lambda b: named_ids(b) | echo(b), settle=settle)(named)

    return decorate


def on_path(
    key: str,
    parse: Parse[B],
    *,
    echo: Callable[[B], Item] = _no_echo,
    settle: Settle[S] | None = None,
) -> Callable[[Callable[[S, User, Ref, B], Awaitable[Outcome]]], Method[S]]:
    """A local-scope handler (``/{uuid}/…``): ``action(tenant, ref, body)`` on the path's
    UUID, with a body object of type ``parse`` (``bodies.Body`` where it takes no options:
    it may not name another); a failed item echoes the path's UUID and ``echo(body)``."""

    def decorate(action: Callable[[S, User, Ref, B], Awaitable[Outcome]]) -> Method[S]:
        async def handler(self: S, request: Request) -> Response:
            started = time.perf_counter_ns()
            user = request.tenant()
            if isinstance(parse, type):
                items = [bodies.parse_object(request.body, parse)]
            else:
                items = parse(request)
            raw = request.path_params["uuid"]

            async def run(body: B) -> Outcome:
                # Inside the item: an ill-formed UUID fails the item, not the request.
                return await action(self, user, path_ref(request), body)

            units = [({"uuid": raw} | echo(b), partial(run, b)) for b in items]
            return await _answer(key, started, units, _bound(settle, self, user))

        return handler

    return decorate


def _items(parse: Parse[B], request: Request) -> list[B]:
    if isinstance(parse, type):
        return bodies.parse_items(request.body, parse)
    return parse(request)


async def _answer(
    key: str,
    started_ns: int,
    units: Sequence[_Unit],
    settle: _Settled | None,
) -> Response:
    outcomes: list[Outcome] = []
    for ids, run in units:
        try:
            outcomes.append(await run())
        except errors.VolumedError as exc:
            outcomes.append(failed_item(exc.code, exc.message, **ids))
    made = [o for o in outcomes if isinstance(o, Volume)]
    fresh = iter(await settle(made) if made and settle is not None else made)
    results = [views.volume_created(next(fresh)) if isinstance(o, Volume) else o for o in outcomes]
    return Response(items_envelope(key, results, started_ns))


def _bound(settle: Settle[S] | None, handler: S, user: User) -> _Settled | None:
    return None if settle is None else partial(settle, handler, user)


async def each_item(
    values: Sequence[B], action: Callable[[B], Awaitable[AnyItem]], ids: Callable[[B], Item]
) -> list[AnyItem]:
    """Run ``action`` per item; a domain error becomes that item's failure (for the
    handlers that do more than one loop: listings, waits)."""
    results: list[AnyItem] = []
    for value in values:
        try:
            results.append(await action(value))
        except errors.VolumedError as exc:
            results.append(failed_item(exc.code, exc.message, **ids(value)))
    return results
