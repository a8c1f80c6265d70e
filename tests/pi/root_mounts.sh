# shellcheck shell=bash
# Sourced by tests/pi/check.sh and deploy/ansible/tests/chroot.sh (bash, set -euo pipefail,
# $ROOT set): what a chroot into the emulated root needs, undone on any exit.
#
# /proc, /dev and /dev/pts are bound; /sys is not: with both the host's /proc/cpuinfo (x86)
# and its /sys CPU topology visible, the cpuinfo library inside TFLite's XNNPACK crashes
# (SIGSEGV in Interpreter()); either alone is fine. A real Pi has an ARM /proc/cpuinfo, so
# this is an emulation artefact. The host's resolver and CA certificates are copied in for
# pip (PyPI only).

MOUNTED=()
cleanup() {
    local i
    for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
        umount -l "${MOUNTED[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() {   # bind SOURCE TARGET-in-root
    mkdir -p "$ROOT$2"
    mount --bind "$1" "$ROOT$2"
    MOUNTED+=("$ROOT$2")
}
bind /proc /proc
bind /dev /dev
bind /dev/pts /dev/pts
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$ROOT/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
fi
