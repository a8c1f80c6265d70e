#!/usr/bin/env bash
# Install Piano Buddy as a service on Raspberry Pi OS Bookworm (Python 3.11) or Trixie (3.13).
#
#   sudo systemd/install.sh install      (what `make install` runs)
#   sudo systemd/install.sh uninstall    (what `make uninstall` runs; recordings are kept)
#
# Options (before or after the command):
#   --root DIR     install into DIR as a file-system root (image builds, tests): no apt, no
#                  systemctl; the user is added to DIR/etc/passwd when it exists
#   --no-apt       do not install Debian packages
#   --no-start     enable the service but do not (re)start it
#   --purge        uninstall also removes /etc/piano-buddy (never the recordings)
# Environment: PIP_INSTALL_ARGS (extra pip arguments), PYTHON (default python3).
#
# Idempotent: a second run upgrades the package in place, keeps /etc/piano-buddy/config.toml
# and /etc/default/piano-buddy, and restarts the service.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
APT=1
START=1
PURGE=0
COMMAND=install
PYTHON=${PYTHON:-python3}
PIP_INSTALL_ARGS=${PIP_INSTALL_ARGS:-}

while [ $# -gt 0 ]; do
    case "$1" in
        install|uninstall) COMMAND=$1 ;;
        --root) ROOT=$(realpath -m "$2"); shift ;;
        --root=*) ROOT=$(realpath -m "${1#--root=}") ;;
        --no-apt) APT=0 ;;
        --no-start) START=0 ;;
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

NAME=piano-buddy
OPT=/opt/$NAME
VENV=$OPT/venv
MODELS=$OPT/models_tflite
ETC=/etc/$NAME
CONFIG=$ETC/config.toml
DEFAULTS=/etc/default/$NAME
UNIT=/etc/systemd/system/$NAME.service
WANTS=/etc/systemd/system/multi-user.target.wants/$NAME.service
# Opening hours: the services the generated timers start, and the generator itself.
HOURS_UNITS="$NAME-open.service $NAME-close.service"
GENERATOR=/etc/systemd/system-generators/$NAME-hours-generator
RECORDINGS=/var/lib/$NAME/recordings
EXAMPLE_CONFIG=$SRC/firmware/piano_buddy/config.example.toml

STAGE=""
trap '[ -n "$STAGE" ] && rm -rf "$STAGE"' EXIT

say() { printf 'piano-buddy install: %s\n' "$*"; }
die() { printf 'piano-buddy install: error: %s\n' "$*" >&2; exit 1; }

# systemd is managing this machine (not a chroot, not a container without it, not --root).
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ "$(id -u)" != 0 ] && [ -z "$ROOT" ]; then
    die "run as root: sudo make $COMMAND"
fi

apt_packages() {
    # gcc, python3-dev, libasound2-dev: pyalsaaudio builds from source. For Python >= 3.12
    # (Trixie) lgpio and python-rtmidi have no aarch64 wheels and build too: lgpio needs swig
    # (linked statically, PYPI=1 below); python-rtmidi needs g++, and pkg-config to find ALSA
    # (without it, it builds silently without ALSA MIDI). alsa-utils: aplay -l, speaker-test.
    local pkgs="python3 python3-venv python3-dev gcc libc6-dev libasound2-dev alsa-utils"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info >= (3, 12))'; then
        pkgs="$pkgs swig g++ pkg-config"
    fi
    local missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        say "Debian packages already present"
        return
    fi
    say "apt-get install$missing"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

ensure_user() {
    local passwd="$ROOT/etc/passwd"
    if [ -n "$ROOT" ] && [ ! -f "$passwd" ]; then
        say "no $passwd: skipping the user (create '$NAME' in the image)"
        return
    fi
    local prefix=()
    [ -n "$ROOT" ] && prefix=(--prefix "$ROOT")
    # The unit names the gpio group; plain Debian has none (Raspberry Pi OS does). input: a
    # USB keyboard or Makey Makey as the buttons.
    for g in audio gpio input; do
        grep -q "^$g:" "$ROOT/etc/group" || groupadd "${prefix[@]}" --system "$g"
    done
    if grep -q "^$NAME:" "$passwd"; then
        usermod "${prefix[@]}" -a -G audio,gpio,input "$NAME"
    else
        say "adding system user $NAME (groups audio, gpio, input)"
        useradd "${prefix[@]}" --system --user-group --no-create-home \
            --home-dir "/var/lib/$NAME" --shell /usr/sbin/nologin --groups audio,gpio,input "$NAME"
    fi
}

install_venv() {
    local venv="$ROOT$VENV"
    local want have=""
    want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ -x "$venv/bin/python" ] && have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        # A new venv after an OS upgrade (3.11 -> 3.13): compiled modules are per version.
        [ -n "$have" ] && say "venv has Python $have, system has $want: rebuilding it"
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
    fi
    # Build from a clean copy so the checkout gets no root-owned build/ or *.egg-info.
    STAGE=$(mktemp -d)
    local stage=$STAGE
    tar -C "$SRC" --exclude=.git --exclude='.venv*' --exclude=build --exclude=out \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$stage" -xf -
    say "pip install ${SRC}[pi] into $VENV (a few minutes on a Pi: pyalsaaudio compiles)"
    # PYPI=1 makes lgpio's source build link its C library statically (no liblgpio needed).
    # shellcheck disable=SC2086
    PYPI=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
        --upgrade $PIP_INSTALL_ARGS "${stage}[pi]"
    rm -rf "$stage"
}

install_files() {
    install -d -m 0755 "$ROOT$OPT" "$ROOT$MODELS" "$ROOT$ETC" "$ROOT/etc/default" \
        "$ROOT/etc/systemd/system/multi-user.target.wants"
    local n=0 f
    for f in "$SRC"/models_tflite/*.tflite "$SRC"/models_tflite/*.md "$SRC"/models_tflite/MANIFEST.sha256; do
        [ -e "$f" ] || continue
        install -m 0644 "$f" "$ROOT$MODELS/"
        n=$((n + 1))
    done
    for f in genie.tflite genie_encoder.tflite melody.tflite; do
        [ -e "$ROOT$MODELS/$f" ] || say "warning: $MODELS/$f is missing (run 'make models' first?)"
    done
    say "models: $n files in $MODELS"
    [ -f "$SRC/README.md" ] && install -m 0644 "$SRC/README.md" "$ROOT$OPT/README.md"

    if [ -f "$ROOT$CONFIG" ]; then
        say "keeping $CONFIG"
    elif [ -f "$EXAMPLE_CONFIG" ]; then
        install -m 0644 "$EXAMPLE_CONFIG" "$ROOT$CONFIG"
        say "wrote $CONFIG from the commented example"
    else
        die "no example config at $EXAMPLE_CONFIG"
    fi
    if [ ! -f "$ROOT$DEFAULTS" ]; then
        cat > "$ROOT$DEFAULTS" <<'EOF'
# Environment of piano-buddy.service (read at each start).
# Extra arguments after `piano-buddy --config /etc/piano-buddy/config.toml run --mode box`,
# e.g. another config file:
#PIANO_BUDDY_ARGS="--config /etc/piano-buddy/test.toml"
# Log level (DEBUG, INFO, WARNING):
#PIANO_BUDDY_LOG=INFO
EOF
        chmod 0644 "$ROOT$DEFAULTS"
    fi

    install -d -m 0755 "$ROOT/var/lib/$NAME"
    install -d -m 0750 "$ROOT$RECORDINGS"
    if grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
        local ids
        ids=$(awk -F: -v u="$NAME" '$1 == u {print $3 ":" $4}' "$ROOT/etc/passwd")
        chown -R "$ids" "$ROOT$RECORDINGS"
    fi

    install -m 0644 "$SRC/systemd/$NAME.service" "$ROOT$UNIT"
    local u
    for u in $HOURS_UNITS; do
        install -m 0644 "$SRC/systemd/$u" "$ROOT/etc/systemd/system/$u"
    done
    install -D -m 0755 "$SRC/systemd/$NAME-hours-generator" "$ROOT$GENERATOR"
    # What `systemctl enable` does, also without a running systemd (chroot, image, --root).
    ln -sfn "$UNIT" "$ROOT$WANTS"
}

# The timers the generator wrote (or none, if [museum] sets no hours) take effect now.
restart_hours_timers() {
    local t
    for t in "$NAME-open.timer" "$NAME-close.timer"; do
        if [ -e "/run/systemd/generator/$t" ]; then
            systemctl restart "$t"
            say "opening hours: $t $(systemctl show -P NextElapseUSecRealtime "$t" 2>/dev/null | sed 's/^/next /')"
        else
            systemctl stop "$t" 2>/dev/null || true
        fi
    done
}

start_service() {
    if ! systemd_running; then
        say "systemd is not running here (chroot, container or --root): the service is enabled and starts at the next boot"
        return
    fi
    systemctl daemon-reload     # also reruns the hours generator: timers from the config
    systemctl enable "$NAME.service" >/dev/null
    restart_hours_timers
    if [ "$START" = 1 ]; then
        systemctl restart "$NAME.service"
        say "started: systemctl status $NAME; journalctl -u $NAME -f"
    fi
}

do_install() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python >= 3.11 needed (Raspberry Pi OS Bookworm or later); $PYTHON is $("$PYTHON" -V 2>&1)"
    if [ "$APT" = 1 ] && [ -z "$ROOT" ]; then apt_packages; fi
    ensure_user
    install_venv
    install_files
    start_service
    say "done. Check the wiring with: sudo $VENV/bin/piano-buddy selftest (it stops the service for the test and starts it again)"
}

do_uninstall() {
    if systemd_running; then
        systemctl disable --now "$NAME.service" 2>/dev/null || true
    fi
    rm -f "$ROOT$WANTS" "$ROOT$UNIT" "$ROOT$GENERATOR"
    local u
    for u in $HOURS_UNITS; do rm -f "$ROOT/etc/systemd/system/$u"; done
    if systemd_running; then systemctl daemon-reload; fi
    rm -rf "$ROOT$OPT"
    rm -f "$ROOT$DEFAULTS"
    if [ "$PURGE" = 1 ]; then
        rm -rf "$ROOT$ETC"
    elif [ -f "$ROOT$CONFIG" ] && [ -f "$EXAMPLE_CONFIG" ] && cmp -s "$ROOT$CONFIG" "$EXAMPLE_CONFIG"; then
        rm -f "$ROOT$CONFIG"
        rmdir "$ROOT$ETC" 2>/dev/null || true
    elif [ -e "$ROOT$CONFIG" ]; then
        say "keeping your edited $CONFIG (--purge removes it)"
    fi
    if [ -d "$ROOT$RECORDINGS" ]; then
        # The user goes; its recordings stay, owned by root, readable by the administrator.
        chown -R 0:0 "$ROOT$RECORDINGS"
        say "keeping the recordings in $RECORDINGS"
    fi
    if grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
        local prefix=()
        [ -n "$ROOT" ] && prefix=(--prefix "$ROOT")
        userdel "${prefix[@]}" "$NAME"
    fi
    say "uninstalled (Debian packages were left installed)"
}

case "$COMMAND" in
    install) do_install ;;
    uninstall) do_uninstall ;;
esac
