"""Contract tests for the ext4 image backend, against real mke2fs/e2fsck/resize2fs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from volumed.domain.storage import StorageDriver, StorageError
from volumed.storage import Ext4ImageDriver

# Runs in the SQLite pass only: the image driver alone: no metadata store is involved.
pytestmark = pytest.mark.store_independent

run = asyncio.run
NewUuid = Callable[[], str]


def sh(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)


def fsck_clean(image: Path) -> bool:
    return sh("e2fsck", "-fn", image).returncode == 0


def debugfs_write(image: Path, host_file: Path, dest: str) -> None:
    done = sh("debugfs", "-w", "-R", f"write {host_file} {dest}", image)
    assert "Allocated inode" in done.stdout, done.stdout + done.stderr


def debugfs_cat(image: Path, path: str) -> bytes:
    done = subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, check=True
    )
    return done.stdout


def fs_uuid(image: Path) -> str:
    out = sh("dumpe2fs", "-h", image).stdout
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Filesystem UUID"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _put_file(image: Path, tmp_path: Path, content: bytes, dest: str = "/hello.txt") -> None:
    host = tmp_path / f"host-{os.urandom(4).hex()}"
    host.write_bytes(content)
    debugfs_write(image, host, dest)


def test_implements_the_port(driver: Ext4ImageDriver) -> None:
    port: StorageDriver = driver
    assert port.image_path("0" * 8 + "-0000-0000-0000-" + "0" * 12).suffix == ".img"


def test_create_dynamic_image(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    usage = run(driver.create(vid, 64, reserve=False))
    path = driver.image_path(vid)
    assert path.stat().st_size == 64 * 2**20
    assert usage.size_mb == 64
    assert 50 < usage.free_mb < 64
    assert usage.allocated_mb < 4
    assert fsck_clean(path)
    assert run(driver.check(vid))[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(driver.images_dir) == [path.name]
    assert run(driver.usage(vid)) == usage


def test_create_reserved_image(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    usage = run(driver.create(vid, 64, reserve=True))
    assert usage.allocated_mb >= 64
    assert usage.size_mb == 64
    assert fsck_clean(driver.image_path(vid))


def test_create_never_reuses_old_data(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    vid = new_uuid()
    run(driver.create(vid, 32, reserve=False))
    _put_file(driver.image_path(vid), tmp_path, b"secret")
    run(driver.delete(vid))
    run(driver.create(vid, 32, reserve=False))
    assert debugfs_cat(driver.image_path(vid), "/hello.txt") == b""
    # Replacing an existing image also starts from a fresh file system.
    _put_file(driver.image_path(vid), tmp_path, b"secret")
    run(driver.create(vid, 32, reserve=False))
    assert debugfs_cat(driver.image_path(vid), "/hello.txt") == b""


def test_delete_is_idempotent(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    run(driver.create(vid, 16, reserve=False))
    run(driver.delete(vid))
    assert not driver.image_path(vid).exists()
    run(driver.delete(vid))
    run(driver.delete(new_uuid()))
    assert driver.list_images() == []


def test_leftover_tmp_is_cleaned_by_create(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    tmp = driver.images_dir / f"{vid}.img.tmp"
    tmp.write_bytes(b"half-written garbage from a crash" * 1000)
    assert driver.list_images() == [vid]
    usage = run(driver.create(vid, 32, reserve=False))
    assert not tmp.exists()
    assert usage.size_mb == 32
    assert fsck_clean(driver.image_path(vid))
    assert driver.list_images() == [vid]


def test_leftover_tmp_is_cleaned_by_delete(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    (driver.images_dir / f"{vid}.img.tmp").write_bytes(b"x")
    run(driver.delete(vid))
    assert os.listdir(driver.images_dir) == []


def test_list_images_dedupes_and_ignores_strangers(
    driver: Ext4ImageDriver, new_uuid: NewUuid
) -> None:
    a, b = sorted([new_uuid(), new_uuid()])
    run(driver.create(a, 16, reserve=False))
    (driver.images_dir / f"{a}.img.tmp").write_bytes(b"")
    (driver.images_dir / f"{b}.img.tmp").write_bytes(b"")
    (driver.images_dir / "notes.img").write_bytes(b"")
    (driver.images_dir / f"{a.upper()}.img").write_bytes(b"")
    assert driver.list_images() == [a, b]
    assert driver.list_staged() == []
    c = new_uuid()
    for name in (f"{b}.img.e1", f"{b}.img.e3", f"{c}.img.e2", f"{a}.img.ex", "notes.img.e1"):
        (driver.images_dir / name).write_bytes(b"")
    assert driver.list_staged() == sorted([b, c])
    assert driver.list_images() == sorted([a, b, c])


def test_free_bytes(driver: Ext4ImageDriver) -> None:
    st = os.statvfs(driver.images_dir)
    assert abs(driver.free_bytes() - st.f_bavail * st.f_frsize) < 64 * 2**20


def test_clone_copies_files_and_gets_its_own_uuid(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    src, dst = new_uuid(), new_uuid()
    run(driver.create(src, 64, reserve=False))
    _put_file(driver.image_path(src), tmp_path, b"hello from the source\n")
    usage = run(driver.clone(src, dst, reserve=False))
    clone = driver.image_path(dst)
    assert debugfs_cat(clone, "/hello.txt") == b"hello from the source\n"
    assert fsck_clean(clone)
    assert fsck_clean(driver.image_path(src))
    assert fs_uuid(clone) != fs_uuid(driver.image_path(src))
    assert usage.size_mb == 64
    assert usage.allocated_mb < 8
    assert not (driver.images_dir / f"{dst}.img.tmp").exists()


def test_clone_reserved(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    src, dst = new_uuid(), new_uuid()
    run(driver.create(src, 32, reserve=False))
    usage = run(driver.clone(src, dst, reserve=True))
    assert usage.allocated_mb >= 32
    assert fsck_clean(driver.image_path(dst))


def test_clone_of_a_once_mounted_image(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    # tune2fs -U refuses an image mounted since its last check; clone must cope.
    # The suite runs as root (CI does): loop mounting is part of what it proves.
    assert os.geteuid() == 0, "loop mounting needs root"
    src, dst = new_uuid(), new_uuid()
    run(driver.create(src, 32, reserve=False))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert sh("mount", "-o", "loop", driver.image_path(src), mnt).returncode == 0
    try:
        (mnt / "guest.txt").write_text("written while mounted\n")
    finally:
        assert sh("umount", mnt).returncode == 0
    run(driver.clone(src, dst, reserve=False))
    assert debugfs_cat(driver.image_path(dst), "/guest.txt") == b"written while mounted\n"
    assert fsck_clean(driver.image_path(dst))
    assert fs_uuid(driver.image_path(dst)) != fs_uuid(driver.image_path(src))


def test_clone_errors(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    src = new_uuid()
    with pytest.raises(StorageError, match="image does not exist") as info:
        run(driver.clone(src, new_uuid(), reserve=False))
    assert not info.value.no_space
    with pytest.raises(ValueError):
        run(driver.clone(src, src, reserve=False))
    assert driver.list_images() == []


def test_grow_follows_and_is_redoable(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    vid = new_uuid()
    path = driver.image_path(vid)
    before = run(driver.create(vid, 64, reserve=False))
    _put_file(path, tmp_path, b"kept across grow\n")
    after = run(driver.grow(vid, 128))
    assert after.size_mb == 128
    assert after.free_mb - before.free_mb >= 60
    assert after.allocated_mb < 8
    assert fsck_clean(path)
    # Same size again: nothing to do, still clean.
    assert run(driver.grow(vid, 128)) == after
    # A crash after the file was extended but before resize2fs finished: redo completes.
    os.truncate(path, 192 * 2**20)
    redone = run(driver.grow(vid, 192))
    assert redone.size_mb == 192
    assert fsck_clean(path)
    assert debugfs_cat(path, "/hello.txt") == b"kept across grow\n"


def test_grow_keeps_the_reservation(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    run(driver.create(vid, 32, reserve=True))
    usage = run(driver.grow(vid, 96))
    assert usage.size_mb == 96
    assert usage.allocated_mb >= 96
    assert fsck_clean(driver.image_path(vid))


def test_grow_refuses_to_shrink(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    run(driver.create(vid, 64, reserve=False))
    with pytest.raises(ValueError, match="cannot shrink"):
        run(driver.grow(vid, 32))
    with pytest.raises(StorageError, match="image does not exist"):
        run(driver.grow(new_uuid(), 64))


def test_set_reservation_both_ways_keeps_data(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    vid = new_uuid()
    path = driver.image_path(vid)
    run(driver.create(vid, 64, reserve=False))
    payload = os.urandom(3 * 2**20)
    _put_file(path, tmp_path, payload, "/data.bin")
    digest = _digest(path)
    dynamic = run(driver.usage(vid))

    reserved = run(driver.set_reservation(vid, reserve=True))
    assert reserved.allocated_mb >= 64
    assert _digest(path) == digest
    assert run(driver.set_reservation(vid, reserve=True)) == reserved

    released = run(driver.set_reservation(vid, reserve=False))
    assert released.allocated_mb <= dynamic.allocated_mb + 1
    assert _digest(path) == digest
    assert debugfs_cat(path, "/data.bin") == payload
    assert fsck_clean(path)
    assert run(driver.set_reservation(vid, reserve=False)) == released


BAD_UUIDS = [
    "",
    "../../etc/passwd",
    "12345678-1234-1234-1234-1234567890AB",
    "{12345678-1234-1234-1234-1234567890ab}",
    "123456781234123412341234567890ab",
    "12345678-1234-1234-1234-1234567890ab\n",
    "12345678-1234-1234-1234-1234567890ab/../x",
]


@pytest.mark.parametrize("bad", BAD_UUIDS)
def test_bad_uuid_is_refused(driver: Ext4ImageDriver, new_uuid: NewUuid, bad: str) -> None:
    with pytest.raises(ValueError):
        driver.image_path(bad)
    with pytest.raises(ValueError):
        run(driver.create(bad, 16, reserve=False))
    with pytest.raises(ValueError):
        run(driver.delete(bad))
    with pytest.raises(ValueError):
        run(driver.clone(new_uuid(), bad, reserve=False))
    assert os.listdir(driver.images_dir) == []


@pytest.mark.parametrize("size", [0, -1, True])
def test_bad_size_is_refused(driver: Ext4ImageDriver, new_uuid: NewUuid, size: int) -> None:
    with pytest.raises(ValueError):
        run(driver.create(new_uuid(), size, reserve=False))


def test_no_space_on_create_leaves_nothing(small_fs: Path, new_uuid: NewUuid) -> None:
    driver = Ext4ImageDriver(small_fs / "images", timeout_s=60)
    vid = new_uuid()
    with pytest.raises(StorageError) as info:
        run(driver.create(vid, 64, reserve=True))
    assert info.value.no_space
    assert "64 MiB" in info.value.message
    assert str(small_fs) not in info.value.message
    assert os.listdir(driver.images_dir) == []


def test_no_space_on_reserve_gives_the_space_back(small_fs: Path, new_uuid: NewUuid) -> None:
    driver = Ext4ImageDriver(small_fs / "images", timeout_s=60)
    vid = new_uuid()
    dynamic = run(driver.create(vid, 64, reserve=False))
    with pytest.raises(StorageError) as info:
        run(driver.set_reservation(vid, reserve=True))
    assert info.value.no_space
    assert run(driver.usage(vid)).allocated_mb <= dynamic.allocated_mb + 1
    assert fsck_clean(driver.image_path(vid))


def test_usage_and_check_of_a_broken_image(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    vid = new_uuid()
    driver.image_path(vid).write_bytes(b"\0" * 8192)
    clean, output = run(driver.check(vid))
    assert not clean
    assert output
    assert str(driver.images_dir) not in output
    with pytest.raises(StorageError, match="no ext4 file system"):
        run(driver.usage(vid))
    with pytest.raises(StorageError, match="image does not exist"):
        run(driver.usage(new_uuid()))


def test_tool_failure_is_a_storage_error(driver: Ext4ImageDriver, new_uuid: NewUuid) -> None:
    src, dst = new_uuid(), new_uuid()
    driver.image_path(src).write_bytes(b"\0" * 2**20)
    with pytest.raises(StorageError, match="e2fsck exited with status 8") as info:
        run(driver.clone(src, dst, reserve=False))
    assert isinstance(info.value.__cause__, subprocess.CalledProcessError)
    assert not info.value.no_space
    assert str(driver.images_dir) not in info.value.message
    assert driver.list_images() == [src]


def test_concurrent_operations_on_different_volumes(
    driver: Ext4ImageDriver, new_uuid: NewUuid
) -> None:
    uuids = [new_uuid() for _ in range(6)]

    async def scenario() -> None:
        await asyncio.gather(
            *(driver.create(u, 32, reserve=i % 2 == 0) for i, u in enumerate(uuids))
        )
        clones = [new_uuid() for _ in uuids]
        await asyncio.gather(
            *(driver.clone(u, c, reserve=False) for u, c in zip(uuids, clones, strict=True)),
            *(driver.grow(u, 48) for u in uuids),
        )

    run(scenario())
    assert len(driver.list_images()) == 12
    assert not [n for n in os.listdir(driver.images_dir) if n.endswith(".tmp")]
    for name in os.listdir(driver.images_dir):
        assert fsck_clean(driver.images_dir / name)


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02, 0.05])
def test_cancelled_create_leaves_no_tmp(
    driver: Ext4ImageDriver, new_uuid: NewUuid, delay: float
) -> None:
    vid = new_uuid()

    async def scenario() -> None:
        # Either outcome is fine; what matters is what is left on disk.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(driver.create(vid, 256, reserve=True), delay)

    run(scenario())
    assert not (driver.images_dir / f"{vid}.img.tmp").exists()
    path = driver.image_path(vid)
    assert not path.exists() or fsck_clean(path)
