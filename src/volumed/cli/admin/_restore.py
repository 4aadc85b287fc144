"""Restoring a backup (:mod:`volumed.cli.admin._backup`) into an empty data directory.

Images first, the database last: a restore cut short leaves no database, so nothing
mistakes the half-filled directory for a restored one (remove it and run again).
Images of ``static`` volumes are reserved on the host again: a sparse copy keeps only
the blocks that were written.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from volumed.cli.admin._backup import GUEST_IMAGES, BackupError, copy_sparse
from volumed.settings import Settings
from volumed.store import snapshot as snap

__all__ = ["restore_backup"]


def restore_backup(settings: Settings, source: Path, manifest: dict[str, object]) -> int:
    """Restore ``source`` into the data directory and database of ``settings``; returns
    the number of images restored."""
    store = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest.get("store") != store:
        raise BackupError(
            f"the backup is of a {manifest.get('store')} database; the settings name a "
            f"{store} one (set VOLUMED_DATABASE_URL to match)"
        )
    images = [str(u) for u in _list(manifest, "images")]
    missing = [u for u in images if not (source / "images" / f"{u}.img").is_file()]
    if missing:
        raise BackupError(f"the backup lacks the image(s) of {', '.join(missing[:5])}")
    _check_empty_target(settings)
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    for uuid in images:
        copy_sparse(source / "images" / f"{uuid}.img", settings.images_dir / f"{uuid}.img")
    asyncio.run(_reserve(settings, [str(u) for u in _list(manifest, "static")]))
    for name in (str(n) for n in _list(manifest, "guest_images")):
        image = source / GUEST_IMAGES / name
        target = settings.guest_images_dir / name
        target.mkdir(parents=True, exist_ok=True)
        copy_sparse(image / "rootfs.img", target / "rootfs.img")
        shutil.copy2(image / "image.json", target / "image.json")
    if (source / "token").is_file():
        fd = os.open(settings.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle, open(source / "token", "rb") as token:
            shutil.copyfileobj(token, handle)
    if settings.is_sqlite:
        from volumed.bootstrap import sqlite_path

        snap.sqlite_snapshot(source / snap.SQLITE_FILE, sqlite_path(settings.store_url))
    else:
        asyncio.run(snap.postgres_restore(settings.store_url, source / snap.PG_DUMP_FILE))
    return len(images)


def _check_empty_target(settings: Settings) -> None:
    from volumed.cli.admin.fsck import _server_running

    data_dir = settings.data_dir
    if data_dir.is_dir() and _server_running(data_dir):
        raise BackupError(f"a server is running on {data_dir}: stop it first")
    if settings.images_dir.is_dir() and any(settings.images_dir.glob("*.img")):
        raise BackupError(f"{settings.images_dir} already holds images: restore into a new one")
    if settings.is_sqlite:
        from volumed.bootstrap import sqlite_path

        if sqlite_path(settings.store_url).exists():
            raise BackupError(f"{sqlite_path(settings.store_url)} exists: restore into a new one")
        return
    if asyncio.run(_applied(settings)):
        raise BackupError("the PostgreSQL database is not empty: restore into a new one")


async def _applied(settings: Settings) -> set[int]:
    from volumed.bootstrap import open_store

    store = await open_store(settings, migrate=False)
    try:
        return await store.applied_migrations()
    finally:
        await store.close()


async def _reserve(settings: Settings, uuids: list[str]) -> None:
    from volumed.bootstrap import open_storage

    storage = open_storage(settings)
    for uuid in uuids:
        await storage.set_reservation(uuid, reserve=True)


def _list(manifest: dict[str, object], key: str) -> list[object]:
    value = manifest.get(key, [])
    if not isinstance(value, list):
        raise BackupError(f"backup.json: {key} is not a list")
    return value
