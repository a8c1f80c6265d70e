"""The desktop simulator in a real pseudo-terminal: keys press mock buttons, the view follows."""

import os
import pty
import re
import select
import subprocess
import sys
import time

from piano_buddy.panel import mock_factory
from piano_buddy.terminal import FIRST_HOLD, REPEAT_HOLD, KeyboardButtons


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_a_keystroke_is_a_short_press_and_auto_repeat_holds_it():
    clock = Clock()
    factory = mock_factory(clock)
    pins = [factory.pin(p) for p in range(2, 10)]
    for p in pins:
        p.drive_high()
    keys = KeyboardButtons(pins, clock)
    keys.key("s")                              # button 2
    assert pins[1].state == 0
    clock.t = FIRST_HOLD - 0.01
    keys.expire()
    assert pins[1].state == 0
    clock.t = FIRST_HOLD + 0.01
    keys.expire()
    assert pins[1].state == 1                  # a single keystroke: released
    keys.key("8")
    for i in range(20):                        # auto-repeat at 30 per second
        clock.t += 1 / 30
        keys.key("8")
        keys.expire()
    assert pins[7].state == 0
    clock.t += REPEAT_HOLD + 0.01
    keys.expire()
    assert pins[7].state == 1
    keys.key("x")                              # not a button key: nothing happens
    assert all(p.state == 1 for p in pins)
    factory.reset()


def read_screen(fd, seconds):
    end, data = time.monotonic() + seconds, b""
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data += os.read(fd, 65536)
            except OSError:
                break
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="ignore"))


def test_the_simulator_plays_from_the_keyboard_and_quits_cleanly(tmp_path, alsa_capture):
    conf = tmp_path / "c.toml"
    conf.write_text("[midi]\nenabled = false\n[recording]\nenabled = false\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "piano_buddy", "--config", str(conf),
                             "--log-level", "WARNING", "run"],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                            env=alsa_capture.env(), cwd=tmp_path)
    os.close(slave)
    try:
        screen = read_screen(master, 8)
        assert "desktop simulator" in screen and "your turn" in screen
        assert "ALSA device 'default'" in screen
        for ch in "asdf":
            os.write(master, ch.encode())
            time.sleep(0.35)
        screen = read_screen(master, 2.5)
        assert re.search(r"player\s+([A-G]#?\d ?){4}", screen), screen[-800:]
        assert "AI is playing" in screen or re.search(r"AI\s+[A-G]#?\d", screen)
        os.write(master, b"q")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
