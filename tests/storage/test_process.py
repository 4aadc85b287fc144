"""The storage layer's tool runner, on both event loops volumed runs on (asyncio in the
tests and the CLI, uvloop in ``volumed serve``): exit statuses, output of any size,
timeouts and cancellation, with real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from volumed.storage._process import run

# Runs in the SQLite pass only: no metadata store is involved.
pytestmark = pytest.mark.store_independent

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def on_loop(request: pytest.FixtureRequest) -> Runner:
    return LOOPS[request.param]


def children() -> set[int]:
    """Our direct children, zombies included."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(entry))
    return found


def test_output_and_status(on_loop: Runner) -> None:
    done = on_loop(run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, ok_codes=(3,)))
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_status_outside_ok_codes_raises(on_loop: Runner) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        on_loop(run(["sh", "-c", "echo why >&2; exit 2"], timeout=10))
    assert info.value.returncode == 2
    assert info.value.stderr == "why\n"


def test_output_larger_than_a_pipe_holds(on_loop: Runner) -> None:
    # 588,895 bytes on each stream: a runner that read a pipe only after the exit would
    # wait forever for a tool blocked on its full pipe.
    script = "seq 1 100000; seq 1 100000 >&2"
    done = on_loop(run(["sh", "-c", script], timeout=30))
    assert done.stdout.splitlines() == [str(n) for n in range(1, 100_001)]
    assert done.stderr == done.stdout


def test_timeout_kills_and_reaps_the_tool(on_loop: Runner) -> None:
    before = children()
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        on_loop(run(["sleep", "30"], timeout=0.2))
    assert time.monotonic() - started < 10
    assert children() == before  # killed, and no zombie left


def test_cancellation_kills_and_reaps_the_tool(on_loop: Runner) -> None:
    before = children()

    async def scenario() -> None:
        task = asyncio.create_task(run(["sleep", "30"], timeout=60))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    on_loop(scenario())
    assert time.monotonic() - started < 10
    assert children() == before


def test_a_missing_tool_is_an_os_error(on_loop: Runner) -> None:
    with pytest.raises(FileNotFoundError):
        on_loop(run(["volumed-no-such-tool"], timeout=10))
