# Sourced by scripts/serve and scripts/test: make a fresh machine ready, idempotently.
# Installs the system tools volumed drives (e2fsprogs, util-linux) with apt when missing,
# and the Python package with its pinned dependencies into ./.venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

need_apt=()
for tool in mke2fs:e2fsprogs e2fsck:e2fsprogs resize2fs:e2fsprogs debugfs:e2fsprogs \
            fallocate:util-linux cp:coreutils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if ((${#need_apt[@]})); then
    echo "installing system packages: ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

# Guests (docs/guests.md): QEMU, a static busybox, lz4, and a Debian kernel package
# unpacked under .cache/guest with dpkg-deb -x, so the host's /boot is never touched.
# Skipped with VOLUMED_RUNTIME=record, and on hosts that are not x86-64.
GUEST_DIR="${VOLUMED_GUEST_ASSETS_DIR:-$ROOT/.cache/guest}"
if [ "${VOLUMED_RUNTIME:-auto}" != record ] && [ "$(uname -m)" = x86_64 ]; then
    need_guest=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need_guest+=(qemu-system-x86)
    dpkg -s busybox-static >/dev/null 2>&1 || need_guest+=(busybox-static)
    command -v lz4 >/dev/null 2>&1 || need_guest+=(lz4)
    kernel_missing=1
    compgen -G "$GUEST_DIR/*/boot/vmlinuz-*" >/dev/null && kernel_missing=0
    if ((${#need_guest[@]})) || ((kernel_missing)); then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
    fi
    if ((${#need_guest[@]})); then
        echo "installing guest packages: ${need_guest[*]}" >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${need_guest[@]}" >/dev/null
    fi
    if ((kernel_missing)); then
        kernel_pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
            | awk '/Depends: linux-image-/ {print $2; exit}')"
        echo "unpacking guest kernel $kernel_pkg into $GUEST_DIR" >&2
        mkdir -p "$GUEST_DIR"
        (cd "$GUEST_DIR" && apt-get download -qq "$kernel_pkg" 2>/dev/null \
            && dpkg-deb -x "$kernel_pkg"_*.deb "$kernel_pkg.tmp" \
            && mv "$kernel_pkg.tmp" "$kernel_pkg" && rm -f "$kernel_pkg"_*.deb)
    fi
fi

stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setting up $VENV" >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
