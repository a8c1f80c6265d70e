#!/usr/bin/env bash
# `make fleet-check`: both playbooks applied to the emulated arm64 root of `make pi-check`
# (Debian bookworm under qemu-user) through Ansible's chroot connection.
#
#   deploy/ansible/tests/chroot.sh [ROOT]     (default build/pi-root; root needed for chroot)
#
# 1. site.yml (first provisioning), 2. site.yml again: nothing may change (idempotent),
# 3. update.yml (the rolling update, serial: 1), 4. what landed in the root is checked.
# Tasks that need a booted box (reboots, systemd, mounting the data partition, raspi-config)
# skip themselves: the chroot connection makes piano_buddy_booted false.
# Needs ansible-playbook on PATH (the Makefile's .venv-ansible). Mounts are undone on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ANSIBLE_DIR=$(cd "$HERE/.." && pwd)
REPO=$(cd "$ANSIBLE_DIR/../.." && pwd)
ROOT=$(realpath -m "${1:-$REPO/build/pi-root}")
LOGS=$REPO/out/fleet-check
T0=$(date +%s)
step() { printf '\nfleet-check [%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "fleet-check: needs root (chroot, mounts): sudo make fleet-check" >&2
    exit 1
fi
if [ ! -f "$ROOT/.pi-root-ready" ]; then
    echo "fleet-check: no emulated root at $ROOT: run 'make pi-check' first (it builds it)" >&2
    exit 1
fi
command -v ansible-playbook >/dev/null || { echo "fleet-check: ansible-playbook not on PATH" >&2; exit 1; }

# shellcheck source=tests/pi/root_mounts.sh
. "$REPO/tests/pi/root_mounts.sh"   # as tests/pi/check.sh: /proc and /dev, not /sys
# Raspberry Pi OS has its FAT boot partition here; the Debian root has none: a stand-in file.
if [ ! -e "$ROOT/boot/firmware/config.txt" ]; then
    mkdir -p "$ROOT/boot/firmware"
    printf '# stand-in for the boot partition'"'"'s config.txt (fleet-check)\n[all]\n' \
        > "$ROOT/boot/firmware/config.txt"
fi

mkdir -p "$LOGS"
export PI_ROOT=$ROOT
# qemu emulates the Pi 4's core (not qemu's "max", whose SVE numpy's OpenBLAS gets wrong).
export QEMU_CPU=${PI_CPU:-cortex-a72}
export ANSIBLE_CONFIG=$ANSIBLE_DIR/ansible.cfg ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
cd "$ANSIBLE_DIR"
play() {   # play NAME PLAYBOOK: run it, log to out/fleet-check/NAME.log, print the recap
    local name=$1; shift
    if ! ansible-playbook -i tests/inventory.chroot.yml "$@" > "$LOGS/$name.log" 2>&1; then
        tail -40 "$LOGS/$name.log" >&2
        echo "fleet-check: $name failed (log: $LOGS/$name.log)" >&2
        exit 1
    fi
    sed -n '/PLAY RECAP/,$p' "$LOGS/$name.log"
}

step "site.yml: first provisioning of $ROOT"
play site site.yml
grep -c '^skipping:' "$LOGS/site.log" | sed 's/^/skipped (booted box only): /'

step "site.yml again: idempotent (changed=0)"
play site-again site.yml
grep -Eq 'pi-root +: ok=[0-9]+ +changed=0 ' "$LOGS/site-again.log" || {
    grep -B3 '^changed:' "$LOGS/site-again.log" >&2
    echo "fleet-check: the second run changed something" >&2; exit 1; }

step "update.yml: the rolling update (serial: 1)"
play update update.yml

step "what landed in the root"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" "$@"; }
test -L "$ROOT/etc/systemd/system/multi-user.target.wants/piano-buddy.service"
for f in piano-buddy.service piano-buddy-open.service piano-buddy-close.service; do
    cmp "$REPO/systemd/$f" "$ROOT/etc/systemd/system/$f"
done
test -x "$ROOT/etc/systemd/system-generators/piano-buddy-hours-generator"
grep -q 'max_volume = 0.5' "$ROOT/etc/piano-buddy/config.toml"     # the box's own value won
grep -q 'BEGIN PIANO BUDDY' "$ROOT/boot/firmware/config.txt"
grep -q '^dtoverlay=max98357a' "$ROOT/boot/firmware/config.txt"
grep -q '^RuntimeWatchdogSec=15' "$ROOT/etc/systemd/system.conf"
grep -q '^LABEL=PBDATA /var/lib/piano-buddy/recordings ext4' "$ROOT/etc/fstab"
grep -q '^ARGS="--collector.textfile.directory=/var/lib/piano-buddy/recordings/stats"' \
    "$ROOT/etc/default/prometheus-node-exporter"
test -L "$ROOT/etc/systemd/system/multi-user.target.wants/prometheus-node-exporter.service"
grep -q '^piano-buddy:.*prometheus' "$ROOT/etc/group"        # node_exporter reads the counts
in_root /opt/piano-buddy/venv/bin/piano-buddy --config /etc/piano-buddy/config.toml hours
# The generator as systemd would run it at the root's first boot.
gen=$(mktemp -d "$ROOT/tmp/generator.XXXXXX")
in_root /etc/systemd/system-generators/piano-buddy-hours-generator "/tmp/${gen##*/}"
test -f "$gen/piano-buddy-open.timer" && test -L "$gen/timers.target.wants/piano-buddy-close.timer"
grep '^OnCalendar=' "$gen/piano-buddy-open.timer"
rm -rf "$gen"

step "fleet-check passed (total $(( $(date +%s) - T0 )) s)"
