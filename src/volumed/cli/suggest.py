"""Suggestions for shell completion of ``NAME|UUID`` arguments, asked from the server."""

from __future__ import annotations

from typing import Any


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
