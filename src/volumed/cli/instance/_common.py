"""What the instance commands share: columns and the ``--volume`` spec."""

from __future__ import annotations

import re

import click

from volumed.cli.application import App
from volumed.cli.output import Column, age, state
from volumed.cli.refs import Item, ref

_SIZE_LIKE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B?|[KMGT]iB)?$", re.IGNORECASE)


def volume_spec(text: str) -> Item:
    """``NAME:/path``, ``UUID:/path[:ro]`` (an existing volume) or ``64Mi:/path`` (a new
    one, made with the instance and deleted with it)."""
    from volumed.cli.output import parse_size_mb

    source, sep, rest = text.partition(":")
    if not sep or not rest.startswith("/"):
        raise click.BadParameter(f"'{text}' is not NAME:/path or SIZE:/path")
    at, readonly = rest, False
    if rest.endswith(":ro"):
        at, readonly = rest.removesuffix(":ro"), True
    if _SIZE_LIKE.match(source):
        if readonly:
            raise click.BadParameter("a new volume cannot be read-only")
        return {"size_mb": parse_size_mb(source), "at": at}
    item: Item = {**ref(source), "at": at}
    if readonly:
        item["readonly"] = True
    return item


def instance_columns(app: App) -> list[Column]:
    def volumes(item: Item) -> str:
        found = item.get("volumes") or []
        return ",".join(f"{v.get('name') or v.get('uuid')}:{v.get('at')}" for v in found) or "-"

    return [
        ("NAME", lambda i: str(i.get("name", "-"))),
        ("STATE", lambda i: state(app, i.get("state"))),
        ("IMAGE", lambda i: str(i.get("image", "-"))),
        ("MEMORY", lambda i: f"{i['memory_mb']} MiB" if i.get("memory_mb") else "-"),
        ("VOLUMES", volumes),
        ("CREATED", lambda i: age(i.get("created_at"))),
        ("UUID", lambda i: str(i.get("uuid", "-"))),
    ]


def short_columns(app: App) -> list[Column]:
    return [
        ("NAME", lambda i: str(i.get("name", "-"))),
        ("UUID", lambda i: str(i.get("uuid", "-"))),
        ("STATE", lambda i: state(app, i.get("state")) if i.get("state") else "-"),
    ]
