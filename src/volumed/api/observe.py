"""What every HTTP request leaves behind: one access-log line and the request metrics,
after the response has gone out.

:class:`~volumed.api.app.VolumedApp` calls :meth:`Observer.started` and
:meth:`Observer.done` around each request, inline (a wrapping ASGI layer cost a coroutine
per request). What only the app knows comes through the scope: ``volumed.route`` (the
route template, absent for unknown paths) and ``volumed.tenant`` (the user's name, once
authenticated); the request id and the status (0 if no response was sent) come as
arguments. Failed items are collected by :func:`volumed.api.envelope.items_envelope` into
a context variable the app sets. No header is ever logged, so neither is a token.
"""

from __future__ import annotations

import logging

from volumed.asgi import Message, Receive, Scope, Send
from volumed.logs import AccessLog
from volumed.metrics import Metrics

__all__ = ["UNMATCHED", "Observer"]

UNMATCHED = "unmatched"
"""The route label of requests no route matched (404, 405): paths are not labels."""
_TRANSFERS = "/volumed/v1/volumes/"
"""Imports (``…/{uuid}/import``) and exports (``…/export``) live under this prefix; their
archive bytes are counted as they pass (``volumed_transfer_bytes_total``)."""
_PROBES = frozenset({"/healthz", "/readyz"})
"""Polled every few seconds by orchestrators: logged at DEBUG, counted as usual."""


class Observer:
    def __init__(self, metrics: Metrics | None, access: AccessLog | None) -> None:
        self._metrics = metrics
        self._access = access

    def flush(self) -> None:
        """Write the access-log lines still queued (at shutdown)."""
        if self._access is not None:
            self._access.flush()

    def started(self, scope: Scope, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """An HTTP request begins: the channels to serve it with (an import's or export's
        count the archive bytes that pass)."""
        metrics = self._metrics
        if metrics is not None:
            metrics.request_started()
            path: str = scope["path"]
            if path.startswith(_TRANSFERS):
                if path.endswith("/import"):
                    receive = _counting_receive(receive, metrics)
                elif path.endswith("/export"):
                    send = _counting_send(send, metrics)
        return receive, send

    def done(
        self, scope: Scope, request_id: str, status: int, errors: list[int], elapsed_ns: int
    ) -> None:
        """The request of :meth:`started` has ended, answered or not (``status`` 0)."""
        method: str = scope["method"]
        route: str = scope.get("volumed.route", UNMATCHED)
        metrics = self._metrics
        if metrics is not None:
            metrics.request_done(method, route, status, elapsed_ns / 1e9, errors)
        access = self._access
        if access is not None:
            level = logging.DEBUG if route in _PROBES else logging.INFO
            if access.enabled(level):
                access.write(
                    level,
                    request_id,
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
