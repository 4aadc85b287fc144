"""One QEMU process and volumed's connections to it.

QEMU runs in a session of its own, so it outlives volumed: after a restart
:meth:`Guest.reattach` finds it again by the pid file in its directory (the pid and the
process's start time, so a recycled pid is never mistaken for it). Its end is watched
through a pidfd, which works whether or not volumed is its parent.

Two sockets connect volumed to the guest: the console (the serial port; bytes go to the
:class:`ConsoleLog`) and the control port (lines, see :mod:`._init`). QEMU also logs
every control line the guest writes to ``status.log``, so how a guest ended can be read
even if it ended while volumed was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from volumed.runtime.console import ConsoleLog

log = logging.getLogger("volumed.runtime")

__all__ = ["Guest", "GuestPaths"]

_CONNECT_S = 30.0
_CHUNK = 65536


class GuestPaths:
    """Where one guest's files are: ``directory`` for what is kept, ``sockets`` (a
    short directory: socket paths are limited to 107 bytes) for its two sockets."""

    def __init__(self, directory: Path, sockets: Path, uuid: str) -> None:
        self.directory = directory
        self.pid = directory / "qemu.pid"
        self.status = directory / "status.log"
        self.qemu_log = directory / "qemu.log"
        self.initrd = directory / "initrd.cpio"
        self.console = sockets / f"{uuid}.con"
        self.control = sockets / f"{uuid}.ctl"


class Guest:
    def __init__(self, uuid: str, paths: GuestPaths, pid: int, console: ConsoleLog) -> None:
        self.uuid = uuid
        self.paths = paths
        self.pid = pid
        self.console = console
        self.memory_mb = 0
        self.requested = False
        """A stop was asked for (the guest did not end by itself)."""
        self.forced = False
        """volumed killed the QEMU process."""
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd = os.pidfd_open(pid)
        self._lines: list[str] = []
        self._line_added = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._console_writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    # ------------------------------------------------------------------ birth

    @classmethod
    async def launch(
        cls, uuid: str, paths: GuestPaths, argv: Sequence[str], console: ConsoleLog
    ) -> Guest:
        with paths.qemu_log.open("wb") as err:
            popen = subprocess.Popen(  # noqa: S603 - argv is built by volumed, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        paths.pid.write_text(f"{popen.pid} {_start_time(popen.pid)}\n", encoding="ascii")
        guest = cls(uuid, paths, popen.pid, console)
        guest._popen = popen
        await guest._connect()
        return guest

    @classmethod
    async def reattach(cls, uuid: str, paths: GuestPaths, console: ConsoleLog) -> Guest | None:
        """The guest of ``paths`` if its QEMU still runs, connected again; else None."""
        try:
            pid_text, started = paths.pid.read_text(encoding="ascii").split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if _start_time(pid) != started:
            return None
        try:
            guest = cls(uuid, paths, pid, console)
        except ProcessLookupError:
            return None
        guest._lines.extend(_status_lines(paths.status))
        await guest._connect()
        return guest

    async def _connect(self) -> None:
        """Connect to both sockets. QEMU makes them as it starts, the console first
        (and waits for us there before the guest runs): try each until it is there."""
        console = await self._open(self.paths.console)
        control = await self._open(self.paths.control)
        if console is None or control is None:
            return
        # Keep both writers: a StreamWriter closes its connection when collected.
        self._console_writer = console[1]
        self._writer = control[1]
        self._tasks = [
            asyncio.create_task(self._read_console(console[0])),
            asyncio.create_task(self._read_control(control[0])),
        ]

    async def _open(self, path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONNECT_S
        pause = 0.005
        while True:
            try:
                return await asyncio.open_unix_connection(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if self.exited.done() or loop.time() > deadline:
                    return None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.1)

    # ------------------------------------------------------------------ life

    async def _read_console(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK):
                self.console.append(chunk)

    async def _read_control(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ValueError):
            while line := await reader.readline():
                self._lines.append(line.decode("utf-8", "replace").strip())
                self._line_added.set()
        self._line_added.set()

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    async def wait_ready(self, timeout_s: float) -> str | None:
        """Until the guest says ``ready`` (None) or ``fail …`` or ends (a sentence)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for line in self._lines:
                if line == "ready":
                    return None
                if line.startswith("fail "):
                    return line.removeprefix("fail ")
            if self.exited.done():
                return "the guest ended while booting"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return f"the guest did not boot within {timeout_s:g} s"
            self._line_added.clear()
            line_added = asyncio.ensure_future(self._line_added.wait())
            waits: list[asyncio.Future[Any]] = [line_added, self.exited]
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            line_added.cancel()

    async def request_stop(self, drain_s: float) -> None:
        self.requested = True
        if self._writer is None or self.exited.done():
            return
        with contextlib.suppress(OSError):
            self._writer.write(f"stop {drain_s:.3f}\n".encode())
            await self._writer.drain()

    async def kill(self) -> None:
        """SIGKILL the QEMU process and wait until it is gone."""
        if not self.exited.done():
            self.forced = True
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        await asyncio.shield(self.exited)

    async def wait_exited(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)
        return self.exited.done()

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if self._popen is not None:
            self._popen.wait()
        self.paths.pid.unlink(missing_ok=True)
        # The status log is complete now: take what the socket may not have delivered.
        for line in _status_lines(self.paths.status):
            if line not in self._lines:
                self._lines.append(line)
        if not self.exited.done():
            self.exited.set_result(None)
        self._line_added.set()

    async def detach(self) -> None:
        """Close volumed's side (the guest keeps running)."""
        if self.exited.done() and self._tasks:
            # QEMU is gone and its sockets closed: the readers end at EOF by themselves,
            # after the last bytes the guest wrote.
            await asyncio.wait(self._tasks, timeout=2)
        for task in self._tasks:
            task.cancel()
        for writer in (self._writer, self._console_writer):
            if writer is not None:
                writer.close()
        if not self.exited.done():
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)

    def resident_mb(self) -> int:
        try:
            pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        return pages * os.sysconf("SC_PAGE_SIZE") // 1_048_576


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" if it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()
    return "" if fields[0] in ("Z", "X") else fields[19]


def _status_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text("utf-8", "replace").splitlines()]
    except FileNotFoundError:
        return []
