"""How the CLI names things: ``NAME|UUID`` arguments and items in messages."""

from __future__ import annotations

import uuid as uuid_lib
from typing import Any

Item = dict[str, Any]


def ref(value: str) -> Item:
    """``NAME|UUID`` → ``{"uuid": …}`` if it parses as a UUID, else ``{"name": …}``."""
    try:
        return {"uuid": str(uuid_lib.UUID(value))}
    except ValueError:
        return {"name": value}


def describe(item: Item, fallback: Item | None = None) -> str:
    """How to name an item in a message: ``'name'`` if the item or the request had one,
    else its uuid."""
    sources = (item, fallback or {})
    for source in sources:
        if source.get("name"):
            return f"'{source['name']}'"
    for source in sources:
        if source.get("uuid"):
            return str(source["uuid"])
    return "item"


def complete_volumes(ctx: Any, _param: Any, incomplete: str) -> list[str]:
    """Shell completion of ``NAME|UUID`` arguments: the caller's volume names, asked from
    the server (silently nothing if it cannot be reached within a second)."""
    return _complete(ctx, "/v1/volumes", "volumes", incomplete)


def complete_instances(ctx: Any, _param: Any, incomplete: str) -> list[str]:
    return _complete(ctx, "/v1/instances", "instances", incomplete)


def _complete(ctx: Any, path: str, key: str, incomplete: str) -> list[str]:
    import httpx

    from volumed.cli.application import app_of

    app = app_of(ctx)
    headers = {}
    token = app.resolved_token()
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        answer = httpx.get(
            app.resolved_url() + path, params={"details": "false"}, headers=headers, timeout=1.0
        )
        items = answer.json()["data"][key]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []
    names = [str(i.get("name")) for i in items if isinstance(i, dict) and i.get("name")]
    return [n for n in names if n.startswith(incomplete)]
