"""A volumed server inside the test process, for tests of requests and answers only
(validation, the envelope, error codes, what a change reads back as): the services are
built by ``bootstrap`` exactly as ``volumed serve`` builds them, the worker runs, and
requests go to the ASGI app (access log and metrics included) without a socket, an HTTP
parser or a process to start. That costs a few milliseconds instead of a second per
server, and nothing a server process adds is under test there.

What a process does add (signals, ``kill -9`` and restarts, the HTTP server and its
limits, several replicas, the official SDK over real HTTP) stays with
:class:`tests.conftest.LiveServer`, which this class stands in for: the same fields,
clients and admin helpers (the store opened beside the server, as the CLI does).

A module switches with ``from tests.inprocess import inprocess_server`` (the fixture is
named ``server``: the module's tests, and the ``api`` client, then reach an in-process
server of the module's own), or builds one with :func:`make_inprocess_server` where it
would call ``make_server``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, _store_env, new_database_url
from volumed.bootstrap import Services, bootstrap, ensure_default_user
from volumed.settings import Settings

__all__ = ["InProcessServer", "fresh_inprocess", "inprocess_server", "make_inprocess_server"]

_REQUEST_TIMEOUT_S = 60.0


@dataclass
class InProcessServer(LiveServer):
    """A :class:`LiveServer` whose services run on an event loop of a thread of this
    process; there is no process to kill, and it starts in milliseconds."""

    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _services: Services | None = field(default=None, repr=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    def start(self, timeout: float = 20.0) -> None:
        environ = {**os.environ, **self.env, "VOLUMED_TOKEN": self.token}
        environ["VOLUMED_DATA_DIR"] = str(self.data_dir)
        environ["VOLUMED_PORT"] = str(self.port)  # answers name it (metros), as a server's do
        environ["VOLUMED_DATABASE_URL"] = self.database_url
        settings = Settings.load({}, environ)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"volumed-{self.port}", daemon=True
        )
        self._thread.start()
        self._call(self._serve(settings), timeout)

    async def _serve(self, settings: Settings) -> None:
        """What ``volumed serve`` does before it listens, on a new data directory (so
        nothing is left to resume), then the worker and the node's loop."""
        services = await bootstrap(settings)
        await ensure_default_user(services.store, settings)
        self._services = services
        self._tasks.append(asyncio.create_task(services.worker.run()))
        if services.instances is not None:
            node = services.instances.run_node(settings.worker_lease_s, settings.worker_poll_s)
            self._tasks.append(asyncio.create_task(node))

    def _call(self, coro: Any, timeout: float = _REQUEST_TIMEOUT_S) -> Any:
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def services(self) -> Services:
        assert self._services is not None, "the server is not running"
        return self._services

    def anonymous(self, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, transport=_InLoop(self))

    def stop(self) -> int:
        """Stop as SIGTERM would: the worker hands back its leases, the store closes."""
        if self._loop is None:
            return 0
        self._call(self._shut_down(), 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None
        return 0

    async def _shut_down(self) -> None:
        services = self.services
        await services.worker.stop(services.settings.shutdown_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if services.http is not None:
            services.http.flush()
        await services.close()
        self._services = None

    def kill(self) -> None:
        raise NotImplementedError("an in-process server has no process: use LiveServer")

    def log(self) -> str:
        return ""


class _InLoop(httpx.BaseTransport):
    """Hands each request to the server's ASGI app on the server's loop."""

    def __init__(self, live: InProcessServer) -> None:
        self._live = live
        app: Any = live.services.http or live.services.app  # volumed's ASGI types, not httpx's
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a body given as an iterator is sent whole, as bytes
        answer: httpx.Response = self._live._call(self._send(request))
        return answer

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        # Raw: the client decodes (gzip) as it would a body off the wire.
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        return httpx.Response(
            response.status_code, headers=response.headers, stream=httpx.ByteStream(raw)
        )


def make_inprocess_server(tmp: Path, **env: Any) -> InProcessServer:
    """:func:`tests.conftest.make_server`, in process."""
    live = InProcessServer(
        data_dir=tmp / "data",
        token="test-" + secrets.token_hex(16),
        env={**_store_env(), **{k: str(v) for k, v in env.items()}},
        database_url=str(env.get("VOLUMED_DATABASE_URL", "")) or new_database_url(),
    )
    live.start()
    return live


@pytest.fixture
def fresh_inprocess(tmp_path: Path) -> Iterator[Callable[..., InProcessServer]]:
    """``fresh_server``, in process: a server of one's own, with settings of its own."""
    started: list[InProcessServer] = []

    def start(**env: Any) -> InProcessServer:
        live = make_inprocess_server(tmp_path / f"s{len(started)}", **env)
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture(scope="module", name="server")
def inprocess_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """An in-process server shared by the module's tests (and its ``api`` client)."""
    live = make_inprocess_server(tmp_path_factory.mktemp("inprocess"))
    yield live
    live.stop()
