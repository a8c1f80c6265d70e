"""The desktop simulator: the real firmware on mock pins, played from the computer keyboard.

Keys 1-8 or ``a s d f j k l ;`` (either case: Caps Lock does not matter) drive the eight mock
button pins through gpiozero's callback path, exactly as the arcade buttons would.

Key releases: a terminal normally sends a character when a key goes down and, after the
keyboard's repeat delay, a stream of repeats, but nothing when it comes up. Terminals that
speak the kitty keyboard protocol (kitty, foot, WezTerm, Ghostty, recent Alacritty) report
press, repeat and release; the simulator asks for that and then plays exactly what the
fingers do. Otherwise, where the user may read the keyboard's kernel events (the ``input``
group, or root; not over SSH), the releases come from there (:mod:`.keyboard_evdev`).
Elsewhere it treats a key's auto-repeat stream as one held note: a tap stays
down for the keyboard's repeat delay (read from the desktop settings when it can, learned
from the first held key otherwise), so a held key never sounds twice; the screen says so.

Quitting takes a deliberate action: Ctrl-C, or ``q`` twice. Esc, arrows, function keys and
every other key are ignored, so a child at the keyboard cannot end it by accident.

Sound: the ALSA device when it opens; without one, ``audio.wav_fallback`` is honoured (''
plays silently; a file name records only the stretches where something sounds, capped, the
last few files kept). Sessions are recorded like the box's, into ``out/recordings`` unless
the config names a writable folder, so ``piano-buddy recordings`` finds them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


from .audio_out import (WAV_FILES_KEPT, WAV_SILENCE_KEPT, SoundOnlyWavSink,  # noqa: F401 (re-exported)
                        wav_fallback_path)
from .config import Config
from .encoding import NUM_BUTTONS

KEY_LETTERS = "asdfjkl;"
KEYMAP = {**{str(i + 1): i for i in range(NUM_BUTTONS)},
          **{k: i for i, k in enumerate(KEY_LETTERS)}, ":": KEY_LETTERS.index(";")}
QUIT_KEY = "q"
KNOB_KEYS = {"-": -1, "=": 1, "+": 1}     # one click of the volume knob (8 held: creativity)
# (A, B) levels of a quadrature encoder through one click, clockwise and back
KNOB_CLICK = {1: ((0, 1), (0, 0), (1, 0), (1, 1)), -1: ((1, 0), (0, 0), (0, 1), (1, 1))}
QUIT_CONFIRM_SECONDS = 3.0   # the second q must come within this time of the first
# Without key releases: a tap stays down for the keyboard's repeat delay, so that the
# auto-repeat of a held key (which starts after that delay) continues the same note.
DEFAULT_REPEAT_DELAY = 0.5   # GNOME's, Windows' and macOS' default; X11's is 0.66 s
REPEAT_MARGIN = 0.08         # the first repeat may come a little late on a busy machine
REPEAT_HOLD = 0.15           # once repeating, the key is up when repeats stop for this long
KERNEL_TAP_WINDOW = 0.5      # a key's kernel release this recent explains its late character
KERNEL_TAP_SECONDS = 0.05    # ... which then plays as a press this long
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
NOTES_SHOWN = 12             # notes per row of the view
SIMULATOR_OUT = Path("out")
SIMULATOR_RECORDINGS = SIMULATOR_OUT / "recordings"

DIM, BOLD, REVERSE, RESET = "\x1b[2m", "\x1b[1m", "\x1b[7m", "\x1b[0m"


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def button_for(ch: str) -> int | None:
    """The button a typed character plays (either case), or None."""
    return KEYMAP.get(ch.lower())


# --- reading keys ---------------------------------------------------------------------------
# The kitty keyboard protocol (https://sw.kovidgoyal.net/kitty/keyboard-protocol/): flags
# 1 (disambiguate) + 2 (report press/repeat/release) + 8 (every key as an escape code).
KITTY_FLAGS = 1 | 2 | 8
KITTY_QUERY = "\x1b[?u\x1b[c"        # our flags query, then a primary device attributes query
KITTY_PUSH = f"\x1b[>{KITTY_FLAGS}u"
KITTY_POP = "\x1b[<u"
_CSI = re.compile(rb"\x1b\[([0-9:;?<=>]*)([\x20-\x2f]*)([\x40-\x7e])")
CTRL = 4                               # kitty modifier bit (the field is 1 + bits)


class KeyParser:
    """Bytes from the terminal -> key events, escape sequences taken whole.

    Yields ``("down" | "repeat" | "up" | "char", key)`` for ordinary keys, ``("ctrl", key)``
    for Ctrl+key and ``("kitty", flags)`` for the answer to :data:`KITTY_QUERY`. Arrows,
    function keys, Esc and Alt+key become nothing. An escape sequence cut across two reads
    waits for its end; a lone Esc is dropped once ``flush()`` is called after a quiet spell.
    """

    def __init__(self):
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[str, object]]:
        self._buf += data
        events: list[tuple[str, object]] = []
        buf = self._buf
        i = 0
        while i < len(buf):
            b = buf[i]
            if b != 0x1b:
                ch = chr(b) if b < 0x80 else None
                j = i + 1
                if ch is None:            # a UTF-8 character: take it whole, play nothing
                    while j < len(buf) and 0x80 <= buf[j] < 0xc0:
                        j += 1
                elif b < 0x20 and ch not in "\r\n\t":
                    events.append(("ctrl", chr(b + 0x60)))   # \x03 is Ctrl-C
                    ch = None
                if ch is not None:
                    events.append(("char", ch))
                i = j
                continue
            if i + 1 >= len(buf):
                break                      # maybe the start of a sequence: wait for more
            nxt = buf[i + 1]
            if nxt == ord("["):
                m = _CSI.match(buf, i)
                if m is None:
                    if re.fullmatch(rb"\x1b\[[0-9:;?<=>\x20-\x2f]*", buf[i:]):
                        break              # incomplete: wait
                    i += 2                 # malformed: drop the introducer
                    continue
                events.extend(self._csi(m.group(1).decode(), m.group(3).decode()))
                i = m.end()
            elif nxt == ord("O"):          # SS3: F1-F4 and arrows in application mode
                if i + 2 >= len(buf):
                    break
                i += 3
            elif nxt == 0x1b:              # Esc Esc: the first is a lone Esc
                i += 1
            else:                          # Alt+key: ignored
                i += 2
        self._buf = buf[i:]
        return events

    def flush(self) -> None:
        """Forget a lone Esc (or a cut sequence) after a quiet spell."""
        self._buf = b""

    @staticmethod
    def _csi(params: str, final: str) -> list[tuple[str, object]]:
        if final == "u" and params.startswith("?"):
            return [("kitty", int(params[1:] or 0))]
        if final != "u" or not params or not params[0].isdigit():
            return []                      # arrows, function keys, device attributes, ...
        fields = params.split(";")
        code = int(fields[0].split(":")[0])
        mods, event = 1, 1
        if len(fields) > 1 and fields[1]:
            parts = fields[1].split(":")
            mods = int(parts[0] or 1)
            event = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        if not 32 < code < 127:            # Esc, Enter, Tab, Backspace, keypad, media keys
            return []
        key = chr(code)
        if (mods - 1) & CTRL:
            return [("ctrl", key.lower())] if event == 1 else []
        return [({1: "down", 2: "repeat", 3: "up"}.get(event, "down"), key)]


def desktop_repeat_delay() -> float | None:
    """The keyboard's auto-repeat delay from the desktop's settings, if it says (GNOME on X11
    or Wayland, then X11's ``xset``); None when nothing answers."""
    probes = (
        (["gsettings", "get", "org.gnome.desktop.peripherals.keyboard", "delay"],
         r"(\d+)\s*$", 1000.0),
        (["xset", "q"], r"auto repeat delay:\s*(\d+)", 1000.0),
    )
    for argv, pattern, per_second in probes:
        if shutil.which(argv[0]) is None:
            continue
        if argv[0] == "xset" and not os.environ.get("DISPLAY"):
            continue
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(pattern, r.stdout)
        if r.returncode == 0 and m and 100 <= int(m.group(1)) <= 2000:
            return int(m.group(1)) / per_second
    return None


class KeyboardButtons:
    """Turns key events into press/release edges on the mock pins.

    With key releases (``down``/``up``) a button is down exactly as long as its key. Without
    them (``typed``) a key's first character presses the button and its auto-repeat stream
    keeps it down; the button comes up ``tap_hold`` after a lone tap (the keyboard's repeat
    delay, so a held key's first repeat arrives while the note still sounds) or
    ``REPEAT_HOLD`` after the last repeat.
    """

    def __init__(self, pins, clock=time.monotonic, repeat_delay: float | None = None):
        self.pins, self.clock = pins, clock
        self.repeat_delay_known = repeat_delay is not None
        self.tap_hold = (repeat_delay or DEFAULT_REPEAT_DELAY) + REPEAT_MARGIN
        self._typed: dict[int, tuple[float, float, bool]] = {}  # button -> (down at, up after, repeating)
        self._held: set[int] = set()      # buttons held through real key releases
        self.kernel_keys = False          # key events from the input layer come too
        self._kernel_down: set[int] = set()
        self._kernel_up_at: dict[int, float] = {}

    # with key releases
    def down(self, b: int) -> None:
        if b not in self._held:
            self._held.add(b)
            self.pins[b].drive_low()

    def up(self, b: int) -> None:
        if b in self._held:
            self._held.discard(b)
            self.pins[b].drive_high()

    # with key releases from the kernel (evdev): the terminal's characters say which keys
    # were meant for this window, the kernel says how long they were held
    def kernel(self, b: int, down: bool) -> None:
        now = self.clock()
        if down:
            self._kernel_down.add(b)
            return
        self._kernel_down.discard(b)
        self._kernel_up_at[b] = now
        if b in self._held:
            self.up(b)
        elif b in self._typed:            # pressed before its kernel event was read
            del self._typed[b]
            self.pins[b].drive_high()

    def _typed_with_kernel(self, b: int) -> bool:
        """A character while kernel events come: True when the kernel's view decided it."""
        if b in self._held:
            return True                   # auto-repeat of a key held down: nothing new
        if b in self._kernel_down:
            self.down(b)                  # up when the kernel says so
            return True
        if self.clock() - self._kernel_up_at.get(b, float("-inf")) < KERNEL_TAP_WINDOW:
            now = self.clock()            # a tap already over: a short press
            self._typed[b] = (now, now + KERNEL_TAP_SECONDS, True)
            self.pins[b].drive_low()
            return True
        return False                      # the kernel has not said yet: treat as typed

    # without key releases
    def typed(self, b: int) -> None:
        if self.kernel_keys and b not in self._typed and self._typed_with_kernel(b):
            return
        now = self.clock()
        if b in self._typed:
            pressed, _, repeating = self._typed[b]
            if not repeating and not self.repeat_delay_known:
                # the first repeat tells this keyboard's delay: later taps stay down that long
                delay = now - pressed
                if 0.1 <= delay <= 2.0:
                    self.tap_hold = delay + REPEAT_MARGIN
                    self.repeat_delay_known = True
            self._typed[b] = (pressed, now + REPEAT_HOLD, True)
        elif b not in self._held:
            self._typed[b] = (now, now + self.tap_hold, False)
            self.pins[b].drive_low()

    def key(self, ch: str) -> None:
        """A typed character (no release information)."""
        b = button_for(ch)
        if b is not None:
            self.typed(b)

    def expire(self) -> None:
        now = self.clock()
        for b, (_, up_after, _) in list(self._typed.items()):
            if now >= up_after:
                del self._typed[b]
                self.pins[b].drive_high()

    def release_all(self) -> None:
        for b in list(self._typed):
            del self._typed[b]
            self.pins[b].drive_high()
        for b in list(self._held):
            self.up(b)


def turn_knob(factory, cfg: Config, clicks: int) -> None:
    """Turn the simulated knob: its two mock pins go through the quadrature steps, so the
    panel's real RotaryEncoder hears it (the volume; with button 8 held, the AI's
    creativity)."""
    if not cfg.panel.volume_encoder:
        return
    a, b = (factory.pin(g) for g in cfg.panel.volume_encoder)
    for _ in range(abs(clicks)):
        for level_a, level_b in KNOB_CLICK[1 if clicks > 0 else -1]:
            a.drive_high() if level_a else a.drive_low()
            b.drive_high() if level_b else b.drive_low()


class QuitGuard:
    """Quitting is deliberate: Ctrl-C at once, or ``q`` twice within a few seconds. The
    first ``q`` asks "are you done?"; any other key, or the time running out, cancels it."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.asked_at: float | None = None

    @property
    def asking(self) -> bool:
        return self.asked_at is not None and self.clock() - self.asked_at < QUIT_CONFIRM_SECONDS

    def key(self, ch: str) -> bool:
        """A typed key; True when it completes a quit."""
        if ch.lower() == QUIT_KEY:
            if self.asking:
                return True
            self.asked_at = self.clock()
            return False
        self.asked_at = None
        return False


class NoteRows:
    """The player's and the AI's recent notes, each in its own row, so a long reply does
    not push the player's notes off the screen. Fed from the conductor's shared list of the
    last notes (replaced, never mutated, on each note)."""

    def __init__(self, keep: int = NOTES_SHOWN):
        self.rows = {"player": collections.deque(maxlen=keep), "ai": collections.deque(maxlen=keep)}
        self._seen: list = []

    def update(self, last_notes: list) -> None:
        if last_notes is self._seen:
            return
        old, new = self._seen, list(last_notes)
        # the longest tail of what we saw that starts the new list: the rest is new
        overlap = 0
        for k in range(min(len(old), len(new) - 1), 0, -1):
            if old[len(old) - k:] == new[:k]:
                overlap = k
                break
        for who, pitch in new[overlap:]:
            self.rows.setdefault(who, collections.deque(maxlen=NOTES_SHOWN)).append(pitch)
        self._seen = last_notes

    def text(self, who: str) -> str:
        return " ".join(note_name(p) for p in self.rows.get(who, ()))


def render_view(box, audio_label: str, *, notes: NoteRows | None = None,
                keyboard_line: str = "", status_line: str = "", asking_quit: bool = False,
                mode_line: str = "", width: int | None = None) -> str:
    """One frame of the live view as text."""
    snap = box.panel.snapshot()
    c = box.conductor
    width = width or shutil.get_terminal_size((80, 24)).columns
    if notes is None:
        notes = NoteRows()
    notes.update(c.last_notes)
    cells = [(REVERSE if down else "") + f" {i + 1} " + RESET
             for i, down in enumerate(snap["buttons"])]
    letters = [f" {k} " for k in KEY_LETTERS]
    lamps = [f" {chr(0x25CF)} " if lit else f" {chr(0x25CB)} " for lit in snap["leds"]]
    lamps = [("\x1b[93m" + s + RESET) if lit else s for s, lit in zip(lamps, snap["leds"])]
    turn = {"player": "your turn", "thinking": "the AI is listening...",
            "ai": "the AI is playing - press any button to take the turn back"
            }.get(c.turn.value, c.turn.value)
    if c.attract.active:
        turn = "waiting for a visitor (attract mode) - press any button to play"
    if c.faults:
        turn = "\x1b[91mERROR: " + "; ".join(c.faults.values()) + RESET
    quit_line = (f"{BOLD}Are you done? Press q again to quit; any other key plays on.{RESET}"
                 if asking_quit else "quit     Ctrl-C, or q twice")
    plain = lambda label, text: _wrap(f"{label:<9}{text}", width)   # noqa: E731
    lines = [
        f"{BOLD}Piano Buddy{RESET} desktop simulator"
        + (f"  {DIM}({mode_line}){RESET}" if mode_line else ""),
        "Play a few notes, then stop and listen: the AI answers.",
        "",
        "buttons  " + " ".join(cells),
        "keys     " + " ".join(letters) + "   (or 1-8; knob: - and =, with 8 held: the AI's "
        "creativity)",
        "lamps    " + " ".join(lamps),
        f"turn     {chr(0x25CF) if snap['turn_led'] > 0.5 else chr(0x25CB)} {turn}",
        "mode     " + ("small hands: buttons 1 3 6 8 (hold 1 and 8 for 2 s: all eight)"
                       if c.small_hands else "eight buttons (hold 1 and 8 for 2 s: small hands)")
        + f"; AI creativity {c.creativity.level + 1} of 8",
        "game     " + (f"copy me: watch the lamps, then play the {c.game.length} notes back "
                       f"({c.game.right} right so far; hold 1 and 2 for 2 s to stop)"
                       if c.game is not None else "duet (hold 1 and 2 for 2 s: copy me)"),
        *([f"style    {c.melody.style}, last reply {c.melody.answered_by} "
           "(hold 2 and 7 for 2 s: the next style)"] if hasattr(c.melody, "style") else []),
        "",
        f"you      {notes.text('player')}",
        f"AI       {notes.text('ai')}",
        "",
        *plain("sound", audio_label),
        *(plain("keyboard", keyboard_line) if keyboard_line else []),
        quit_line,
        *(f"{DIM}{line}{RESET}" for line in _wrap(status_line, width, indent=0)),
    ]
    return "\x1b[H" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J"


def _wrap(text: str, width: int, indent: int = 9) -> list[str]:
    """Plain text in lines of at most ``width`` columns, continuations indented, so a
    long line never wraps on its own and shifts the rows of the view."""
    import textwrap

    if not text:
        return []
    return textwrap.wrap(text, width=max(20, width - 1), subsequent_indent=" " * indent,
                         break_on_hyphens=False) or [""]


# --- sound ----------------------------------------------------------------------------------
def choose_sink(cfg: Config):
    """ALSA when the configured device opens; otherwise what ``audio.wav_fallback`` says.
    Returns (open_sink factory, label for the screen). alsa-lib's own error lines are kept
    off the screen: the label says what happened in one line."""
    from .alsa_quiet import quiet_alsa_errors
    from .assembly import alsa_sink_factory
    from .audio_out import PacedNullSink
    from .errors import AudioDeviceError

    a = cfg.audio
    alsa = alsa_sink_factory(cfg)
    probe = alsa()
    with quiet_alsa_errors():
        try:
            probe.open()
            probe.close()
            return alsa, f"ALSA device {a.device!r}"
        except (AudioDeviceError, OSError) as exc:
            reason = str(exc).split(": ", 1)[-1]
    if not a.wav_fallback:
        return (lambda: PacedNullSink(a.sample_rate, 2),
                f"none: ALSA device {a.device!r} did not open ({reason}); playing silently "
                "(set audio.wav_fallback to keep a WAV instead)")
    path = wav_fallback_path(a.wav_fallback)
    return (lambda: SoundOnlyWavSink(path, a.sample_rate, 2),
            f"no ALSA device {a.device!r}: what sounds goes to {path} "
            f"(audio.wav_fallback; the last {WAV_FILES_KEPT} kept)")


# --- sessions -------------------------------------------------------------------------------
def recordings_folder(cfg: Config) -> Path | None:
    """Where the simulator records sessions: the configured folder when it exists and can
    be written, or when the config names one of its own; else ``out/recordings`` (a laptop
    has no /var/lib/piano-buddy, and the simulator creates no system folders). None when
    recording is off."""
    from .config import RecordingConfig

    if not cfg.recording.enabled:
        return None
    folder = Path(cfg.recording.folder)
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder
    if cfg.recording.folder != RecordingConfig().folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError:
            pass
    SIMULATOR_RECORDINGS.mkdir(parents=True, exist_ok=True)
    return SIMULATOR_RECORDINGS


def counts_folder(cfg: Config) -> Path:
    """Where the simulator keeps visitor counts: the configured (or default) folder when it
    can be written, else ``out/stats``, like the recordings."""
    from .counts import stats_folder

    folder = stats_folder(cfg)
    probe = folder if folder.is_dir() else folder.parent
    if probe.is_dir() and os.access(probe, os.W_OK):
        return folder
    return SIMULATOR_OUT / "stats"


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


def _ask_for_key_releases(fd: int, out, parser: KeyParser, timeout: float = 3.0
                          ) -> tuple[bool, list]:
    """Ask the terminal whether it speaks the kitty keyboard protocol and switch it on if
    so. Every terminal answers the device-attributes query that follows ours, so a terminal
    that ignores ours is known at once, not after a timeout; the timeout is only for one
    that answers neither, and is generous because a busy machine (or a terminal over ssh)
    may take a while to answer. Returns (on, other events)."""
    out.write(KITTY_QUERY)
    out.flush()
    supported, others = False, []
    deadline = time.monotonic() + timeout
    got_da = False
    while time.monotonic() < deadline and not got_da:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        data = os.read(fd, 256)
        got_da = bool(re.search(rb"\x1b\[\?[0-9;]*c", data))
        for kind, value in parser.feed(data):
            if kind == "kitty":
                supported = True
            else:
                others.append((kind, value))
    if supported:
        out.write(KITTY_PUSH)
        out.flush()
    return supported, others


def keyboard_text(kitty: bool, keys: KeyboardButtons, kernel: str = "") -> str:
    """The view's line on how keys become notes in this terminal."""
    if kitty:
        return "key releases reported (kitty keyboard protocol): a note lasts as long as its key"
    if kernel:
        return (f"key releases read from the keyboard ({kernel}): a note lasts as long as "
                "its key")
    return (f"no key releases from this terminal: a held key is one held note and a tap "
            f"lasts {keys.tap_hold:.2f} s (kitty, foot, WezTerm, Ghostty report releases)")


def run_simulator(cfg: Config, stop: threading.Event, why: str = "") -> int:
    import termios
    import tty

    from .alsa_quiet import quiet_alsa_errors
    from .app import Box
    from .panel import mock_factory

    log_path = _log_to_file(SIMULATOR_OUT)   # log lines would scribble over the live view
    open_sink, label = choose_sink(cfg)
    folder = recordings_folder(cfg)
    if folder is not None:
        cfg = dataclasses.replace(cfg, recording=dataclasses.replace(cfg.recording,
                                                                     folder=str(folder)))
    if cfg.stats.enabled:
        cfg = dataclasses.replace(cfg, stats=dataclasses.replace(
            cfg.stats, folder=str(counts_folder(cfg))))
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, open_sink=open_sink, audio_label=label,
              use_recorder=folder is not None,
              use_keys=False)      # the simulator reads this keyboard itself
    quiet = quiet_alsa_errors()      # MIDI and audio retries must not print over the view
    quiet.__enter__()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    out = sys.stdout
    kitty, keys, evdev = False, None, None
    try:
        box.start()
        keys = KeyboardButtons([factory.pin(p) for p in cfg.panel.buttons],
                               repeat_delay=desktop_repeat_delay())
        guard, notes, parser = QuitGuard(), NoteRows(), KeyParser()
        tty.setcbreak(fd)
        kitty, pending = _ask_for_key_releases(fd, out, parser)
        if not kitty:
            from .keyboard_evdev import EvdevKeys, keyboard_devices
            evdev = EvdevKeys(keyboard_devices())
            keys.kernel_keys = evdev.active
        kernel = ", ".join(evdev.paths) if evdev is not None and evdev.active else ""
        out.write("\x1b[?25l\x1b[2J")
        next_draw = 0.0
        last_input = time.monotonic()
        last_frame = ""
        while not stop.is_set():
            ready, _, _ = select.select([fd] + (evdev.fds if evdev else []), [], [], 0.02)
            if evdev is not None and evdev.active:
                for b, down in evdev.read():     # before the characters they explain
                    keys.kernel(b, down)
            events = pending
            pending = []
            if fd in ready:
                data = os.read(fd, 256)
                if not data:                      # the terminal went away
                    break
                events += parser.feed(data)
                last_input = time.monotonic()
            elif time.monotonic() - last_input > 0.05:
                parser.flush()                    # a lone Esc: ignored
            for kind, key in events:
                if kind == "ctrl" and key == "c":
                    stop.set()
                    continue
                if kind in ("char", "down") and guard.key(key):
                    stop.set()
                    continue
                if kind in ("char", "down") and key in KNOB_KEYS:
                    turn_knob(factory, cfg, KNOB_KEYS[key])
                    continue
                b = button_for(key) if isinstance(key, str) else None
                if b is None:
                    continue
                if kind == "char":
                    keys.typed(b)
                elif kind == "down":
                    keys.down(b)
                elif kind == "up":
                    keys.up(b)
            keys.expire()
            now = time.monotonic()
            if now >= next_draw:
                status = (f"replies {box.conductor.stats['replies']}  interrupts "
                          f"{box.conductor.stats['interrupts']}  xruns "
                          f"{getattr(box.audio, 'xruns', 0)} | rec {folder or 'off'} | "
                          f"log {log_path}")
                frame = render_view(box, label, notes=notes,
                                    keyboard_line=keyboard_text(kitty, keys, kernel),
                                    status_line=status, asking_quit=guard.asking,
                                    mode_line=why)
                if frame != last_frame:      # idle: nothing written (`make run | tee log`)
                    out.write(frame)
                    out.flush()
                    last_frame = frame
                next_draw = now + 0.08
    finally:
        if kitty:
            out.write(KITTY_POP)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        out.write("\x1b[?25h\n")
        out.flush()
        if keys is not None:
            keys.release_all()
        if evdev is not None:
            evdev.close()
        box.close()
        quiet.__exit__(None, None, None)
    if box.recorder is not None and box.recorder.written:
        print(f"recorded: {', '.join(str(p) for p in box.recorder.written)} "
              f"(`piano-buddy recordings` lists them)")
    return 0
