"""The query of the GET handlers that get named items or, naming none, list them:
``GET /v1/volumes``, ``/v1/volumes/templates`` and ``/v1/instances``."""

from __future__ import annotations

from datetime import UTC, datetime

from volumed.api import bodies
from volumed.api.http import Request, RequestError, query_bool, query_int
from volumed.domain import rules
from volumed.domain.values import ListQuery

__all__ = ["GET_PARAMS", "details_only", "named", "parse_list_query"]

GET_PARAMS = frozenset({"uuid", "name", "details", "count", "from", "order", "sortby", "tags"})
_DETAILS = frozenset({"details"})


def named(request: Request, values: dict[str, list[str]]) -> list[bodies.RefBody]:
    """What a GET names: ``uuid`` and ``name`` in the query, then the body's items."""
    refs = [bodies.RefBody(uuid=u) for u in values.get("uuid", [])]
    refs += [bodies.RefBody(name=n) for n in values.get("name", [])]
    if len(refs) > bodies.MAX_ITEMS:
        raise RequestError(400, f"Too many query identifiers: at most {bodies.MAX_ITEMS}")
    return refs + bodies.parse_items(request.body, bodies.RefBody, required=False)


def details_only(request: Request) -> list[bool]:
    """A local-scope GET's one option, ``details`` in the query (true unless false); its
    body, if any, may name nothing."""
    details = query_bool(request.query_values(_DETAILS), "details")
    bodies.parse_object(request.body, bodies.Body)
    return [details is not False]


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
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(
            400, "Query parameter 'from' must be a volume UUID or an RFC 3339 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000)
