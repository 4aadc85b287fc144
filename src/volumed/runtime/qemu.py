"""The QEMU runtime: each instance is a QEMU guest with its volumes as virtio disks.

The guest boots the Debian kernel through PVH (no firmware boot loader) on the ``q35``
machine, with the initramfs of :mod:`.assets` plus a small archive of the instance's
own (its mounts, command and environment). ``microvm`` would boot faster, but its
kernel hangs calibrating timers when TCG runs on a loaded host (it has no HPET), which
q35 has. KVM is used when ``accel`` is ``kvm``; ``auto`` picks TCG here because this
host's /dev/kvm cannot run stock kernels (see docs/guests.md).

Read-write volumes are opened with QEMU's image locking, so two writers on one image
are refused by QEMU itself; read-only ones (``readonly``, ``rox``) are opened
``readonly=on`` and mounted ``ro`` by the guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from volumed.domain.model import Instance
from volumed.domain.runtime import (
    BootInfo,
    BootVolume,
    ConsoleSlice,
    ExitHandler,
    GuestExit,
    RuntimeFailure,
    StopReason,
)
from volumed.runtime._cpio import CpioWriter
from volumed.runtime._guest import Guest, GuestPaths
from volumed.runtime._init import ROOTFS_SERIAL, GuestDisk, instance_script
from volumed.runtime.assets import GuestAssets
from volumed.runtime.console import ConsoleLog
from volumed.runtime.images import ImageCatalog

log = logging.getLogger("volumed.runtime")

__all__ = ["QemuRuntime", "QemuSettings", "classify_exit", "node_dir_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_QEMU_OVERHEAD_MB = 64
"""Host memory a guest costs beyond its own RAM (QEMU itself), for the refusal check."""
_STOP_GRACE_S = 15.0
"""How long after the drain timeout the guest may take to sync, unmount and power off
before it is killed."""


@dataclass(slots=True, frozen=True)
class QemuSettings:
    run_dir: Path
    """This node's guests: ``<run_dir>/<instance uuid>/``."""
    accel: str = "tcg"
    boot_timeout_s: float = 120.0
    drain_timeout_ms: int = 10_000
    console_limit_bytes: int = 1_048_576
    host_reserve_mb: int = 512
    """Host memory never promised to guests."""


class QemuRuntime:
    name = "qemu"
    node_bound = True

    def __init__(self, assets: GuestAssets, images: ImageCatalog, settings: QemuSettings) -> None:
        self._assets = assets
        self._images = images
        self._settings = settings
        self._guests: dict[str, Guest] = {}
        self._on_exit: ExitHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        digest = hashlib.sha256(str(settings.run_dir.resolve()).encode()).hexdigest()[:12]
        self._sockets = Path(tempfile.gettempdir()) / f"volumed-{digest}"

    @property
    def accel(self) -> str:
        return self._settings.accel

    def watch(self, on_exit: ExitHandler) -> None:
        self._on_exit = on_exit

    # ------------------------------------------------------------------ start

    async def start(self, instance: Instance, volumes: Sequence[BootVolume]) -> BootInfo:
        old = self._guests.pop(instance.uuid, None)
        if old is not None:
            old.requested = True
            await old.kill()
        image = self._images.find(instance.image)
        if image is None:
            raise RuntimeFailure(
                f"image '{instance.image[:80]}' is not known here (GET /v1/images lists them)"
            )
        self._check_memory(instance)
        paths = self._paths(instance.uuid)
        paths.directory.mkdir(parents=True, exist_ok=True)
        self._sockets.mkdir(mode=0o700, exist_ok=True)
        for stale in (paths.console, paths.control, paths.status):
            stale.unlink(missing_ok=True)
        disks = [GuestDisk(f"vol{i}", v.at, v.readonly) for i, v in enumerate(volumes)]
        script = instance_script(
            disks,
            image.argv(instance.args),
            image.environment(instance.env),
            image.workdir,
            rootfs=image.rootfs is not None,
        )
        extra = CpioWriter()
        extra.file("volumed/instance.sh", script.encode())
        paths.initrd.write_bytes(self._assets.initrd.read_bytes() + extra.finish())
        began = time.monotonic()
        guest = await Guest.launch(
            instance.uuid,
            paths,
            self._argv(instance, paths, volumes, image.rootfs),
            ConsoleLog(paths.directory, self._settings.console_limit_bytes),
        )
        guest.memory_mb = instance.memory_mb
        problem = await guest.wait_ready(self._settings.boot_timeout_s)
        if problem is not None:
            guest.requested = True
            await guest.kill()
            await guest.detach()
            raise RuntimeFailure(_explain(problem, paths))
        boot_us = int((time.monotonic() - began) * 1_000_000)
        self._guests[instance.uuid] = guest
        self._follow(guest)
        return BootInfo(boot_time_us=boot_us)

    def _argv(
        self,
        instance: Instance,
        paths: GuestPaths,
        volumes: Sequence[BootVolume],
        rootfs: Path | None,
    ) -> list[str]:
        argv = [
            str(self._assets.qemu),
            "-name", f"volumed-{instance.uuid}",
            "-accel", self._settings.accel,
            "-M", "q35",
            "-m", str(instance.memory_mb),
            "-smp", str(instance.vcpus),
            "-display", "none",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-kernel", str(self._assets.kernel),
            "-initrd", str(paths.initrd),
            "-append", "console=ttyS0 panic=-1 quiet no_timer_check",
            "-chardev", f"socket,id=con,path={paths.console},server=on,wait=on",
            "-serial", "chardev:con",
            "-device", "virtio-serial-pci",
            "-chardev",
            f"socket,id=ctl,path={paths.control},server=on,wait=off,logfile={paths.status}",
            "-device", "virtserialport,chardev=ctl,name=volumed",
        ]  # fmt: skip
        if rootfs is not None:
            argv += [
                "-drive",
                f"id=root,file={rootfs},format=raw,if=none,readonly=on",
                "-device",
                f"virtio-blk-pci,drive=root,serial={ROOTFS_SERIAL}",
            ]
        for index, volume in enumerate(volumes):
            # Image paths are volumed's own (<images>/<uuid>.img): no tenant text, no commas.
            readonly = ",readonly=on" if volume.readonly else ""
            argv += [
                "-drive",
                f"id=v{index},file={volume.image},format=raw,if=none,cache=none,aio=threads"
                f"{readonly}",
                "-device",
                f"virtio-blk-pci,drive=v{index},serial=vol{index}",
            ]
        return argv

    def _check_memory(self, instance: Instance) -> None:
        """Refuse a guest the host cannot hold: what is available now, less what running
        guests may still touch of their RAM, less a reserve."""
        available = _mem_available_mb()
        promised = sum(max(g.memory_mb - g.resident_mb(), 0) for g in self._guests.values())
        free = available - promised - self._settings.host_reserve_mb
        wanted = instance.memory_mb + _QEMU_OVERHEAD_MB
        if wanted > free:
            raise RuntimeFailure(
                f"the host cannot hold {instance.memory_mb} MB more (about {max(free, 0)} MB "
                "is free for guests)"
            )

    # ------------------------------------------------------------------ stop

    async def stop(
        self, instance: Instance, *, force: bool = False, drain_timeout_ms: int | None = None
    ) -> GuestExit:
        guest = self._guests.pop(instance.uuid, None)
        if guest is None:
            return GuestExit(StopReason.USER | StopReason.PLATFORM | StopReason.FORCED)
        guest.requested = True
        if not force:
            drain_ms = (
                self._settings.drain_timeout_ms if drain_timeout_ms is None else drain_timeout_ms
            )
            await guest.request_stop(max(drain_ms, 0) / 1000)
            await guest.wait_exited(max(drain_ms, 0) / 1000 + _STOP_GRACE_S)
        await guest.kill()
        await guest.detach()
        return classify_exit(guest.lines, requested=True, forced=guest.forced)

    # ------------------------------------------------------------------ exits

    def _follow(self, guest: Guest) -> None:
        task = asyncio.create_task(self._await_exit(guest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_exit(self, guest: Guest) -> None:
        await asyncio.shield(guest.exited)
        if guest.requested or self._guests.get(guest.uuid) is not guest:
            return  # stop() owns this end
        del self._guests[guest.uuid]
        await guest.detach()
        outcome = classify_exit(guest.lines, requested=False, forced=False)
        log.info("guest of %s ended by itself (stop_reason %d)", guest.uuid, outcome.reason)
        if self._on_exit is not None:
            await self._on_exit(guest.uuid, outcome)

    async def adopt(self, running: Sequence[Instance]) -> dict[str, GuestExit]:
        gone: dict[str, GuestExit] = {}
        wanted = {i.uuid: i for i in running}
        found: set[str] = set()
        if self._settings.run_dir.is_dir():
            for directory in sorted(self._settings.run_dir.iterdir()):
                uuid = directory.name
                paths = self._paths(uuid)
                console = ConsoleLog(directory, self._settings.console_limit_bytes)
                guest = await Guest.reattach(uuid, paths, console)
                if guest is None:
                    continue
                if uuid not in wanted or uuid in self._guests:
                    log.warning("ending guest %s: no running instance owns it", uuid)
                    guest.requested = True
                    await guest.kill()
                    await guest.detach()
                    continue
                found.add(uuid)
                guest.memory_mb = wanted[uuid].memory_mb
                self._guests[uuid] = guest
                self._follow(guest)
        for uuid in wanted:
            if uuid not in found and uuid not in self._guests:
                lines = _lines_of(self._paths(uuid).status)
                gone[uuid] = classify_exit(lines, requested=False, forced=False)
        return gone

    async def close(self) -> None:
        """Let go of the guests; they keep running and are adopted at the next start."""
        for guest in list(self._guests.values()):
            await guest.detach()
        for task in list(self._tasks):
            task.cancel()
        self._guests.clear()

    # ------------------------------------------------------------------ console

    def console(
        self, instance_uuid: str, node: str | None, offset: int, limit: int
    ) -> ConsoleSlice | None:
        guest = self._guests.get(instance_uuid)
        if guest is not None:
            return guest.console.read(offset, limit)
        # Replicas share the data directory: another node's logs are read from its files.
        run_dir = self._settings.run_dir
        base = run_dir if node is None else run_dir.parent / node_dir_name(node)
        directory = base / instance_uuid
        if not directory.is_dir():
            return None
        return ConsoleLog(directory, self._settings.console_limit_bytes).read(offset, limit)

    async def forget(self, instance_uuid: str) -> None:
        if instance_uuid in self._guests:
            return
        shutil.rmtree(self._settings.run_dir / instance_uuid, ignore_errors=True)

    def _paths(self, uuid: str) -> GuestPaths:
        return GuestPaths(self._settings.run_dir / uuid, self._sockets, uuid)


def node_dir_name(node: str) -> str:
    """A node's directory under ``<data>/guests/``: its name with anything but letters,
    digits, ``.``, ``_`` and ``-`` replaced."""
    return _UNSAFE.sub("_", node)


def classify_exit(lines: Sequence[str], *, requested: bool, forced: bool) -> GuestExit:
    """The ``stop_reason``, ``exit_code`` and ``stop_code`` of a guest that wrote
    ``lines`` on its control port before it ended."""
    asked = StopReason.USER | StopReason.PLATFORM if requested else StopReason(0)
    code = next((_exit_code(x) for x in reversed(lines) if x.startswith("exit ")), None)
    halted = "halted" in lines
    if forced and not halted:
        return GuestExit(asked | StopReason.PLATFORM | StopReason.FORCED)
    if code is not None:
        return GuestExit(asked | StopReason.APP | StopReason.KERNEL, exit_code=code, stop_code=0)
    if "killed" in lines:
        return GuestExit(asked | StopReason.KERNEL, stop_code=0)
    # Ended without a word from its init: QEMU was killed or the kernel crashed.
    return GuestExit(StopReason.KERNEL, stop_code=None)


def _exit_code(line: str) -> int | None:
    try:
        return int(line.split()[1])
    except (IndexError, ValueError):
        return None


def _lines_of(path: Path) -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        return [x.strip() for x in path.read_text("utf-8", "replace").splitlines()]
    return []


def _explain(problem: str, paths: GuestPaths) -> str:
    err = _lines_of(paths.qemu_log)
    if any("lock" in line for line in err):
        return "a volume's image is in use by another guest (QEMU could not lock it)"
    if problem == "the guest ended while booting" and err:
        log.warning("QEMU for %s failed: %s", paths.directory.name, " / ".join(err[-3:]))
    return problem


def _mem_available_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1_048_576
