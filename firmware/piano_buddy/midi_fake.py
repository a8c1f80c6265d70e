"""In-process MIDI ports with python-rtmidi's interface: the MIDI seam's fake, as gpiozero's
MockFactory is the pins' fake.

``PIANO_BUDDY_MIDI=fake`` (or ``backend="fake"``) makes :mod:`piano_buddy.midi` use this
module instead of rtmidi. Everything above the port is the real code: a fake keyboard's bytes
go through rtmidi-style callbacks into the real parser, sanitizer and rate limit, and MIDI out
goes through the real channel and note bookkeeping. Tests, the soak and the simulator use it
where no MIDI system (ALSA sequencer, JACK) is there.

    from piano_buddy import midi_fake
    kb = midi_fake.keyboard("USB Keyboard")       # appears to the hot-plug watcher
    kb.send([0x90, 60, 100])                      # delivered like rtmidi delivers bytes
    kb.unplug()                                   # vanishes at the next scan
    midi_fake.sent_to("Piano Buddy")              # what MIDI out sent to its virtual port

Only what :mod:`piano_buddy.midi` uses is here. Callbacks run on the sender's thread, as
rtmidi's ALSA backend runs them on its own input thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque

API_UNSPECIFIED, API_LINUX_ALSA, API_UNIX_JACK = 0, 2, 3
NAME = "fake"

_lock = threading.RLock()
_keyboards: dict[str, "FakeKeyboard"] = {}     # port name -> keyboard
_synths: dict[str, "FakeSynth"] = {}           # hardware output port name -> synth
_virtual: dict[str, deque] = {}                # our virtual output port -> messages sent
KEEP_SENT = 10_000                             # messages kept per port (a soak runs for hours)
_fail_virtual = False


def get_compiled_api() -> list[int]:
    return [API_LINUX_ALSA, API_UNIX_JACK]


class FakeKeyboard:
    """A keyboard plugged in: ``send(bytes)`` plays it; ``unplug()`` takes it away."""

    def __init__(self, name: str) -> None:
        self.port_name = f"{name}:{name} MIDI 1 20:0"
        self._listeners: list[MidiIn] = []
        self._t0 = time.monotonic()

    def send(self, message) -> None:
        data = [int(b) & 0xFF if isinstance(b, int) else b for b in message]
        with _lock:
            listeners = list(self._listeners)
        for port in listeners:
            port._deliver(data)

    def unplug(self) -> None:
        with _lock:
            _keyboards.pop(self.port_name, None)


class FakeSynth:
    """A hardware synth's input: what MIDI out sent to it is in ``received``."""

    def __init__(self, name: str) -> None:
        self.port_name = f"{name}:{name} MIDI 1 24:0"
        self.received: deque = deque(maxlen=KEEP_SENT)

    def unplug(self) -> None:
        with _lock:
            _synths.pop(self.port_name, None)


def keyboard(name: str = "Fake Keyboard") -> FakeKeyboard:
    kb = FakeKeyboard(name)
    with _lock:
        _keyboards[kb.port_name] = kb
    return kb


def synth(name: str = "Fake Synth") -> FakeSynth:
    s = FakeSynth(name)
    with _lock:
        _synths[s.port_name] = s
    return s


def sent_to(virtual_name: str) -> list[list[int]]:
    """The last ``KEEP_SENT`` messages MIDI out sent to its virtual port (a copy)."""
    with _lock:
        return [list(m) for m in _virtual.get(virtual_name, [])]


def fail_virtual_ports(fail: bool) -> None:
    """Make opening a virtual output fail (a MIDI system that is not there yet)."""
    global _fail_virtual
    _fail_virtual = fail


def reset() -> None:
    """Unplug everything and forget what was sent (between tests)."""
    global _fail_virtual
    with _lock:
        _keyboards.clear()
        _synths.clear()
        _virtual.clear()
        _fail_virtual = False


class MidiIn:
    def __init__(self, rtapi: int = API_UNSPECIFIED, name: str = "", queue_size_limit=1024):
        self._callback = None
        self._data = None
        self._queue: deque = deque(maxlen=queue_size_limit)
        self._keyboard: FakeKeyboard | None = None
        self._last = time.monotonic()

    def get_ports(self) -> list[str]:
        with _lock:
            return list(_keyboards)

    def ignore_types(self, sysex=True, timing=True, active_sense=True) -> None:
        pass

    def set_callback(self, fn, data=None) -> None:
        self._callback, self._data = fn, data

    def cancel_callback(self) -> None:
        self._callback = None

    def open_port(self, index: int, name: str = "") -> None:
        with _lock:
            kb = list(_keyboards.values())[index]
            kb._listeners.append(self)
            self._keyboard = kb

    def is_port_open(self) -> bool:
        return self._keyboard is not None

    def close_port(self) -> None:
        with _lock:
            if self._keyboard is not None and self in self._keyboard._listeners:
                self._keyboard._listeners.remove(self)
            self._keyboard = None

    def delete(self) -> None:
        self.close_port()

    def get_message(self):
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def _deliver(self, data: list[int]) -> None:
        now = time.monotonic()
        event = (data, now - self._last)
        self._last = now
        callback = self._callback
        if callback is not None:
            callback(event, self._data)
        else:
            self._queue.append(event)


class MidiOut:
    def __init__(self, rtapi: int = API_UNSPECIFIED, name: str = "") -> None:
        self._client = name
        self._target: deque | None = None

    def open_virtual_port(self, name: str = "") -> None:
        if _fail_virtual:
            raise RuntimeError("fake MIDI system: virtual ports unavailable")
        with _lock:
            self._target = _virtual.setdefault(name or self._client, deque(maxlen=KEEP_SENT))

    def get_ports(self) -> list[str]:
        with _lock:
            return list(_synths)

    def open_port(self, index: int, name: str = "") -> None:
        with _lock:
            self._synth = list(_synths.values())[index]
            self._target = self._synth.received

    def is_port_open(self) -> bool:
        return self._target is not None

    def send_message(self, message) -> None:
        target = self._target
        if target is None:
            raise RuntimeError("fake MIDI port is not open")
        synth = getattr(self, "_synth", None)
        if synth is not None and synth.port_name not in _synths:
            raise RuntimeError(f"fake MIDI port {synth.port_name!r} is gone")
        with _lock:
            target.append(list(message))

    def close_port(self) -> None:
        self._target = None

    def delete(self) -> None:
        self.close_port()
