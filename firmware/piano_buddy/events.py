"""What the inputs tell the conductor: one small immutable record per edge.

Buttons (gpiozero callbacks), MIDI keyboards (rtmidi's thread) and the simulator's keyboard
all put :class:`InputEvent` into the conductor's bounded queue and return at once; only the
conductor thread acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    PRESS = "press"          # a button went down: ``source`` is the button 0..7
    RELEASE = "release"      # a button went up
    KEY_ON = "key_on"        # a MIDI keyboard key: ``source`` is the MIDI pitch
    KEY_OFF = "key_off"
    PEDAL = "pedal"          # sustain pedal: ``velocity`` is the controller value (>=64 down)
    DEVICE = "device"        # a MIDI keyboard appeared or vanished (for the log and the view)


@dataclass(frozen=True, slots=True)
class InputEvent:
    kind: Kind
    source: int
    time: float          # time.monotonic() when the edge happened (or the injected clock)
    velocity: int = 0
