"""Running e2fsprogs/coreutils tools and turning every failure into ``StorageError``.

Commands run as asyncio subprocesses from an argument list (never a shell), with a
timeout and a fixed minimal environment. They raise the standard library's
``CalledProcessError`` / ``TimeoutExpired``; :func:`storage_errors` is the one place
where those and ``OSError`` become the port's ``StorageError``, so nothing above
:mod:`volumed.storage` ever sees them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from volumed.domain.storage import StorageError
from volumed.storage import _spawn

__all__ = ["Completed", "run", "run_blocking", "storage_errors"]

_T = TypeVar("_T")

# A fixed environment: the caller's locale, PATH or MKE2FS_* variables must not
# change what a tool does, and LC_ALL=C keeps messages in the English we match on.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded")
_TAIL_LINES = 4
_HAS_PIDFD = hasattr(os, "pidfd_open") and hasattr(os, "memfd_create") and _spawn.available()
# Signals Python ignores that a tool must get with their default action, as
# subprocess's restore_signals gives them.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
_found: dict[str, str] = {}
"""Where each tool was found on ``_ENV``'s PATH (a tool that moves is looked up again)."""
_TAIL_CHARS = 400
# e2fsprogs tools start stderr with a banner such as "tune2fs 1.47.0 (5-Feb-2023)".
_BANNER = re.compile(r"\S+ \d+\.\d+(\.\d+)? \([^)]*\)")


@dataclass(slots=True, frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    ok_codes: Collection[int] = (0,),
    prepare: Callable[[], object] | None = None,
) -> Completed:
    """Run ``argv`` to completion and return its exit status and output; ``prepare``
    (a blocking file operation, such as making the file the tool writes into) runs
    first, on the thread that starts the tool: one thread hop for both.

    Raises ``CalledProcessError`` for an exit status outside ``ok_codes``,
    ``TimeoutExpired`` after ``timeout`` seconds and ``OSError`` if the tool cannot be
    started. The child is killed and reaped on timeout and on cancellation, so no
    tool keeps writing to a file its caller is about to remove.

    The child is started by glibc's ``posix_spawn`` on a worker thread without the GIL
    (storage/_spawn.py: ``subprocess.Popen`` and ``os.posix_spawn`` hold the GIL, and
    with it every request, until the child has exec'd; uvloop's own spawn forks the
    whole server) and waited for through a pidfd on the event loop, its output going
    to memory files. It gets stdin from /dev/null, stdout, stderr and no other
    descriptor, and runs at :data:`TOOL_NICENESS`. Without pidfds or that libc (not
    Linux) the event loop's subprocess support does it.
    """
    if not _HAS_PIDFD:
        if prepare is not None:
            await run_blocking(prepare)
        return await _run_by_loop(argv, timeout=timeout, ok_codes=ok_codes)
    out, err = _memory_file("stdout"), _memory_file("stderr")
    try:
        pid = await _spawned(argv, out, err, prepare)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
            raise
        exited = False
        try:
            async with asyncio.timeout(timeout):
                await _readable(pidfd)
            exited = True
        except TimeoutError:
            raise subprocess.TimeoutExpired(list(argv), timeout) from None
        finally:
            try:
                if not exited:  # timed out or cancelled
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    await _readable(pidfd)
            finally:
                os.close(pidfd)
                returncode = _reap(pid)  # never a zombie, whatever happened
        stdout, stderr = _read_all(out), _read_all(err)
    finally:
        os.close(out)
        os.close(err)
    return _completed(argv, returncode, stdout, stderr, ok_codes)


async def _spawned(
    argv: Sequence[str], out: int, err: int, prepare: Callable[[], object] | None
) -> int:
    """Start ``argv`` (stdin from /dev/null, stdout and stderr to ``out``, ``err``) on
    a thread of :func:`_tool_threads`, without the GIL (storage/_spawn.py), after
    ``prepare`` on the same thread; its pid."""
    tool = argv[0]
    path = _found.get(tool)
    if path is None:
        path = _found[tool] = _which(tool)

    def start() -> int:
        if prepare is not None:
            prepare()
        try:
            pid = _spawn.spawn(
                path, argv, _ENV, stdout=out, stderr=err, default_signals=_DEFAULT_SIGNALS
            )
        except FileNotFoundError:
            _found.pop(tool, None)  # moved or removed: looked up again next time
            raise
        with contextlib.suppress(OSError):  # it may have ended already
            os.setpriority(os.PRIO_PROCESS, pid, TOOL_NICENESS)
        return pid

    started = asyncio.get_running_loop().run_in_executor(_tool_threads(), start)
    try:
        return await asyncio.shield(started)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # it started all the same: stop it
            pid = await started
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        raise


TOOL_NICENESS = 10
"""The CPU priority tools run at, below the server's (0): a format's mke2fs takes
~1 ms of CPU, and four of them at once on a 2-core host took the cores the API
needed; niced, they use what the API leaves (bench/README.md, issue 15). It only
matters when the CPUs are busy. Set on the child once started: a niced thread of the
server would hold up the event loop whenever it was preempted holding the GIL."""
_tools: concurrent.futures.ThreadPoolExecutor | None = None


def _tool_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that prepare and start tools."""
    global _tools
    if _tools is None:
        _tools = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="volumed-tools")
    return _tools


def _which(tool: str) -> str:
    if "/" in tool:
        return tool
    path = shutil.which(tool, path=_ENV["PATH"])
    if path is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), tool)
    return path


async def _readable(pidfd: int) -> None:
    """Until the process of ``pidfd`` has exited (without a thread)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)


def _reap(pid: int) -> int:
    """The exit status of ``pid``, which has exited: ``-N`` if killed by signal N, as
    subprocess reports it."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _memory_file(name: str) -> int:
    # Not a pipe: a tool that writes more than a pipe holds never waits for a reader.
    return os.memfd_create(name, os.MFD_CLOEXEC)


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


async def _run_by_loop(
    argv: Sequence[str], *, timeout: float, ok_codes: Collection[int]
) -> Completed:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_ENV,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        raise subprocess.TimeoutExpired(list(argv), timeout) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    rc = proc.returncode
    assert rc is not None
    return _completed(
        argv, rc, out.decode(errors="replace"), err.decode(errors="replace"), ok_codes
    )


def _completed(
    argv: Sequence[str], rc: int, stdout: str, stderr: str, ok_codes: Collection[int]
) -> Completed:
    if rc not in ok_codes:
        raise subprocess.CalledProcessError(rc, list(argv), stdout, stderr)
    return Completed(rc, stdout, stderr)


async def run_blocking(fn: Callable[..., _T], *args: object) -> _T:
    """Run a blocking file operation (fsync, fallocate, unlink) in a worker thread.

    A thread cannot be stopped, so on cancellation this waits for it to finish before
    letting the cancellation through: the caller's cleanup then never races a thread
    that is still creating or growing the file being cleaned up.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


@contextlib.contextmanager
def storage_errors(
    action: str,
    *,
    no_space_detail: Callable[[], str] | None = None,
    hide_dir: Path | None = None,
) -> Iterator[None]:
    """Re-raise tool and OS failures inside the block as ``StorageError``.

    ``action`` starts the message ("Could not create the image of volume …"); the
    reason follows it. When the host ran out of space, the error has ``no_space`` set
    and ``no_space_detail()`` (called after the block's own cleanup has run) says how
    much was needed. Tool output is quoted with ``hide_dir`` (the data directory)
    stripped, so API users see image names but not host paths. ``StorageError`` and
    ``ValueError`` pass through unchanged.
    """
    try:
        yield
    except subprocess.CalledProcessError as exc:
        text = f"{exc.stderr or ''}\n{exc.stdout or ''}"
        no_space = any(marker in text for marker in _NO_SPACE_TEXTS)
        reason = f"{_tool(exc.cmd)} exited with status {exc.returncode}"
        tail = _tail(exc.stderr, hide_dir) or _tail(exc.stdout, hide_dir)
        if tail:
            reason = f"{reason}: {tail}"
        raise _error(action, reason, no_space, no_space_detail) from exc
    except subprocess.TimeoutExpired as exc:
        reason = f"{_tool(exc.cmd)} did not finish within {exc.timeout:g} s"
        raise _error(action, reason, False, None) from exc
    except OSError as exc:
        no_space = exc.errno in _NO_SPACE_ERRNOS
        # strerror, not str(exc): the message goes to API users and must not carry
        # host paths.
        reason = exc.strerror or type(exc).__name__
        raise _error(action, reason, no_space, no_space_detail) from exc


def _error(
    action: str, reason: str, no_space: bool, detail: Callable[[], str] | None
) -> StorageError:
    if no_space:
        reason = "there is not enough space on the host"
        if detail is not None:
            reason = f"{reason}: {detail()}"
    return StorageError(f"{action}: {reason.rstrip('.')}.", no_space=no_space)


def _tool(cmd: object) -> str:
    if isinstance(cmd, (list, tuple)) and cmd:
        return Path(str(cmd[0])).name
    return str(cmd)


def _tail(output: object, hide_dir: Path | None) -> str:
    if not isinstance(output, str):
        return ""
    if hide_dir is not None:
        output = output.replace(f"{hide_dir}/", "")
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not _BANNER.fullmatch(line)]
    tail = " / ".join(lines[-_TAIL_LINES:])
    if len(tail) > _TAIL_CHARS:
        tail = "…" + tail[-_TAIL_CHARS:]
    return tail
