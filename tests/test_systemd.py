"""The systemd unit, checked by systemd's own tools and against the firmware it starts.

``systemd-analyze verify`` needs the ExecStart binary to exist and finds the targets the unit
pulls in (sysinit.target...) through its unit path. Rather than edit the unit under test, each
check builds a small root: the unit in /etc/systemd/system, this host's system units, and an
executable at /opt/piano-buddy/venv/bin/piano-buddy, then runs ``--root`` on it. verify exits 0
on unknown keys and unparsable values, so any output on stderr is a failure too.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "piano-buddy.service"
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")


def _host_units() -> Path | None:
    for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (d / "sysinit.target").exists():
            return d
    return None


def unit_root(tmp_path: Path, unit_text: str) -> Path:
    units = _host_units()
    if units is None:
        pytest.skip("this host has no systemd unit directory with sysinit.target")
    root = tmp_path / "root"
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    exe = root / "opt/piano-buddy/venv/bin/piano-buddy"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/piano-buddy.service").write_text(unit_text)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given (systemd keys may repeat), continuation lines joined."""
    settings: dict[str, list[str]] = {}
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@needs_analyze
def test_verify_prints_nothing(tmp_path):
    root = unit_root(tmp_path, UNIT.read_text())
    r = analyze("verify", f"--root={root}", "piano-buddy.service")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"systemd-analyze verify warned:\n{r.stderr}"


@needs_analyze
def test_verify_in_this_root_does_catch_a_misspelt_key(tmp_path):
    """The check above can fail: a typo that verify only warns about is caught via stderr."""
    broken = UNIT.read_text().replace("NotifyAccess=main", "NotifyAcess=main")
    root = unit_root(tmp_path, broken)
    r = analyze("verify", f"--root={root}", "piano-buddy.service")
    assert r.returncode == 0          # the reason for checking stderr
    assert "Unknown key 'NotifyAcess'" in r.stderr


@needs_analyze
def test_security_exposure_is_at_most_2(tmp_path):
    root = unit_root(tmp_path, UNIT.read_text())
    r = analyze("security", "--offline=true", f"--root={root}", "--no-pager", "piano-buddy.service")
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for piano-buddy\.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:]
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, r.stdout
    # The same limit through systemd's own threshold (exposure x 10).
    r = analyze("security", "--offline=true", f"--root={root}",
                f"--threshold={int(MAX_EXPOSURE * 10)}", "piano-buddy.service")
    assert r.returncode == 0, r.stdout[-2000:]


def test_the_exec_start_command_line_is_one_the_firmware_accepts():
    """ExecStart's arguments parse with the real CLI parser (e.g. --config before ``run``)."""
    from piano_buddy import cli

    (exec_start,) = unit_settings(UNIT.read_text())["ExecStart"]
    argv = [a for a in shlex.split(exec_start) if not a.startswith("$")]
    assert argv[0] == "/opt/piano-buddy/venv/bin/piano-buddy"
    args = cli._parser().parse_args(argv[1:])
    assert args.command == "run"
    assert str(args.config) == "/etc/piano-buddy/config.toml"


def _documented_settings() -> list[tuple[str, str]]:
    """Every NAME=value example the unit and the installed defaults file show."""
    found = []
    for text in (UNIT.read_text(), (REPO / "systemd" / "install.sh").read_text()):
        for m in re.finditer(r"(PIANO_BUDDY_(?:ARGS|LOG))=(\"[^\"]*\"|[^\s);,]+)", text):
            value = m.group(2).strip('"')
            if value and value != "$PIANO_BUDDY_ARGS":
                found.append((m.group(1), value))
    return found


def test_every_documented_setting_is_one_the_firmware_accepts(capsys):
    """Defect: the unit's own example, PIANO_BUDDY_ARGS=--verbose, was not an option: exit 2,
    restarted by systemd every 2 s."""
    import logging

    from piano_buddy import cli

    (exec_start,) = unit_settings(UNIT.read_text())["ExecStart"]
    base = [a for a in shlex.split(exec_start) if not a.startswith("$")][1:]
    examples = _documented_settings()
    assert {name for name, _ in examples} == {"PIANO_BUDDY_ARGS", "PIANO_BUDDY_LOG"}
    for name, value in examples:
        if name == "PIANO_BUDDY_ARGS":
            try:
                cli._parser().parse_args(base + shlex.split(value))
            except SystemExit:
                raise AssertionError(f"{name}={value}: {capsys.readouterr().err}") from None
        else:
            assert isinstance(logging.getLevelName(value), int), f"{name}={value}"


def test_real_time_limit_covers_the_priority_the_audio_thread_asks_for():
    from piano_buddy.audio_out import AudioThread

    s = unit_settings(UNIT.read_text())
    wanted = inspect.signature(AudioThread.__init__).parameters["realtime_priority"].default
    assert wanted is not None and int(s["LimitRTPRIO"][0]) >= wanted
    assert s.get("RestrictRealtime", ["no"]) == ["no"], "SCHED_FIFO must stay allowed"


def test_watchdog_and_restart_policy_fit_the_supervisor():
    """The supervisor pings every min(0.5 s, WatchdogSec/2) and calls a thread hung after
    HEARTBEAT_STALE seconds: WatchdogSec must leave room for that, and restarts never stop."""
    from piano_buddy.app import HEARTBEAT_STALE

    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert float(s["WatchdogSec"][0]) > 2 * HEARTBEAT_STALE
    assert s["Restart"] == ["always"]
    assert s["StartLimitIntervalSec"] == ["0"]
    assert s["User"] == ["piano-buddy"]
    assert set(s["SupplementaryGroups"][0].split()) == {"audio", "gpio", "input"}
    assert s["EnvironmentFile"] == ["-/etc/default/piano-buddy"]


def test_writable_places_are_only_recordings_and_the_runtime_folder():
    """ProtectSystem=strict leaves the file system read-only except what is listed here:
    the recordings (the config's default folder) and lgpio's FIFO folder under /run."""
    from piano_buddy.config import RecordingConfig

    s = unit_settings(UNIT.read_text())
    assert s["ProtectSystem"] == ["strict"]
    recordings = RecordingConfig().folder
    assert s["ReadWritePaths"] == [recordings]
    assert ["/var/lib/" + d for d in s["StateDirectory"]] == [recordings]
    assert s["WorkingDirectory"] == ["/run/" + s["RuntimeDirectory"][0]]
    assert s["DevicePolicy"] == ["closed"]
    assert sorted(s["DeviceAllow"]) == ["char-alsa rw", "char-gpiochip rw", "char-input r"]
    assert s["PrivateNetwork"] == ["yes"]


# --- systemd/install.sh -----------------------------------------------------------------------

INSTALL = REPO / "systemd" / "install.sh"
SCRIPTS = [INSTALL, REPO / "tests/pi/build_root.sh", REPO / "tests/pi/check.sh",
           REPO / "tests/pi/root_mounts.sh", REPO / "deploy/ansible/tests/chroot.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_pass_shellcheck(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    r = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def fake_os_root(tmp_path: Path) -> Path:
    """A root with just the account files useradd/groupadd --prefix edit."""
    root = tmp_path / "os"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\naudio:x:29:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\naudio:*::\n")
    (root / "etc/shadow").chmod(0o640)
    return root


def run_install(root: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-deps: the package itself, its console script and files, without downloading numpy
    # and the interpreter (tests/pi/check.sh does the full install on aarch64).
    env = dict(os.environ, PIP_INSTALL_ARGS="--no-deps")
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args],
                          capture_output=True, text=True, env=env, timeout=600)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="install.sh --root needs root (chown, useradd --prefix)")


@needs_root
@pytest.mark.slow
def test_install_twice_then_uninstall_in_a_root(tmp_path):
    root = fake_os_root(tmp_path)
    r = run_install(root, "install")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "systemd is not running here" in r.stdout

    # The service's pieces are where the unit expects them.
    exe = root / "opt/piano-buddy/venv/bin/piano-buddy"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("piano-buddy "), version.stderr
    unit = root / "etc/systemd/system/piano-buddy.service"
    assert unit.read_text() == UNIT.read_text()
    for name in ("piano-buddy-open.service", "piano-buddy-close.service"):    # opening hours
        assert (root / "etc/systemd/system" / name).read_text() == (REPO / "systemd" / name).read_text()
    generator = root / "etc/systemd/system-generators/piano-buddy-hours-generator"
    assert os.access(generator, os.X_OK)
    wants = root / "etc/systemd/system/multi-user.target.wants/piano-buddy.service"
    assert os.readlink(wants) == "/etc/systemd/system/piano-buddy.service"
    config = root / "etc/piano-buddy/config.toml"
    assert config.read_text() == (REPO / "firmware/piano_buddy/config.example.toml").read_text()
    assert (root / "etc/default/piano-buddy").exists()
    passwd = (root / "etc/passwd").read_text()
    assert "piano-buddy:x:" in passwd and ":/usr/sbin/nologin" in passwd
    group = (root / "etc/group").read_text()
    assert re.search(r"^audio:x:29:piano-buddy$", group, re.M)
    assert re.search(r"^gpio:x:\d+:piano-buddy$", group, re.M)
    assert re.search(r"^input:x:\d+:piano-buddy$", group, re.M)
    recordings = root / "var/lib/piano-buddy/recordings"
    uid = int(next(line for line in passwd.splitlines() if line.startswith("piano-buddy:")).split(":")[2])
    assert recordings.stat().st_uid == uid

    # The installed unit verifies against the installed binary (no stand-in this time).
    units = _host_units()
    if units is not None and ANALYZE is not None:
        shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
        v = analyze("verify", f"--root={root}", "piano-buddy.service")
        assert (v.returncode, v.stderr) == (0, "")

    # Idempotent: a second run keeps an edited config and the user, changes nothing else.
    config.write_text(config.read_text() + "\n# tuned for the museum hall\n")
    r = run_install(root, "install")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "keeping /etc/piano-buddy/config.toml" in r.stdout
    assert "tuned for the museum hall" in config.read_text()
    assert len(re.findall(r"^piano-buddy:", (root / "etc/passwd").read_text(), re.M)) == 1

    (recordings / "2026-11-25T10-00-00.mid").write_bytes(b"MThd")
    r = run_install(root, "uninstall")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "opt/piano-buddy").exists()
    assert not unit.exists() and not os.path.lexists(wants)
    assert not generator.exists() and not (root / "etc/systemd/system/piano-buddy-open.service").exists()
    assert not re.search(r"^piano-buddy:", (root / "etc/passwd").read_text(), re.M)
    assert (recordings / "2026-11-25T10-00-00.mid").read_bytes() == b"MThd", "recordings are kept"
    assert "tuned for the museum hall" in config.read_text(), "an edited config is kept"

    r = run_install(root, "uninstall", "--purge")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "etc/piano-buddy").exists()
    assert (recordings / "2026-11-25T10-00-00.mid").exists()


def test_install_refuses_to_run_without_root_or_a_target_root():
    if os.geteuid() == 0:
        pytest.skip("running as root")
    r = subprocess.run(["bash", str(INSTALL), "install"], capture_output=True, text=True)
    assert r.returncode != 0 and "run as root" in r.stderr


def test_make_help_lists_the_deployment_targets():
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    r = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert {"install", "uninstall", "pi-check"} <= listed, r.stdout
