"""Any USB keyboard or a Makey Makey as the eight buttons.

A Makey Makey (bananas, pencil drawings, a bowl of water) is a USB keyboard and mouse that
sends the arrows, w a s d, space and a mouse click. Plugged into the box, the keys of
``keys.map`` (eight Linux key names, lowest note first) become buttons 1-8: their presses
and releases go to the conductor as button edges, exactly as the panel's do (the same
debounce-free EventSink contract of :mod:`piano_buddy.events`).

Hot-plug, like MIDI keyboards: every ``POLL_SECONDS`` the watcher looks for event devices
matching ``keys.devices`` (udev's ``/dev/input/by-id/*-event-kbd`` and ``*-event-mouse``
links by default; a Makey Makey has one of each) and opens the new ones; one that is
unplugged is dropped and every button it held is released. Reading is the kernel's own
``struct input_event`` records (:mod:`piano_buddy.keyboard_evdev`), so a FIFO of such
records is a keyboard to the tests. The box's unit grants read access to input devices
(``SupplementaryGroups=input``, ``DeviceAllow=char-input r``).
"""

from __future__ import annotations

import glob
import logging
import os
import select
import threading
import time
from typing import Callable, Sequence

from .errors import ConfigError
from .events import InputEvent, Kind
from .keyboard_evdev import KEY_NAMES, EvdevKeys

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
READ_TIMEOUT = 0.05          # seconds a read waits for a key before the watcher looks round


def keycodes_for(names: Sequence[str]) -> dict[int, int]:
    """Linux key code -> button for the eight names of ``keys.map`` (ConfigError if one is
    unknown)."""
    codes: dict[int, int] = {}
    for button, name in enumerate(names):
        code = KEY_NAMES.get(str(name).upper())
        if code is None:
            raise ConfigError(f"keys.map: {name!r} is not a key this box knows (for example "
                              f"KEY_LEFT, KEY_W, KEY_SPACE, BTN_LEFT; all: "
                              f"{', '.join(sorted(KEY_NAMES))})")
        codes[code] = button
    return codes


class KeyButtons:
    """The watcher thread: hot-plugged keyboards -> PRESS/RELEASE of the mapped buttons."""

    def __init__(self, post: Callable[[InputEvent], bool], key_map: Sequence[str],
                 patterns: Sequence[str], *, clock: Callable[[], float] = time.monotonic,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self._post, self._clock = post, clock
        self.patterns = list(patterns)
        self.poll_seconds = poll_seconds
        self.keys = EvdevKeys([], keycodes_for(key_map))
        self.held: dict[str, set[int]] = {}        # device -> buttons it holds down
        self.stats = {"devices_opened": 0, "devices_closed": 0, "presses": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_scan = 0.0

    @property
    def devices(self) -> list[str]:
        return list(self.keys.paths)

    def start(self) -> "KeyButtons":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="key-buttons", daemon=True)
            self._thread.start()
        return self

    def scan(self) -> None:
        """One hot-plug pass: open the matching devices not open yet."""
        found = sorted({os.path.realpath(p) for pattern in self.patterns
                        for p in glob.glob(pattern)})
        for path in found:
            if path not in self.keys.paths and self.keys.add(path):
                self.held[path] = set()
                self.stats["devices_opened"] += 1
                log.info("keyboard buttons: %s", path)

    def poll(self, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` for keys, post their edges, release what a lost device
        held."""
        if self.keys.fds and timeout > 0:
            try:
                select.select(self.keys.fds, [], [], timeout)
            except (OSError, ValueError):
                pass
        for path, button, down in self.keys.read_by_path():
            held = self.held.setdefault(path, set())
            if down and button not in held:
                held.add(button)
                self.stats["presses"] += 1
                self._send(Kind.PRESS, button)
            elif not down and button in held:
                held.discard(button)
                self._send(Kind.RELEASE, button)
        while self.keys.gone:
            path = self.keys.gone.pop()
            self.stats["devices_closed"] += 1
            for button in sorted(self.held.pop(path, set())):
                self._send(Kind.RELEASE, button)
            log.info("keyboard buttons: %s gone", path)

    def _send(self, kind: Kind, button: int) -> None:
        try:
            self._post(InputEvent(kind, button, self._clock()))
        except Exception:       # the conductor's post never raises; a bug must not end us
            log.exception("keyboard buttons: posting a %s failed", kind.value)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() >= self._next_scan:
                    self._next_scan = time.monotonic() + self.poll_seconds
                    self.scan()
                if self.keys.fds:
                    self.poll(READ_TIMEOUT)
                else:
                    self._stop.wait(min(self.poll_seconds, 0.5))
            except Exception:        # never let a strange device end the thread
                log.exception("keyboard buttons: carrying on")
                self._stop.wait(1.0)

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching; release every button a keyboard still holds. Safe twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.keys.close()
        self.poll()
