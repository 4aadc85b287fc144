"""What an instance runs: its image's root file system, command, environment and
working directory.

- ``busybox`` is built in: its root file system is the guest's initramfs itself
  (Debian's static busybox), with Docker's ``busybox`` configuration (no entrypoint,
  ``sh`` as the command).
- Imported images (:mod:`.image_import`) live in ``<data>/guest-images/<digest of the
  name>/``: ``rootfs.img`` (read-only ext4, the guest's root under a tmpfs overlay) and
  ``image.json``. The catalog reads that directory on every lookup, so an image imported
  by ``volumed image import`` is usable at once, by every replica sharing the directory.

The command follows Docker: the entrypoint, then the instance's ``args`` if it has any,
else the image's cmd; the instance's ``env`` is laid over the image's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BUSYBOX", "GuestImage", "ImageCatalog", "check_image_name", "image_dir"]

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]{0,126}(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?")


@dataclass(slots=True, frozen=True)
class GuestImage:
    name: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    rootfs: Path | None = None
    """The read-only root file system; None: the initramfs (busybox)."""
    digest: str = ""
    size_bytes: int = 0
    created_at_us: int = 0

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*self.entrypoint, *(args or self.cmd)] or ["sh"]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return {"PATH": _PATH, **self.env, **env}


BUSYBOX = GuestImage("busybox", cmd=["sh"], env={"PATH": _PATH})


def check_image_name(name: str) -> None:
    """Names as Docker writes them: lower-case repository, optional ``:tag``."""
    if not _NAME.fullmatch(name) or name.removesuffix(":latest") == BUSYBOX.name:
        raise ValueError(
            f"{name[:80]!r} is not a valid image name (lower-case letters, digits, '.', '_', "
            "'-', '/', and an optional :tag; 'busybox' is built in)"
        )


def image_dir(images_dir: Path, name: str) -> Path:
    return images_dir / hashlib.sha256(_canonical(name).encode()).hexdigest()[:32]


def _canonical(reference: str) -> str:
    name = reference.strip()
    for prefix in ("docker.io/library/", "library/"):
        name = name.removeprefix(prefix)
    return name.removesuffix(":latest")


class ImageCatalog:
    """The images instances may name: ``busybox`` and the imported ones."""

    def __init__(self, images_dir: Path | None = None) -> None:
        self._dir = images_dir

    def find(self, reference: str) -> GuestImage | None:
        if _canonical(reference) == BUSYBOX.name:
            return BUSYBOX
        if self._dir is None:
            return None
        return _load(image_dir(self._dir, reference))

    def all(self) -> list[GuestImage]:
        found = [BUSYBOX]
        if self._dir is not None and self._dir.is_dir():
            for directory in sorted(self._dir.iterdir()):
                image = _load(directory)
                if image is not None:
                    found.append(image)
        return sorted(found, key=lambda image: image.name)


def _load(directory: Path) -> GuestImage | None:
    try:
        record = json.loads((directory / "image.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return GuestImage(
        name=str(record["name"]),
        entrypoint=list(record.get("entrypoint") or []),
        cmd=list(record.get("cmd") or []),
        env=dict(record.get("env") or {}),
        workdir=str(record.get("workdir") or "/"),
        rootfs=directory / "rootfs.img",
        digest=str(record.get("digest") or ""),
        size_bytes=int(record.get("size_bytes") or 0),
        created_at_us=int(record.get("created_at_us") or 0),
    )
