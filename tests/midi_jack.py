"""rtmidi's JACK API as a port module for the firmware's MIDI seam: the rig's MIDI system.

``PIANO_BUDDY_MIDI=tests.midi_jack`` (or ``backend="tests.midi_jack"``) puts real JACK MIDI
ports under :mod:`piano_buddy.midi`, as ``PIANO_BUDDY_MIDI=fake`` puts in-process ones. The
tests and the desktop rig need it because a container or CI machine has no ALSA sequencer;
the box (ALSA on the Pi) never does, so this lives with the tests, not in the firmware.

Two JACK facts shape it (both seen in this project's tests, jackd2 1.9.21, python-rtmidi
1.5.8):

* rtmidi's JACK API calls an input callback from JACK's real-time process thread. Waiting for
  Python's GIL there makes the client miss its cycle, and JACK2's dummy server then stalls the
  whole graph for good. So callbacks are never handed to rtmidi: one reader thread here drains
  every input's queue each ``READ_INTERVAL`` and calls the callback from Python.
* rtmidi's JACK clients outlive their server silently: they keep listing its ports, and libjack
  frees them when a new client is opened, so a later close crashes. The reader watches the
  server's socket; when it goes, every client is deleted at once, before any new one can be
  opened, and each wrapper then says so the ordinary way (``get_ports`` and ``send_message``
  raise, ``is_port_open`` is False), so the firmware drops and reopens its ports by the paths
  it uses for any MIDI system that goes away.
"""

from __future__ import annotations

import os
import threading
import time

import rtmidi

API_UNSPECIFIED = API_UNIX_JACK = rtmidi.API_UNIX_JACK
READ_INTERVAL = 0.002      # seconds between drains of each input's queue
QUEUE_DRAIN_MAX = 4096     # messages taken from one queue per drain

_lock = threading.RLock()  # the reader drains and the firmware closes: never both
_clients: set["_Client"] = set()
_reader: threading.Thread | None = None


def get_compiled_api() -> list[int]:
    return [API_UNIX_JACK]


def server_gone() -> bool:
    """True when the JACK server's socket (JACK2 on Linux) is missing. A server killed with
    SIGKILL leaves its socket behind and is not noticed this way."""
    name = os.environ.get("JACK_DEFAULT_SERVER") or "default"
    return not os.path.exists(f"/dev/shm/jack_{name}_{os.getuid()}_0")


def _forget_dead_server() -> bool:
    """If the server is gone, delete every client now (see the module docstring)."""
    if not server_gone():
        return False
    with _lock:
        for client in list(_clients):
            client._kill()
    return True


def _refuse_without_server() -> None:
    """No new client while the server is gone: opening one is what makes libjack free the
    dead server's clients under the feet of whoever closes them later."""
    if _forget_dead_server():
        raise OSError("JACK server not running")


def _read_loop() -> None:
    while True:
        time.sleep(READ_INTERVAL)
        if _forget_dead_server():
            continue
        with _lock:
            inputs = [c for c in _clients if isinstance(c, MidiIn) and c._callback]
            for port in inputs:
                port._drain()


def _ensure_reader() -> None:
    global _reader
    with _lock:
        if _reader is None or not _reader.is_alive():
            _reader = threading.Thread(target=_read_loop, name="midi-jack-read", daemon=True)
            _reader.start()


class _Client:
    """One rtmidi JACK client, deleted at once when its server goes."""

    def __init__(self, rt) -> None:
        self._rt = rt
        self._open = False
        with _lock:
            _clients.add(self)
        _ensure_reader()

    def _live(self):
        rt = self._rt
        if rt is None:
            raise OSError("JACK server went away")
        return rt

    def _kill(self) -> None:
        rt, self._rt, self._open = self._rt, None, False
        _clients.discard(self)
        if rt is not None:
            try:
                rt.delete()
            except Exception:
                pass

    def get_ports(self) -> list[str]:
        with _lock:
            return self._live().get_ports()

    def open_port(self, index: int, name: str = "") -> None:
        with _lock:
            self._live().open_port(index, name)
            self._open = True

    def is_port_open(self) -> bool:
        return self._rt is not None and self._open

    def close_port(self) -> None:
        with _lock:
            self._open = False
            if self._rt is not None:
                self._rt.close_port()

    def delete(self) -> None:
        with _lock:
            self._kill()


class MidiIn(_Client):
    def __init__(self, rtapi: int = API_UNIX_JACK, name: str = "", queue_size_limit=1024):
        _refuse_without_server()
        super().__init__(rtmidi.MidiIn(rtapi=API_UNIX_JACK, name=name,
                                       queue_size_limit=queue_size_limit))
        self._callback = None
        self._data = None

    def ignore_types(self, sysex=True, timing=True, active_sense=True) -> None:
        with _lock:
            self._live().ignore_types(sysex=sysex, timing=timing, active_sense=active_sense)

    def set_callback(self, fn, data=None) -> None:
        self._callback, self._data = fn, data

    def cancel_callback(self) -> None:
        self._callback = None

    def get_message(self):
        with _lock:
            return self._live().get_message()

    def _drain(self) -> None:
        """Reader thread, under ``_lock``: the queue's messages to the callback."""
        rt, callback = self._rt, self._callback
        if rt is None or callback is None:
            return
        for _ in range(QUEUE_DRAIN_MAX):
            item = rt.get_message()
            if item is None:
                return
            try:
                callback(item, self._data)
            except Exception:
                pass         # a callback's fault is its own (the firmware's never raises)


class MidiOut(_Client):
    def __init__(self, rtapi: int = API_UNIX_JACK, name: str = "") -> None:
        _refuse_without_server()
        super().__init__(rtmidi.MidiOut(rtapi=API_UNIX_JACK, name=name))

    def open_virtual_port(self, name: str = "") -> None:
        with _lock:
            self._live().open_virtual_port(name)
            self._open = True

    def send_message(self, message) -> None:
        with _lock:
            self._live().send_message(message)
