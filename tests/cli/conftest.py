"""Fixtures for the CLI tests: ``volumed`` run as a subprocess against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import LiveServer

VOLUMED = [sys.executable, "-m", "volumed"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    *args: str,
    server: LiveServer | None = None,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,  # noqa: A002 - as subprocess names it
    timeout: float = 120,
    binary: bool = False,
) -> Result:
    """Run ``volumed ARGS``; with ``server``, pointed at it by VOLUMED_URL/VOLUMED_TOKEN."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VOLUMED_", "UKC_"))}
    full["NO_COLOR"] = "1"
    if server is not None:
        full["VOLUMED_URL"] = server.url
        full["VOLUMED_TOKEN"] = server.token
        full.update(server.admin_env)
    full.update(env or {})
    done = subprocess.run(
        [*VOLUMED, *args],
        env=full,
        input=input if isinstance(input, bytes) else (input or "").encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    # Binary output (an archive on stdout) comes back as latin-1: one char per byte.
    out = done.stdout.decode("latin-1" if binary else "utf-8")
    return Result(done.returncode, out, done.stderr.decode("utf-8", errors="replace"))


@pytest.fixture
def cli(server: LiveServer) -> Callable[..., Result]:
    """``cli("volume", "ls")`` against the shared server."""

    def call(*args: str, **kwargs: Any) -> Result:
        kwargs.setdefault("server", server)
        return run_cli(*args, **kwargs)

    return call
