"""What an instance runs: its image's command, environment and working directory.

``busybox`` is built in: its root file system is the guest's initramfs itself (Debian's
static busybox), with Docker's ``busybox`` image configuration (no entrypoint, ``sh`` as
the command). The command follows Docker: the entrypoint, then the instance's ``args``
if it has any, else the image's cmd; the instance's ``env`` is laid over the image's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["BUSYBOX", "GuestImage", "ImageCatalog"]

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(slots=True, frozen=True)
class GuestImage:
    name: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    builtin: bool = False

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*self.entrypoint, *(args or self.cmd)] or ["sh"]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return {**self.env, **env}


BUSYBOX = GuestImage("busybox", cmd=["sh"], env={"PATH": _PATH}, builtin=True)


class ImageCatalog:
    """The images instances may name: ``busybox`` (also as ``busybox:latest``)."""

    def __init__(self) -> None:
        self._images = {BUSYBOX.name: BUSYBOX}

    def find(self, reference: str) -> GuestImage | None:
        name = reference.strip()
        for prefix in ("docker.io/library/", "library/"):
            name = name.removeprefix(prefix)
        return self._images.get(name.removesuffix(":latest"))

    def all(self) -> list[GuestImage]:
        return sorted(self._images.values(), key=lambda image: image.name)
