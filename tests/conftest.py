"""Fixtures shared by every test layer: a live ``volumed serve`` process on loopback.

Tests talk to the real thing: the server is started as a subprocess with its own data
directory, real SQLite and real ext4 images, and reached over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

VOLUMED = [sys.executable, "-m", "volumed"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    data_dir: Path
    token: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        env = {**os.environ, **self.env}
        env["VOLUMED_TOKEN"] = self.token
        env["VOLUMED_DATA_DIR"] = str(self.data_dir)
        env["VOLUMED_PORT"] = str(self.port)
        with open(self.log_path, "ab") as log:
            # The child keeps its own copy of the descriptor.
            self.process = subprocess.Popen(
                [*VOLUMED, "serve"], env=env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"volumed exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"volumed did not come up:\n{self.log()}")

    def kill(self) -> None:
        """``kill -9``: no cleanup of any kind."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def restart(self) -> None:
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def add_user(self, name: str) -> str:
        """Create a tenant with a token through the admin path (the store, directly)."""
        from volumed.api.auth import new_token, token_digest
        from volumed.bootstrap import open_store
        from volumed.domain.model import User
        from volumed.settings import Settings

        store = open_store(Settings(data_dir=self.data_dir))
        token = new_token()

        async def add() -> None:
            user = User(secrets.token_hex(8), name)
            await store.create_user(user)
            await store.add_token(secrets.token_hex(8), user.id, token_digest(token), "test")

        asyncio.run(add())
        store.close()
        return token


def make_server(tmp: Path, **env: Any) -> LiveServer:
    server = LiveServer(
        data_dir=tmp / "data",
        token="test-" + secrets.token_hex(16),
        env={"VOLUMED_WORKER_POLL_S": "0.2", **{k: str(v) for k, v in env.items()}},
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server shared by the tests that don't need a clean slate."""
    live = make_server(tmp_path_factory.mktemp("shared"))
    yield live
    live.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """A factory for a server of one's own (crash tests, settings, empty lists)."""
    started: list[LiveServer] = []

    def start(**env: Any) -> LiveServer:
        live = make_server(tmp_path / f"s{len(started)}", **env)
        started.append(live)
        return live

    yield start
    for live in started:
        if live.process is not None and live.process.poll() is None:
            live.kill()


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def wait_for_state(
    client: httpx.Client, uuid: str, states: tuple[str, ...] = ("available",), timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        item: dict[str, Any] = client.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]
        if item.get("state") in states or time.monotonic() > deadline:
            return item
        time.sleep(0.05)
