"""The guest's PID 1 (a busybox ``sh`` script) and the per-instance script it sources.

The init mounts the volumes, reports ``ready`` on the control port, runs the workload
and, when the workload ends or the host asks it to stop, syncs and unmounts every
volume before powering off. Lines it writes on the control port (QEMU also logs them
to ``status.log``, so they outlive a restart of volumed):

- ``ready``: the volumes are mounted and the workload is about to run;
- ``fail <sentence>``: the guest could not get ready (e.g. a volume did not mount);
- ``exit <code>``: the workload exited with ``code``;
- ``killed``: the workload outlived the drain timeout and was killed;
- ``halted``: every volume is unmounted; power-off follows.

The host writes ``stop <seconds>`` to ask for a clean shutdown within that drain time.
Everything the tenant chose (paths, arguments, environment) reaches the guest only as
single-quoted shell words in the instance script, and never reaches a host tool.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["GUEST_MODULES", "INIT_SCRIPT", "GuestDisk", "instance_script"]

GUEST_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
)
"""Kernel modules the init loads, in dependency order (ext4 is built into the kernel)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_INIT_TEMPLATE = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "volumed-init: cannot load $m"
done
port=""
for _ in $(seq 100); do
    for p in /dev/vport*p1; do [ -e "$p" ] && port=$p; done
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "volumed-init: no control port"; poweroff -f; }
exec 3<>"$port"
say() { echo "$*" >&3; }
halt_guest() {
    kill -KILL -1 2>/dev/null
    sync
    umount -a -r 2>/dev/null
    sync
    say halted
    poweroff -f
}
fail() { say "fail $*"; halt_guest; }
mount_volume() {  # serial, mount point, options
    dev=""
    for _ in $(seq 100); do
        for d in /sys/block/vd*; do
            [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && dev="/dev/${d##*/}"
        done
        [ -n "$dev" ] && break
        sleep 0.05
    done
    [ -n "$dev" ] || fail "the disk of the volume at $2 did not appear"
    mkdir -p "$2" && mount -t ext4 -o "$3" "$dev" "$2" || fail "cannot mount the volume at $2"
}
. /volumed/instance.sh
say ready
( run_workload ) </dev/null 3>&- &
workload=$!
(
    while :; do
        read -r cmd arg <&3 || { sleep 0.2; continue; }
        if [ "$cmd" = stop ]; then
            kill -TERM "$workload" 2>/dev/null
            ( sleep "$arg"; touch /run/killed; kill -KILL "$workload" 2>/dev/null ) &
        fi
    done
) &
wait "$workload"
code=$?
if [ -e /run/killed ]; then say killed; else say "exit $code"; fi
halt_guest
"""


INIT_SCRIPT = _INIT_TEMPLATE.replace("{modules}", " ".join(GUEST_MODULES))


@dataclass(slots=True, frozen=True)
class GuestDisk:
    """A volume as the guest sees it: the disk's serial, where to mount it, how."""

    serial: str
    at: str
    readonly: bool


def instance_script(
    disks: Sequence[GuestDisk], argv: Sequence[str], env: Mapping[str, str], workdir: str
) -> str:
    """The shell the init sources: mount ``disks``, then define ``run_workload``."""
    lines = [
        f"mount_volume {shlex.quote(d.serial)} {shlex.quote(d.at)} "
        + ("ro" if d.readonly else "rw")
        for d in disks
    ]
    lines.append("run_workload() {")
    lines.append(f"    cd {shlex.quote(workdir or '/')} || exit 126")
    for name, value in env.items():
        if _ENV_NAME.fullmatch(name):
            lines.append(f"    export {name}={shlex.quote(value)}")
    lines.append("    exec " + " ".join(shlex.quote(a) for a in argv))
    lines.append("}")
    return "\n".join(lines) + "\n"
