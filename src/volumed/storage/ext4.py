"""The default data plane: one raw ext4 image file per volume in a data directory.

Images are sparse unless reserved. They are formatted with ``mke2fs``, copied with
``cp`` (reflink when the data directory supports it), grown offline with ``e2fsck`` +
``resize2fs`` and read without a subprocess through their superblock. See
``/work/shared/spec/dataplane-notes.md`` for the measurements behind each choice.

Files in the data directory::

    <uuid>.img       a complete image, only ever appears by rename
    <uuid>.img.tmp   an image being built by create/clone; removed by the next
                     create, clone or delete of that uuid
    <uuid>.img.e<N>  the staged image a job claimed at epoch N builds (see
                     docs/design.md, "Lease fencing"): complete once the job commits,
                     then renamed over <uuid>.img by :meth:`Ext4ImageDriver.publish`;
                     the next claim of the volume's job removes any other

Operations on different uuids may run concurrently. Operations on the same uuid must
not: the domain serialises them through the volume's state.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from volumed.domain.storage import ImageUsage, Placed, StorageError
from volumed.storage._export import ImageExports
from volumed.storage._extents import punch_unwritten
from volumed.storage._process import run, run_blocking, storage_errors
from volumed.storage._superblock import NotExt4, Superblock, read_superblock
from volumed.storage._tar import ImportLimits
from volumed.storage._transfer import ImageTransfers

__all__ = ["Ext4ImageDriver"]

_MIB = 2**20
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_IMG = ".img"
_TMP = ".img.tmp"
_STAGED = ".img.e"
# 0 clean, 1 errors corrected; anything else means e2fsck could not make it clean.
_FSCK_FIXED = (0, 1)


class Ext4ImageDriver:
    """:class:`~volumed.domain.storage.StorageDriver` on sparse ext4 image files.

    Promises, on top of the port's:

    * A new volume is always a fresh ``truncate`` + ``mke2fs`` of a newly created file,
      never a reused one, so deleted data never reappears in a new volume.
    * ``create`` and ``clone`` build ``<uuid>.img.tmp`` and rename it over
      ``<uuid>.img`` after an ``fsync`` (``mke2fs``'s own, for ``create``), then
      ``fsync`` the directory: after a crash the image is either absent or complete.
    * ``delete`` succeeds when the image is already gone.
    * No ``OSError`` or subprocess error escapes: failures are ``StorageError``, with
      ``no_space`` set when the host is full. Bad arguments are ``ValueError``.

    ``timeout_s`` bounds every tool run; the slow ones (``cp``, ``e2fsck``) take time
    in proportion to the data in the image.
    """

    def __init__(
        self,
        images_dir: Path,
        *,
        timeout_s: float = 1800.0,
        import_limits: ImportLimits = ImportLimits(),  # noqa: B008 (frozen)
        import_threads: int = 2,
    ) -> None:
        self._dir = images_dir
        self._timeout = timeout_s
        self._transfers = ImageTransfers(
            images_dir, timeout_s=timeout_s, limits=import_limits, threads=import_threads
        )
        self._exports = ImageExports(images_dir, timeout_s=timeout_s)
        with storage_errors("Could not prepare the image directory"):
            images_dir.mkdir(parents=True, exist_ok=True)

    @property
    def images_dir(self) -> Path:
        return self._dir

    def image_path(self, uuid: str) -> Path:
        """``<images_dir>/<uuid>.img``; ``ValueError`` unless ``uuid`` is canonical.

        Only lowercase, hyphenated UUIDs are accepted, so no caller-supplied string can
        ever name a path outside the data directory.
        """
        return self._dir / f"{_checked(uuid)}{_IMG}"

    def staged_path(self, uuid: str, stage: int) -> Path:
        """``<images_dir>/<uuid>.img.e<stage>``: the image a job claimed at epoch
        ``stage`` builds, before it is published."""
        if isinstance(stage, bool) or not isinstance(stage, int) or stage < 0:
            raise ValueError(f"A stage is an epoch number, not {stage!r}.")
        return self._dir / f"{_checked(uuid)}{_STAGED}{stage}"

    async def create(
        self, uuid: str, size_mb: int, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Make a fresh, empty ext4 image of ``size_mb`` MiB; replaces any existing one
        (with ``stage``: makes the staged image of that epoch, see :meth:`publish`).

        Redoable: a leftover temporary file from an interrupted call is removed first.
        """
        path = self.image_path(uuid)
        tmp = _tmp_of(path) if stage is None else self.staged_path(uuid, stage)
        size = _checked_size(size_mb) * _MIB
        with storage_errors(
            f"Could not create the image of volume {uuid}",
            no_space_detail=self._space_note(size_mb if reserve else None),
            hide_dir=self._dir,
        ):
            try:
                # The file is reserved before mke2fs writes into it, so mke2fs's own
                # fsync as it closes the image (two, in e2fsprogs' unix_io) makes the file
                # system and the reservation durable at once: no fsync of ours follows.
                # nodiscard: a new inode holds no old blocks, and discarding would punch
                # the reservation out again.
                await run(
                    [
                        "mke2fs", "-q", "-F", "-t", "ext4", "-m", "0",
                        "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                        "-L", _label(uuid), str(tmp),
                    ],
                    timeout=self._timeout,
                    prepare=functools.partial(_new_image_file, tmp, size, reserve),
                )  # fmt: skip
                if stage is None:
                    await run_blocking(_rename_durably, tmp, path)
                # A staged image's name is made durable by the publish's fsync of the
                # directory, not before the commit: should a power cut lose it, the
                # next claim finds no image of the committed epoch (committed_usage is
                # None) and formats again, which is all a format's redo needs.
            except BaseException:
                _discard(tmp)
                raise
        return await self._usage_of(uuid, tmp if stage is not None else path)

    async def _finish(self, built: Path, path: Path, stage: int | None) -> None:
        """Make ``built`` durable; without a stage, rename it over ``path`` at once."""
        await run_blocking(_fsync_file, built)
        if stage is None:
            os.replace(built, path)
            await run_blocking(_fsync_dir, self._dir)
        else:
            # A committed stage must survive a host crash: its name too.
            await run_blocking(_fsync_dir, self._dir)

    async def publish(self, uuid: str, stage: int) -> bool:
        """Rename the staged image of ``stage`` over the image and ``fsync`` both
        directories. False if there is no such staged image (a rename happens once)."""
        staged = self.staged_path(uuid, stage)
        path = self.image_path(uuid)
        with storage_errors(f"Could not publish the new image of volume {uuid}"):
            try:
                await run_blocking(_rename_durably, staged, path)
            except FileNotFoundError:
                return False
        return True

    async def place(self, uuid: str, stage: int) -> Placed:
        """Link the staged image of ``stage`` as the image unless one is there (a link
        never replaces a name), drop the staged name, ``fsync`` the directory."""
        staged = self.staged_path(uuid, stage)
        path = self.image_path(uuid)
        with storage_errors(f"Could not put the new image of volume {uuid} in place"):
            return await run_blocking(_place_durably, staged, path)

    async def discard_staged(self, uuid: str, stage: int | None = None) -> None:
        """Remove the staged image of ``stage``, or every one of ``uuid``."""
        with storage_errors(f"Could not remove the staged images of volume {uuid}"):
            if stage is not None:
                await run_blocking(_unlink, self.staged_path(uuid, stage))
                return
            prefix = f"{_checked(uuid)}{_STAGED}"
            for name in await run_blocking(os.listdir, self._dir):
                if name.startswith(prefix):
                    await run_blocking(_unlink, self._dir / name)

    async def delete(self, uuid: str) -> None:
        """Remove the image, its temporary file and staged images. Succeeds if they are
        already gone. Staged images go first: a frozen job's late :meth:`publish` then
        finds nothing to rename, or renames before the image is removed."""
        path = self.image_path(uuid)
        await self.discard_staged(uuid)
        with storage_errors(f"Could not delete the image of volume {uuid}"):
            await run_blocking(_unlink, _tmp_of(path))
            await run_blocking(_unlink, path)
            await run_blocking(_fsync_dir, self._dir)

    async def clone(
        self, source_uuid: str, target_uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Copy the source image into a new target image with its own file-system UUID.

        The source must not be attached while it is copied. The copy is a reflink when
        the data directory supports it (XFS, btrfs) and a sparse copy otherwise (ext4).
        It then gets ``e2fsck -fy`` (tune2fs refuses an image mounted since its last
        check) and ``tune2fs -U random``, so the two file systems can be told apart.
        Only the copy is touched. Redoable like :meth:`create`.
        """
        source = self.image_path(source_uuid)
        target = self.image_path(target_uuid)
        if source == target:
            raise ValueError("A volume cannot be cloned onto itself.")
        tmp = _tmp_of(target) if stage is None else self.staged_path(target_uuid, stage)
        action = f"Could not clone volume {source_uuid} into volume {target_uuid}"
        with storage_errors(action, hide_dir=self._dir):
            st = _stat_image(source, action)
        needed_mb = -(-(st.st_size if reserve else _allocated(st)) // _MIB)
        with storage_errors(
            action, no_space_detail=self._space_note(needed_mb), hide_dir=self._dir
        ):
            await run_blocking(_unlink, tmp)
            try:
                await self._copy(source, tmp)
                await run(["e2fsck", "-fy", str(tmp)], timeout=self._timeout, ok_codes=_FSCK_FIXED)
                await run(["tune2fs", "-U", "random", str(tmp)], timeout=self._timeout)
                if reserve:
                    await run_blocking(_allocate, tmp, 0, st.st_size)
                await self._finish(tmp, target, stage)
            except BaseException:
                _discard(tmp)
                raise
        return await self._usage_of(target_uuid, tmp if stage is not None else target)

    async def grow(
        self, uuid: str, size_mb: int, *, reserve: bool | None = None, stage: int | None = None
    ) -> ImageUsage:
        """Grow the image and its file system to ``size_mb`` MiB, offline.

        Runs ``e2fsck -fy`` (resize2fs requires a fresh check after any mount), extends
        the file, then ``resize2fs``. Growing to the current size is a no-op, shrinking
        is a ``ValueError``.

        ``reserve`` says whether the added space is allocated on the host. ``None``
        reserves it iff the image was fully allocated before, which holds for an image
        created or set with ``reserve=True``; callers that know the quota policy should
        pass it, since a crash in the middle of extending a reserved image can leave
        it looking partly allocated.

        Redoable: after a crash at any point (even inside resize2fs on this unmounted
        image), calling ``grow`` again with the same size runs e2fsck and resize2fs
        again and completes the job.

        With ``stage`` the image is only read: a copy of it is grown into the staged
        image, so a holder that lost its lease can never change the volume. If that
        staged image exists already (a clone being made in the same job), it is grown.
        """
        if stage is not None and self.staged_path(uuid, stage).exists():
            return await self._grow_staged(uuid, size_mb, reserve=bool(reserve), stage=stage)
        path = self.image_path(uuid)
        new_size = _checked_size(size_mb) * _MIB
        action = f"Could not grow volume {uuid} to {size_mb} MiB"
        with storage_errors(action, hide_dir=self._dir):
            st = _stat_image(path, action)
            if new_size < st.st_size:
                raise ValueError(
                    f"Volume {uuid} is {st.st_size // _MIB} MiB; it cannot shrink to {size_mb} MiB."
                )
            sb = _superblock(path, action)
        if reserve is None:
            reserve = _allocated(st) >= st.st_size
        if stage is not None:
            return await self._grow_copy(uuid, st, new_size, reserve, stage, action)
        # The file system may end before the file does (a crash after extending the
        # file): the tail to reserve starts where the file system ends.
        tail_start = min(st.st_size, sb.blocks * sb.block_size)
        with storage_errors(
            action,
            no_space_detail=self._space_note(
                -(-(new_size - tail_start) // _MIB) if reserve else None
            ),
            hide_dir=self._dir,
        ):
            await run(["e2fsck", "-fy", str(path)], timeout=self._timeout, ok_codes=_FSCK_FIXED)
            if reserve:
                await run_blocking(_extend_reserved, path, tail_start, new_size, st.st_size)
            elif new_size > st.st_size:
                await run_blocking(os.truncate, path, new_size)
            await run(["resize2fs", str(path)], timeout=self._timeout)
            await run_blocking(_fsync_file, path)
        return await self.usage(uuid)

    async def _grow_staged(
        self, uuid: str, size_mb: int, *, reserve: bool, stage: int
    ) -> ImageUsage:
        staged = self.staged_path(uuid, stage)
        new_size = _checked_size(size_mb) * _MIB
        action = f"Could not grow volume {uuid} to {size_mb} MiB"
        with storage_errors(
            action,
            no_space_detail=self._space_note(-(-new_size // _MIB) if reserve else None),
            hide_dir=self._dir,
        ):
            try:
                if reserve:
                    await run_blocking(_allocate, staged, 0, new_size)
                else:
                    await run_blocking(os.truncate, staged, new_size)
                await run(["resize2fs", str(staged)], timeout=self._timeout)
                await self._finish(staged, staged, stage)
            except BaseException:
                _discard(staged)
                raise
        return await self._usage_of(uuid, staged)

    async def _grow_copy(
        self, uuid: str, st: os.stat_result, new_size: int, reserve: bool, stage: int, action: str
    ) -> ImageUsage:
        staged = self.staged_path(uuid, stage)
        # The copy is sparse (it may drop the image's reservation): reserve all of it.
        needed_mb = -(-(new_size if reserve else _allocated(st)) // _MIB)
        with storage_errors(
            action, no_space_detail=self._space_note(needed_mb), hide_dir=self._dir
        ):
            await run_blocking(_unlink, staged)
            try:
                await self._copy(self.image_path(uuid), staged)
                await run(
                    ["e2fsck", "-fy", str(staged)], timeout=self._timeout, ok_codes=_FSCK_FIXED
                )
                if reserve:
                    await run_blocking(_allocate, staged, 0, new_size)
                elif new_size > st.st_size:
                    await run_blocking(os.truncate, staged, new_size)
                await run(["resize2fs", str(staged)], timeout=self._timeout)
                await self._finish(staged, staged, stage)
            except BaseException:
                _discard(staged)
                raise
        return await self._usage_of(uuid, staged)

    async def set_reservation(
        self, uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Allocate every block of the image on the host, or give back what is unused.

        Releasing punches the blocks that were reserved but never written (unwritten
        extents, which read as zeros) back into holes, so the image's bytes are
        unchanged. Written blocks stay. The image must not be attached while its
        reservation is released. If reserving runs out of host space, the partial
        reservation is released again and the error has ``no_space`` set. Idempotent.
        """
        path = self.image_path(uuid)
        action = (
            f"Could not reserve host space for volume {uuid}"
            if reserve
            else f"Could not release the host space of volume {uuid}"
        )
        with storage_errors(action, hide_dir=self._dir):
            st = _stat_image(path, action)
        needed_mb = -(-max(0, st.st_size - _allocated(st)) // _MIB)
        if stage is not None:
            # On a copy: a sparse copy has released everything already; the whole
            # size is reserved again from there.
            needed_mb = -(-(st.st_size if reserve else _allocated(st)) // _MIB)
        target = path if stage is None else self.staged_path(uuid, stage)
        with storage_errors(
            action, no_space_detail=self._space_note(needed_mb), hide_dir=self._dir
        ):
            try:
                if stage is not None:
                    await run_blocking(_unlink, target)
                    await self._copy(path, target)
                if reserve:
                    await run_blocking(_reserve_whole, target, st.st_size)
                else:
                    await run_blocking(_release, target)
                if stage is not None:
                    await self._finish(target, path, stage)
            except BaseException:
                if stage is not None:
                    _discard(target)
                raise
        return await self._usage_of(uuid, target)

    async def usage(self, uuid: str) -> ImageUsage:
        """Size and free space from the superblock, host allocation from ``stat``.

        No subprocess. Reflects the file system as its last writer closed it: exact for
        an image that is not attached.
        """
        return await self._usage_of(uuid, self.image_path(uuid))

    async def _usage_of(self, uuid: str, path: Path) -> ImageUsage:
        action = f"Could not read the usage of volume {uuid}"
        with storage_errors(action, hide_dir=self._dir):
            st = _stat_image(path, action)
            sb = _superblock(path, action)
        return ImageUsage(
            size_mb=sb.blocks * sb.block_size // _MIB,
            free_mb=sb.free_blocks * sb.block_size // _MIB,
            allocated_mb=_allocated(st) // _MIB,
        )

    async def check(self, uuid: str) -> tuple[bool, str]:
        """``e2fsck -fn``: read-only, changes nothing. Returns (clean, the tool's output)."""
        path = self.image_path(uuid)
        action = f"Could not check the file system of volume {uuid}"
        with storage_errors(action, hide_dir=self._dir):
            _stat_image(path, action)
            # Every exit status is an answer here: 4 (errors left) and 8 (not an ext4
            # image) both mean "not clean".
            done = await run(
                ["e2fsck", "-fn", str(path)], timeout=self._timeout, ok_codes=range(256)
            )
        output = (done.stdout + done.stderr).replace(f"{self._dir}/", "")
        return done.returncode == 0, output

    async def replay_journal(self, uuid: str) -> None:
        """``e2fsck -E journal_only``: what the kernel would do at the next mount, done
        now, so read-only mounts, exports and copies see a consistent file system."""
        path = self.image_path(uuid)
        action = f"Could not recover the journal of volume {uuid}"
        with storage_errors(action, hide_dir=self._dir):
            _stat_image(path, action)
            await run(
                ["e2fsck", "-y", "-E", "journal_only", str(path)],
                timeout=self._timeout,
                ok_codes=(0, 1, 2),
            )

    def list_images(self) -> list[str]:
        """UUIDs with an image, a leftover temporary file or a staged image, sorted, each
        once."""
        return self._uuids_named(staged_only=False)

    def list_staged(self) -> list[str]:
        """UUIDs that have a staged image, sorted, each once."""
        return self._uuids_named(staged_only=True)

    def _uuids_named(self, *, staged_only: bool) -> list[str]:
        with storage_errors("Could not list the image directory"):
            names = os.listdir(self._dir)
        found = set()
        for name in names:
            stem, staged, epoch = name.partition(_STAGED)
            if staged and epoch.isdigit() and _UUID.fullmatch(stem):
                found.add(stem)
                continue
            if staged_only:
                continue
            for suffix in (_TMP, _IMG):
                if name.endswith(suffix):
                    stem = name.removesuffix(suffix)
                    if _UUID.fullmatch(stem):
                        found.add(stem)
                    break
        return sorted(found)

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer can still allocate on the data directory's file system."""
        with storage_errors("Could not read the free space of the image directory"):
            st = os.statvfs(self._dir)
        return st.f_bavail * st.f_frsize

    def capacity_bytes(self) -> int:
        """Size of the data directory's file system."""
        with storage_errors("Could not read the size of the image directory's file system"):
            st = os.statvfs(self._dir)
        return st.f_blocks * st.f_frsize

    # ---- files in and out (volumed extension); the work is in storage/_transfer.py

    async def import_tar(
        self, uuid: str, chunks: AsyncIterator[bytes], *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Replace the contents with a streamed tar archive, atomically (a new image made
        with ``mke2fs -d`` is renamed over the old one, or becomes the staged image of
        ``stage``). ``ImportRefused`` keeps the old contents; see
        :mod:`volumed.storage._transfer`."""
        path = self.image_path(uuid)
        dest = path if stage is None else self.staged_path(uuid, stage)
        await self._transfers.import_tar(
            uuid, path, chunks, reserve=reserve, label=_label(uuid), dest=dest, tag=stage
        )
        return await self._usage_of(uuid, dest)

    async def export_tar(self, uuid: str) -> AsyncIterator[bytes]:
        """Check the file tree now and return it as a tar stream, read from the image."""
        return await self._exports.export_tar(uuid, self.image_path(uuid))

    async def discard_transfers(self, uuid: str | None = None) -> None:
        """Remove an interrupted import's leftovers (all transfer leftovers when None)."""
        if uuid is not None:
            _checked(uuid)
        with storage_errors("Could not remove transfer leftovers", hide_dir=self._dir):
            await run_blocking(self._transfers.discard, uuid)

    def transfer_leftovers(self) -> list[str]:
        """Files and directories in ``.transfer/``, relative to the image directory."""
        return self._transfers.leftovers()

    async def _copy(self, source: Path, tmp: Path) -> None:
        try:
            await run(
                ["cp", "--reflink=always", "--", str(source), str(tmp)], timeout=self._timeout
            )
            return
        except subprocess.CalledProcessError:
            # EOPNOTSUPP on ext4, EXDEV across file systems: copy the data instead.
            await run_blocking(_unlink, tmp)
        await run(["cp", "--sparse=always", "--", str(source), str(tmp)], timeout=self._timeout)

    def _space_note(self, needed_mb: int | None) -> Callable[[], str]:
        def note() -> str:
            need = (
                f"{needed_mb} MiB"
                if needed_mb is not None
                else "a few MiB for file-system metadata"
            )
            try:
                free = f"{self.free_bytes() // _MIB} MiB"
            except StorageError:
                free = "an unknown amount"
            return f"the operation needs {need} and {free} is free"

        return note


def _checked(uuid: str) -> str:
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
        raise ValueError(f"{uuid!r} is not a lowercase canonical UUID.")
    return uuid


def _checked_size(size_mb: int) -> int:
    if isinstance(size_mb, bool) or not isinstance(size_mb, int) or size_mb < 1:
        raise ValueError(f"A volume size must be a positive number of MiB, not {size_mb!r}.")
    return size_mb


def _stat_image(path: Path, action: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise StorageError(f"{action}: its image does not exist.") from exc


def _superblock(path: Path, action: str) -> Superblock:
    try:
        return read_superblock(path)
    except NotExt4 as exc:
        raise StorageError(f"{action}: its image holds no ext4 file system.") from exc


def _tmp_of(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(_IMG) + _TMP)


def _label(uuid: str) -> str:
    # ext4 labels hold at most 16 bytes.
    return f"vol-{uuid[:8]}"


def _allocated(st: os.stat_result) -> int:
    return st.st_blocks * 512


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    """Best-effort cleanup while another error is already on its way up."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _new_image_file(path: Path, size: int, reserve: bool) -> None:
    """A brand-new file of ``size`` bytes, sparse or with every block allocated; a
    leftover of an interrupted attempt under the same name goes first."""
    path.unlink(missing_ok=True)
    # O_EXCL: the image is always a brand-new inode, never the blocks of an old one.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        if reserve:
            # Unwritten extents: allocated on the host, read as zeros.
            os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def _allocate(path: Path, offset: int, length: int) -> None:
    # On ext4 and XFS this allocates unwritten extents: no data is written and the
    # existing content is kept.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, offset, length)
    finally:
        os.close(fd)


def _extend_reserved(path: Path, start: int, new_size: int, old_size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        try:
            if new_size > start:
                os.posix_fallocate(fd, start, new_size - start)
        except OSError:
            # The file system still ends at or before old_size, so cutting the file
            # back there frees the partial allocation without touching any data.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, old_size)
            raise
    finally:
        os.close(fd)


def _reserve_whole(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            # Hand back what was allocated before ENOSPC, or a failed reservation
            # would still eat the host space other volumes need.
            with contextlib.suppress(OSError):
                punch_unwritten(fd)
            raise
        os.fsync(fd)
    finally:
        os.close(fd)


def _release(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        punch_unwritten(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_durably(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` and fsync their directory (one thread hop)."""
    os.rename(source, target)
    _fsync_dir(target.parent)


def _place_durably(staged: Path, target: Path) -> Placed:
    """``staged`` becomes ``target`` if there is no ``target`` yet (one thread hop)."""
    try:
        os.link(staged, target)
    except FileExistsError:
        staged.unlink(missing_ok=True)
        return Placed.TAKEN
    except FileNotFoundError:
        return Placed.GONE
    # A crash before the unlink leaves both names: the next claim drops the staged one.
    staged.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return Placed.OURS


def _fsync_dir(path: Path) -> None:
    # Makes the rename or unlink itself durable, not only the file's content.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
