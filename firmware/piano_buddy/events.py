"""What the inputs tell the conductor, and the one way they hand it over.

Buttons (gpiozero callbacks), MIDI keyboards (rtmidi's thread) and the simulator's keyboard
all hand :class:`InputEvent` to an :class:`EventSink` and return at once; only the conductor
thread acts on them.

The hand-over contract (:class:`EventSink`), the same for every producer:

* ``post(event)`` never blocks and never raises;
* it returns True when the event will be handled, False when it was dropped;
* only an *onset* (a press, a key-on, the pedal going down) is ever dropped, when more than
  ``onset_limit`` events wait: a flood costs new notes, never a release. A release (button up,
  key-off, pedal up) is always taken, so no producer has to keep and retry one, and no note can
  stick because a queue was full.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Kind(str, Enum):
    PRESS = "press"          # a button went down: ``source`` is the button 0..7
    RELEASE = "release"      # a button went up
    KEY_ON = "key_on"        # a MIDI keyboard key: ``source`` is the MIDI pitch
    KEY_OFF = "key_off"
    PEDAL = "pedal"          # sustain pedal: ``velocity`` is the controller value (>=64 down)
    DEVICE = "device"        # a MIDI keyboard appeared or vanished (for the log and the view)
    KNOB = "knob"            # the knob turned while button 8 is held: ``source`` is the steps


@dataclass(frozen=True, slots=True)
class InputEvent:
    kind: Kind
    source: int
    time: float          # time.monotonic() when the edge happened (or the injected clock)
    velocity: int = 0

    @property
    def is_release(self) -> bool:
        """Ends something an earlier event started: never dropped (see the module doc)."""
        return (self.kind in (Kind.RELEASE, Kind.KEY_OFF)
                or (self.kind is Kind.PEDAL and self.velocity < 64))


class EventSink(Protocol):
    def post(self, event: InputEvent) -> bool:
        """Hand one edge over; never blocks or raises; False only for a dropped onset."""
        ...


class InputQueue:
    """The conductor's inbox: an :class:`EventSink` with the contract above.

    Unbounded underneath (``queue.SimpleQueue``, safe from any thread, even a signal
    handler), bounded in practice: onsets stop at ``onset_limit`` waiting events, and each
    release matches an onset taken earlier.
    """

    def __init__(self, onset_limit: int = 1024) -> None:
        self.onset_limit = onset_limit
        self._queue: queue.SimpleQueue[InputEvent] = queue.SimpleQueue()
        self.dropped = 0

    def post(self, event: InputEvent) -> bool:
        if not event.is_release and self._queue.qsize() >= self.onset_limit:
            self.dropped += 1
            return False
        self._queue.put(event)
        return True

    def get(self, timeout: float | None = None) -> InputEvent | None:
        """The next event, waiting up to ``timeout`` (0: do not wait); None if none came."""
        try:
            if not timeout or timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._queue.qsize()
