"""Export: an image's tree as a tar stream. Used by
:class:`~volumed.storage.ext4.Ext4ImageDriver`, which checks the uuid and owns the image.

Export dumps the tree with ``debugfs rdump`` into ``.transfer/export-<uuid>-<random>``
and streams it with ``tar -c``; the directory is removed when the stream ends. An
empty ``lost+found`` at the root is left out (every ext4 file system has one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from volumed.domain.ports import StorageError
from volumed.storage._process import run, run_blocking, storage_errors
from volumed.storage._transfer import TRANSFER_DIR, _make_dirs, _rmtree, _unlink

__all__ = ["ImageExports"]

_MODE = re.compile(r"Mode:\s+(\d+)")
_OWNER = re.compile(r"User:\s+(\d+)\s+Group:\s+(\d+)")
_BANNER = re.compile(r"debugfs \d+\.\d+(\.\d+)? \([^)]*\)")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class ImageExports:
    def __init__(self, images_dir: Path, *, timeout_s: float) -> None:
        self._images = images_dir
        self._dir = images_dir / TRANSFER_DIR
        self._timeout = timeout_s

    async def export_tar(self, uuid: str, image: Path) -> AsyncIterator[bytes]:
        """Dump the tree now (errors raise here) and return the archive stream."""
        action = f"Could not export volume {uuid}"
        work = self._dir / f"export-{uuid}-{secrets.token_hex(4)}"
        with storage_errors(action, hide_dir=self._images):
            if not image.exists():
                raise StorageError(f"{action}: its image does not exist.")
            try:
                await run_blocking(_make_dirs, work)
                root_stat = await run(
                    ["debugfs", "-R", "stat /", str(image)], timeout=self._timeout
                )
                done = await run(
                    ["debugfs", "-R", f"rdump / {_debugfs_quote(str(work))}", str(image)],
                    timeout=self._timeout,
                )
                problems = [
                    line
                    for line in done.stderr.splitlines()
                    if line.strip() and not _BANNER.fullmatch(line.strip())
                ]
                if problems:
                    raise StorageError(f"{action}: debugfs: {' / '.join(problems[-3:])}.")
                await run_blocking(_finish_root, work, root_stat.stdout)
                await self._restore_modes_and_links(image, work)
            except BaseException:
                await run_blocking(_rmtree, work)
                raise
        return tar_stream(work, cleanup=lambda: _rmtree(work))

    async def _restore_modes_and_links(self, image: Path, work: Path) -> None:
        """``rdump`` drops setuid/setgid bits (it chowns after chmod) and writes each
        hard link as a copy: list every directory with ``debugfs ls -p`` (one run) and
        put both back."""
        dirs = await run_blocking(_walk_dirs, work)
        commands = [f"ls -p {_debugfs_quote('/' + d)}" for d in dirs if _quotable(d)]
        script = self._dir / f"{work.name}.cmds"
        try:
            await run_blocking(script.write_text, "\n".join(commands) + "\n", "utf-8")
            done = await run(["debugfs", "-f", str(script), str(image)], timeout=self._timeout)
        finally:
            await run_blocking(_unlink, script)
        await run_blocking(_apply_listing, work, done.stdout)


def _debugfs_quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise StorageError("The data directory's path cannot be passed to debugfs.")
    return f'"{path}"' if any(c.isspace() for c in path) else path


def _quotable(path: str) -> bool:
    return not any(c in path for c in '"\n\\')


def _walk_dirs(work: Path) -> list[str]:
    found = [""]
    for current, dirnames, _files in os.walk(work):
        rel = os.path.relpath(current, work)
        for name in dirnames:
            found.append(name if rel == "." else f"{rel}/{name}")
    return found


def _apply_listing(work: Path, listing: str) -> None:
    """Apply ``ls -p`` output: special mode bits, and hard links (same inode number)."""
    current: str | None = None
    first_path: dict[str, str] = {}
    for line in listing.splitlines():
        if line.startswith("debugfs: ls -p "):
            current = line.removeprefix("debugfs: ls -p ").strip().strip('"').lstrip("/")
            continue
        parts = line.split("/")
        if current is None or len(parts) < 8 or parts[0] != "":
            continue
        inode, mode_text, name = parts[1], parts[2], parts[5]
        if name in (".", "..") or not mode_text.isdigit():
            continue
        mode = int(mode_text, 8)
        rel = f"{current}/{name}" if current else name
        target = work / rel
        if stat.S_ISREG(mode):
            first = first_path.setdefault(inode, rel)
            if first != rel and target.is_file() and not target.is_symlink():
                target.unlink()
                os.link(work / first, target)
                continue
        if mode & 0o7000 and not stat.S_ISLNK(mode) and target.exists():
            os.chmod(target, stat.S_IMODE(mode))


def _finish_root(work: Path, stat_output: str) -> None:
    """Give the dump's root the image root's mode and owner; drop an empty lost+found."""
    lost = work / "lost+found"
    with contextlib.suppress(OSError):
        if lost.is_dir() and not lost.is_symlink() and not any(lost.iterdir()):
            lost.rmdir()
    mode = _MODE.search(stat_output)
    if mode is not None:
        os.chmod(work, int(mode.group(1), 8) & 0o7777)
    owner = _OWNER.search(stat_output)
    if owner is not None and os.geteuid() == 0:
        os.chown(work, int(owner.group(1)), int(owner.group(2)))


async def tar_stream(
    directory: Path, *, chunk_bytes: int = 256 * 1024, cleanup: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Yield ``directory`` as a GNU tar archive, then call ``cleanup`` (also when the
    consumer stops early or the tool fails; a failure is raised after the cleanup)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "tar", "--numeric-owner", "--format=gnu", "-C", str(directory), "-cf", "-", ".",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_ENV,
            limit=chunk_bytes,
        )  # fmt: skip
    except BaseException:
        cleanup()
        raise
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while True:
            chunk = await proc.stdout.read(chunk_bytes)
            if not chunk:
                break
            yield chunk
        err = await proc.stderr.read()
        rc = await proc.wait()
        if rc != 0:
            raise OSError(f"tar exited with status {rc}: {err.decode(errors='replace')[-300:]}")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        cleanup()
