"""The request object handlers receive, and the request-level error they may raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from volumed.asgi import Receive
from volumed.domain.model import User


class RequestError(Exception):
    """A request-level failure: answered with this HTTP status and nothing processed."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass(slots=True)
class Request:
    method: str
    path: str
    raw_query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    request_id: str
    path_params: dict[str, str] = field(default_factory=dict)
    user: User | None = None
    _query: list[tuple[str, str]] | None = None
    receive: Receive | None = None
    """The raw ASGI receive channel, for streaming routes only."""

    @property
    def query(self) -> list[tuple[str, str]]:
        if self._query is None:
            if not self.raw_query:
                self._query = []
                return self._query
            try:
                self._query = parse_qsl(
                    self.raw_query.decode("utf-8"), keep_blank_values=True, errors="strict"
                )
            except (UnicodeDecodeError, ValueError):
                raise RequestError(400, "The query string is not valid UTF-8") from None
        return self._query

    def tenant(self) -> User:
        assert self.user is not None, "authenticated route without a user"
        return self.user

    def query_values(self, allowed: frozenset[str]) -> dict[str, list[str]]:
        """Query parameters by name; an unknown one is a 400 like an unknown body field."""
        values: dict[str, list[str]] = {}
        for key, value in self.query:
            if key not in allowed:
                raise RequestError(400, f"Unknown query parameter '{key[:64]}'")
            values.setdefault(key, []).append(value)
        return values


def query_bool(values: dict[str, list[str]], key: str) -> bool | None:
    if key not in values:
        return None
    raw = values[key][-1].lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise RequestError(400, f"Query parameter '{key}' must be true or false")


def query_int(values: dict[str, list[str]], key: str, *, maximum: int = 2**32 - 1) -> int | None:
    if key not in values:
        return None
    raw = values[key][-1]
    if not raw.isdigit() or int(raw) > maximum:
        raise RequestError(400, f"Query parameter '{key}' must be an integer from 0 to {maximum}")
    return int(raw)
