"""The systemd unit, checked by systemd's own tools and against the firmware it starts.

``systemd-analyze verify`` needs the ExecStart binary to exist and finds the targets the unit
pulls in (sysinit.target...) through its unit path. Rather than edit the unit under test, each
check builds a small root: the unit in /etc/systemd/system, this host's system units, and an
executable at /opt/piano-buddy/venv/bin/piano-buddy, then runs ``--root`` on it. verify exits 0
on unknown keys and unparsable values, so any output on stderr is a failure too.
"""

from __future__ import annotations

import inspect
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

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


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


def test_verify_prints_nothing(tmp_path):
    root = unit_root(tmp_path, UNIT.read_text())
    r = analyze("verify", f"--root={root}", "piano-buddy.service")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"systemd-analyze verify warned:\n{r.stderr}"


def test_verify_in_this_root_does_catch_a_misspelt_key(tmp_path):
    """The check above can fail: a typo that verify only warns about is caught via stderr."""
    broken = UNIT.read_text().replace("NotifyAccess=main", "NotifyAcess=main")
    root = unit_root(tmp_path, broken)
    r = analyze("verify", f"--root={root}", "piano-buddy.service")
    assert r.returncode == 0          # the reason for checking stderr
    assert "Unknown key 'NotifyAcess'" in r.stderr


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
    assert set(s["SupplementaryGroups"][0].split()) == {"audio", "gpio"}
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
    assert sorted(s["DeviceAllow"]) == ["char-alsa rw", "char-gpiochip rw"]
    assert s["PrivateNetwork"] == ["yes"]
