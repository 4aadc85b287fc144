"""Fixtures for the ext4 backend: real files, real e2fsprogs, no mocks."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from volumed.storage import Ext4ImageDriver


@pytest.fixture
def driver(tmp_path: Path) -> Ext4ImageDriver:
    return Ext4ImageDriver(tmp_path / "images", timeout_s=60)


@pytest.fixture
def new_uuid() -> Callable[[], str]:
    return lambda: str(uuid.uuid4())


def _sh(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on a loop-mounted 20 MiB ext4 file system, to run out of space in."""
    assert os.geteuid() == 0, "loop mounting needs root (CI runs as root)"
    backing = tmp_path / "small.img"
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    assert _sh("truncate", "-s", "20M", backing).returncode == 0
    assert _sh("mke2fs", "-q", "-F", "-t", "ext4", backing).returncode == 0
    mounted = _sh("mount", "-o", "loop", backing, mountpoint)
    assert mounted.returncode == 0, f"cannot loop-mount here: {mounted.stderr.strip()}"
    try:
        yield mountpoint
    finally:
        _sh("umount", mountpoint)
