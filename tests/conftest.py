"""Fixtures shared by every test layer: a live ``volumed serve`` process on loopback.

Tests talk to the real thing: the server is started as a subprocess with its own data
directory, a real database and real ext4 images, and reached over real HTTP.

``VOLUMED_TEST_STORE`` (``sqlite``, the default, or ``postgresql``) picks the store of
every server of the run. With ``postgresql`` a throwaway cluster is started once per
test process (``scripts/pg.sh``, in a temporary directory under /tmp) and each server
gets a fresh database of its own. Tests marked ``sqlite_only`` (they need the one-file
database or the data-directory lock) run in the SQLite pass only; tests marked
``postgresql_only`` (several replicas on one database) in the PostgreSQL pass only.
Tests marked ``store_independent`` (the browser tests of the console: a client of the
HTTP API, whose behaviour on each store the API tests already prove) run once, in the
SQLite pass. The others are deselected, never skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

if TYPE_CHECKING:
    from volumed.settings import Settings
    from volumed.store.sql import SqlStore

T = TypeVar("T")

VOLUMED = [sys.executable, "-m", "volumed"]
REPO = Path(__file__).resolve().parent.parent
TEST_STORE = os.environ.get("VOLUMED_TEST_STORE", "sqlite")
if TEST_STORE not in ("sqlite", "postgresql"):
    raise RuntimeError(f"VOLUMED_TEST_STORE must be sqlite or postgresql, not {TEST_STORE!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: runs in the SQLite pass only")
    config.addinivalue_line("markers", "postgresql_only: runs in the PostgreSQL pass only")
    config.addinivalue_line(
        "markers", "store_independent: tests no store behaviour; runs in the SQLite pass only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    others = (
        ("postgresql_only",) if TEST_STORE == "sqlite" else ("sqlite_only", "store_independent")
    )
    deselected: list[pytest.Item] = []
    kept: list[pytest.Item] = []
    for item in items:
        (deselected if any(item.get_closest_marker(o) for o in others) else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


class PgCluster:
    """A throwaway PostgreSQL (``scripts/pg.sh``) for this test process."""

    def __init__(self) -> None:
        # pg.sh makes DIR's parent traversable for the postgres user; keep it ours.
        self.root = Path(tempfile.mkdtemp(prefix="volumed-pg-", dir="/tmp"))
        self.dir = self.root / "data"
        self.port = free_port()
        self.url = self.start()

    def start(self) -> str:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "pg.sh"), "start", str(self.dir), str(self.port)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "pg.sh"), "stop", str(self.dir)], check=False
        )

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import asyncpg

        name = "t_" + secrets.token_hex(6)

        async def create() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f"CREATE DATABASE {name}")
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url.rsplit("/", 1)[0] + "/" + name

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: PgCluster | None = None


def pg_cluster() -> PgCluster:
    """The PostgreSQL cluster of this test process, started on first use."""
    global _cluster
    if _cluster is None:
        _cluster = PgCluster()
    return _cluster


@pytest.fixture(scope="session", autouse=True)
def _stop_pg_cluster() -> Iterator[None]:
    yield
    if _cluster is not None:
        _cluster.remove()


def run_sql(database_url: str, data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement (``?`` placeholders) against a server's database, directly."""
    if not database_url:
        with sqlite3.connect(data_dir / "volumed.db") as db:
            return db.execute(sql, params).fetchall()
    import asyncpg

    from volumed.store.db import to_postgres

    async def go() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(r) for r in await conn.fetch(to_postgres(sql), *params)]
        finally:
            await conn.close()

    return asyncio.run(go())


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: a server's
    API and metrics ports are chosen one after the other, and the kernel may offer a just
    closed port twice (the server then refuses to start: the ports must differ)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class LiveServer:
    data_dir: Path
    token: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    database_url: str = ""
    """Empty: SQLite in the data directory."""
    wrapper: list[str] = field(default_factory=list)
    """A command the server runs under (e.g. ``setpriv`` with another uid)."""

    @property
    def is_sqlite(self) -> bool:
        return not self.database_url

    @property
    def admin_env(self) -> dict[str, str]:
        """What an admin command needs to reach this server's store."""
        env = {"VOLUMED_DATA_DIR": str(self.data_dir)}
        if self.database_url:
            env["VOLUMED_DATABASE_URL"] = self.database_url
        return env

    def settings(self) -> Settings:
        from volumed.settings import Settings

        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    def with_store(self, use: Callable[[SqlStore], Awaitable[T]]) -> T:
        """Open the server's store directly (the admin path) and run ``use`` on it."""
        from volumed.bootstrap import open_store

        async def go() -> T:
            store = await open_store(self.settings())
            try:
                return await use(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement against the server's database, directly."""
        return run_sql(self.database_url, self.data_dir, sql, params)

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
        # A busy metrics port makes volumed refuse to start: one of its own for each server.
        env.setdefault("VOLUMED_METRICS_PORT", str(free_port()))
        if self.database_url:
            env["VOLUMED_DATABASE_URL"] = self.database_url
        with open(self.log_path, "ab") as log:
            # The child keeps its own copy of the descriptor.
            self.process = subprocess.Popen(
                [*self.wrapper, *VOLUMED, "serve"],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
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
        return self.anonymous({"Authorization": f"Bearer {token or self.token}"})

    def anonymous(self, headers: dict[str, str] | None = None) -> httpx.Client:
        """A client that sends no token (only ``headers``)."""
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def add_user(self, name: str) -> str:
        """Create a tenant with a token through the admin path (the store, directly)."""
        from volumed.domain.model import User
        from volumed.domain.tokens import new_token, token_digest

        token = new_token()

        async def add(store: SqlStore) -> None:
            user = User(secrets.token_hex(8), name)
            await store.create_user(user)
            await store.add_token(secrets.token_hex(8), user.id, token_digest(token), "test")

        self.with_store(add)
        return token


def new_database_url() -> str:
    """The database of a new server: empty (SQLite in its data directory) or a fresh
    PostgreSQL database, as ``VOLUMED_TEST_STORE`` says."""
    return pg_cluster().new_database() if TEST_STORE == "postgresql" else ""


def _store_env() -> dict[str, str]:
    """A fast worker poll; on PostgreSQL also a short lease: a restarted server there
    does not take back every lease at start (other replicas could hold them), it waits
    for the dead process's leases to expire, and crash tests wait for that."""
    # Instances are records unless a test asks for real guests (tests/guests/).
    env = {"VOLUMED_WORKER_POLL_S": "0.2", "VOLUMED_RUNTIME": "record"}
    if TEST_STORE == "postgresql":
        env["VOLUMED_WORKER_LEASE_S"] = "3"
    return env


def make_server(tmp: Path, **env: Any) -> LiveServer:
    server = LiveServer(
        data_dir=tmp / "data",
        token="test-" + secrets.token_hex(16),
        env={**_store_env(), **{k: str(v) for k, v in env.items()}},
        database_url=str(env.get("VOLUMED_DATABASE_URL", "")) or new_database_url(),
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
        kill_guests(live.data_dir)


def kill_guests(data_dir: Path) -> None:
    """End the QEMU processes a server left (they outlive it by design)."""
    for pid_file in data_dir.glob("guests/*/*/qemu.pid"):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def wait_for_state(
    client: httpx.Client, uuid: str, states: tuple[str, ...] = ("available",), timeout: float = 20
) -> dict[str, Any]:
    """The volume once it is in one of ``states``; fails the test, loudly, if it is not
    there within ``timeout`` seconds (a quiet return let callers assert on the wrong
    item, or not at all)."""
    deadline = time.monotonic() + timeout
    while True:
        item: dict[str, Any] = client.get(f"/v1/volumes/{uuid}").json()["data"]["volumes"][0]
        if item.get("state") in states:
            return item
        if time.monotonic() > deadline:
            raise AssertionError(
                f"volume {uuid} is {item.get('state')!r} after {timeout} s, not one of {states}"
                f": {item}"
            )
        time.sleep(0.05)


@contextmanager
def loop_mounted_disk(tmp_path: Path, size: str) -> Iterator[Path]:
    """A small ext4 file system of ``size`` (e.g. "48M"), loop-mounted, to run out of
    space in (the tests run as root, as CI does); unmounted afterwards."""
    image = tmp_path / "disk.img"
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
