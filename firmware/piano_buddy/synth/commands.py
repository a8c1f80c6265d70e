"""Note commands from any thread to the audio thread: a bounded queue that never blocks, and
flags that make sure a release is never lost.

Why not ``queue.Queue``: its ``get_nowait`` takes a mutex, so a producer preempted while
holding it would stall the audio thread (priority inversion). ``collections.deque``'s
``append`` and ``popleft`` are atomic under the GIL, so a deque with a length check is a
lock-free bounded queue for our one consumer.

Why flags: a full queue may drop a note-on (a missed note is harmless), but a dropped
note-off, cancel or all-notes-off would leave a note stuck. When one of those does not fit,
the producer records it in a fixed-size flag table instead, stamped with the command's
sequence number; the audio thread applies it in sequence order, so a flag never releases a
note that was played after it.
"""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

# command kinds
NOTE_ON, NOTE_OFF, CANCEL, ALL_OFF = 0, 1, 2, 3
IMMEDIATE = -1   # at_frame of a command that applies at the start of the next block

# A command is one tuple, ordered by (at_frame, seq) so scheduled ones can sit in a heap:
# (at_frame, seq, kind, pitch, velocity, tag, stamp)
AT, SEQ, KIND, PITCH, VELOCITY, TAG, STAMP = range(7)


class CommandQueue:
    """Bounded, lock-free, many producers / one consumer. ``put`` returns False when full."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"queue_size {maxsize} must be >= 1")
        self.maxsize = int(maxsize)
        self._items: deque = deque()
        self._seq = itertools.count(1)     # next() is atomic under the GIL

    def next_seq(self) -> int:
        return next(self._seq)

    def put(self, command: tuple) -> bool:
        # With several producers the length check can race and overshoot by one item per
        # producer; the bound is about memory, so that is harmless.
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(command)
        return True

    def get_nowait(self):
        """The oldest command, or None when empty (no exception on the hot path)."""
        if self._items:
            return self._items.popleft()
        return None

    def __len__(self) -> int:
        return len(self._items)


class ReleaseFlags:
    """Releases that did not fit in the queue: one slot per (tag, pitch), per tag, and one
    for everything. Producers only ever raise a slot's sequence number; the audio thread
    remembers what it applied, so no update is lost without a lock."""

    def __init__(self, n_tags: int):
        self.note_off = np.zeros((n_tags, 128), dtype=np.int64)
        self.cancel = np.zeros(n_tags, dtype=np.int64)
        self.all_off = 0
        self._applied_note_off = np.zeros((n_tags, 128), dtype=np.int64)
        self._applied_cancel = np.zeros(n_tags, dtype=np.int64)
        self._applied_all_off = 0
        self.dirty = False

    # producer side
    def raise_note_off(self, tag: int, pitch: int, seq: int) -> None:
        self.note_off[tag, pitch] = max(int(self.note_off[tag, pitch]), seq)
        self.dirty = True

    def raise_cancel(self, tag: int, seq: int) -> None:
        self.cancel[tag] = max(int(self.cancel[tag]), seq)
        self.dirty = True

    def raise_all_off(self, seq: int) -> None:
        self.all_off = max(self.all_off, seq)
        self.dirty = True

    # consumer side (audio thread; runs only after an overflow)
    def take(self) -> list[tuple]:
        """Pending releases as commands, in sequence order."""
        self.dirty = False
        out = []
        if self.all_off > self._applied_all_off:
            self._applied_all_off = seq = self.all_off
            out.append((IMMEDIATE, seq, ALL_OFF, 0, 0, 0, None))
        for tag in np.flatnonzero(self.cancel > self._applied_cancel):
            seq = int(self.cancel[tag])
            self._applied_cancel[tag] = seq
            out.append((IMMEDIATE, seq, CANCEL, 0, 0, int(tag), None))
        for tag, pitch in zip(*np.nonzero(self.note_off > self._applied_note_off)):
            seq = int(self.note_off[tag, pitch])
            self._applied_note_off[tag, pitch] = seq
            out.append((IMMEDIATE, seq, NOTE_OFF, int(pitch), 0, int(tag), None))
        out.sort(key=lambda c: c[SEQ])
        return out
