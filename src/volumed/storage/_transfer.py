"""Files into an image: import a tar stream. Used by
:class:`~volumed.storage.ext4.Ext4ImageDriver`, which checks the uuid and owns the image.

Import **replaces** the file system's contents, atomically:

1. the archive is extracted, as it arrives, into ``.transfer/import-<uuid>/root`` on the
   data directory's own file system (see :mod:`volumed.storage._tar`);
2. a new image ``.transfer/import-<uuid>.img`` of the same size is made from that tree
   with ``mke2fs -d`` (the options of ``create``), setuid/setgid bits put back with
   ``debugfs`` through links volumed named, checked with ``e2fsck -fn`` and, for
   a static volume, reserved;
3. it is renamed over ``<uuid>.img`` after an ``fsync``; the directory is ``fsync``-ed.

Before the rename the old image is untouched, so a failure at any point, a volume the
tree does not fit, or a ``kill -9`` leaves the volume exactly as it was; the leftovers
in ``.transfer/`` are removed by :meth:`ImageTransfers.discard`.

Export lives in :mod:`volumed.storage._export`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from volumed.domain.storage import ImportRefused, StorageError
from volumed.storage._process import run, run_blocking, storage_errors
from volumed.storage._remove import remove_tree
from volumed.storage._superblock import read_superblock
from volumed.storage._tar import (
    ArchiveError,
    ExtractStats,
    ImportLimits,
    TooLarge,
    extract_stream,
)
from volumed.storage._tree import special_bits_script

__all__ = ["ImageTransfers"]

_MIB = 2**20
TRANSFER_DIR = ".transfer"
# The options of Ext4ImageDriver.create: an imported volume is made like a new one.
_MKFS = ["mke2fs", "-q", "-F", "-t", "ext4", "-m", "0"]
_MKFS += ["-E", "lazy_itable_init=1,lazy_journal_init=1"]


class ImageTransfers:
    """Imports of one image directory. Unpacking runs in a pool of its own
    (``threads``), so imports never take the threads the rest of the server uses."""

    def __init__(
        self, images_dir: Path, *, timeout_s: float, limits: ImportLimits, threads: int
    ) -> None:
        self._images = images_dir
        self._dir = images_dir / TRANSFER_DIR
        self._timeout = timeout_s
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="volumed-import")

    # ------------------------------------------------------------------ import

    async def import_tar(
        self,
        uuid: str,
        image: Path,
        chunks: AsyncIterator[bytes],
        *,
        reserve: bool,
        label: str,
        dest: Path | None = None,
        tag: int | None = None,
    ) -> ExtractStats:
        """Replace the contents of ``image`` with the archive; see the module docstring.

        With ``dest`` the new image is renamed there instead (a staged image, published
        later), and ``tag`` (the job's epoch) keeps this import's work files apart from
        those of an import that lost its lease and still runs."""
        action = f"Could not import into volume {uuid}"
        with storage_errors(action, hide_dir=self._images):
            try:
                size = image.stat().st_size
            except FileNotFoundError as exc:
                raise StorageError(f"{action}: its image does not exist.") from exc
        name = f"import-{uuid}" if tag is None else f"import-{uuid}-e{tag}"
        work = self._dir / name
        root = work / "root"
        tmp = self._dir / f"{name}.img"
        await run_blocking(self._discard_work, name)
        try:
            with storage_errors(
                action, no_space_detail=self._host_note(size, reserve), hide_dir=self._images
            ):
                await run_blocking(_make_dirs, root)
                try:
                    stats = await extract_stream(
                        chunks,
                        root,
                        limit_bytes=size,
                        count_cap_bytes=4 * size + 64 * _MIB,
                        max_entries=await run_blocking(_inode_count, image),
                        limits=self._limits,
                        executor=self._pool,
                    )
                except TooLarge as exc:
                    raise await self._does_not_fit(
                        uuid, size, exc.stats, inodes=exc.stats.too_many_files
                    ) from None
                except ArchiveError as exc:
                    raise ImportRefused(str(exc)) from None
                await run_blocking(_new_sparse_file, tmp, size)
                try:
                    await run(
                        [*_MKFS, "-L", label, "-d", str(root), str(tmp)], timeout=self._timeout
                    )
                except subprocess.CalledProcessError as exc:
                    if "Could not allocate" in (exc.stderr or ""):
                        raise await self._does_not_fit(
                            uuid, size, stats, inodes="inode" in exc.stderr
                        ) from None
                    raise
                if stats.special_modes:
                    await self._set_special_bits(tmp, stats, work / "modes.debugfs")
                await run(["e2fsck", "-fn", str(tmp)], timeout=self._timeout)
                if reserve:
                    await run_blocking(_allocate, tmp, size)
                await run_blocking(_fsync_file, tmp)
                final = image if dest is None else dest
                await run_blocking(os.replace, tmp, final)
                await run_blocking(_fsync_dir, final.parent)
        finally:
            await run_blocking(self._discard_work, name)
        return stats

    async def _set_special_bits(self, image: Path, stats: ExtractStats, script: Path) -> None:
        """The setuid/setgid bits the host tree went without (see :mod:`._tree`)."""
        text = special_bits_script(stats.marks, stats.special_modes)
        await run_blocking(script.write_text, text, "ascii")
        done = await run(["debugfs", "-w", "-f", str(script), str(image)], timeout=self._timeout)
        problems = [line for line in done.stderr.splitlines()[1:] if line.strip()]
        if problems:
            raise StorageError(f"debugfs could not restore file modes: {problems[-1]}")

    async def _does_not_fit(
        self, uuid: str, size: int, stats: ExtractStats, *, inodes: bool = False
    ) -> ImportRefused:
        capacity_mb = await self._empty_free_mb(uuid, size)
        needed_mb = max(-(-stats.needed_bytes // _MIB), capacity_mb + 1)
        at_least = "at least " if not stats.complete else "about "
        if inodes:
            reason = (
                f"its {stats.files} files and directories are more than a file system of "
                f"{size // _MIB} MB has room for"
            )
        else:
            reason = (
                f"its files need {at_least}{needed_mb} MB and the volume's empty file "
                f"system has {capacity_mb} MB free"
            )
        return ImportRefused(
            f"the archive does not fit: {reason}; nothing was changed",
            needed_mb=needed_mb,
            capacity_mb=capacity_mb,
        )

    async def _empty_free_mb(self, uuid: str, size: int) -> int:
        """Free space of a fresh file system of ``size`` bytes (made sparse, then removed)."""
        probe = self._dir / f"import-{uuid}.probe.img"
        try:
            await run_blocking(_unlink, probe)
            await run_blocking(_new_sparse_file, probe, size)
            await run([*_MKFS, str(probe)], timeout=self._timeout)
            sb = await run_blocking(read_superblock, probe)
            return int(sb.free_blocks * sb.block_size // _MIB)
        except (OSError, subprocess.SubprocessError, ValueError):
            return size // _MIB
        finally:
            await run_blocking(_unlink, probe)

    def _host_note(self, size: int, reserve: bool) -> Callable[[], str]:
        def note() -> str:
            try:
                st = os.statvfs(self._images)
                free = f"{st.f_bavail * st.f_frsize // _MIB} MB is free"
            except OSError:
                free = "the free space is unknown"
            image = f"a new {size // _MIB} MB image" if reserve else "a new image"
            return f"an import needs room for the extracted files and {image}; {free}"

        return note

    # ------------------------------------------------------------------ leftovers

    def discard(self, uuid: str | None = None) -> None:
        """Remove the import leftovers of ``uuid``, or everything in ``.transfer/``
        (only when no transfer can be running: at start, or from an offline fsck)."""
        if uuid is None:
            _rmtree(self._dir)
            return
        self._discard_work(f"import-{uuid}")
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return
        for name in names:
            # The work of imports that lost their lease: import-<uuid>-e<epoch>[.img]
            if name.startswith(f"import-{uuid}-e"):
                _rmtree(self._dir / name)

    def _discard_work(self, name: str) -> None:
        for path in (self._dir / name, self._dir / f"{name}.img", self._dir / f"{name}.probe.img"):
            _rmtree(path)

    def leftovers(self) -> list[str]:
        """Names in ``.transfer/`` (relative to the image directory)."""
        try:
            return sorted(f"{TRANSFER_DIR}/{name}" for name in os.listdir(self._dir))
        except FileNotFoundError:
            return []


def _inode_count(image: Path) -> int:
    """``s_inodes_count`` of the image's superblock: the most entries it can hold."""
    with open(image, "rb") as handle:
        handle.seek(1024)
        return int.from_bytes(handle.read(4), "little") or 2**31


def _make_dirs(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.mkdir(mode=0o755, parents=True, exist_ok=False)
    # The root of a new file system, as mke2fs makes it; the archive's "." entry, if
    # any, sets its own mode.
    os.chmod(path, 0o755)  # noqa: S103


def _rmtree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _new_sparse_file(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _allocate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
