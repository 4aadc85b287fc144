"""Backups of a running server: the database as of one instant, and each image exactly
as it was at that instant.

A backup is what a ``kill -9`` at that instant would leave, minus the half-done work:
restoring it is starting a server on it, which resumes the jobs the database records
(every job is redoable), and no image in it is copied in the middle of a change.

How (rounds, each ending in a database snapshot at an instant T):

1. copy every image, reading only its written extents (so the copy is sparse, and a
   reserved image costs what it holds, not its size), noting its identity (inode,
   size, mtime, ctime) before and after; a copy whose source changed meanwhile is made
   again;
2. take the database snapshot (:mod:`volumed.store.snapshot`): the rows at T;
3. for every live row of the snapshot, compare its image now with the identity noted
   when it was copied. Unchanged from the copy until now, with T in between, means the
   copy *is* the image at T. An image that changed, appeared or went away is copied
   again; so is one that a job other than an import held at T (a grow rewrites the
   image in place; an import only renames a new one over it). Then the next round;
4. when a round finds nothing to redo, the backup is consistent: the copies of images
   whose rows are not in the snapshot are dropped, the images instances boot from
   (``guest-images/``, made by ``volumed image import``) are copied, and ``backup.json``
   is written last.

Each round is short on a quiet server (the second one finds nothing); a server that
keeps changing images makes the backup give up after ``wait_s`` with a clear error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from volumed.store.snapshot import SnapshotRow

__all__ = ["BackupError", "BackupReport", "ImageCopier", "take_backup"]

MANIFEST = "backup.json"
GUEST_IMAGES = "guest-images"
FORMAT = 1
_IMG = ".img"
_SAFE_JOBS = frozenset({"import"})
"""Jobs that never write an existing image in place (an import renames a new one)."""

Identity = tuple[int, int, int, int]


class BackupError(Exception):
    """The backup could not be made (the message says why); nothing usable was written."""


def identity(path: Path) -> Identity | None:
    """What changes whenever the file's bytes or allocation do; None if it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def copy_sparse(source: Path, target: Path) -> None:
    """``target`` (replaced, synced) as a copy of ``source`` that keeps its holes and
    reads only its written extents; ``cp --sparse=always`` where the file system cannot
    map extents (FIEMAP)."""
    from volumed.storage import copy_written

    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                copy_written(src, dst)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV):
                    raise
                os.ftruncate(dst, 0)
                subprocess.run(
                    ["cp", "--sparse=always", "--", str(source), str(tmp)],
                    check=True,
                    capture_output=True,
                )
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    os.replace(tmp, target)


@dataclass
class ImageCopier:
    """Copies of images from ``source`` into ``target``, each with the identity its
    source had for the whole copy."""

    source: Path
    target: Path
    copied: dict[str, Identity | None] = field(default_factory=dict)
    bytes_allocated: int = 0

    def copy(self, uuid: str, attempts: int = 5) -> None:
        src = self.source / (uuid + _IMG)
        dst = self.target / (uuid + _IMG)
        for _ in range(attempts):
            before = identity(src)
            if before is None:
                dst.unlink(missing_ok=True)
                self.copied[uuid] = None
                return
            try:
                copy_sparse(src, dst)
            except (FileNotFoundError, subprocess.CalledProcessError):
                if identity(src) is None:
                    continue  # deleted while we copied: the next attempt records that
                raise
            if identity(src) == before:
                self.copied[uuid] = before
                return
        raise BackupError(f"the image of volume {uuid} kept changing while it was copied")

    def stale(self, uuid: str) -> bool:
        """The image changed since it was copied (or was never copied)."""
        if uuid not in self.copied:
            return True
        return identity(self.source / (uuid + _IMG)) != self.copied[uuid]

    def keep_only(self, uuids: Iterable[str]) -> list[str]:
        """Drop the copies of every other image; the kept UUIDs that have an image."""
        wanted = set(uuids)
        for uuid in list(self.copied):
            if uuid not in wanted:
                (self.target / (uuid + _IMG)).unlink(missing_ok=True)
                del self.copied[uuid]
        kept = sorted(u for u, ident in self.copied.items() if ident is not None)
        self.bytes_allocated = sum((self.target / (u + _IMG)).stat().st_blocks * 512 for u in kept)
        return kept


@dataclass(frozen=True)
class BackupReport:
    images: list[str]
    rounds: int
    bytes_allocated: int
    seconds: float
    guest_images: int = 0


def take_backup(
    images_dir: Path,
    dest: Path,
    snapshot: Callable[[Path], list[SnapshotRow]],
    *,
    store: str,
    version: str,
    wait_s: float = 60.0,
    guest_images: Path | None = None,
) -> BackupReport:
    """Write a consistent backup into ``dest`` (absent or empty): ``snapshot(dest)``
    writes the database copy into ``dest`` and returns its rows."""
    started = time.monotonic()
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: a backup goes into a new directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    copier = ImageCopier(images_dir, dest / "images")
    copier.target.mkdir(mode=0o700, exist_ok=True)
    todo = _image_uuids(images_dir)
    rounds = 0
    while True:
        rounds += 1
        for uuid in todo:
            copier.copy(uuid)
        rows = [row for row in snapshot(dest) if not row.deleted]
        busy = [r.uuid for r in rows if r.job is not None and r.job not in _SAFE_JOBS]
        held = [u for u in busy if identity(images_dir / (u + _IMG)) is not None]
        todo = sorted({*held, *(r.uuid for r in rows if copier.stale(r.uuid))})
        if not todo:
            break
        if time.monotonic() - started > wait_s:
            raise BackupError(
                f"volumes kept changing for {wait_s:.0f} s ({', '.join(todo[:5])}"
                f"{', …' if len(todo) > 5 else ''}); retry when the server is quieter, "
                "or give more time with --wait"
            )
        if held:
            time.sleep(0.2)  # a job holds an image: give it a moment to finish
    kept = copier.keep_only(r.uuid for r in rows)
    guests = copy_guest_images(guest_images, dest / GUEST_IMAGES) if guest_images else []
    manifest = {
        "format": FORMAT,
        "volumed": version,
        "store": store,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": kept,
        "static": sorted(r.uuid for r in rows if r.static and r.uuid in set(kept)),
        "guest_images": guests,
    }
    _write_json(dest / MANIFEST, manifest)
    took = time.monotonic() - started
    return BackupReport(kept, rounds, copier.bytes_allocated, took, len(guests))


def copy_guest_images(source: Path, target: Path, attempts: int = 5) -> list[str]:
    """Copy every complete imported image (``<dir>/rootfs.img`` + ``image.json``, made by
    ``volumed image import``); returns the directory names copied. An image replaced
    while it is copied (a re-import swaps its directory) is copied again."""
    if not source.is_dir():
        return []
    copied = []
    for entry in sorted(source.iterdir()):
        if entry.name.startswith(".") or not (entry / "image.json").is_file():
            continue  # an import in progress, or not an image
        for _ in range(attempts):
            before = identity(entry), identity(entry / "rootfs.img")
            out = target / entry.name
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                copy_sparse(entry / "rootfs.img", out / "rootfs.img")
                shutil.copy2(entry / "image.json", out / "image.json")
            except FileNotFoundError:
                continue
            if (identity(entry), identity(entry / "rootfs.img")) == before:
                copied.append(entry.name)
                break
        else:
            raise BackupError(f"the imported image {entry.name} kept changing while copied")
    return copied


def read_manifest(source: Path) -> dict[str, object]:
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(
            f"{source} holds no {MANIFEST}: not a volumed backup, or one that did not finish"
        )
    manifest: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def _image_uuids(images_dir: Path) -> list[str]:
    return sorted(p.name.removesuffix(_IMG) for p in images_dir.iterdir() if p.name.endswith(_IMG))


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
