# Sourced by scripts/serve and scripts/test: make a fresh machine ready, idempotently.
# Installs the system tools volumed drives (e2fsprogs, util-linux) with apt when missing,
# and the Python package with its locked dependencies into ./.venv.
#
# VOLUMED_LOCK names the lock file to install (requirements/<name>.txt): `runtime` (what
# `volumed serve` needs), `postgres` (plus asyncpg) or `dev` (everything, the default:
# tests, linters, and the tools a test needs, such as systemd-analyze).
#
# VOLUMED_NEEDS_BROWSER=1 (scripts/test) also installs Debian's chromium, which the console
# tests drive through Playwright (Playwright never downloads a browser of its own here).
set -euo pipefail
VOLUMED_LOCK="${VOLUMED_LOCK:-dev}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

need_apt=()
for tool in mke2fs:e2fsprogs e2fsck:e2fsprogs resize2fs:e2fsprogs debugfs:e2fsprogs \
            fallocate:util-linux cp:coreutils curl:curl \
            $([ "$VOLUMED_LOCK" = dev ] && echo systemd-analyze:systemd); do
    command -v "${tool%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if [ "${VOLUMED_NEEDS_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
    need_apt+=(chromium)
fi
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

# The lock files nest: runtime ⊂ postgres ⊂ dev. A venv made for a larger set serves a
# smaller one as it is (scripts/test then scripts/serve installs nothing).
_lock_stamp() {
    echo "$VENV/.installed-$1-$(cat "$ROOT/requirements/$1.txt" "$ROOT/pyproject.toml" \
        | sha256sum | cut -c1-16)"
}
case "$VOLUMED_LOCK" in
runtime) _enough=(runtime postgres dev) ;;
postgres) _enough=(postgres dev) ;;
dev) _enough=(dev) ;;
*) echo "VOLUMED_LOCK must be runtime, postgres or dev, not '$VOLUMED_LOCK'" >&2; exit 2 ;;
esac
_ready=""
for _set in "${_enough[@]}"; do [ -f "$(_lock_stamp "$_set")" ] && _ready=1; done
if [ -z "$_ready" ]; then
    echo "setting up $VENV (requirements/$VOLUMED_LOCK.txt)" >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # Exact versions, each file checked against its hash; then volumed itself, whose
    # dependencies are all in the lock already.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
        -r "$ROOT/requirements/$VOLUMED_LOCK.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
    rm -f "$VENV"/.installed-*
    touch "$(_lock_stamp "$VOLUMED_LOCK")"
fi

# promtool (checks deploy/prometheus/*.yml in the tests): only the binary, taken out of
# Debian's prometheus package without installing it (installing would start a server).
if [ "$VOLUMED_LOCK" = dev ] && ! command -v promtool >/dev/null 2>&1 && [ ! -x "$VENV/bin/promtool" ]; then
    echo "fetching promtool (Debian's prometheus package)" >&2
    _deb_dir="$(mktemp -d)"
    ( cd "$_deb_dir" && { apt-get download -qq prometheus 2>/dev/null \
        || { apt-get update -qq && apt-get download -qq prometheus; }; } ) >/dev/null 2>&1
    dpkg-deb -x "$_deb_dir"/prometheus_*.deb "$_deb_dir/x"
    install -m 0755 "$_deb_dir/x/usr/bin/promtool" "$VENV/bin/promtool"
    rm -rf "$_deb_dir"
fi
