"""Staged images (issue 11): with ``stage=`` every data-plane operation only reads the
volume's image and leaves its result in ``<uuid>.img.e<stage>``; :meth:`publish` is the
one step that changes the image, and it can happen once."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage.test_ext4 import debugfs_cat, debugfs_write, fsck_clean
from volumed.domain.storage import Placed
from volumed.storage import Ext4ImageDriver

# Runs in the SQLite pass only: the image driver alone: no metadata store is involved.
pytestmark = pytest.mark.store_independent

run = asyncio.run
NewUuid = Callable[[], str]


def _fingerprint(path: Path) -> tuple[str, int, int]:
    """Content, size and host allocation: what a stale writer could have changed."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_blocks


def test_a_staged_grow_leaves_the_image_alone_until_published(
    driver: Ext4ImageDriver, new_uuid: NewUuid, tmp_path: Path
) -> None:
    vid = new_uuid()
    run(driver.create(vid, 32, reserve=False))
    image = driver.image_path(vid)
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(2 * 2**20))
    debugfs_write(image, payload, "payload")
    before = _fingerprint(image)
    staged = run(driver.grow(vid, 64, reserve=False, stage=7))
    assert staged.size_mb == 64
    assert _fingerprint(image) == before
    assert driver.list_images() == [vid]
    assert run(driver.publish(vid, 7))
    assert run(driver.usage(vid)).size_mb == 64
    assert fsck_clean(image)
    assert debugfs_cat(image, "/payload") == payload.read_bytes()
    # A second rename of the same stage (a stale holder's) finds nothing to move.
    assert not run(driver.publish(vid, 7))
    assert run(driver.usage(vid)).size_mb == 64


def test_a_staged_reservation_switch_works_on_a_copy(
    driver: Ext4ImageDriver, new_uuid: NewUuid
) -> None:
    vid = new_uuid()
    run(driver.create(vid, 32, reserve=False))
    image = driver.image_path(vid)
    before = _fingerprint(image)
    reserved = run(driver.set_reservation(vid, reserve=True, stage=3))
    assert reserved.allocated_mb >= 32
    assert _fingerprint(image) == before
    run(driver.publish(vid, 3))
    assert run(driver.usage(vid)).allocated_mb >= 32
    released = run(driver.set_reservation(vid, reserve=False, stage=4))
    assert released.allocated_mb < 8
    assert run(driver.usage(vid)).allocated_mb >= 32  # the image still reserved
    run(driver.publish(vid, 4))
    assert run(driver.usage(vid)).allocated_mb < 8
    assert fsck_clean(image)


def test_staged_leftovers_are_listed_discarded_and_deleted(
    driver: Ext4ImageDriver, new_uuid: NewUuid
) -> None:
    kept, orphan = new_uuid(), new_uuid()
    run(driver.create(kept, 16, reserve=False))
    run(driver.create(orphan, 16, reserve=False, stage=1))  # a killed format's staged image
    run(driver.grow(kept, 24, reserve=False, stage=5))
    run(driver.grow(kept, 32, reserve=False, stage=6))
    assert driver.list_images() == sorted([kept, orphan])
    run(driver.discard_staged(kept, 5))
    assert not driver.staged_path(kept, 5).exists() and driver.staged_path(kept, 6).exists()
    run(driver.discard_staged(kept))
    assert not driver.staged_path(kept, 6).exists()
    run(driver.delete(orphan))
    assert driver.list_images() == [kept]
    assert sorted(os.listdir(driver.images_dir)) == [f"{kept}.img"]


def test_a_first_image_is_placed_once_and_never_over_another(
    driver: Ext4ImageDriver, new_uuid: NewUuid
) -> None:
    vid = new_uuid()
    run(driver.create(vid, 16, reserve=False, stage=1))
    run(driver.create(vid, 16, reserve=False, stage=2))
    assert not driver.image_path(vid).exists()
    assert run(driver.place(vid, 2)) is Placed.OURS
    image = driver.image_path(vid)
    placed = _fingerprint(image)
    assert not driver.staged_path(vid, 2).exists()
    # Another holder's staged image never replaces it; it is dropped instead.
    assert run(driver.place(vid, 1)) is Placed.TAKEN
    assert not driver.staged_path(vid, 1).exists()
    assert _fingerprint(image) == placed and fsck_clean(image)
    # A staged image someone removed is not placed at all.
    assert run(driver.place(vid, 3)) is Placed.GONE
    assert sorted(os.listdir(image.parent)) == [image.name]
