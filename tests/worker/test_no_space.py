"""A format that finds no space on the host: the volume ends in ``error`` at once, with
the reason, and no image or part of one is left."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_format_failure import fill
from tests.conftest import loop_mounted_disk
from tests.store.harness import database_url, tenant
from tests.worker.test_reconciler import MINUTE_US, formatted
from volumed.bootstrap import Services
from volumed.domain.states import VolumeState
from volumed.settings import Settings


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB ext4 file system, loop-mounted (CI runs as root)."""
    with loop_mounted_disk(tmp_path, "48M") as mount_point:
        yield mount_point


@pytest.fixture
def settings(tmp_path: Path, small_disk: Path) -> Settings:
    """Images on the small disk; the database beside it, where it has room."""
    url = database_url() or f"sqlite:///{tmp_path / 'volumed.db'}"
    return Settings(data_dir=small_disk / "data", database_url=url, runtime="record")


async def test_a_format_without_host_space_ends_in_error_and_leaves_nothing(
    services: Services, small_disk: Path
) -> None:
    owner = await tenant(services.store)
    fill(small_disk)
    # Dynamic: nothing is reserved up front, so mke2fs is the one to find no space.
    failed = await formatted(services, owner, size_mb=200)
    assert failed.state == VolumeState.ERROR
    assert failed.message is not None and "space" in failed.message.lower()
    assert os.listdir(services.storage.images_dir) == []
    # Given up at once, not retried: no space is not a passing trouble.
    assert await services.store.claim_job("w", MINUTE_US) is None
    events = await services.store.volume_events(owner.id, failed.uuid)
    assert [(e.action, e.result, e.state_to) for e in events][-1] == ("format", "error", "error")
