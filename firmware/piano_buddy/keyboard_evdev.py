"""Key presses and releases straight from the Linux input layer, for the desktop simulator.

A terminal reports no key releases unless it speaks the kitty keyboard protocol; the kernel
does, through ``/dev/input/event*``, which a user may read when in the ``input`` group (or
as root). No library: each read returns ``struct input_event`` records (a timeval, then
type, code and value: ``EV_KEY``, the key's code, 1 down / 0 up / 2 auto-repeat).

The kernel reports every keyboard on the machine whatever window has the focus, so the
simulator only trusts a release for a key whose character also reached its own terminal
(see :class:`piano_buddy.terminal.KeyboardButtons`).
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
    records: the tests use a pipe). ``read()`` returns ``[(button, down), ...]``."""

    def __init__(self, paths: list[str]):
        self.paths: list[str] = []          # the ones that opened
        self.fds: list[int] = []
        self._partial: dict[int, bytes] = {}
        for path in paths:
            try:
                self.fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                self.paths.append(path)
            except OSError:
                continue

    @property
    def active(self) -> bool:
        return bool(self.fds)

    def read(self) -> list[tuple[int, bool]]:
        events: list[tuple[int, bool]] = []
        for fd in list(self.fds):
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
                if type_ == EV_KEY and code in KEYCODES and value in (0, 1):
                    events.append((KEYCODES[code], value == 1))
        return events

    def _drop(self, fd: int) -> None:
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
