"""The AI's reply as it plays: which notes have begun and ended, and what shows them.

The synth already has every note scheduled to the frame; this timeline follows the same
notes in conductor time to light the copy-me LEDs, send MIDI out and record each note as it
comes, and to end all of it at once when the player interrupts. Each note carries the button
whose LED shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from .outputs import Outputs
from .phrase import Note


@dataclass
class ReplyTimeline:
    notes: Sequence[Note]
    buttons: Sequence[int]                      # the LED lit for each note
    outputs: Outputs
    light: Callable[[int, bool], None]          # (button, on)
    velocity: int
    started: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    _lit: dict[int, int] = field(default_factory=dict)   # button -> notes lighting it

    @property
    def end(self) -> float:
        return max(n.end for n in self.notes)

    def advance(self, now: float) -> float | None:
        """Start and end every note whose time has come; seconds to the next change, or
        None once the reply is over."""
        next_due = self.end
        for i, n in enumerate(self.notes):
            if i not in self.started:
                if now >= n.start:
                    self.started.add(i)
                    self._show(i, True)
                else:
                    next_due = min(next_due, n.start)
            if i in self.started and i not in self.ended:
                if now >= n.end:
                    self._close(i, n.end)
                else:
                    next_due = min(next_due, n.end)
        if now >= self.end:
            return None
        return max(0.0, next_due - now)

    def finish(self, now: float) -> None:
        """End what is sounding now (an interrupt, or the end); every LED of the reply off."""
        for i, n in enumerate(self.notes):
            if i in self.started and i not in self.ended:
                self._close(i, min(now, n.end))
        for button, count in self._lit.items():
            if count:
                self.light(button, False)
        self._lit.clear()

    def _close(self, i: int, end: float) -> None:
        n = self.notes[i]
        self.ended.add(i)
        self._show(i, False)
        self.outputs.note(n.pitch, n.velocity, n.start, end, True)

    def _show(self, i: int, on: bool) -> None:
        pitch, button = self.notes[i].pitch, self.buttons[i]
        count = max(0, self._lit.get(button, 0) + (1 if on else -1))
        self._lit[button] = count
        self.light(button, count > 0)
        if on:
            self.outputs.note_on(pitch, self.velocity, True)
        else:
            self.outputs.note_off(pitch, True)
