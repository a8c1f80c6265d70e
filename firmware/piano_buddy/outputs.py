"""Where the notes go besides the synth: MIDI out, the session record, the live view.

The conductor hands every note event to one :class:`Outputs`, which fans it out to each
output in turn, each call isolated: an output that raises is counted and logged with a bound
(:class:`~piano_buddy.errorlog.ErrorLog`), and the others - and the turn loop - go on.
"""

from __future__ import annotations

import logging
from typing import Iterable, Protocol, Sequence

from .errorlog import ErrorLog

log = logging.getLogger(__name__)


class LiveOutput(Protocol):
    """Hears notes as they sound (MIDI out, the simulator's view)."""
    def note_on(self, pitch: int, velocity: int, ai: bool) -> None: ...
    def note_off(self, pitch: int, ai: bool) -> None: ...
    def all_notes_off(self) -> None: ...


class NoteRecord(Protocol):
    """Keeps finished notes (the session recorder)."""
    def note(self, pitch: int, velocity: int, start: float, end: float, ai: bool) -> None: ...
    def end_session(self) -> None: ...


class RecentNotes:
    """The last few notes played, (who, pitch), for the live view."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.notes: list[tuple[str, int]] = []

    def note_on(self, pitch: int, velocity: int, ai: bool) -> None:
        self.notes = (self.notes + [("ai" if ai else "player", pitch)])[-self.keep:]

    def note_off(self, pitch: int, ai: bool) -> None:
        pass

    def all_notes_off(self) -> None:
        pass


class Outputs:
    """Every live output and every record, behind one isolated fan-out."""

    def __init__(self, live: Iterable[LiveOutput] = (), records: Iterable[NoteRecord] = (),
                 errors: ErrorLog | None = None) -> None:
        self.live: Sequence[LiveOutput] = [o for o in live if o is not None]
        self.records: Sequence[NoteRecord] = [r for r in records if r is not None]
        self.errors = errors or ErrorLog(log, "the other outputs carry on")

    def _each(self, outputs, method: str, *args) -> None:
        for out in outputs:
            try:
                getattr(out, method)(*args)
            except Exception as exc:
                self.errors.record(f"{type(out).__name__}.{method}()", exc)

    def note_on(self, pitch: int, velocity: int, ai: bool) -> None:
        self._each(self.live, "note_on", pitch, velocity, ai)

    def note_off(self, pitch: int, ai: bool) -> None:
        self._each(self.live, "note_off", pitch, ai)

    def all_notes_off(self) -> None:
        self._each(self.live, "all_notes_off")

    def note(self, pitch: int, velocity: int, start: float, end: float, ai: bool) -> None:
        self._each(self.records, "note", pitch, velocity, start, end, ai)

    def end_session(self) -> None:
        self._each(self.records, "end_session")
