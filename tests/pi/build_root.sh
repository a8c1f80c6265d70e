#!/usr/bin/env bash
# Build (once) a Debian bookworm arm64 root, the userland of Raspberry Pi OS Bookworm, that runs
# here under qemu-user-static. The root is cached: a second run returns at once.
#
#   tests/pi/build_root.sh [ROOT]        (default build/pi-root; needs root, apt, network)
#
# Why Debian and not Raspberry Pi OS itself: Raspberry Pi OS Bookworm is Debian bookworm plus
# the Pi's kernel, firmware and a few desktop packages; the Python, alsa-lib and gcc the
# firmware uses are Debian's. The Pi kernel cannot run here anyway (qemu-user runs only
# userland), so this root checks exactly what can differ on aarch64: wheels, builds, numerics.
set -euo pipefail

ROOT=${1:-build/pi-root}
SUITE=${PI_SUITE:-bookworm}
MIRROR=${PI_MIRROR:-http://deb.debian.org/debian}
# What install.sh would apt-get on a Pi, installed up front so the cached root needs no apt.
PACKAGES=python3,python3-venv,python3-pip,python3-dev,gcc,libc6-dev,libasound2-dev,alsa-utils,swig,g++,pkg-config,ca-certificates,make

if [ -f "$ROOT/.pi-root-ready" ]; then
    echo "pi-root: cached at $ROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "pi-root: building the emulated root needs root (debootstrap, chroot)" >&2
    exit 1
fi

need=""
command -v debootstrap >/dev/null || need="$need debootstrap"
[ -e /usr/bin/qemu-aarch64-static ] || need="$need qemu-user-static"
command -v update-binfmts >/dev/null || need="$need binfmt-support"
if [ -n "$need" ]; then
    echo "pi-root: installing$need"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
fi

# qemu-aarch64 must be registered with binfmt_misc (flag F: no qemu binary inside the root).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "pi-root: qemu-aarch64 is not registered with binfmt_misc (is qemu-user-static installed?)" >&2
    exit 1
fi

rm -rf "$ROOT"
mkdir -p "$ROOT"
start=$(date +%s)
echo "pi-root: debootstrap $SUITE arm64 into $ROOT (about 3 minutes)"
debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" \
    > "$ROOT.debootstrap.log" 2>&1 || {
    echo "pi-root: debootstrap failed; the last lines of $ROOT.debootstrap.log:" >&2
    tail -20 "$ROOT.debootstrap.log" >&2
    exit 1
}
touch "$ROOT/.pi-root-ready"
echo "pi-root: built in $(( $(date +%s) - start )) s"
