"""The storage layer's tool runner, on both event loops volumed runs on (asyncio in the
tests and the CLI, uvloop in ``volumed serve``): exit statuses, output of any size,
timeouts and cancellation, with real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from volumed.storage._process import TOOL_NICENESS, run

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


def tool_descriptors(listing: str) -> dict[str, str]:
    """``ls -l /proc/self/fd`` as {descriptor: target}, without ls's own of the listing."""
    links = {
        line.split(" -> ")[0].split()[-1]: line.split(" -> ")[1]
        for line in listing.splitlines()
        if " -> " in line
    }
    return {fd: target for fd, target in links.items() if not target.startswith("/proc/")}


def test_a_tool_gets_none_of_the_servers_descriptors(on_loop: Runner, tmp_path: Path) -> None:
    """A tool never gets the database, a client's connection or any other descriptor
    of the server: only stdin (/dev/null), stdout and stderr."""
    database = sqlite3.connect(tmp_path / "held.db")
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("CREATE TABLE t (a)")
    listener = socket.create_server(("127.0.0.1", 0))
    held = os.open(tmp_path / "held.db", os.O_RDONLY)
    try:
        done = on_loop(run(["ls", "-l", "/proc/self/fd"], timeout=10))
    finally:
        os.close(held)
        listener.close()
        database.close()
    found = tool_descriptors(done.stdout)
    assert sorted(found) == ["0", "1", "2"], found
    assert found["0"] == "/dev/null"
    assert found["1"].startswith("/memfd:stdout")
    assert found["2"].startswith("/memfd:stderr")


_LEFT_OPEN = """
import asyncio, sys
from volumed.storage._process import TOOL_NICENESS, run
print(asyncio.run(run(["ls", "-l", "/proc/self/fd"], timeout=10)).stdout)
"""


def test_a_tool_gets_none_of_the_descriptors_the_server_was_started_with(
    tmp_path: Path,
) -> None:
    """Whoever starts the server may leave descriptors open (not close-on-exec): they
    are closed in the child too, as Popen's close_fds did."""
    left_open = os.open(tmp_path, os.O_RDONLY)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LEFT_OPEN],
            pass_fds=(left_open,),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    finally:
        os.close(left_open)
    found = tool_descriptors(done.stdout)
    assert sorted(found) == ["0", "1", "2"], found


def test_signals_python_ignores_are_back_to_default_in_a_tool(on_loop: Runner) -> None:
    """Python ignores SIGPIPE; a tool must die of it as it would from a shell."""
    done = on_loop(run(["cat", "/proc/self/status"], timeout=10))
    ignored = int(re.search(r"^SigIgn:\s+([0-9a-f]+)$", done.stdout, re.MULTILINE)[1], 16)  # type: ignore[index]
    blocked = int(re.search(r"^SigBlk:\s+([0-9a-f]+)$", done.stdout, re.MULTILINE)[1], 16)  # type: ignore[index]
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))
    assert blocked == 0


def test_a_tool_gets_the_fixed_environment_only(
    on_loop: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKE2FS_CONFIG", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    done = on_loop(run(["env"], timeout=10))
    assert sorted(done.stdout.splitlines()) == ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def test_prepare_runs_before_the_tool(on_loop: Runner, tmp_path: Path) -> None:
    made = tmp_path / "made"
    done = on_loop(run(["cat", str(made)], timeout=10, prepare=lambda: made.write_text("ready")))
    assert done.stdout == "ready"


def test_a_failed_prepare_starts_no_tool(on_loop: Runner, tmp_path: Path) -> None:
    before = children()
    witness = tmp_path / "ran"

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        on_loop(run(["touch", str(witness)], timeout=10, prepare=fail))
    assert not witness.exists()
    assert children() == before


def test_a_tool_runs_below_the_servers_cpu_priority(on_loop: Runner) -> None:
    """Formats are background work: under CPU contention the API goes first. The
    niceness is set once the tool has started, so the tool reads it a moment later."""
    done = on_loop(run(["sh", "-c", "sleep 0.2; cat /proc/$$/stat"], timeout=10))
    niceness = int(done.stdout.rsplit(")", 1)[1].split()[16])
    assert niceness == TOOL_NICENESS > os.getpriority(os.PRIO_PROCESS, 0)
