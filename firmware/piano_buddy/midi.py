"""MIDI in and out through python-rtmidi: a USB keyboard plays the box, a synth or DAW hears it.

``MidiInput`` runs one watcher thread that finds keyboards (hot-plug: a port that appears or
vanishes is opened or dropped within ``poll_seconds``) and turns their bytes into
:class:`InputEvent` for the conductor. The rtmidi callbacks only parse, sanitize and call
``post()``; they never log, block or raise. What reaches ``post()`` is clean by construction:

* per pitch, KEY_ON and KEY_OFF alternate, starting with KEY_ON (two keyboards holding the
  same pitch post one KEY_ON and one KEY_OFF);
* every posted KEY_ON gets its KEY_OFF, at the latest when its keyboard vanishes or the input
  closes; the same for a pedal held down;
* notes outside the piano (21-108) are DROPPED, not clamped: clamping would fold several keys
  onto one pitch and break the pairing above;
* note-off without note-on, a repeated note-on, sysex, pitch bend, other controllers and
  every other message are ignored and counted in ``stats`` (the watcher logs what grew, at
  most once a minute);
* velocity-0 note-on is a note-off; running status works across rtmidi messages, and
  realtime bytes may come inside a message (mido 1.3's parser drops the first and resets on
  the second, so this module frames bytes itself; a test says when mido can take over);
* ``post`` follows the hand-over contract of :mod:`piano_buddy.events` (False: an onset was
  dropped, and then this keyboard's key is not counted as held); a KEY_OFF or pedal release
  that fails anyway (``post`` raised: a bug) is kept and posted again with its original time
  at the next message or watcher pass;
* a pedal's polarity is learnt per keyboard as keyboards learn theirs at power-up: a sustain
  value that arrives within ``PEDAL_SETTLE_SECONDS`` of connecting, before any key, is the
  pedal at rest, and
  otherwise the first value is the first press; if that reads "up", the pedal is reversed and
  its values are flipped from then on;
* Reset All Controllers (CC121) lifts the pedal but leaves held keys sounding (MIDI 1.0);
  All Notes Off and All Sound Off (CC123, CC120) release the keyboard's held keys;
* new notes and pedal presses go through a token bucket (``burst``, ``rate``): a flood is
  cut and counted, while note-offs always pass (they can only end what was posted).

``MidiOutput`` sends everything the box plays to a virtual port (a DAW or synth connects to
it) and optionally to a hardware port; a failing port is logged once and dropped, never
raising into the conductor.

Ports come from a port module with python-rtmidi's interface (:func:`port_module`): rtmidi
itself on the ALSA sequencer (the Pi; a desktop's PipeWire provides it too), where rtmidi calls
our callback from its own input thread. The seam: ``backend="fake"`` or
``PIANO_BUDDY_MIDI=fake`` puts :mod:`piano_buddy.midi_fake`'s in-process ports under the same
code, as ``GPIOZERO_PIN_FACTORY=mock`` does for the pins; a dotted module name puts that
module's ports there (the test rig's ``tests.midi_jack``: JACK MIDI, for machines without an
ALSA sequencer). rtmidi's own JACK API is refused: it calls back from JACK's real-time thread,
where Python must not run (see ``tests/midi_jack.py``).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from typing import Callable

from .errors import ConfigError, MidiError
from .events import InputEvent, Kind

log = logging.getLogger(__name__)

PIANO_LOW, PIANO_HIGH = 21, 108      # A0 .. C8: what the synth and the models know
SUSTAIN_CC = 64
ALL_SOUND_OFF_CC, RESET_CONTROLLERS_CC, ALL_NOTES_OFF_CC = 120, 121, 123
IN_CLIENT_NAME = "Piano Buddy In"          # our JACK/ALSA client names; never opened as inputs
WATCH_CLIENT_NAME = "Piano Buddy Watch"
IGNORED_PORT_WORDS = ("through",)          # "Midi Through": the kernel's loopback

# Data bytes after each status (channel messages by high nibble, system common by byte).
_CHANNEL_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_COMMON_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}

# Counters that mean "something was ignored"; the watcher logs their increase.
IGNORED_COUNTERS = ("out_of_range", "note_off_without_on", "repeated_note_on", "sysex",
                    "other_messages", "stray_bytes", "truncated", "rate_limited",
                    "post_failed", "post_refused", "callback_errors")

REPORT_EVERY = 60.0            # seconds between log lines about ignored input (first: at once)
QUEUE_SIZE = 4096              # rtmidi's per-port queue between its thread and ours
PEDAL_SETTLE_SECONDS = 0.5     # a sustain value this soon after connecting (before any key)
                               # is the keyboard reporting its pedal at rest

_own_client_names: set[str] = {IN_CLIENT_NAME, WATCH_CLIENT_NAME}


FAKE_BACKENDS = ("fake", "piano_buddy.midi_fake")


PORT_MODULE_NEEDS = ("MidiIn", "MidiOut", "API_UNSPECIFIED")


def port_module(backend: str | None = None):
    """The module that makes ports (the seam, like GPIOZERO_PIN_FACTORY): ``backend``, else
    ``PIANO_BUDDY_MIDI``: empty for python-rtmidi, "fake" for :mod:`piano_buddy.midi_fake`, or
    the dotted name of a module with rtmidi's ``MidiIn``/``MidiOut`` interface."""
    chosen = (backend if backend is not None else os.environ.get("PIANO_BUDDY_MIDI", "")).strip()
    if chosen.lower() in FAKE_BACKENDS:
        from . import midi_fake
        return midi_fake
    if "." in chosen and "/" not in chosen:
        try:
            module = importlib.import_module(chosen)
        except Exception as exc:
            raise ConfigError(f"MIDI port module {chosen!r} (PIANO_BUDDY_MIDI) cannot be "
                              f"imported: {exc}") from exc
        missing = [n for n in PORT_MODULE_NEEDS if not hasattr(module, n)]
        if missing:
            raise ConfigError(f"MIDI port module {chosen!r} (PIANO_BUDDY_MIDI) lacks "
                              f"{', '.join(missing)}")
        return module
    import rtmidi
    return rtmidi


def rtmidi_api(backend: str | None):
    """The API constant to open ports with. For python-rtmidi: from a mido-style backend
    string (``backend``, else ``MIDO_BACKEND``: "mido.backends.rtmidi/LINUX_ALSA" or just
    "LINUX_ALSA"), else rtmidi's default (ALSA on Linux). Its JACK API is refused."""
    rtmidi = port_module(backend)
    if rtmidi.__name__ != "rtmidi":
        return rtmidi.API_UNSPECIFIED
    backend = backend if backend is not None else os.environ.get("MIDO_BACKEND", "")
    name = backend.rpartition("/")[2].strip() if "/" in backend else ""
    if not name and backend and not backend.startswith("mido."):
        name = backend.strip()
    if not name:
        return rtmidi.API_UNSPECIFIED
    api = getattr(rtmidi, "API_" + name.upper(), None)
    if api is None:
        raise ConfigError(f"MIDI backend {backend!r}: unknown rtmidi API {name!r} "
                          f"(compiled in: {rtmidi.get_compiled_api()})")
    if api == rtmidi.API_UNIX_JACK:
        raise ConfigError(f"MIDI backend {backend!r}: rtmidi's JACK API calls back from "
                          "JACK's real-time thread, where the firmware's Python cannot run "
                          "safely; use the ALSA sequencer (with JACK, a2jmidid bridges it)")
    return api


def _client_of(port_name: str) -> str:
    """'Piano Buddy:Piano Buddy 128:0' -> 'Piano Buddy' (ALSA and JACK both put it first)."""
    return port_name.split(":", 1)[0].strip()


def is_own_port(port_name: str) -> bool:
    client = _client_of(port_name)
    base, dash, suffix = client.rpartition("-")
    return client in _own_client_names or (dash and suffix.isdigit()
                                          and base in _own_client_names)


class MidiByteParser:
    """Splits one port's byte stream into channel messages, keeping running status.

    ``feed(data)`` returns [(status, data1, data2)] for complete channel messages and counts
    what it skips into ``stats`` (sysex, system and realtime messages, stray data bytes,
    messages cut short by a new status byte).
    """

    __slots__ = ("_status", "_need", "_data", "_pending", "_in_sysex", "stats")

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        self._status = 0          # running status (0: none)
        self._need = 0            # data bytes a message under this status takes
        self._data: list[int] = []
        self._pending = False     # a status byte arrived and no message completed yet
        self._in_sysex = False

    def feed(self, data) -> list[tuple[int, int, int]]:
        out: list[tuple[int, int, int]] = []
        stats = self.stats
        for byte in data:
            if not isinstance(byte, int) or not 0 <= byte <= 255:
                stats["stray_bytes"] += 1
                continue
            if byte >= 0xF8:                      # realtime: anywhere, changes nothing
                stats["other_messages"] += 1
                continue
            if self._in_sysex:
                if byte < 0x80:
                    continue                      # sysex payload
                self._in_sysex = False
                stats["sysex"] += 1
                if byte == 0xF7:
                    continue
                # any other status byte ends an unterminated sysex and counts as itself
            if byte >= 0x80:
                if self._pending or self._data:
                    stats["truncated"] += 1
                self._data = []
                self._pending = False
                self._status, self._need = 0, 0
                if byte < 0xF0:
                    self._status, self._need = byte, _CHANNEL_DATA_BYTES[byte & 0xF0]
                    self._pending = True
                elif byte == 0xF0:
                    self._in_sysex = True
                else:                             # system common: cancels running status
                    stats["other_messages"] += 1
                    need = _SYSTEM_COMMON_DATA_BYTES.get(byte, 0)
                    if need:                      # swallow its data bytes
                        self._status, self._need, self._pending = byte, need, True
                continue
            if not self._status:                  # a data byte with nothing to belong to
                stats["stray_bytes"] += 1
                continue
            self._data.append(byte)
            if len(self._data) < self._need:
                continue
            status, data_bytes = self._status, self._data
            self._data = []
            self._pending = False
            if status >= 0xF0:                    # system common's data: no running status
                self._status = 0
                continue
            out.append((status, data_bytes[0], data_bytes[1] if len(data_bytes) > 1 else 0))
        return out


class _TokenBucket:
    """At most ``burst`` at once and ``rate`` per second on average."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now if self._last is None else max(self._last, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _Device:
    """One open keyboard port: its rtmidi object, byte parser and what it holds down."""

    def __init__(self, device_id: int, name: str, stats: dict[str, int]) -> None:
        self.id = device_id
        self.name = name
        self.rt = None
        self.parser = MidiByteParser(stats)
        self.held: set[int] = set()
        self.pedal_down = False
        self.pedal_reversed: bool | None = None     # learnt from the first sustain value
        self.keys_seen = False
        self.connected_at = float("-inf")
        self.closed = False


class MidiInput:
    """Hot-plugged MIDI keyboards -> InputEvents (KEY_ON/KEY_OFF/PEDAL/DEVICE) via ``post``.

    DEVICE events: ``source`` is a small id (1, 2, ... per port opened), ``velocity`` 1 when
    it connected, 0 when it vanished. PEDAL is posted when the combined sustain state of all
    keyboards changes (down at CC64 >= 64), with the controller value in ``velocity``.
    """

    def __init__(self, post: Callable[[InputEvent], bool], *, name_pattern: str = "",
                 poll_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 backend: str | None = None, rate: float = 200.0, burst: float = 64.0
                 ) -> None:
        if poll_seconds <= 0:
            raise ConfigError(f"MIDI poll_seconds = {poll_seconds!r}: must be > 0")
        self._post_fn = post
        self._pattern = name_pattern.strip().lower()
        self._poll = float(poll_seconds)
        self._clock = clock
        self._backend = backend
        self._ports = port_module(backend)       # chosen once: rtmidi or the fake
        self._api = rtmidi_api(backend)          # a bad backend name fails here, not later
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe = None
        self._devices: dict[str, _Device] = {}
        self._holders: dict[int, set[int]] = {}     # pitch -> ids of devices holding it
        self._pedals_down = 0
        self._unsent: list[InputEvent] = []           # releases post() refused; sent later
        self._next_id = 0
        self._bucket = _TokenBucket(rate, burst)
        self._retry_after: dict[str, float] = {}    # port name -> monotonic time
        self._unavailable_logged = False
        self._logged: dict[str, int] = {}
        self._last_report = float("-inf")
        self.stats: dict[str, int] = dict.fromkeys(
            ("messages", "key_on", "key_off", "pedal", "devices_opened", "devices_closed",
             "open_failed", "pedal_reversed") + IGNORED_COUNTERS, 0)

    # --- public ----------------------------------------------------------------------------
    def start(self) -> "MidiInput":
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="midi-watch", daemon=True)
            self._thread.start()
        return self

    @property
    def poll_seconds(self) -> float:
        return self._poll

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching, close every port (posting KEY_OFF for what was held). Waits at most
        ``timeout`` for the watcher (one stuck in the MIDI system must not hold up the
        shutdown). Safe twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)
            if thread.is_alive():
                log.warning("MIDI %s thread still busy after %g s; closing without it",
                            thread.name, timeout)
        for device in list(self._devices.values()):
            self._drop(device, "input closed")
        with self._lock:
            self._send_unsent()
            if self._unsent:
                log.warning("MIDI input closed with %d releases the conductor never took",
                            len(self._unsent))
                self._unsent.clear()
        probe, self._probe = self._probe, None
        if probe is not None:
            _quietly(probe.delete)

    @property
    def devices(self) -> list[str]:
        """Names of the keyboards open now."""
        with self._lock:
            return sorted(self._devices)

    def scan(self) -> None:
        """One hot-plug pass (the watcher calls it every ``poll_seconds``; tests may too).

        If listing fails (the MIDI system went away), every open keyboard is dropped (its
        notes released) and the next pass tries again."""
        rtmidi = self._ports
        try:
            if self._probe is None:
                self._probe = rtmidi.MidiIn(rtapi=self._api, name=WATCH_CLIENT_NAME)
            names = self._probe.get_ports()
        except Exception as exc:
            probe, self._probe = self._probe, None
            if probe is not None:
                _quietly(probe.delete)
            for device in list(self._devices.values()):
                self._drop(device, "gone with the MIDI system")
            raise MidiError(f"MIDI input unavailable ({exc}); retrying") from exc
        present = set(names)
        for name, device in list(self._devices.items()):
            if name not in present or not self._wanted(name):
                self._drop(device, "vanished")
        now = time.monotonic()
        for name in list(self._retry_after):
            if name not in present:
                del self._retry_after[name]
        for name in names:
            if name in self._devices or not self._wanted(name):
                continue
            if self._retry_after.get(name, 0.0) > now:
                continue
            try:
                self._open(name)
                self._retry_after.pop(name, None)
            except Exception as exc:
                self.stats["open_failed"] += 1
                if name not in self._retry_after:
                    log.warning("MIDI input %r cannot be opened (%s); retrying every %g s",
                                name, exc, self._poll * 5)
                self._retry_after[name] = now + self._poll * 5

    def __enter__(self) -> "MidiInput":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- watcher thread --------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            delay = self._poll
            try:
                self.scan()
                self._unavailable_logged = False
            except Exception as exc:        # never let hot-plug trouble end the thread
                if not self._unavailable_logged:
                    log.warning("%s", exc)
                    self._unavailable_logged = True
                delay = min(self._poll * 5, 30.0)
            with self._lock:
                self._send_unsent()
            self._log_ignored()

    def _wanted(self, name: str) -> bool:
        low = name.lower()
        if is_own_port(name) or any(word in low for word in IGNORED_PORT_WORDS):
            return False
        return not self._pattern or self._pattern in low

    def _open(self, name: str) -> None:
        rtmidi = self._ports
        rt = rtmidi.MidiIn(rtapi=self._api, name=IN_CLIENT_NAME, queue_size_limit=QUEUE_SIZE)
        try:
            ports = rt.get_ports()
            if name not in ports:
                raise MidiError(f"MIDI input {name!r} vanished while opening")
            with self._lock:
                self._next_id += 1
                device = _Device(self._next_id, name, self.stats)
                device.connected_at = self._clock()
            device.rt = rt
            rt.ignore_types(sysex=False, timing=True, active_sense=True)
            rt.set_callback(self._on_midi, device)
            rt.open_port(ports.index(name), "keys")
        except BaseException:
            _quietly(rt.cancel_callback)
            _quietly(rt.delete)
            raise
        with self._lock:
            self._devices[name] = device
            self.stats["devices_opened"] += 1
            self._post(Kind.DEVICE, device.id, self._clock(), 1)
        log.info("MIDI keyboard connected: %s", name)

    def _drop(self, device: _Device, why: str) -> None:
        with self._lock:
            if device.closed:
                return
            device.closed = True
            self._devices.pop(device.name, None)
            now = self._clock()
            self._release_all(device, now, pedal_too=True)
            self.stats["devices_closed"] += 1
            self._post(Kind.DEVICE, device.id, now, 0)
        rt, device.rt = device.rt, None
        if rt is not None:
            _quietly(rt.cancel_callback)
            _quietly(rt.close_port)
            _quietly(rt.delete)
        log.info("MIDI keyboard %s: %s", why, device.name)

    def _log_ignored(self) -> None:
        now = time.monotonic()
        if now - self._last_report < REPORT_EVERY:
            return
        changed = {k: self.stats[k] - self._logged.get(k, 0) for k in IGNORED_COUNTERS
                   if self.stats[k] != self._logged.get(k, 0)}
        if changed:
            self._last_report = now
            self._logged.update({k: self.stats[k] for k in changed})
            log.info("MIDI input ignored since last report: %s",
                     ", ".join(f"{k} {v}" for k, v in changed.items()))

    # --- rtmidi thread ---------------------------------------------------------------------
    def _on_midi(self, event, device: _Device) -> None:
        """rtmidi's callback: parse, sanitize, post; never raises, logs or blocks."""
        try:
            message = event[0]
            with self._lock:
                if self._unsent:
                    self._send_unsent()
                if device.closed:
                    return
                self.stats["messages"] += 1
                messages = device.parser.feed(message)
                if messages:
                    now = self._clock()
                    for status, data1, data2 in messages:
                        self._handle(device, status, data1, data2, now)
        except Exception:
            self.stats["callback_errors"] += 1

    def _handle(self, device: _Device, status: int, data1: int, data2: int, now: float) -> None:
        kind = status & 0xF0
        stats = self.stats
        if kind in (0x80, 0x90):
            device.keys_seen = True
        if kind == 0x90 and data2 > 0:
            if not PIANO_LOW <= data1 <= PIANO_HIGH:
                stats["out_of_range"] += 1
            elif data1 in device.held:
                stats["repeated_note_on"] += 1
            elif not self._bucket.take(now):
                stats["rate_limited"] += 1
            else:
                holders = self._holders.get(data1)
                if holders:                       # another keyboard holds it: already on
                    holders.add(device.id)
                    device.held.add(data1)
                elif self._post(Kind.KEY_ON, data1, now, data2):
                    self._holders[data1] = {device.id}
                    device.held.add(data1)
                    stats["key_on"] += 1
        elif kind == 0x80 or kind == 0x90:
            if data1 in device.held:
                self._release(device, data1, now)
            else:
                stats["note_off_without_on"] += 1
        elif kind == 0xB0:
            if data1 == SUSTAIN_CC:
                self._pedal_value(device, data2, now)
            elif data1 == RESET_CONTROLLERS_CC:     # controllers only: the keys stay held
                self._pedal(device, False, 0, now)
            elif data1 in (ALL_SOUND_OFF_CC, ALL_NOTES_OFF_CC):
                self._release_all(device, now, pedal_too=False)
            else:
                stats["other_messages"] += 1
        else:
            stats["other_messages"] += 1

    def _pedal_value(self, device: _Device, value: int, now: float) -> None:
        """A sustain controller value, with the keyboard's pedal polarity learnt and applied."""
        if device.pedal_reversed is None:
            at_rest = (now - device.connected_at < PEDAL_SETTLE_SECONDS
                       and not device.keys_seen)
            reads_down = value >= 64
            # at rest a pedal reads "up"; its first press reads "down": otherwise reversed
            device.pedal_reversed = reads_down if at_rest else not reads_down
            if device.pedal_reversed:
                self.stats["pedal_reversed"] += 1
        if device.pedal_reversed:
            value = 127 - value
        self._pedal(device, value >= 64, value, now)

    def _pedal(self, device: _Device, down: bool, value: int, now: float) -> None:
        if down == device.pedal_down:
            return
        if down and not self._bucket.take(now):
            self.stats["rate_limited"] += 1
            return
        device.pedal_down = down
        self._pedals_down += 1 if down else -1
        if self._pedals_down == (1 if down else 0):
            self.stats["pedal"] += 1
            self._post(Kind.PEDAL, SUSTAIN_CC, now, value)

    def _release(self, device: _Device, pitch: int, now: float) -> None:
        device.held.discard(pitch)
        holders = self._holders.get(pitch)
        if holders is None:
            return
        holders.discard(device.id)
        if not holders:
            del self._holders[pitch]
            self.stats["key_off"] += 1
            self._post(Kind.KEY_OFF, pitch, now, 0)

    def _release_all(self, device: _Device, now: float, pedal_too: bool) -> None:
        for pitch in sorted(device.held):
            self._release(device, pitch, now)
        if pedal_too and device.pedal_down:
            self._pedal(device, False, 0, now)

    def _post(self, kind: Kind, source: int, now: float, velocity: int) -> bool:
        event = InputEvent(kind, source, now, velocity)
        try:
            if self._post_fn(event) is False:   # a dropped onset (the contract's only drop)
                self.stats["post_refused"] += 1
                return False
            return True
        except Exception:
            self.stats["post_failed"] += 1
            if kind is Kind.KEY_OFF or (kind is Kind.PEDAL and velocity < 64):
                self._unsent.append(event)      # a release must arrive: never a stuck note
            return False

    def _send_unsent(self) -> None:
        while self._unsent:
            try:
                if self._post_fn(self._unsent[0]) is False:
                    return
            except Exception:
                return
            self._unsent.pop(0)


class MidiOutput:
    """What the box plays, as MIDI: the player on ``player_channel``, the AI on ``ai_channel``
    (0-15), to a virtual port ``name`` and to the first hardware port whose name contains
    ``port_pattern`` (if given; looked for again every few seconds while missing).

    Never raises after construction: a port that fails is logged once and dropped, and
    opened again every ``RETRY_SECONDS`` (:meth:`check`, which the supervisor calls, also
    notices a port its MIDI system closed, so a restarted MIDI system gets our port back).
    """

    HARDWARE_RETRY_SECONDS = 5.0
    RETRY_SECONDS = 5.0

    def __init__(self, *, name: str = "Piano Buddy", port_pattern: str = "",
                 player_channel: int = 0, ai_channel: int = 1, backend=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for key, channel in (("player_channel", player_channel), ("ai_channel", ai_channel)):
            if not isinstance(channel, int) or not 0 <= channel <= 15:
                raise ConfigError(f"MIDI {key} = {channel!r}: must be 0..15")
        if not name.strip():
            raise ConfigError("MIDI output name is empty")
        self.name = name
        self.player_channel, self.ai_channel = player_channel, ai_channel
        self._pattern = port_pattern.strip().lower()
        self._backend = backend
        self._clock = clock
        self._lock = threading.RLock()
        self._sounding: dict[tuple[int, int], int] = {}
        self._closed = False
        self._failed_logged: set[str] = set()
        self._hardware = None
        self._hardware_name = ""
        self._next_hardware_try = 0.0
        self._next_virtual_try = 0.0
        self.sent = 0
        self.reopened = 0
        _own_client_names.add(name)
        self._ports = port_module(backend)
        self._api = rtmidi_api(backend)
        self._virtual = self._open_virtual()
        if self._pattern:
            self._try_hardware()

    @property
    def is_open(self) -> bool:
        """The virtual port is there for a DAW or synth to connect to."""
        return self._virtual is not None

    def check(self) -> None:
        """Drop ports their MIDI system closed; reopen the virtual port when it is due."""
        with self._lock:
            if self._closed:
                return
            lost = [p for p in (self._virtual, self._hardware)
                    if p is not None and not _is_open(p)]
            if lost:
                log.warning("MIDI output %r: the MIDI system closed %s; reopening",
                            self.name, "its port" if len(lost) == 1 else "its ports")
                if self._virtual in lost:
                    self._virtual = None
                    self._next_virtual_try = self._clock() + self.RETRY_SECONDS
                if self._hardware in lost:
                    self._hardware = None
                    self._next_hardware_try = self._clock() + self.HARDWARE_RETRY_SECONDS
                self._sounding.clear()
                for port in lost:
                    _quietly(port.close_port)
                    _quietly(port.delete)
                return
            if self._virtual is None and self._clock() >= self._next_virtual_try:
                self._next_virtual_try = self._clock() + self.RETRY_SECONDS
                self._virtual = self._open_virtual(quiet=self.name in self._failed_logged)
                if self._virtual is not None:
                    self.reopened += 1
                    self._failed_logged.discard(self.name)
                    log.info("MIDI output %r open again", self.name)

    @property
    def hardware_port(self) -> str:
        return self._hardware_name if self._hardware is not None else ""

    def note_on(self, pitch: int, velocity: int, ai: bool) -> None:
        pitch = max(0, min(127, int(pitch)))
        velocity = max(1, min(127, int(velocity)))
        channel = self.ai_channel if ai else self.player_channel
        with self._lock:
            if self._closed:
                return
            key = (channel, pitch)
            self._sounding[key] = self._sounding.get(key, 0) + 1
            self._send([0x90 | channel, pitch, velocity])

    def note_off(self, pitch: int, ai: bool) -> None:
        pitch = max(0, min(127, int(pitch)))
        channel = self.ai_channel if ai else self.player_channel
        with self._lock:
            if self._closed:
                return
            key = (channel, pitch)
            count = self._sounding.get(key, 0)
            if count > 1:
                self._sounding[key] = count - 1
            else:
                self._sounding.pop(key, None)
            self._send([0x80 | channel, pitch, 0])

    def all_notes_off(self) -> None:
        """Note-offs for everything known to sound, then CC123 on both channels."""
        with self._lock:
            if self._closed:
                return
            self._all_notes_off()

    def close(self) -> None:
        """All notes off, then close the ports. Safe twice."""
        with self._lock:
            if self._closed:
                return
            self._all_notes_off()
            self._closed = True
            ports = [p for p in (self._virtual, self._hardware) if p is not None]
            self._virtual = self._hardware = None
        for port in ports:
            _quietly(port.close_port)
            _quietly(port.delete)

    def __enter__(self) -> "MidiOutput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- private ---------------------------------------------------------------------------
    def _all_notes_off(self) -> None:
        for (channel, pitch) in sorted(self._sounding):
            self._send([0x80 | channel, pitch, 0])
        self._sounding.clear()
        for channel in sorted({self.player_channel, self.ai_channel}):
            self._send([0xB0 | channel, ALL_NOTES_OFF_CC, 0])

    def _open_virtual(self, quiet: bool = False):
        try:
            rtmidi = self._ports
            port = rtmidi.MidiOut(rtapi=self._api, name=self.name)
            try:
                port.open_virtual_port(self.name)
            except BaseException:
                _quietly(port.delete)
                raise
            return port
        except Exception as exc:
            self._next_virtual_try = self._clock() + self.RETRY_SECONDS
            if not quiet:
                self._failed_logged.add(self.name)
                log.warning("MIDI output %r unavailable (%s); playing on without it, retrying "
                            "every %g s", self.name, exc, self.RETRY_SECONDS)
            return None

    def _try_hardware(self) -> None:
        self._next_hardware_try = self._clock() + self.HARDWARE_RETRY_SECONDS
        port = None
        try:
            rtmidi = self._ports
            port = rtmidi.MidiOut(rtapi=self._api, name=self.name)
            names = port.get_ports()
            for index, port_name in enumerate(names):
                low = port_name.lower()
                if (self._pattern in low and not is_own_port(port_name)
                        and not any(w in low for w in IGNORED_PORT_WORDS)):
                    port.open_port(index, "out")
                    self._hardware, self._hardware_name = port, port_name
                    self._failed_logged.discard("hardware")
                    log.info("MIDI out also to %s", port_name)
                    return
            _quietly(port.delete)
        except Exception as exc:
            if port is not None:
                _quietly(port.delete)
            if "hardware" not in self._failed_logged:
                self._failed_logged.add("hardware")
                log.warning("MIDI output to a port matching %r failed (%s); retrying",
                            self._pattern, exc)

    def _send(self, message: list[int]) -> None:
        if self._pattern and self._hardware is None and self._clock() >= self._next_hardware_try:
            self._try_hardware()
        for attr in ("_virtual", "_hardware"):
            port = getattr(self, attr)
            if port is None:
                continue
            try:
                port.send_message(message)
                self.sent += 1
            except Exception as exc:
                setattr(self, attr, None)
                _quietly(port.delete)
                label = self.name if attr == "_virtual" else self._hardware_name
                if attr == "_hardware":
                    self._next_hardware_try = self._clock() + self.HARDWARE_RETRY_SECONDS
                else:
                    self._next_virtual_try = self._clock() + self.RETRY_SECONDS
                if label not in self._failed_logged:
                    self._failed_logged.add(label)
                    log.warning("MIDI output %r failed (%s); dropped, playing on", label, exc)


def _is_open(port) -> bool:
    """rtmidi's ``is_port_open`` (True for an open virtual port too); a port that cannot say
    counts as open."""
    try:
        return bool(port.is_port_open())
    except Exception:
        return True


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:
        pass
