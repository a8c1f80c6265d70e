"""`piano-buddy selftest`: every check reported, a tone per button heard, each lit button
pressed, the knob turned both ways, failures named by GPIO, the service handled."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from piano_buddy.config import Config
from piano_buddy.panel import mock_factory
from piano_buddy.selftest import SCALE, run_selftest, service_stopped, ServiceBusy

try:
    from tests.audio_rig import dominant_frequency
except ImportError:
    from audio_rig import dominant_frequency

CW = [(0, 1), (0, 0), (1, 0), (1, 1)]     # (A, B) levels for one clockwise click
CCW = [(1, 0), (0, 0), (0, 1), (1, 1)]


class Installer:
    """Someone at the box: reads the selftest's lines and does what they ask, through the
    mock pins (the real gpiozero callback path), from another thread as a person would."""

    def __init__(self, factory, cfg: Config, *, wrong_first: bool = False,
                 swapped_knob: bool = False, absent: bool = False):
        self.factory, self.cfg = factory, cfg
        self.wrong_first, self.swapped_knob, self.absent = wrong_first, swapped_knob, absent
        self.lines: list[str] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.absent:
            return
        if line.startswith("press button "):
            n = int(line.split()[2].rstrip(",")) - 1
            self._later(self._press, n)
        elif line.startswith("turn the volume knob "):
            clockwise = "counter" not in line
            self._later(self._turn, clockwise != self.swapped_knob)

    def _later(self, fn, *args):
        t = threading.Thread(target=fn, args=args)
        t.start()
        self.threads.append(t)

    def _press(self, n: int) -> None:
        time.sleep(0.1)
        pins = self.cfg.panel.buttons
        if self.wrong_first and n == 0:
            self._tap(pins[1])               # button 2 first: the wires look swapped
        self._tap(pins[n])

    def _tap(self, gpio: int) -> None:
        pin = self.factory.pin(gpio)
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()
        time.sleep(0.05)

    def _turn(self, clockwise: bool) -> None:
        time.sleep(0.1)
        a, b = (self.factory.pin(g) for g in self.cfg.panel.volume_encoder)
        for _ in range(4):
            for la, lb in (CW if clockwise else CCW):
                (a.drive_high if la else a.drive_low)()
                (b.drive_high if lb else b.drive_low)()
                time.sleep(0.005)

    def text(self) -> str:
        for t in self.threads:
            t.join(5)
        return "\n".join(self.lines)


def test_selftest_passes_lights_each_led_and_plays_a_tone_per_button(alsa_capture):
    factory = mock_factory()
    cfg = Config()
    person = Installer(factory, cfg)
    assert run_selftest(cfg, pin_factory=factory, out=person, manage_service=False) == 0
    text = person.text()
    for check in ("pins", "genie model", "melody model", "melody styles", "audio device",
                  "tones", "buttons", "volume knob"):
        assert f"[ok] {check}" in text
    assert "8 passed, 0 failed" in text
    assert "louder clockwise, quieter counter-clockwise" in text
    for led in cfg.panel.button_leds:                 # each LED went on and off
        assert [s.state for s in factory.pin(led).states][-2:] == [True, False]
    audio = alsa_capture.samples()[:, 0].astype(float)
    tone = round(0.35 * 48000 / 128) * 128
    heard = [dominant_frequency(audio[i * tone + 2000: i * tone + 2000 + 8192], 48000)
             for i in range(len(SCALE))]
    expected = [440 * 2 ** ((p - 69) / 12) for p in SCALE]
    assert np.allclose(heard, expected, rtol=0.01), heard
    assert len(audio) >= 16 * tone                    # and a tone again for each press


def test_selftest_names_what_failed(alsa_capture, tmp_path):
    import dataclasses
    alsa_capture.unplug()
    cfg = Config()
    cfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models,
                                                              directory=str(tmp_path)))
    factory = mock_factory()
    person = Installer(factory, cfg, absent=True)
    assert run_selftest(cfg, pin_factory=factory, out=person, press_timeout=0.2,
                        manage_service=False) == 1
    text = person.text()
    assert "[FAIL] genie model" in text and "genie.tflite" in text
    assert "[FAIL] audio device" in text
    assert "button 1: no press on GPIO 4 in 0.2 s" in text
    assert "button 8: no press on GPIO 26" in text
    assert "no clockwise turn seen on GPIO 10 (A) and 11 (B)" in text
    assert "failed (genie model, melody model, audio device, buttons, volume knob)" in text


def test_selftest_spots_swapped_wires(alsa_capture):
    factory = mock_factory()
    cfg = Config()
    person = Installer(factory, cfg, wrong_first=True, swapped_knob=True)
    assert run_selftest(cfg, pin_factory=factory, out=person, press_timeout=5,
                        manage_service=False) == 1
    text = person.text()
    assert "button 1 was lit but GPIO 17 (wired as button 2) answered" in text
    assert "A and B are swapped" in text and "GPIO 10 and 11" in text
    assert "[ok] tones" in text


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that reports the service active and logs what it is asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                      f'[ "$1" = is-active ] && [ ! -e {tmp_path}/stopped ] && exit 0\n'
                      f'[ "$1" = is-active ] && exit 3\n'
                      f'[ "$1" = stop ] && touch {tmp_path}/stopped\n'
                      f'[ "$1" = start ] && rm -f {tmp_path}/stopped\nexit 0\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_as_root_the_service_is_stopped_for_the_test_and_started_again(systemctl):
    lines = []
    with service_stopped(is_root=True, out=lines.append):
        assert systemctl.read_text().splitlines()[-1] == "stop piano-buddy.service"
    assert systemctl.read_text().splitlines()[-1] == "start piano-buddy.service"
    assert "stopping piano-buddy.service" in lines[0]


def test_as_another_user_it_refuses_with_the_exact_commands(systemctl):
    with pytest.raises(ServiceBusy) as exc:
        with service_stopped(is_root=False):
            pytest.fail("must not run while the service holds the pins")
    assert "sudo /opt/piano-buddy/venv/bin/piano-buddy selftest" in str(exc.value)
    assert "sudo systemctl stop piano-buddy" in str(exc.value)
    assert "stop" not in systemctl.read_text()


def test_it_runs_in_a_writable_directory_when_the_current_one_is_not(tmp_path):
    """As the selftest is documented: `sudo -u piano-buddy ... selftest` typed in a
    checkout owned by someone else. Here: a root-owned folder entered as user nobody, or,
    where nobody cannot run this Python, a folder the kernel keeps read-only (/proc/sys)."""
    code = ("import os; from piano_buddy.selftest import writable_working_directory\n"
            "with writable_working_directory() as d: print(d, os.access(d, os.W_OK))\n"
            "print(os.getcwd())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "firmware"), os.environ.get("PYTHONPATH", "")])}
    locked, user = tmp_path / "checkout", None
    locked.mkdir()
    try:
        if os.geteuid() == 0:
            tmp_path.chmod(0o755)
            subprocess.run([sys.executable, "-c", "pass"], cwd=locked, user=65534, timeout=60,
                           check=True)
            user = 65534
    except (PermissionError, subprocess.CalledProcessError):
        user = None
    if user is None and os.access(locked, os.W_OK):
        locked = Path("/proc/sys")
        if not locked.is_dir() or os.access(locked, os.W_OK):
            pytest.skip("no folder here that this user cannot write")
    r = subprocess.run([sys.executable, "-c", code], cwd=locked, user=user,
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    inside, after = r.stdout.splitlines()
    assert "piano-buddy-selftest-" in inside and inside.endswith("True")
    assert after == str(locked)
