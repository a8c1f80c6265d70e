"""The desktop simulator: the real firmware on mock pins, played from the computer keyboard.

Keys 1-8 or ``a s d f j k l ;`` drive the eight mock button pins through gpiozero's callback
path, exactly as the arcade buttons would. A terminal sends no key-up events, so a key
counts as held while the keyboard's auto-repeat keeps arriving and is released shortly
after it stops (or after a short tap). A live view shows the buttons, the LEDs, whose turn
it is and the last notes.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import time
import tty
from pathlib import Path

from .config import Config
from .encoding import NUM_BUTTONS

KEYMAP = {**{str(i + 1): i for i in range(NUM_BUTTONS)},
          **{k: i for i, k in enumerate("asdfjkl;")}}
FIRST_HOLD = 0.3    # a single keystroke is a short press (auto-repeat, if it comes, re-presses)
REPEAT_HOLD = 0.12  # once repeating, the key is up when repeats stop for this long
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


class KeyboardButtons:
    """Turns keystrokes into press/release edges on the mock pins."""

    def __init__(self, pins, clock=time.monotonic):
        self.pins, self.clock = pins, clock
        self._down: dict[int, tuple[float, float]] = {}   # button -> (pressed at, up after)

    def key(self, ch: str) -> None:
        b = KEYMAP.get(ch)
        if b is None:
            return
        now = self.clock()
        if b in self._down:
            pressed, _ = self._down[b]
            self._down[b] = (pressed, now + REPEAT_HOLD)
        else:
            self._down[b] = (now, now + FIRST_HOLD)
            self.pins[b].drive_low()

    def expire(self) -> None:
        now = self.clock()
        for b, (pressed, up_after) in list(self._down.items()):
            if now >= up_after:
                del self._down[b]
                self.pins[b].drive_high()

    def release_all(self) -> None:
        for b in list(self._down):
            del self._down[b]
            self.pins[b].drive_high()


def render_view(box, audio_label: str, width: int = 72) -> str:
    """One frame of the live view as text."""
    snap = box.panel.snapshot()
    c = box.conductor
    buttons = " ".join(("\x1b[7m" if down else "") + f" {i + 1} " + "\x1b[0m"
                       for i, down in enumerate(snap["buttons"]))
    leds = " ".join(" \x1b[93m●\x1b[0m " if lit else " ○ " for lit in snap["leds"])
    turn = {"player": "your turn", "thinking": "AI is thinking...",
            "ai": "AI is playing - press any button to interrupt"}.get(c.turn.value, c.turn.value)
    if c.faults:
        turn = "\x1b[91mERROR: " + "; ".join(c.faults.values()) + "\x1b[0m"
    player = " ".join(note_name(p) for who, p in c.last_notes if who == "player")
    ai = " ".join(note_name(p) for who, p in c.last_notes if who == "ai")
    lines = [
        "\x1b[1mPiano Buddy\x1b[0m desktop simulator".ljust(width),
        "keys 1-8 or a s d f j k l ; play the buttons, q quits".ljust(width),
        "",
        "buttons " + buttons,
        "LEDs    " + leds,
        f"turn    {'●' if snap['turn_led'] > 0.5 else '○'} {turn}",
        f"player  {player}",
        f"AI      {ai}",
        f"audio   {audio_label}",
        f"stats   replies {c.stats['replies']}, interrupts {c.stats['interrupts']}, "
        f"xruns {getattr(box.audio, 'xruns', 0)}",
    ]
    return "\x1b[H" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J"


def choose_sink(cfg: Config, out_dir: Path = Path("out")):
    """ALSA when the configured device opens, else a WAV file paced at real time.
    Returns (open_sink factory, label for the screen)."""
    from .audio_out import AlsaSink, WavSink
    from .errors import AudioDeviceError

    a = cfg.audio

    def alsa():
        return AlsaSink(a.device, sample_rate=a.sample_rate, channels=2,
                        period_frames=a.period_frames, periods=a.periods)
    probe = alsa()
    try:
        probe.open()
        probe.close()
        return alsa, f"ALSA device {a.device!r}"
    except (AudioDeviceError, OSError):
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / time.strftime("simulator-%Y%m%d-%H%M%S.wav")
    return (lambda: WavSink(path, sample_rate=a.sample_rate, channels=2, realtime=True),
            f"no ALSA device: recording to {path}")


def _log_to_file(out_dir: Path) -> Path:
    """Send the firmware's log to a file while the terminal shows the live view."""
    import logging

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "simulator.log"
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    return path


def run_simulator(cfg: Config, stop: threading.Event) -> int:
    from .app import Box
    from .panel import mock_factory

    log_path = _log_to_file(Path("out"))   # log lines would scribble over the live view
    open_sink, label = choose_sink(cfg)
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, open_sink=open_sink, audio_label=label,
              use_recorder=False)
    box.start()
    keys = KeyboardButtons([factory.pin(p) for p in cfg.panel.buttons])
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    out = sys.stdout
    try:
        tty.setcbreak(fd)
        out.write("\x1b[?25l\x1b[2J")
        next_draw = 0.0
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.02)
            if ready:
                for ch in os.read(fd, 64).decode(errors="ignore"):
                    if ch in ("q", "\x1b", "\x04"):
                        stop.set()
                    keys.key(ch)
            keys.expire()
            if time.monotonic() >= next_draw:
                out.write(render_view(box, label) + f"\nlog     {log_path}\x1b[K")
                out.flush()
                next_draw = time.monotonic() + 0.08
    finally:
        keys.release_all()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        out.write("\x1b[?25h\n")
        out.flush()
        box.close()
    return 0
