"""ASGI middleware that measures and logs every HTTP request: one access-log line and
the request metrics, after the response has gone out.

The wrapped app tells it what only the app knows through the scope: ``volumed.route``
(the route template, absent for unknown paths), ``volumed.tenant`` (the user's name,
once authenticated), ``volumed.request_id`` (also sent as ``x-request-id``) and
``volumed.status`` (absent if no response was sent: logged as 0). Failed items are
collected by :func:`volumed.api.envelope.items_envelope` into a context variable set
here. No header is ever logged, so neither is a token.
"""

from __future__ import annotations

import logging
from time import perf_counter_ns

from volumed.api.envelope import item_errors
from volumed.asgi import ASGIApp, Message, Receive, Scope, Send
from volumed.logs import AccessLog
from volumed.metrics import Metrics

__all__ = ["UNMATCHED", "ObservedApp"]

UNMATCHED = "unmatched"
"""The route label of requests no route matched (404, 405): paths are not labels."""
_TRANSFERS = "/volumed/v1/volumes/"
"""Imports (``…/{uuid}/import``) and exports (``…/export``) live under this prefix; their
archive bytes are counted as they pass (``volumed_transfer_bytes_total``)."""
_PROBES = frozenset({"/healthz", "/readyz"})
"""Polled every few seconds by orchestrators: logged at DEBUG, counted as usual."""


class ObservedApp:
    def __init__(self, app: ASGIApp, metrics: Metrics | None, access: AccessLog | None) -> None:
        self._app = app
        self._metrics = metrics
        self._access = access

    def flush(self) -> None:
        """Write the access-log lines still queued (at shutdown)."""
        if self._access is not None:
            self._access.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = perf_counter_ns()
        errors: list[int] = []
        token = item_errors.set(errors)
        metrics = self._metrics
        if metrics is not None:
            metrics.request_started()
            path: str = scope["path"]
            if path.startswith(_TRANSFERS):
                if path.endswith("/import"):
                    receive = _counting_receive(receive, metrics)
                elif path.endswith("/export"):
                    send = _counting_send(send, metrics)
        try:
            await self._app(scope, receive, send)
        finally:
            item_errors.reset(token)
            # Inline rather than in a method of its own: this runs for every request.
            elapsed_ns = perf_counter_ns() - started
            method: str = scope["method"]
            route: str = scope.get("volumed.route", UNMATCHED)
            status: int = scope.get("volumed.status", 0)
            if metrics is not None:
                metrics.request_done(method, route, status, elapsed_ns / 1e9, errors)
            access = self._access
            if access is not None:
                level = logging.DEBUG if route in _PROBES else logging.INFO
                if access.enabled(level):
                    access.write(
                        level,
                        scope.get("volumed.request_id"),
                        scope.get("volumed.tenant"),
                        method,
                        route,
                        scope["path"],
                        status,
                        errors,
                        elapsed_ns,
                    )


def _counting_receive(receive: Receive, metrics: Metrics) -> Receive:
    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            metrics.transferred("import", len(message.get("body", b"")))
        return message

    return counted


def _counting_send(send: Send, metrics: Metrics) -> Send:
    archive = False  # a refused export answers an envelope, which is not counted

    async def counted(message: Message) -> None:
        nonlocal archive
        if message["type"] == "http.response.start":
            archive = any(
                name.lower() == b"content-type" and value.startswith(b"application/x-tar")
                for name, value in message.get("headers", ())
            )
        elif archive and message["type"] == "http.response.body":
            metrics.transferred("export", len(message.get("body", b"")))
        await send(message)

    return counted
