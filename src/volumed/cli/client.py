"""A small synchronous client for the volumed API (httpx), for the CLI.

Every call returns the envelope's items; a request-level failure (cannot connect, HTTP
4xx/5xx, a body that is not an envelope) aborts with exit code 3 through the app.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, Protocol

import httpx

from volumed.cli.exits import EXIT_REQUEST_FAILED
from volumed.cli.refs import describe, ref
from volumed.domain import transitions

Item = dict[str, Any]
TRANSITIONAL = frozenset(state.value for state in transitions.TRANSITIONAL)
"""Volume states a job moves out of by itself: worth waiting for."""
MAX_ITEMS = 253

__all__ = ["TRANSITIONAL", "Client", "Item", "describe", "ref"]


class Reporter(Protocol):
    """How the client fails and reports failed items: the CLI's App."""

    def abort(self, message: str, code: int = ...) -> NoReturn: ...
    def item_error(self, what: str, item: Item) -> None: ...
    def finish(self) -> None: ...


class Client:
    def __init__(self, app: Reporter, url: str, token: str | None) -> None:
        self._app = app
        self.url = url
        headers = {"accept": "application/json", "user-agent": "volumed-cli"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url, headers=headers, timeout=60.0)

    # ------------------------------------------------------------------ plumbing

    def envelope(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = 60.0,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=params,
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            self._app.abort(f"cannot reach volumed at {self.url}: {exc}", EXIT_REQUEST_FAILED)
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._app.abort(
                f"{self.url} answered HTTP {response.status_code} without a volumed envelope",
                EXIT_REQUEST_FAILED,
            )
        if response.status_code >= 400:
            message = body.get("message") or f"HTTP {response.status_code}"
            hint = ""
            if response.status_code == 401:
                hint = " (pass --token, set VOLUMED_TOKEN or UKC_TOKEN, or use --data-dir)"
            self._app.abort(f"{message} (HTTP {response.status_code}){hint}", EXIT_REQUEST_FAILED)
        return body

    def items(self, method: str, path: str, key: str = "volumes", **kwargs: Any) -> list[Item]:
        data = self.envelope(method, path, **kwargs).get("data") or {}
        found = data.get(key) or []
        return [item for item in found if isinstance(item, dict)]

    def batched(
        self,
        method: str,
        path: str,
        body: list[Item],
        key: str = "volumes",
        *,
        timeout: float | None = 60.0,
    ) -> list[Item]:
        """One request per 253 items (the API's batch limit), answers in order."""
        out: list[Item] = []
        for start in range(0, len(body), MAX_ITEMS):
            part = body[start : start + MAX_ITEMS]
            out += self.items(method, path, key, json=part, timeout=timeout)
        return out

    # ------------------------------------------------------------------ volumes

    def volumes(self, refs: list[Item]) -> list[Item]:
        """One item per ref, in order (identifiers in a JSON body keep the order)."""
        return self.batched("GET", "/v1/volumes", refs)

    def volume(self, name_or_uuid: str) -> Item:
        """The volume, or abort with its error (exit 1)."""
        item = self.volumes([ref(name_or_uuid)])[0]
        if item.get("status") == "error":
            self._app.item_error(f"volume {describe(item, ref(name_or_uuid))}", item)
            self._app.finish()
        return item

    def wait_volumes(
        self,
        uuids: list[str],
        *,
        timeout: float,
        on_tick: Callable[[list[Item]], None] | None = None,
    ) -> list[Item]:
        """Poll until every volume has left its transitional state (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            items = self.volumes([{"uuid": u} for u in uuids])
            if on_tick is not None:
                on_tick(items)
            pending = [i for i in items if i.get("state") in TRANSITIONAL]
            if not pending or time.monotonic() > deadline:
                return items
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    # ------------------------------------------------------------------ streams

    def upload(
        self, path: str, content: Iterator[bytes], *, timeout: float | None = None
    ) -> dict[str, Any]:
        return self.envelope(
            "PUT",
            path,
            content=content,
            headers={"content-type": "application/x-tar"},
            timeout=timeout,
        )

    def download(self, path: str) -> tuple[httpx.Response, Any]:
        """Start a streamed GET; returns (response, context manager to close it)."""
        try:
            stream = self._http.stream("GET", path, timeout=None)
            response = stream.__enter__()
        except httpx.HTTPError as exc:
            self._app.abort(f"cannot reach volumed at {self.url}: {exc}", EXIT_REQUEST_FAILED)
        return response, stream

    def decode_streamed(self, response: httpx.Response) -> dict[str, Any]:
        response.read()
        return self._decode(response)
