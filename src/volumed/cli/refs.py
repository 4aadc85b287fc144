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
