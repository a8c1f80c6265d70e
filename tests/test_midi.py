"""MIDI in and out through the real rtmidi JACK API against a JACK dummy server.

The firmware gets its JACK ports through the rig's port module ``tests/midi_jack.py`` (the
seam ``PIANO_BUDDY_MIDI``), which keeps Python out of JACK's process thread; the box itself
uses the ALSA sequencer, which this machine lacks.

A "keyboard" is a virtual output port opened by the test (mido for well-formed messages, raw
python-rtmidi for garbage); MidiInput finds it by polling, as it would a USB keyboard. MIDI
out goes to a virtual port that the test connects (jack_connect) to its own input, like a
DAW would. The byte parser also has plain tests that need no server.
"""

from __future__ import annotations

import logging
import random
import subprocess
import threading
import time

import pytest

from piano_buddy.events import InputEvent, Kind
from piano_buddy.midi import (PIANO_HIGH, PIANO_LOW, MidiByteParser, MidiInput, MidiOutput,
                              IGNORED_COUNTERS)

try:
    from tests import midi_jack
except ImportError:          # run from inside tests/
    import midi_jack

JACK = midi_jack.__name__                      # the firmware's port module: rtmidi's JACK API
MIDO_JACK = "mido.backends.rtmidi/UNIX_JACK"   # the test's own keyboards, through mido
POLL = 0.1


# --- helpers ----------------------------------------------------------------------------------
class Posted:
    """The conductor's side of ``post``: keeps every event, lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[InputEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: InputEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 5.0) -> list[InputEvent]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; posted so far: {self.events}")
                self._cond.wait(left)
            return list(self.events)

    def keys(self) -> list[tuple[str, int, int]]:
        return [(e.kind.value, e.source, e.velocity) for e in self.events
                if e.kind in (Kind.KEY_ON, Kind.KEY_OFF, Kind.PEDAL)]

    def count(self, kind: Kind, velocity: int | None = None) -> int:
        return sum(1 for e in self.events
                   if e.kind is kind and (velocity is None or e.velocity == velocity))


def assert_clean(events: list[InputEvent], *, all_released: bool = True) -> None:
    """Per pitch, KEY_ON/KEY_OFF alternate starting with ON; pedal down/up alternate;
    in range; nothing left held (when the device is gone)."""
    held: set[int] = set()
    pedal = False
    for e in events:
        if e.kind is Kind.KEY_ON:
            assert PIANO_LOW <= e.source <= PIANO_HIGH, e
            assert 1 <= e.velocity <= 127, e
            assert e.source not in held, f"second KEY_ON without KEY_OFF: {e}"
            held.add(e.source)
        elif e.kind is Kind.KEY_OFF:
            assert e.source in held, f"KEY_OFF without KEY_ON: {e}"
            held.discard(e.source)
        elif e.kind is Kind.PEDAL:
            down = e.velocity >= 64
            assert down != pedal, f"pedal event that changes nothing: {e}"
            pedal = down
    if all_released:
        assert not held, f"stuck notes: {sorted(held)}"
        assert not pedal, "pedal left down"


def jack_backend():
    import mido
    return mido.Backend(MIDO_JACK, load=True)


def raw_keyboard(name: str = "Fuzz Keyboard"):
    import rtmidi
    port = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=name)
    port.open_virtual_port("keys")
    return port


def close_raw(port) -> None:
    port.close_port()
    port.delete()


def jack_connect(server, source: str, destination: str) -> None:
    subprocess.run(["jack_connect", "-s", server.name, source, destination], check=True,
                   env=server.env(), capture_output=True, timeout=10)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def connected(posted: Posted, n: int = 1):
    return lambda ev: sum(1 for e in ev if e.kind is Kind.DEVICE and e.velocity == 1) >= n


def jack_connections() -> dict[str, list[str]]:
    """Each JACK port -> the ports it is connected to (``jack_lsp -c`` on the test's server,
    named by JACK_DEFAULT_SERVER)."""
    out = subprocess.run(["jack_lsp", "-c"], capture_output=True, text=True, timeout=10).stdout
    ports: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line[:1].isspace() and current is not None:
            ports[current].append(line.strip())
        elif line.strip():
            current = line.strip()
            ports[current] = []
    return ports


def plugged(posted: Posted, n: int = 1, timeout: float = 5.0) -> None:
    """Wait for the n-th DEVICE connect, then until JACK's graph has the new connection: JACK
    applies it at a later cycle, and a busy machine makes that late (a message sent before
    goes nowhere; not so with USB)."""
    posted.wait_for(connected(posted, n), timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.startswith("Piano Buddy In") for links in jack_connections().values()
               for p in links):
            break
        time.sleep(0.02)
    time.sleep(0.05)


def disconnected(posted: Posted, n: int = 1):
    return lambda ev: sum(1 for e in ev if e.kind is Kind.DEVICE and e.velocity == 0) >= n


@pytest.fixture
def midi_in(jack_server):
    posted = Posted()
    mi = MidiInput(posted, poll_seconds=POLL, backend=JACK)
    yield mi, posted
    mi.close()


# --- the byte parser (no server needed) -------------------------------------------------------
def parse(chunks):
    stats = dict.fromkeys(IGNORED_COUNTERS, 0)
    parser = MidiByteParser(stats)
    out = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out, stats


def test_parser_running_status_across_messages():
    out, stats = parse([[0x90, 60, 100], [62, 90], [60, 0, 62, 0], [0x80, 64, 0], [65, 0]])
    assert out == [(0x90, 60, 100), (0x90, 62, 90), (0x90, 60, 0), (0x90, 62, 0),
                   (0x80, 64, 0), (0x80, 65, 0)]
    assert not any(stats.values())


def test_mido_parser_would_lose_what_keyboards_send_so_the_firmware_frames_bytes_itself():
    """Why MidiByteParser exists beside mido: mido 1.3's Parser drops running-status data
    (keyboards send note-offs as running-status note-ons) and resets on a realtime byte
    inside a message (clock ticks come anywhere). If mido learns both, use it instead."""
    import mido
    for chunks, ours in (([[0x90, 60, 100, 62, 90]], [(0x90, 60, 100), (0x90, 62, 90)]),
                         ([[0x90, 0xF8, 60, 100]], [(0x90, 60, 100)])):
        flat = [b for chunk in chunks for b in chunk]
        theirs = [m for m in mido.parse_all(flat) if m.type == "note_on"]
        assert parse(chunks)[0] == ours
        assert len(theirs) < len(ours), theirs


def test_parser_sysex_realtime_and_system_common():
    # realtime inside a message and inside sysex changes nothing; sysex and song position
    # cancel running status, so the data bytes after them are stray.
    out, stats = parse([[0x90, 0xF8, 60, 0xFE, 100], [0xF0, 1, 2, 0xF8, 3, 0xF7], [61, 100],
                        [0xF2, 5, 6, 7], [0xB0, 64, 127]])
    assert out == [(0x90, 60, 100), (0xB0, 64, 127)]
    assert stats["sysex"] == 1 and stats["other_messages"] == 4  # F8 FE F8 F2
    assert stats["stray_bytes"] == 3                                # 61, 100, 7


def test_parser_truncated_and_unterminated():
    out, stats = parse([[0x90, 60], [0x80, 60, 0], [0xF0, 1, 2, 0x90, 61, 5], [0x90], [0xC0, 5]])
    assert out == [(0x80, 60, 0), (0x90, 61, 5), (0xC0, 5, 0)]
    assert stats["truncated"] == 2 and stats["sysex"] == 1


def test_parser_random_bytes_never_raise():
    rng = random.Random(6)
    stats = dict.fromkeys(IGNORED_COUNTERS, 0)
    parser = MidiByteParser(stats)
    for _ in range(2000):
        for status, d1, d2 in parser.feed([rng.randrange(256) for _ in range(rng.randrange(8))]):
            assert 0x80 <= status < 0xF0 and 0 <= d1 < 128 and 0 <= d2 < 128


# --- MIDI in through JACK ---------------------------------------------------------------------
@pytest.mark.jack
def test_keyboard_phrase_arrives_as_input_events(midi_in):
    import mido
    mi, posted = midi_in
    kb = jack_backend().open_output("keys", virtual=True, client_name="Test Keyboard")
    try:
        mi.start()
        plugged(posted)
        assert mi.devices == ["Test Keyboard:keys"]
        for msg in [mido.Message("note_on", note=60, velocity=100),
                    mido.Message("control_change", control=64, value=127),
                    mido.Message("note_on", note=64, velocity=80, channel=3),
                    mido.Message("note_off", note=60),
                    mido.Message("note_on", note=64, velocity=0, channel=3),   # = note-off
                    mido.Message("control_change", control=64, value=100),     # still down
                    mido.Message("control_change", control=64, value=0)]:
            kb.send(msg)
        posted.wait_for(lambda ev: sum(e.kind is Kind.PEDAL for e in ev) == 2)
    finally:
        kb.close()
    assert posted.keys() == [("key_on", 60, 100), ("pedal", 64, 127), ("key_on", 64, 80),
                             ("key_off", 60, 0), ("key_off", 64, 0), ("pedal", 64, 0)]
    times = [e.time for e in posted.events]
    assert times == sorted(times)
    assert mi.stats["key_on"] == 2 and mi.stats["key_off"] == 2


@pytest.mark.jack
def test_hot_plug_releases_held_notes_and_picks_the_keyboard_up_again(midi_in):
    import mido
    mi, posted = midi_in
    backend = jack_backend()
    mi.start()
    kb = backend.open_output("keys", virtual=True, client_name="Test Keyboard")
    plugged(posted)
    kb.send(mido.Message("note_on", note=60, velocity=90))
    kb.send(mido.Message("note_on", note=67, velocity=90))
    kb.send(mido.Message("control_change", control=64, value=127))
    posted.wait_for(lambda ev: posted.count(Kind.PEDAL) == 1)
    kb.close()                                   # unplugged with two keys and the pedal down
    posted.wait_for(disconnected(posted), timeout=3)
    assert_clean(posted.events)                  # KEY_OFF for 60 and 67, pedal up
    assert mi.devices == []

    kb = backend.open_output("keys", virtual=True, client_name="Test Keyboard")   # plugged in
    try:
        plugged(posted, 2, timeout=3)
        kb.send(mido.Message("note_on", note=72, velocity=50))
        posted.wait_for(lambda ev: ev[-1].kind is Kind.KEY_ON and ev[-1].source == 72)
    finally:
        kb.close()
    posted.wait_for(disconnected(posted, 2), timeout=3)
    assert_clean(posted.events)
    ids = [e.source for e in posted.events if e.kind is Kind.DEVICE]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


@pytest.mark.jack
def test_ignores_own_output_through_ports_and_unmatched_names(jack_server):
    import mido
    posted = Posted()
    backend = jack_backend()
    out = MidiOutput(name="Piano Buddy", backend=JACK)
    through = backend.open_output("Midi Through Port-0", virtual=True, client_name="Midi Through")
    other = backend.open_output("keys", virtual=True, client_name="Drum Pad")
    wanted = backend.open_output("keys", virtual=True, client_name="USB Keystation 88")
    mi = MidiInput(posted, name_pattern="keystation", poll_seconds=POLL, backend=JACK)
    try:
        mi.start()
        plugged(posted)
        time.sleep(5 * POLL)
        assert mi.devices == ["USB Keystation 88:keys"]
        out.note_on(60, 100, ai=False)           # our own output must not loop back in
        other.send(mido.Message("note_on", note=61, velocity=100))
        through.send(mido.Message("note_on", note=62, velocity=100))
        wanted.send(mido.Message("note_on", note=63, velocity=100))
        posted.wait_for(lambda ev: posted.count(Kind.KEY_ON) >= 1)
        time.sleep(0.2)
        assert [e.source for e in posted.events if e.kind is Kind.KEY_ON] == [63]
    finally:
        mi.close()
        for port in (through, other, wanted):
            port.close()
        out.close()
    assert_clean(posted.events)


@pytest.mark.jack
def test_two_keyboards_on_one_pitch_post_one_note(midi_in):
    import mido
    mi, posted = midi_in
    backend = jack_backend()
    mi.start()
    a = backend.open_output("keys", virtual=True, client_name="Keyboard A")
    b = backend.open_output("keys", virtual=True, client_name="Keyboard B")
    plugged(posted, 2)
    a.send(mido.Message("note_on", note=60, velocity=90))
    posted.wait_for(lambda ev: posted.count(Kind.KEY_ON) == 1)
    b.send(mido.Message("note_on", note=60, velocity=90))
    wait_until(lambda: mi.stats["messages"] == 2)       # two clients: no order between them
    a.send(mido.Message("note_off", note=60))
    a.send(mido.Message("note_on", note=62, velocity=90))     # a marker to wait for
    posted.wait_for(lambda ev: posted.count(Kind.KEY_ON) == 2)
    assert posted.count(Kind.KEY_OFF) == 0                    # B still holds 60
    b.close()
    posted.wait_for(lambda ev: posted.count(Kind.KEY_OFF) == 1, timeout=3)
    a.close()
    posted.wait_for(disconnected(posted, 2), timeout=3)
    assert_clean(posted.events)


@pytest.mark.jack
def test_fuzzed_input_never_crashes_and_leaves_nothing_held(midi_in, caplog):
    """Random bytes, sysex, running status, out-of-range notes and a flood from a raw rtmidi
    port; then the keyboard vanishes: every posted KEY_ON has its KEY_OFF."""
    caplog.set_level(logging.INFO, logger="piano_buddy.midi")
    mi, posted = midi_in
    rng = random.Random(1234)
    mi.start()
    kb = raw_keyboard()
    plugged(posted)

    def note_bytes():
        status = rng.choice([0x80, 0x90, 0x90, 0x90, 0xB0]) | rng.randrange(16)
        first = 64 if status & 0xF0 == 0xB0 and rng.random() < 0.5 else rng.randrange(128)
        return [status, first, rng.randrange(128)]

    generators = [
        note_bytes,
        lambda: [rng.randrange(256) for _ in range(rng.randrange(1, 12))],       # garbage
        lambda: [0xF0] + [rng.randrange(128) for _ in range(rng.randrange(40))] + [0xF7],
        lambda: [rng.randrange(128) for _ in range(rng.choice([1, 2, 4]))],      # running st.
        lambda: [0x90, rng.choice([0, 5, 20, 109, 120, 127]), 100],              # off piano
        lambda: [0x80, rng.randrange(21, 109), 0],                               # off, no on
        lambda: [rng.choice([0xF8, 0xFE, 0xF6, 0xF1, 0xF2, 0xF4])],
    ]
    sent = 0
    for _ in range(3000):
        message = rng.choice(generators)()
        try:
            kb.send_message(message)
            sent += 1
        except (ValueError, TypeError):     # rtmidi refuses some shapes outright: fine
            pass
        if rng.random() < 0.01:
            time.sleep(0.005)
    for burst in range(30):                 # a flood of new notes: 100 a burst, no pause
        for _ in range(100):                # inside (JACK's per-cycle buffer is the limit)
            kb.send_message([0x90, rng.randrange(21, 109), 100])
        time.sleep(0.003)
    quiet_since, last = time.monotonic(), -1
    while time.monotonic() - quiet_since < 0.3:           # until nothing more arrives
        if mi.stats["messages"] != last:
            quiet_since, last = time.monotonic(), mi.stats["messages"]
        time.sleep(0.02)
    assert mi.stats["messages"] > 0.9 * (sent + 3000), (sent, mi.stats)
    assert_clean(posted.events, all_released=False)
    close_raw(kb)
    posted.wait_for(disconnected(posted), timeout=3)
    assert_clean(posted.events)
    stats = mi.stats
    for key in ("out_of_range", "note_off_without_on", "sysex", "stray_bytes",
                "rate_limited", "other_messages"):
        assert stats[key] > 0, (key, stats)
    assert stats["callback_errors"] == 0 and stats["post_failed"] == 0
    assert stats["key_on"] == posted.count(Kind.KEY_ON) == stats["key_off"]
    assert stats["key_on"] <= 64 + 200 * 30, stats         # the bucket held the flood back
    time.sleep(3 * POLL)
    assert any("ignored since last report" in r.getMessage() for r in caplog.records)


@pytest.mark.jack
def test_a_full_conductor_queue_does_not_leave_a_held_note(jack_server):
    """post() raising queue.Full: a refused KEY_ON is not held (its note-off is ignored); a
    refused KEY_OFF is posted again, with its own time, once the queue takes it."""
    import queue
    accepted = Posted()
    refuse = {"kind": None}

    def post(event):
        if event.kind is refuse["kind"]:
            refuse["kind"] = None
            raise queue.Full
        accepted(event)

    mi = MidiInput(post, poll_seconds=POLL, backend=JACK).start()
    kb = raw_keyboard()
    try:
        plugged(accepted)
        refuse["kind"] = Kind.KEY_ON
        for message in ([0x90, 60, 100], [0x80, 60, 0], [0x90, 62, 100]):
            kb.send_message(message)
        accepted.wait_for(lambda ev: accepted.count(Kind.KEY_ON) == 1)
        refuse["kind"] = Kind.KEY_OFF
        sent = time.monotonic()
        kb.send_message([0x80, 62, 0])
        accepted.wait_for(lambda ev: accepted.count(Kind.KEY_OFF) == 1)   # the watcher's retry
        off = accepted.events[-1]
        assert off.kind is Kind.KEY_OFF and off.source == 62 and off.time < sent + 0.05
    finally:
        close_raw(kb)
        accepted.wait_for(disconnected(accepted), timeout=3)
        mi.close()
    assert accepted.keys() == [("key_on", 62, 100), ("key_off", 62, 0)]
    assert mi.stats["post_failed"] == 2 and mi.stats["note_off_without_on"] == 1
    assert_clean(accepted.events)


@pytest.mark.jack
def test_jack_server_restart_is_survived(jack_server):
    import mido
    posted = Posted()
    mi = MidiInput(posted, poll_seconds=POLL, backend=JACK).start()
    try:
        kb = jack_backend().open_output("keys", virtual=True, client_name="Test Keyboard")
        plugged(posted)
        kb.send(mido.Message("note_on", note=60, velocity=90))
        posted.wait_for(lambda ev: posted.count(Kind.KEY_ON) == 1)
        jack_server.stop()                   # the whole MIDI system goes away
        posted.wait_for(disconnected(posted), timeout=5)
        assert_clean(posted.events)
        kb.close()      # libjack frees a dead server's clients once a new one opens: close first
        jack_server.start()
        kb2 = jack_backend().open_output("keys", virtual=True, client_name="Test Keyboard")
        plugged(posted, 2, timeout=10)
        kb2.send(mido.Message("note_on", note=64, velocity=90))
        posted.wait_for(lambda ev: posted.count(Kind.KEY_ON) == 2)
        kb2.close()
        posted.wait_for(disconnected(posted, 2), timeout=5)
    finally:
        mi.close()
    assert_clean(posted.events)


def test_bad_settings_fail_at_construction():
    from piano_buddy.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown rtmidi API 'NOPE'"):
        MidiInput(lambda e: None, backend="mido.backends.rtmidi/NOPE")
    with pytest.raises(ConfigError, match="JACK's real-time thread"):
        MidiInput(lambda e: None, backend=MIDO_JACK)
    with pytest.raises(ConfigError, match="JACK's real-time thread"):
        MidiOutput(backend="UNIX_JACK")
    with pytest.raises(ConfigError, match="'no_such.module'.*cannot be imported"):
        MidiInput(lambda e: None, backend="no_such.module")
    with pytest.raises(ConfigError, match="lacks MidiIn, MidiOut"):
        MidiInput(lambda e: None, backend="json.decoder")
    with pytest.raises(ConfigError, match="poll_seconds"):
        MidiInput(lambda e: None, backend=JACK, poll_seconds=0)


def test_without_any_midi_system_input_and_output_carry_on(monkeypatch, caplog):
    """No server at all (JACK absent, no ALSA sequencer here): warnings, no exception."""
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "pb-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    caplog.set_level(logging.WARNING, logger="piano_buddy.midi")
    posted = Posted()
    mi = MidiInput(posted, poll_seconds=0.05, backend=JACK).start()
    out = MidiOutput(backend=JACK)
    out.note_on(60, 100, ai=False)
    out.all_notes_off()
    time.sleep(0.3)
    mi.close()
    mi.close()
    out.close()
    out.close()
    assert posted.events == []
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("MIDI input unavailable" in w for w in warnings) == 1, warnings
    assert sum("MIDI output 'Piano Buddy' unavailable" in w for w in warnings) == 1, warnings


# --- MIDI out through JACK --------------------------------------------------------------------
class Synth:
    """A test 'synth': a virtual JACK MIDI input that keeps what it receives.

    It drains rtmidi's queue from a thread of its own, as tests/midi_jack.py does: a Python
    callback would run in JACK's process thread and can stall the server."""

    def __init__(self, client: str = "Test Synth") -> None:
        import rtmidi
        self.messages = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.port = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=client)
        self.port.ignore_types(sysex=False, timing=True, active_sense=True)
        self.port.open_virtual_port("in")
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import mido
        while not self._stop.wait(0.002):
            while (item := self.port.get_message()) is not None:
                with self._lock:
                    self.messages.append(mido.Message.from_bytes(item[0]))

    def wait(self, n: int, timeout: float = 5.0) -> list:
        wait_until(lambda: len(self.messages) >= n, timeout)
        time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.port.close_port()
        self.port.delete()


def summary(messages) -> list[tuple]:
    out = []
    for m in messages:
        if m.type in ("note_on", "note_off"):
            off = m.type == "note_off" or m.velocity == 0
            out.append(("off" if off else "on", m.channel, m.note))
        elif m.type == "control_change":
            out.append(("cc", m.channel, m.control, m.value))
    return out


@pytest.mark.jack
def test_output_port_sends_player_and_ai_on_their_channels(jack_server):
    synth = Synth()
    out = MidiOutput(name="Piano Buddy", player_channel=2, ai_channel=9, backend=JACK)
    try:
        jack_connect(jack_server, "Piano Buddy:Piano Buddy", "Test Synth:in")
        out.note_on(60, 100, ai=False)
        out.note_on(64, 90, ai=True)
        out.note_off(60, ai=False)
        out.note_on(67, 300, ai=True)            # velocity clamped to 127
        got = synth.wait(4)
        assert summary(got) == [("on", 2, 60), ("on", 9, 64), ("off", 2, 60), ("on", 9, 67)]
        assert got[3].velocity == 127
        out.all_notes_off()                      # an interrupt: 64 and 67 still sound
        got = synth.wait(8)
        assert summary(got[4:]) == [("off", 9, 64), ("off", 9, 67),
                                    ("cc", 2, 123, 0), ("cc", 9, 123, 0)]
        out.note_on(72, 80, ai=False)
    finally:
        out.close()
        out.close()                              # safe twice, sends nothing more
        got = synth.wait(12)
        synth.close()
    assert summary(got[8:]) == [("on", 2, 72), ("off", 2, 72), ("cc", 2, 123, 0),
                                ("cc", 9, 123, 0)]
    out.note_on(60, 100, ai=False)               # after close: ignored, no exception
    assert len(synth.messages) == 12


@pytest.mark.jack
def test_output_finds_a_hardware_port_by_pattern_and_survives_it_vanishing(jack_server, caplog):
    caplog.set_level(logging.WARNING, logger="piano_buddy.midi")
    synth = Synth("USB Synth")
    out = MidiOutput(name="Piano Buddy", port_pattern="usb synth", backend=JACK)
    try:
        assert out.hardware_port == "USB Synth:in"
        out.note_on(60, 100, ai=True)
        assert summary(synth.wait(1)) == [("on", 1, 60)]
        synth.close()                            # unplugged: sends go nowhere, no exception
        for pitch in range(40, 50):
            out.note_on(pitch, 100, ai=False)
            out.note_off(pitch, ai=False)
        out.all_notes_off()
    finally:
        out.close()
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


@pytest.mark.jack
def test_keyboard_to_output_end_to_end(jack_server):
    """A keyboard plays into MidiInput; a stand-in for the conductor forwards each event to
    MidiOutput as the player and answers with an AI note; the synth hears both parts."""
    import mido
    synth = Synth()
    out = MidiOutput(name="Piano Buddy", backend=JACK)
    jack_connect(jack_server, "Piano Buddy:Piano Buddy", "Test Synth:in")

    def conductor(event):
        if event.kind is Kind.KEY_ON:
            out.note_on(event.source, event.velocity, ai=False)
        elif event.kind is Kind.KEY_OFF:
            out.note_off(event.source, ai=False)
            out.note_on(event.source + 12, 80, ai=True)
            out.note_off(event.source + 12, ai=True)

    mi = MidiInput(conductor, poll_seconds=POLL, backend=JACK).start()
    kb = jack_backend().open_output("keys", virtual=True, client_name="Test Keyboard")
    try:
        wait_until(lambda: mi.devices)
        time.sleep(0.05)
        for pitch in (60, 62, 64):
            kb.send(mido.Message("note_on", note=pitch, velocity=100))
            kb.send(mido.Message("note_off", note=pitch))
        got = synth.wait(12)
    finally:
        kb.close()
        mi.close()
        out.close()
        synth.close()
    expected = []
    for pitch in (60, 62, 64):
        expected += [("on", 0, pitch), ("off", 0, pitch), ("on", 1, pitch + 12),
                     ("off", 1, pitch + 12)]
    assert summary(got[:12]) == expected


def test_output_rejects_bad_channels():
    from piano_buddy.errors import ConfigError
    with pytest.raises(ConfigError, match="ai_channel = 16"):
        MidiOutput(ai_channel=16, backend=JACK)
