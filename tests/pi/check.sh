#!/usr/bin/env bash
# `make pi-check`: the project on an emulated Raspberry Pi OS Bookworm userland (aarch64).
#
#   tests/pi/check.sh [ROOT]     (default build/pi-root; root needed for debootstrap/chroot)
#
# 1. builds (once, cached) a Debian bookworm arm64 root (tests/pi/build_root.sh);
# 2. copies this checkout into it and runs systemd/install.sh inside the chroot, the way
#    `make install` does on a Pi (apt is already satisfied; systemd is not booted, so the
#    unit is only installed and enabled);
# 3. runs the tests for the models, the synth and the turn logic with the installed package
#    under aarch64 (PI_TESTS overrides the list; PI_PYTEST_ARGS adds pytest arguments).
# PI_SUITE=trixie (with another ROOT) checks Python 3.13; PI_CPU picks the emulated core.
# Prints the time of each step. Mounts are undone on any exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=$(realpath -m "${1:-$REPO/build/pi-root}")
PI_TESTS=${PI_TESTS:-"tests/test_genie.py tests/test_melody.py tests/test_synth.py tests/test_conductor.py tests/test_notify.py"}
PI_PYTEST_ARGS=${PI_PYTEST_ARGS:-}
SRC_IN_ROOT=/srv/piano-buddy-src
T0=$(date +%s)

step() { printf '\npi-check [%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "pi-check: needs root (debootstrap, chroot, mounts): sudo make pi-check" >&2
    exit 1
fi

step "emulated root: $ROOT"
"$REPO/tests/pi/build_root.sh" "$ROOT"

# shellcheck source=tests/pi/root_mounts.sh
. "$REPO/tests/pi/root_mounts.sh"
# pip downloads are cached inside the root between runs.
mkdir -p "$ROOT/root/.cache/pip"

step "copy the checkout to $SRC_IN_ROOT"
rm -rf "${ROOT:?}$SRC_IN_ROOT"
mkdir -p "$ROOT$SRC_IN_ROOT"
tar -C "$REPO" --exclude=.git --exclude='.venv*' --exclude=build --exclude=out \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . \
    | tar -C "$ROOT$SRC_IN_ROOT" -xf -

# qemu emulates the Pi's own CPU: Cortex-A72 (Pi 4) by default, PI_CPU=cortex-a76 for a Pi 5.
# qemu's default "max" CPU offers SVE, which no Pi has; numpy's OpenBLAS then picks SVE
# kernels that qemu 7.2 gets wrong (garbage matmul results, "divide by zero in matmul").
PI_CPU=${PI_CPU:-cortex-a72}
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 PIP_DEFAULT_TIMEOUT=120 PIP_DISABLE_PIP_VERSION_CHECK=1 QEMU_CPU="$PI_CPU" "$@"
}

step "uname inside: $(in_root uname -m), $(in_root python3 -V), CPU $PI_CPU"

step "install (systemd/install.sh install, as make install does)"
in_root bash "$SRC_IN_ROOT/systemd/install.sh" install

step "second install (idempotent, keeps the config)"
echo "# edited by pi-check" >> "$ROOT/etc/piano-buddy/config.toml"
in_root bash "$SRC_IN_ROOT/systemd/install.sh" install
grep -q "edited by pi-check" "$ROOT/etc/piano-buddy/config.toml"
test -L "$ROOT/etc/systemd/system/multi-user.target.wants/piano-buddy.service"
in_root /opt/piano-buddy/venv/bin/piano-buddy --version
in_root /opt/piano-buddy/venv/bin/python -c \
    'import alsaaudio, lgpio, gpiozero, mido, numpy, ai_edge_litert, rtmidi
assert rtmidi.API_LINUX_ALSA in rtmidi.get_compiled_api(), "python-rtmidi was built without ALSA"
print("imports ok: numpy", numpy.__version__, "rtmidi", rtmidi.get_rtmidi_version())'

step "pytest for the tests (not part of the box's install)"
in_root /opt/piano-buddy/venv/bin/python -m pip install -q pytest

step "tests under aarch64: $PI_TESTS"
present=""
for t in $PI_TESTS; do
    if [ -e "$ROOT$SRC_IN_ROOT/$t" ]; then present="$present $t"; else echo "pi-check: $t does not exist (skipped)"; fi
done
# The tests import the installed package (not the copied source) and the installed models.
# shellcheck disable=SC2086
in_root bash -c "cd $SRC_IN_ROOT && rm -rf firmware/piano_buddy && \
    GPIOZERO_PIN_FACTORY=mock PIANO_BUDDY_MODELS=/opt/piano-buddy/models_tflite \
    /opt/piano-buddy/venv/bin/python -m pytest -q -p no:cacheprovider $PI_PYTEST_ARGS $present"

step "uninstall keeps the recordings"
touch "$ROOT/var/lib/piano-buddy/recordings/pi-check.mid"
in_root bash "$SRC_IN_ROOT/systemd/install.sh" uninstall
test -e "$ROOT/var/lib/piano-buddy/recordings/pi-check.mid"
test ! -e "$ROOT/opt/piano-buddy"
rm -f "$ROOT/var/lib/piano-buddy/recordings/pi-check.mid"

step "pi-check passed (total $(( $(date +%s) - T0 )) s)"
