"""The desktop simulator: keys become mock button edges (with or without key releases),
quitting is deliberate, the view keeps the player's and the AI's notes apart, sound without
a card follows audio.wav_fallback, sessions are recorded, and it runs in a real pseudo-
terminal."""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import select
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

from piano_buddy.config import Config
from piano_buddy.panel import mock_factory
from piano_buddy.terminal import (DEFAULT_REPEAT_DELAY, QUIT_CONFIRM_SECONDS, REPEAT_HOLD,
                                  REPEAT_MARGIN, WAV_SILENCE_KEPT, KeyboardButtons, KeyParser,
                                  NoteRows, QuitGuard, SoundOnlyWavSink, choose_sink)


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def pins_and_clock():
    clock = Clock()
    factory = mock_factory(clock)
    pins = [factory.pin(p) for p in range(2, 10)]
    for p in pins:
        p.drive_high()
    yield pins, clock
    factory.reset()


def presses(pin) -> int:
    """How many times the pin went low (a note attack each)."""
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if a and not b)


# --- key parsing --------------------------------------------------------------------------
def test_arrows_function_keys_esc_and_alt_keys_are_not_keys():
    p = KeyParser()
    noise = b"\x1b[A\x1b[B\x1b[1;5C\x1bOP\x1b[15~\x1b[200~\x1ba\x1b\x1b[D"
    assert p.feed(noise) == []
    assert p.feed(b"\x1b") == []             # a lone Esc waits for what follows ...
    p.flush()                                  # ... and is dropped after a quiet spell
    assert p.feed(b"s") == [("char", "s")]


def test_a_sequence_cut_across_two_reads_is_taken_whole():
    p = KeyParser()
    assert p.feed(b"a\x1b[1") == [("char", "a")]
    assert p.feed(b"5~d") == [("char", "d")]
    assert p.feed(b"\x1b[97;1") == []
    assert p.feed(b":3u") == [("up", "a")]


def test_kitty_protocol_events_and_ctrl_c_in_both_forms():
    p = KeyParser()
    assert p.feed(b"\x1b[97u\x1b[97;1:2u\x1b[97;1:3u") == [("down", "a"), ("repeat", "a"),
                                                           ("up", "a")]
    assert p.feed(b"\x1b[59;65u") == [("down", ";")]        # caps lock bit set: still ';'
    assert p.feed(b"\x1b[27u\x1b[13u\x1b[57399u") == []     # Esc, Enter, keypad 0
    assert p.feed(b"\x1b[99;5u") == [("ctrl", "c")]         # Ctrl-C as kitty reports it
    assert p.feed(b"\x03") == [("ctrl", "c")]               # and as a plain terminal does
    assert p.feed(b"\x1b[?11u\x1b[?62;22c") == [("kitty", 11)]
    assert p.feed("é".encode()) == []


# --- keys to button edges -------------------------------------------------------------------
def test_with_key_releases_a_button_is_down_exactly_while_its_key_is(pins_and_clock):
    pins, clock = pins_and_clock
    keys = KeyboardButtons(pins, clock)
    keys.down(1)
    clock.t = 5.0
    keys.expire()
    assert pins[1].state == 0                  # no timeout while the key is held
    keys.down(1)                               # a repeat press: nothing new
    keys.up(1)
    assert pins[1].state == 1 and presses(pins[1]) == 1


def test_without_releases_a_tap_lasts_the_repeat_delay_and_a_hold_sounds_once(pins_and_clock):
    pins, clock = pins_and_clock
    keys = KeyboardButtons(pins, clock)        # the desktop did not say its repeat delay
    tap = DEFAULT_REPEAT_DELAY + REPEAT_MARGIN
    keys.key("s")
    clock.t = tap - 0.01
    keys.expire()
    assert pins[1].state == 0
    clock.t = tap + 0.01
    keys.expire()
    assert pins[1].state == 1 and presses(pins[1]) == 1
    # hold 8: the first repeat comes after X11's 0.66 s delay (later than the guess) ...
    clock.t = 10.0
    keys.key("8")
    clock.t += 0.66
    keys.key("8")
    for _ in range(30):                        # ... then 25 repeats a second
        clock.t += 0.04
        keys.key("8")
        keys.expire()
    assert pins[7].state == 0
    clock.t += REPEAT_HOLD + 0.01
    keys.expire()
    assert pins[7].state == 1
    assert keys.tap_hold == pytest.approx(0.66 + REPEAT_MARGIN)   # learned
    # now a hold never sounds twice: the first repeat arrives while the note is still down
    clock.t = 20.0
    keys.key("8")
    clock.t += 0.66
    keys.expire()
    keys.key("8")
    clock.t += 0.04
    keys.key("8")
    clock.t += REPEAT_HOLD + 0.01
    keys.expire()
    assert presses(pins[7]) == 2               # two holds, two notes


def test_a_repeat_delay_read_from_the_desktop_sets_the_tap_length(pins_and_clock):
    pins, clock = pins_and_clock
    keys = KeyboardButtons(pins, clock, repeat_delay=0.25)
    keys.key("1")
    clock.t = 0.25 + REPEAT_MARGIN + 0.01
    keys.expire()
    assert pins[0].state == 1


def test_caps_lock_does_not_silence_the_letter_keys(pins_and_clock):
    pins, clock = pins_and_clock
    keys = KeyboardButtons(pins, clock)
    for ch in "ASDFJKL;":
        keys.key(ch)
    assert all(p.state == 0 for p in pins)
    keys.release_all()
    keys.key("x")
    keys.key("Q")
    assert all(p.state == 1 for p in pins)


def test_quitting_takes_q_twice_and_anything_else_cancels_it():
    clock = Clock()
    guard = QuitGuard(clock)
    assert not guard.key("q") and guard.asking
    assert not guard.key("a") and not guard.asking        # played on: cancelled
    assert not guard.key("q")
    clock.t += QUIT_CONFIRM_SECONDS + 0.1                  # too late: asks again
    assert not guard.asking and not guard.key("Q")
    assert guard.key("q")


def test_a_long_ai_reply_does_not_push_the_players_notes_off_the_view():
    rows = NoteRows()
    last: list = []
    for p in (60, 62, 64):
        last = (last + [("player", p)])[-8:]
        rows.update(last)
    for p in range(70, 90):
        last = (last + [("ai", p)])[-8:]
        rows.update(last)
    assert rows.text("player") == "C4 D4 E4"
    assert rows.text("ai").split()[-1] == "F6" and len(rows.text("ai").split()) == 12


# --- sound without a card -------------------------------------------------------------------
def test_the_fallback_wav_holds_only_sound_and_short_rests(tmp_path):
    sr, block = 48000, 128
    path = tmp_path / "sim-20260101-000000.wav"
    sink = SoundOnlyWavSink(path, sr, 2).open()
    quiet = np.zeros((block, 2), np.int16)
    loud = np.full((block, 2), 1000, np.int16)
    for _ in range(sr // block):               # a second of silence: no file yet
        sink.write(quiet)
    assert not path.exists()
    for _ in range(10):
        sink.write(loud)
    for _ in range(5 * sr // block):           # a long rest: only WAV_SILENCE_KEPT of it
        sink.write(quiet)
    for _ in range(10):
        sink.write(loud)
    sink.close()
    with wave.open(str(path)) as w:
        frames = w.getnframes()
    expected = 20 * block + int(WAV_SILENCE_KEPT * sr)
    assert abs(frames - expected) <= block, (frames, expected)


def test_the_fallback_wav_is_capped_and_only_the_last_files_are_kept(tmp_path):
    for i in range(7):
        (tmp_path / f"sim-2026010{i}-000000.wav").write_bytes(b"old")
    path = tmp_path / "sim-20270101-000000.wav"
    sink = SoundOnlyWavSink(path, 48000, 2, cap_bytes=44 + 4 * 1280, keep=5).open()
    loud = np.full((128, 2), 1000, np.int16)
    for _ in range(50):
        sink.write(loud)
    assert sink.full and sink.frames_written == 1280
    sink.close()
    assert sorted(p.name for p in tmp_path.glob("sim-*.wav"))[-1] == path.name
    assert len(list(tmp_path.glob("sim-*.wav"))) == 5


def no_card_config(tmp_path) -> str:
    conf = tmp_path / "nocard.conf"
    conf.write_text('pcm.!default { type hw card "nosuchcard" }\n')
    return f"/usr/share/alsa/alsa.conf:{conf}"


def test_without_a_card_wav_fallback_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSA_CONFIG_PATH", no_card_config(tmp_path))
    cfg = Config()
    open_sink, label = choose_sink(cfg)
    assert "playing silently" in label and "audio.wav_fallback" in label
    assert open_sink().describe() == "no device (paced)"
    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(
        cfg.audio, wav_fallback=str(tmp_path / "out" / "sim.wav")))
    open_sink, label = choose_sink(cfg)
    sink = open_sink()
    assert isinstance(sink, SoundOnlyWavSink) and sink.path.parent == tmp_path / "out"
    assert re.fullmatch(r"sim-\d{8}-\d{6}\.wav", sink.path.name)


PROBE = ("import sys; from piano_buddy.config import Config; "
         "from piano_buddy.terminal import choose_sink; "
         "from piano_buddy.audio_out import AlsaSink\n"
         "if sys.argv[1] == 'raw':\n"
         "    try: AlsaSink('default').open()\n"
         "    except OSError as e: print(e)\n"
         "else: print(choose_sink(Config())[1])\n")


def test_alsa_lib_prints_nothing_of_its_own_when_the_simulator_probes(tmp_path):
    env = {**os.environ, "ALSA_CONFIG_PATH": no_card_config(tmp_path)}
    raw = subprocess.run([sys.executable, "-c", PROBE, "raw"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert "ALSA lib" in raw.stderr            # what a newcomer saw before the friendly line
    ours = subprocess.run([sys.executable, "-c", PROBE, "sink"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert ours.returncode == 0, ours.stderr
    assert "ALSA lib" not in ours.stderr
    assert "none: ALSA device 'default' did not open" in ours.stdout


# --- the real thing in a pseudo-terminal ----------------------------------------------------
def read_screen(fd, seconds, answer_kitty=None, until=None):
    """Read the simulator's output; answer its keyboard-protocol query like a terminal
    (``answer_kitty`` flags, or only the device attributes a plain terminal sends).
    ``until``: a regular expression; stop as soon as the screen read so far matches it
    (``seconds`` is then only the limit, generous for a busy machine)."""
    end, data = time.monotonic() + seconds, b""
    while time.monotonic() < end:
        if until is not None and re.search(until, _plain(data)):
            break
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if b"\x1b[?u" in chunk:
                reply = (f"\x1b[?{answer_kitty}u" if answer_kitty is not None else "")
                os.write(fd, (reply + "\x1b[?62;22c").encode())
            data += chunk
    return _plain(data), data


def _plain(data: bytes) -> str:
    return re.sub(r"\x1b\[[0-9;?<>]*[A-Za-z~]", "", data.decode(errors="ignore"))


def start_simulator(tmp_path, env, extra=""):
    conf = tmp_path / "c.toml"
    conf.write_text("[midi]\nenabled = false\n"
                    f"[recording]\nfolder = \"{tmp_path / 'rec'}\"\n" + extra)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "piano_buddy", "--config", str(conf),
                             "--log-level", "WARNING", "run"],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                            # no X display to ask for the repeat delay; "over SSH", so the
                            # machine's own keyboard (evdev) is not read either
                            env={**env, "DISPLAY": "", "SSH_CONNECTION": "10.0.0.1 1 10.0.0.2 22"},
                            cwd=tmp_path)
    os.close(slave)
    return proc, master


def test_the_simulator_plays_ignores_stray_keys_and_quits_only_on_q_twice(tmp_path, alsa_capture):
    proc, master = start_simulator(tmp_path, alsa_capture.env())
    try:
        screen, _ = read_screen(master, 10)
        assert "desktop simulator" in screen and "your turn" in screen
        assert "Play a few notes, then stop and listen: the AI answers." in screen
        assert "ALSA device 'default'" in screen
        assert "no key releases from this terminal" in screen
        assert re.search(r"keys\s+a\s+s\s+d\s+f\s+j\s+k\s+l\s+;", screen)
        os.write(master, b"\x1b")                     # Esc, arrows, F1: nothing happens
        os.write(master, b"\x1b[A\x1b[D\x1bOP")
        os.write(master, b"q")                       # one q: are you done?
        screen, _ = read_screen(master, 10.0, until="Are you done")
        assert "Are you done? Press q again" in screen
        for ch in "aSdF":                             # playing on cancels the question
            os.write(master, ch.encode())
            time.sleep(0.7)
        screen, _ = read_screen(master, 20.0, until=r"AI\s+[A-G]#?\d")
        time.sleep(0.3)
        screen += read_screen(master, 0.5)[0]
        assert proc.poll() is None, "a stray key ended the simulator"
        you = re.findall(r"you\s+((?:[A-G]#?-?\d ?)+)", screen)
        assert you and len(you[-1].split()) == 4, screen[-1500:]
        assert re.search(r"AI\s+[A-G]#?\d", screen), "the AI answered in its own row"
        assert "Are you done" not in screen.split("your turn")[-1]
        os.write(master, b"qq")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    recordings = list((tmp_path / "rec").glob("session-*.mid"))
    assert len(recordings) == 1, "the session was recorded like the box's"


def test_the_simulator_uses_key_releases_where_the_terminal_reports_them(tmp_path, alsa_capture):
    proc, master = start_simulator(tmp_path, alsa_capture.env())
    try:
        screen, raw = read_screen(master, 10, answer_kitty=0)
        assert "key releases reported (kitty keyboard protocol)" in screen
        assert b"\x1b[>11u" in raw                    # it switched the protocol on
        os.write(master, b"\x1b[97u")                 # a down ...
        time.sleep(1.5)                               # ... held well past any repeat delay
        screen, _ = read_screen(master, 0.3, answer_kitty=0)
        turns = re.findall(r"turn\s+\S (your turn|the AI is \w+)", screen)
        assert turns and turns[-1] == "your turn", "the held note keeps the turn"
        os.write(master, b"\x1b[97;1:3u")             # ... and up
        screen, _ = read_screen(master, 20.0, answer_kitty=0, until=r"AI\s+[A-G]#?\d")
        assert re.search(r"AI\s+[A-G]#?\d", screen)
        os.write(master, b"\x1b[99;5u")               # Ctrl-C, as kitty reports it
        assert proc.wait(timeout=20) == 0
        _, raw = read_screen(master, 0.5)
        assert b"\x1b[<u" in raw                      # the protocol is switched off again
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_piano_buddy_recordings_finds_the_simulators_sessions(tmp_path):
    (tmp_path / "out" / "recordings").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "piano_buddy", "recordings"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "showing the desktop simulator's out/recordings" in r.stdout


# --- key releases from the kernel (evdev) ---------------------------------------------------
def input_event(code: int, value: int) -> bytes:
    from piano_buddy.keyboard_evdev import EV_KEY, EVENT
    return EVENT.pack(0, 0, EV_KEY, code, value)


def test_kernel_key_events_are_read_from_an_event_file(tmp_path):
    """A FIFO carries the same struct input_event records a keyboard's event device does."""
    from piano_buddy.keyboard_evdev import EvdevKeys

    fifo = tmp_path / "event0"
    os.mkfifo(fifo)
    writer_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)   # keep it open: no EOF
    with EvdevKeys([str(fifo), str(tmp_path / "missing")]) as keys:
        assert keys.active and keys.paths == [str(fifo)]
        assert keys.read() == []
        a_down = input_event(30, 1)
        os.write(writer_fd, a_down[:10])                    # half a record ...
        assert keys.read() == []
        os.write(writer_fd, a_down[10:] + input_event(30, 2)    # ... the rest, a repeat,
                 + input_event(16, 1)                           # q: not a button
                 + input_event(9, 1) + input_event(30, 0))      # 8 down, a up
        assert keys.read() == [(0, True), (7, True), (0, False)]
    os.close(writer_fd)


def test_with_kernel_events_a_held_key_lasts_until_the_kernel_says_up(pins_and_clock):
    pins, clock = pins_and_clock
    keys = KeyboardButtons(pins, clock)
    keys.kernel_keys = True
    keys.kernel(2, True)           # d goes down (kernel) ...
    keys.key("d")                  # ... and its character reaches our terminal: pressed
    assert pins[2].state == 0
    for _ in range(40):            # two seconds of auto-repeat: still one note
        clock.t += 0.05
        keys.key("d")
        keys.expire()
    assert pins[2].state == 0
    keys.kernel(2, False)
    assert pins[2].state == 1 and presses(pins[2]) == 1
    keys.kernel(3, True)           # typed in another window: no character, no note
    keys.kernel(3, False)
    clock.t += 2.0
    keys.expire()
    assert presses(pins[3]) == 0
    keys.kernel(4, True)           # a quick tap whose character is read after its release
    keys.kernel(4, False)
    keys.key("j")
    assert pins[4].state == 0
    clock.t += 0.06
    keys.expire()
    assert pins[4].state == 1 and presses(pins[4]) == 1


def test_the_knob_keys_turn_the_simulated_knob_through_the_real_encoder():
    """- and = drive the mock encoder pins through their quadrature steps: the volume moves,
    and with button 8 held the AI's creativity does instead (issue 13, shown in the
    simulator)."""
    from piano_buddy.config import from_dict
    from piano_buddy.terminal import turn_knob

    try:
        from tests.rig import Rig
    except ImportError:
        from rig import Rig
    rig = Rig(from_dict({"audio": {"period_frames": 256}}))
    try:
        steps = rig.panel.encoder.steps
        turn_knob(rig.factory, rig.cfg, 2)
        assert rig.panel.encoder.steps == steps + 2
        level = rig.conductor.creativity.level
        rig.press(7)
        turn_knob(rig.factory, rig.cfg, -3)
        rig.step()
        assert rig.conductor.creativity.level == level - 3
        assert rig.panel.encoder.steps == steps + 2
        rig.release(7)
    finally:
        rig.close()
