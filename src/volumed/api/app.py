"""The ASGI application: authenticate, route, read the body, call the handler, answer in
the envelope. Every failure, expected or not, leaves as an envelope."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from time import perf_counter_ns
from typing import Any, Protocol

from volumed.api import compression
from volumed.api.auth import Authenticator
from volumed.api.envelope import error_envelope, item_errors
from volumed.api.http import Request, RequestError
from volumed.api.observe import Observer
from volumed.api.routing import Response, Route, Router
from volumed.asgi import Receive, Scope, Send
from volumed.domain.store import StoreFull, StoreUnavailable

log = logging.getLogger("volumed.api")


class Connections(Protocol):
    """Told of each request's start and end (the connection guard, edge/guard.py)."""

    def enter(self, scope: Scope) -> Any: ...
    def leave(self, entered: Any) -> None: ...


class VolumedApp:
    def __init__(
        self,
        router: Router,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        body_timeout_s: float = 30.0,
        observer: Observer | None = None,
    ) -> None:
        self._router = router
        self._auth = auth
        self._max_body = max_body_bytes
        self._body_timeout_s = body_timeout_s
        self._observer = observer
        self._connections: Connections | None = None
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self.in_flight = 0
        """HTTP requests being served now (the worker yields to many: issue 15)."""

    def guard_connections(self, connections: Connections) -> None:
        """Tell ``connections`` of every request from now on (before serving)."""
        self._connections = connections

    def flush(self) -> None:
        """Write what the observer still holds (at shutdown)."""
        if self._observer is not None:
            self._observer.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        # The connection guard and the observer are called here rather than wrapped
        # around the app: each coroutine less on the path of every request is a fraction
        # of a microsecond (issue 15).
        started = perf_counter_ns()
        connections = self._connections
        entered = connections.enter(scope) if connections is not None else None
        observer = self._observer
        errors: list[int] = []
        token = item_errors.set(errors)
        if observer is not None:
            receive, send = observer.started(scope, receive, send)
        request_id = f"{self._id_prefix}-{next(self._ids)}"
        status = 0
        self.in_flight += 1
        try:
            try:
                response = await self._handle(scope, receive, request_id)
            except Exception as exc:  # noqa: BLE001 - an envelope; _failure logs the unexpected
                response = _failure(exc, scope, request_id, started)
            status = response.status
            # The most frequent answer (a small JSON envelope) is sent inline.
            if response.stream is None and len(response.body) >= compression.MIN_BYTES:
                await _compress_if_worth_it(response, scope)
            headers = [
                (b"content-type", response.content_type),
                (b"x-request-id", request_id.encode()),
            ]
            if response.headers:
                headers += response.headers
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if response.stream is None:
                await send({"type": "http.response.body", "body": response.body})
            else:
                await _send_stream(send, response)
        finally:
            self.in_flight -= 1
            item_errors.reset(token)
            if observer is not None:
                observer.done(scope, request_id, status, errors, perf_counter_ns() - started)
            if connections is not None:
                connections.leave(entered)

    async def _handle(self, scope: Scope, receive: Receive, request_id: str) -> Response:
        headers = dict(scope["headers"])
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            route, params = self._router.match(method, path)
        except RequestError:
            # Unknown routes and methods are not disclosed to callers without a token.
            caller = await self._auth.authenticate(headers.get(b"authorization"), _address(scope))
            scope["volumed.tenant"] = caller.name
            raise
        scope["volumed.route"] = route.template
        user = None
        if not route.public:
            header = headers.get(b"authorization")
            user = self._auth.cached(header)
            if user is None:
                user = await self._auth.authenticate(header, _address(scope))
            scope["volumed.tenant"] = user.name
        if route.streaming:
            body = b""
        elif b"content-length" in headers or b"transfer-encoding" in headers:
            body = await self._read_body(headers, receive)
            if body and not _is_json(headers.get(b"content-type")):
                raise RequestError(
                    415, "The request body must be JSON: send 'Content-Type: application/json'"
                )
        else:
            # HTTP/1.1: no length and no chunking means no body; don't wait for one.
            body = b""
        request = Request(
            method,
            path,
            scope.get("query_string", b""),
            headers,
            body,
            request_id,
            params,
            user,
        )
        if route.streaming:
            request.receive = receive
        return await route.handler(request)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _too_large(self._max_body)
        try:
            async with asyncio.timeout(self._body_timeout_s):
                return await self._receive_body(receive)
        except TimeoutError:
            raise RequestError(
                408,
                f"The request body did not arrive within {self._body_timeout_s:g} s",
                [_CLOSE],
            ) from None

    async def _receive_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "Client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(self._max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path template)`` of every route (the OpenAPI document's test)."""
        return [(method, template) for method, template, _ in self._router.routes()]

    def route_for(self, method: str, path: str) -> Route | None:
        try:
            return self._router.match(method, path)[0]
        except RequestError:
            return None


def _failure(exc: Exception, scope: Scope, request_id: str, started: int) -> Response:
    """The answer to a request that failed as a whole: every failure leaves as an envelope."""
    if isinstance(exc, RequestError):
        response = Response(error_envelope(exc.status, exc.message, started), exc.status)
        response.headers.extend(exc.headers)
    elif isinstance(exc, StoreFull):
        message = (
            "The metadata store has no space left to write; nothing was changed. "
            "Try again once an operator has freed space"
        )
        response = Response(error_envelope(503, message, started), 503)
        response.headers.append((b"retry-after", b"30"))
    elif isinstance(exc, StoreUnavailable):
        message = "The metadata store is unavailable; try again shortly"
        response = Response(error_envelope(503, message, started), 503)
        response.headers.append((b"retry-after", b"1"))
    else:
        log.exception(
            "unexpected error in request %s %s", request_id, scope.get("path"), exc_info=exc
        )
        message = f"Internal server error (request id {request_id})"
        response = Response(error_envelope(500, message, started), 500)
    return response


_JSON_TYPES = (b"application/json", b"application/x-www-form-urlencoded")
"""Content types a JSON body may come with: ``application/json`` (and any ``+json``), and
what ``curl -d`` sends when told nothing else (the body is still parsed as JSON)."""


def _is_json(content_type: bytes | None) -> bool:
    """No content type, or one a JSON body may come with (parameters ignored)."""
    if content_type is None:
        return True
    media = content_type.partition(b";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith(b"+json") or not media


async def _compress_if_worth_it(response: Response, scope: Scope) -> None:
    """gzip a large JSON answer for a client that accepts it (api/compression.py)."""
    if (
        response.stream is not None
        or len(response.body) < compression.MIN_BYTES
        or response.content_type != b"application/json"
        or any(name == b"content-encoding" for name, _ in response.headers)
    ):
        return
    accept = next((v for k, v in scope["headers"] if k == b"accept-encoding"), None)
    response.headers.append((b"vary", b"accept-encoding"))
    if compression.accepts_gzip(accept):
        response.body = await compression.compress(response.body)
        response.headers.append((b"content-encoding", b"gzip"))


async def _send_stream(send: Send, response: Response) -> None:
    """The body of a streamed answer: ``response.body``, then each chunk of its stream."""
    assert response.stream is not None
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    async for chunk in response.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


_CLOSE = (b"connection", b"close")
"""On an answer given before the request's body was read: the rest of that body is still
on its way, so the connection cannot carry another request; saying so keeps a client from
sending its next request on a connection the server is closing."""


def _too_large(max_body: int) -> RequestError:
    return RequestError(413, f"Request body larger than {max_body} bytes", [_CLOSE])


def _address(scope: Scope) -> str | None:
    """The client's address, for limiting failed authentications."""
    client = scope.get("client")
    return client[0] if client else None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
