"""What a guest boots from, found on the host and prepared once.

- QEMU: ``qemu-system-x86_64`` on ``PATH`` (Debian ``qemu-system-x86``).
- The kernel: a Debian ``linux-image-*`` package unpacked (``dpkg-deb -x``) under the
  assets directory, so the host's /boot is never touched. QEMU boots it through PVH,
  which needs the uncompressed ``vmlinux``: it is cut out of the ``vmlinuz`` once.
- The initramfs: Debian's static busybox, the virtio modules of that kernel and our
  init (:mod:`._init`), written as a cpio archive once.

The prepared files go to ``<assets>/built/``, named by a digest of what they were made
from, written under a temporary name and renamed, so servers sharing the directory
never see half a file.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from volumed.runtime._cpio import CpioWriter
from volumed.runtime._init import GUEST_MODULES, INIT_SCRIPT

__all__ = ["AssetsMissing", "GuestAssets", "prepare_assets"]

_BUSYBOX = Path("/bin/busybox")
_XZ = b"\xfd7zXZ\x00"
_GZIP = b"\x1f\x8b\x08\x00"
_LZ4_LEGACY = b"\x02\x21\x4c\x18"


class AssetsMissing(Exception):
    """Something a guest needs is not installed; the message says what and how to fix it."""


@dataclass(slots=True, frozen=True)
class GuestAssets:
    qemu: Path
    kernel: Path
    """The uncompressed kernel (ELF with a PVH entry point)."""
    initrd: Path
    """The base initramfs: busybox, modules, init."""
    kernel_version: str


def prepare_assets(assets_dir: Path) -> GuestAssets:
    """Find QEMU, the unpacked kernel package and busybox, and build what is missing.
    Raises AssetsMissing naming the first thing not there."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise AssetsMissing("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if not _BUSYBOX.is_file() or b"ld-linux" in _BUSYBOX.read_bytes()[:65536]:
        raise AssetsMissing("a static busybox is not installed (apt-get install busybox-static)")
    vmlinuz, modules = _find_kernel(assets_dir)
    version = vmlinuz.name.removeprefix("vmlinuz-")
    built = assets_dir / "built"
    built.mkdir(parents=True, exist_ok=True)
    kernel = built / f"vmlinux-{version}"
    if not kernel.exists():
        _write_atomically(kernel, _uncompress_kernel(vmlinuz.read_bytes()))
    initrd = _base_initrd(built, modules)
    return GuestAssets(Path(qemu), kernel, initrd, version)


def _find_kernel(assets_dir: Path) -> tuple[Path, Path]:
    candidates = sorted(assets_dir.glob("*/boot/vmlinuz-*"))
    if not candidates:
        raise AssetsMissing(
            f"no Debian kernel is unpacked under {assets_dir} "
            "(./scripts/serve does it: apt-get download linux-image-cloud-amd64's image "
            "package, then dpkg-deb -x into that directory)"
        )
    vmlinuz = candidates[-1]
    version = vmlinuz.name.removeprefix("vmlinuz-")
    modules = vmlinuz.parent.parent / "lib" / "modules" / version / "kernel"
    if not modules.is_dir():
        raise AssetsMissing(f"the kernel package at {vmlinuz.parent.parent} has no modules")
    return vmlinuz, modules


def _uncompress_kernel(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage (xz, gzip or lz4, as Debian builds them)."""
    for magic in (_XZ, _GZIP, _LZ4_LEGACY):
        at = vmlinuz.find(magic)
        if at < 0:
            continue
        payload = vmlinuz[at:]
        if magic is _XZ:
            data = lzma.LZMADecompressor().decompress(payload)
        elif magic is _GZIP:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
        else:
            # The legacy lz4 frame is followed by the rest of the bzImage: lz4 then
            # exits 1 after writing the whole kernel, which the ELF check below proves.
            data = subprocess.run(
                ["lz4", "-dc"], input=payload, capture_output=True, check=False
            ).stdout
        if data[:4] == b"\x7fELF":
            return data
    raise AssetsMissing("cannot find the compressed kernel inside the vmlinuz (is lz4 installed?)")


def _base_initrd(built: Path, modules: Path) -> Path:
    busybox = _BUSYBOX.read_bytes()
    files = {f"lib/modules/{name}.ko": _module(modules, name) for name in GUEST_MODULES}
    digest = hashlib.sha256(busybox + INIT_SCRIPT.encode())
    for name, data in files.items():
        digest.update(name.encode() + data)
    path = built / f"initrd-{digest.hexdigest()[:16]}.cpio"
    if path.exists():
        return path
    cpio = CpioWriter()
    for directory in ("bin", "dev", "lib", "lib/modules", "proc", "sys", "tmp", "run", "volumed"):
        cpio.directory(directory)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    for name, data in files.items():
        cpio.file(name, data)
    _write_atomically(path, cpio.finish())
    return path


def _module(modules: Path, name: str) -> bytes:
    found = sorted(modules.rglob(f"{name}.ko"))
    if not found:
        raise AssetsMissing(f"the kernel has no module {name}")
    return found[0].read_bytes()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
