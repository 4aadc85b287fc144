"""Picking the runtime and QEMU's accelerator from the settings (at start-up)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from volumed.domain.runtime import InstanceRuntime
from volumed.runtime.assets import AssetsMissing, prepare_assets
from volumed.runtime.images import ImageCatalog
from volumed.runtime.qemu import QemuRuntime, QemuSettings, node_dir_name
from volumed.runtime.record import RecordOnlyRuntime
from volumed.settings import Settings, SettingsError

__all__ = ["ChosenRuntime", "choose_runtime"]


@dataclass(slots=True, frozen=True)
class ChosenRuntime:
    runtime: InstanceRuntime
    accel: str
    why: str
    """A sentence for the log: why this runtime."""


def choose_runtime(settings: Settings) -> ChosenRuntime:
    """``qemu`` if asked for (its assets must then be there) or if ``auto`` finds its
    assets; else ``record``."""
    if settings.runtime == "record":
        return ChosenRuntime(RecordOnlyRuntime(), "none", "runtime=record")
    try:
        assets = prepare_assets(settings.guest_assets_dir.resolve())
    except AssetsMissing as exc:
        if settings.runtime == "qemu":
            raise SettingsError(f"runtime=qemu, but {exc}") from None
        return ChosenRuntime(RecordOnlyRuntime(), "none", f"no guests: {exc}")
    accel = settings.guest_accel if settings.guest_accel != "auto" else _usable_accel()
    run_dir = settings.data_dir.resolve() / "guests" / node_dir_name(settings.node)
    runtime = QemuRuntime(
        assets,
        ImageCatalog(settings.guest_images_dir.resolve()),
        QemuSettings(
            run_dir=run_dir,
            accel=accel,
            boot_timeout_s=settings.guest_boot_timeout_s,
            drain_timeout_ms=settings.guest_drain_timeout_ms,
            console_limit_bytes=settings.guest_console_kb * 1024,
        ),
    )
    return ChosenRuntime(runtime, accel, f"kernel {assets.kernel_version}")


def _usable_accel() -> str:
    """kvm only with hardware virtualisation: /dev/kvm backed by PVM (no VMX/SVM flag)
    opens but cannot run stock kernels."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    hardware = re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.MULTILINE) is not None
    return "kvm" if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
