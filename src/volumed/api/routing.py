"""A small router: literal paths by dictionary, ``{param}`` paths by regular expression.

Literal paths win over parameterised ones, so ``/v1/volumes/list`` is never taken for a
volume UUID. What a path matched is remembered (a GET one's path comes again and again).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from volumed.api.http import Request, RequestError


@dataclass(slots=True)
class Response:
    body: bytes = b""
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"
    stream: AsyncIterator[bytes] | None = None
    """Sent chunk by chunk after ``body`` when set (large downloads)."""


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True, frozen=True)
class Route:
    handler: Handler
    template: str
    """The path as registered (``/v1/volumes/{uuid}``): the route's name in logs and metrics."""
    public: bool = False
    """Reachable without a token."""
    streaming: bool = False
    """The handler reads the request body itself instead of receiving it buffered."""


_PARAM = re.compile(r"\{(\w+)\}")
_MATCHED_KEPT = 1024
"""Paths whose match is remembered; past it, all are forgotten."""
_MATCHED_LEN = 128
"""Longer paths are matched every time (a UUID path is 49 characters)."""


class Router:
    def __init__(self) -> None:
        self._literal: dict[str, dict[str, Route]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self._matched: dict[str, tuple[dict[str, Route], dict[str, str]]] = {}

    def add(
        self,
        methods: str,
        path: str,
        handler: Handler,
        *,
        public: bool = False,
        streaming: bool = False,
    ) -> None:
        route = Route(handler, path, public, streaming)
        self._matched.clear()
        if _PARAM.search(path) is None:
            table = self._literal.setdefault(path, {})
        else:
            regex = re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", path) + "$")
            table = self._pattern_table(regex)
        for method in methods.split():
            table[method] = route

    def _pattern_table(self, regex: re.Pattern[str]) -> dict[str, Route]:
        for existing, table in self._patterns:
            if existing.pattern == regex.pattern:
                return table
        table = {}
        self._patterns.append((regex, table))
        return table

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        found = self._matched.get(path)
        if found is None:
            found = self._find(path)
            if len(path) <= _MATCHED_LEN:
                if len(self._matched) >= _MATCHED_KEPT:
                    self._matched.clear()
                self._matched[path] = found
        table, params = found
        route = table.get(method)
        if route is None:
            allowed = ", ".join(sorted(table))
            raise RequestError(
                405,
                f"Method {method} is not allowed on {path[:200]}; use {allowed}",
                [(b"allow", allowed.encode())],
            )
        return route, params.copy()

    def _find(self, path: str) -> tuple[dict[str, Route], dict[str, str]]:
        """The routes of ``path`` by method, and its parameters; 404 if none."""
        params: dict[str, str] = {}
        table = self._literal.get(path)
        if table is None and len(path) > 1 and path.endswith("/"):
            table = self._literal.get(path.rstrip("/"))
        if table is None:
            for regex, candidate in self._patterns:
                found = regex.match(path)
                if found is not None:
                    table, params = candidate, found.groupdict()
                    break
        if table is None:
            raise RequestError(404, f"No API endpoint {path[:200]}")
        return table, params

    def routes(self) -> list[tuple[str, str, Route]]:
        found = [(m, p, r) for p, t in self._literal.items() for m, r in t.items()]
        for _regex, table in self._patterns:
            found.extend((m, r.template, r) for m, r in table.items())
        return found
