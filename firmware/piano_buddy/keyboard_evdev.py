"""Key presses and releases straight from the Linux input layer: the desktop simulator's
key releases, and USB keyboards or a Makey Makey as the box's buttons (:mod:`.key_buttons`).

A terminal reports no key releases unless it speaks the kitty keyboard protocol; the kernel
does, through ``/dev/input/event*``, which a user may read when in the ``input`` group (or
as root). No library: each read returns ``struct input_event`` records (a timeval, then
type, code and value: ``EV_KEY``, the key's code, 1 down / 0 up / 2 auto-repeat).

The kernel reports every keyboard on the machine whatever window has the focus, so the
simulator only trusts a release for a key whose character also reached its own terminal
(see :class:`piano_buddy.terminal.KeyboardButtons`).

Why not python-evdev: it has no wheel for the Pi (aarch64), so installing it there needs a
compiler and the kernel headers, while the record it would parse is the kernel's stable ABI.
"""

from __future__ import annotations

import glob
import os
import struct

EV_KEY = 0x01
# struct input_event: struct timeval (two longs), __u16 type, __u16 code, __s32 value
EVENT = struct.Struct("llHHi")
# Linux key codes (linux/input-event-codes.h) of the simulator's keys -> button
KEYCODES = {2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5, 8: 6, 9: 7,          # KEY_1 .. KEY_8
            30: 0, 31: 1, 32: 2, 33: 3, 36: 4, 37: 5, 38: 6, 39: 7}  # A S D F J K L ;
# Names a key map may use (linux/input-event-codes.h): letters, digits, arrows, space,
# enter, and the mouse buttons a Makey Makey's "click" sends.
KEY_NAMES = {**{f"KEY_{c}": code for c, code in zip("1234567890", range(2, 12))},
             **{f"KEY_{c}": code for c, code in zip("QWERTYUIOP", range(16, 26))},
             **{f"KEY_{c}": code for c, code in zip("ASDFGHJKL", range(30, 39))},
             **{f"KEY_{c}": code for c, code in zip("ZXCVBNM", range(44, 51))},
             "KEY_SEMICOLON": 39, "KEY_ENTER": 28, "KEY_SPACE": 57, "KEY_UP": 103,
             "KEY_LEFT": 105, "KEY_RIGHT": 106, "KEY_DOWN": 108,
             "BTN_LEFT": 272, "BTN_RIGHT": 273, "BTN_MIDDLE": 274}


def keyboard_devices(patterns=("/dev/input/by-path/*-event-kbd",
                               "/dev/input/by-id/*-event-kbd")) -> list[str]:
    """Readable keyboard event devices (udev names them ``*-event-kbd``); none over SSH,
    where the machine's own keyboard is not the user's."""
    if os.environ.get("SSH_CONNECTION"):
        return []
    found: dict[str, str] = {}
    for pattern in patterns:
        for link in sorted(glob.glob(pattern)):
            real = os.path.realpath(link)
            if real not in found and os.access(real, os.R_OK):
                found[real] = link
    return list(found)


class EvdevKeys:
    """Non-blocking reader of one or more event devices (or any file of input_event
    records: the tests use a pipe). ``read()`` returns ``[(button, down), ...]`` for the
    codes in ``keycodes`` (code -> button); ``read_by_path()`` says which device each came
    from; a device that fails or ends is dropped (``gone`` lists it until taken)."""

    def __init__(self, paths: list[str], keycodes: dict[int, int] | None = None):
        self.keycodes = KEYCODES if keycodes is None else keycodes
        self.paths: list[str] = []          # the ones that opened
        self.fds: list[int] = []
        self.gone: list[str] = []
        self._partial: dict[int, bytes] = {}
        for path in paths:
            self.add(path)

    def add(self, path: str) -> bool:
        try:
            self.fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            self.paths.append(path)
            return True
        except OSError:
            return False

    @property
    def active(self) -> bool:
        return bool(self.fds)

    def read(self) -> list[tuple[int, bool]]:
        return [(button, down) for _path, button, down in self.read_by_path()]

    def read_by_path(self) -> list[tuple[str, int, bool]]:
        events: list[tuple[str, int, bool]] = []
        for fd in list(self.fds):
            path = self.paths[self.fds.index(fd)]
            try:
                data = os.read(fd, EVENT.size * 64)
            except BlockingIOError:
                continue
            except OSError:                 # the keyboard was unplugged
                self._drop(fd)
                continue
            if not data:
                self._drop(fd)
                continue
            data = self._partial.pop(fd, b"") + data
            whole = len(data) - len(data) % EVENT.size
            if whole < len(data):
                self._partial[fd] = data[whole:]
            for _sec, _usec, type_, code, value in EVENT.iter_unpack(data[:whole]):
                if type_ == EV_KEY and code in self.keycodes and value in (0, 1):
                    events.append((path, self.keycodes[code], value == 1))
        return events

    def _drop(self, fd: int) -> None:
        i = self.fds.index(fd)
        self.gone.append(self.paths.pop(i))
        self.fds.remove(fd)
        try:
            os.close(fd)
        except OSError:
            pass

    def close(self) -> None:
        for fd in list(self.fds):
            self._drop(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
