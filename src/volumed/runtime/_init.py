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

__all__ = ["GUEST_MODULES", "INIT_SCRIPT", "ROOTFS_SERIAL", "GuestDisk", "instance_script"]

GUEST_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "overlay",
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
find_disk() {  # serial -> $dev
    dev=""
    for _ in $(seq 100); do
        for d in /sys/block/vd*; do
            [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && dev="/dev/${d##*/}"
        done
        [ -n "$dev" ] && return 0
        sleep 0.05
    done
    return 1
}
ROOT=""
use_rootfs() {  # serial of the image's disk: a read-only root under a tmpfs overlay
    find_disk "$1" || fail "the image's disk did not appear"
    mkdir -p /image /layer /newroot
    mount -t ext4 -o ro "$dev" /image || fail "cannot mount the image"
    mount -t tmpfs tmpfs /layer && mkdir -p /layer/upper /layer/work
    mount -t overlay overlay -o lowerdir=/image,upperdir=/layer/upper,workdir=/layer/work \
        /newroot || fail "cannot lay the image's root out"
    mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
    mount -t proc proc /newroot/proc
    mount -t sysfs sysfs /newroot/sys
    mount -t devtmpfs devtmpfs /newroot/dev
    # Our busybox, to change to the working directory after chroot (which cds to /)
    # even in an image without a shell.
    mkdir -p /newroot/.volumed && cp /bin/busybox /newroot/.volumed/busybox
    ROOT=/newroot
}
mount_volume() {  # serial, mount point, options
    find_disk "$1" || fail "the disk of the volume at $2 did not appear"
    mkdir -p "$ROOT$2" && mount -t ext4 -o "$3" "$dev" "$ROOT$2" \
        || fail "cannot mount the volume at $2"
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


ROOTFS_SERIAL = "rootfs"


def instance_script(
    disks: Sequence[GuestDisk],
    argv: Sequence[str],
    env: Mapping[str, str],
    workdir: str,
    *,
    rootfs: bool = False,
) -> str:
    """The shell the init sources: lay out the image's root (``rootfs``: its disk has
    serial ``rootfs``), mount ``disks``, then define ``run_workload``."""
    lines = [f"use_rootfs {ROOTFS_SERIAL}"] if rootfs else []
    lines += [
        f"mount_volume {shlex.quote(d.serial)} {shlex.quote(d.at)} "
        + ("ro" if d.readonly else "rw")
        for d in disks
    ]
    lines.append("run_workload() {")
    for name, value in env.items():
        if _ENV_NAME.fullmatch(name):
            lines.append(f"    export {name}={shlex.quote(value)}")
    words = " ".join(shlex.quote(a) for a in argv)
    if rootfs:
        enter = 'cd "$0" || exit 126; exec "$@"'
        lines.append(
            '    exec chroot "$ROOT" /.volumed/busybox sh -c '
            f"{shlex.quote(enter)} {shlex.quote(workdir or '/')} {words}"
        )
    else:
        lines.append(f"    cd {shlex.quote(workdir or '/')} || exit 126")
        lines.append(f"    exec {words}")
    lines.append("}")
    return "\n".join(lines) + "\n"
