"""Probes for orchestrators, unauthenticated and outside ``/v1``.

``GET /healthz`` answers 200 while the process serves HTTP at all (liveness).
``GET /readyz`` answers 200 only when every check passes, 503 otherwise (readiness):

* ``store``: the database answers, is still the file it was opened as, and has room to
  write (a write that allocates a new page, rolled back: a full disk under PostgreSQL
  refused every create with 503 while reads, and a plain ping, still worked);
* ``migrations``: every schema migration this build knows is applied;
* ``data_dir``: the data directory and the image directory accept a new file (an
  unnamed ``O_TMPFILE``, written and synced, so nothing ever appears in a listing);
* ``free_space``: the image directory's file system has ``ready_min_free_mb`` free.

Both answer ``{"status", "data": {"checks": [{"name", "status", "message"}]}}``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from volumed.api import wire
from volumed.api.envelope import data_envelope, encode, op_time_us
from volumed.api.http import Request
from volumed.api.routing import Response, Router

__all__ = ["HealthHandlers"]

MIB = 1024 * 1024
_CHECK_TIMEOUT_S = 5.0

Check = wire.HealthCheck


class Probed(Protocol):
    async def ping(self) -> None: ...
    async def probe_write(self) -> None: ...
    async def pending_migrations(self) -> list[int]: ...


class HealthHandlers:
    def __init__(
        self,
        store: Probed,
        directories: list[Path],
        free_bytes: Callable[[], int],
        min_free_mb: int,
    ) -> None:
        self._store = store
        self._directories = directories
        self._free_bytes = free_bytes
        self._min_free_mb = min_free_mb

    def register(self, router: Router) -> None:
        router.add("GET", "/healthz", self.healthz, public=True)
        router.add("GET", "/readyz", self.readyz, public=True)

    async def healthz(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        return Response(data_envelope("checks", [_ok("process")], started))

    async def readyz(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        checks = [
            await _run("store", self._check_store),
            await _run("migrations", self._check_migrations),
            await _run("data_dir", self._check_directories),
            await _run("free_space", self._check_free_space),
        ]
        failed = [c.name for c in checks if c.status != "ok"]
        if not failed:
            return Response(data_envelope("checks", checks, started))
        body = {
            "status": "error",
            "message": f"Not ready: {', '.join(failed)}",
            "data": {"checks": checks},
            "op_time_us": op_time_us(started),
        }
        return Response(encode(body), 503, [(b"retry-after", b"5")])

    async def _check_store(self) -> str:
        await self._store.ping()
        await self._store.probe_write()
        return "The database answers and has room to write"

    async def _check_migrations(self) -> str:
        pending = await self._store.pending_migrations()
        if pending:
            raise _NotReady(f"Migrations not applied: {', '.join(map(str, pending))}")
        return "Every migration is applied"

    async def _check_directories(self) -> str:
        for directory in self._directories:
            await asyncio.to_thread(_probe_write, directory)
        return "Writable: " + ", ".join(str(d) for d in self._directories)

    async def _check_free_space(self) -> str:
        free_mb = self._free_bytes() // MIB
        if free_mb < self._min_free_mb:
            raise _NotReady(f"{free_mb} MB free, below the {self._min_free_mb} MB required")
        return f"{free_mb} MB free"


class _NotReady(Exception):
    """A check ran and found the service not ready; the message says why."""


def _ok(name: str, message: str | None = None) -> Check:
    return Check(name, "ok", message)


async def _run(name: str, check: Callable[[], Awaitable[str]]) -> Check:
    """Run one check; any failure (an exception, a timeout) makes it ``fail``."""
    try:
        return _ok(name, await asyncio.wait_for(check(), _CHECK_TIMEOUT_S))
    except TimeoutError:
        return Check(name, "fail", "The check timed out")
    except Exception as exc:  # noqa: BLE001 - every failure is an answer here
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return Check(name, "fail", message)


def _probe_write(directory: Path) -> None:
    """Create, write and sync a file in ``directory``; raise OSError if it cannot."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR):  # no O_TMPFILE here
            raise _NotReady(f"{directory} is not writable: {exc.strerror}") from exc
        _probe_named(directory)
        return
    try:
        os.write(fd, b"ready\n")
        os.fsync(fd)
    except OSError as exc:
        raise _NotReady(f"{directory} is not writable: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _probe_named(directory: Path) -> None:
    probe = directory / f".readyz-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ready\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise _NotReady(f"{directory} is not writable: {exc.strerror}") from exc
    finally:
        probe.unlink(missing_ok=True)
