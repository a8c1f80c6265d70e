"""What the player is holding: keys, the pitches they sound, the sustain pedal.

One small bookkeeper, so that the conductor only decides turns. It knows that two keys may
hold one pitch (a button and a MIDI key; the pitch sounds once and stops with the last of
them), that the pedal keeps released notes sounding, and two safety nets for inputs that lie:

* a key held longer than ``max_hold`` seconds is released like a lost edge (a MIDI key-off
  that never came, a button wedged down): no human holds a key that long;
* a pedal held with no key activity for ``pedal_timeout`` seconds counts as up (a pedal of
  the other polarity reads "down" at rest), so the AI answers and sustained notes end.

It calls ``sound_on(pitch, velocity, time)`` / ``sound_off(pitch)`` when a pitch starts and
stops sounding and ``finished(note)`` when a note is over (for the phrase and the record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Iterator

from .phrase import Note

Key = Hashable      # ("b", button) or ("k", MIDI pitch)


@dataclass
class _Held:
    pitch: int
    start: float
    velocity: int


class HeldNotes:
    def __init__(self, *, sound_on: Callable[[int, int, float], None],
                 sound_off: Callable[[int], None], finished: Callable[[Note], None],
                 max_hold: float = 60.0, pedal_timeout: float = 10.0) -> None:
        self._sound_on, self._sound_off, self._finished = sound_on, sound_off, finished
        self.max_hold, self.pedal_timeout = max_hold, pedal_timeout
        self._held: dict[Key, _Held] = {}
        self._holders: dict[int, int] = {}          # pitch -> how many keys hold it
        self._sustained: dict[int, _Held] = {}      # released under the pedal
        self._pedal = False
        self._pedal_ignored = False                 # timed out: counts as up until lifted
        self._last_key_activity = float("-inf")
        self.expired_keys = 0
        self.pedal_timeouts = 0

    # --- state ------------------------------------------------------------------------------
    def holds(self, key: Key) -> bool:
        return key in self._held

    def keys(self) -> Iterator[Key]:
        return iter(list(self._held))

    @property
    def pitches(self) -> set[int]:
        """Every pitch sounding for the player now (held or sustained)."""
        return set(self._holders) | set(self._sustained)

    @property
    def pedal_down(self) -> bool:
        return self._pedal and not self._pedal_ignored

    @property
    def busy(self) -> bool:
        """Something is held or sustained: the phrase is not over."""
        return bool(self._held) or self.pedal_down or bool(self._sustained)

    # --- edges ------------------------------------------------------------------------------
    def press(self, key: Key, pitch: int, velocity: int, t: float) -> None:
        if key in self._held:
            self.release(key, t)
        self._last_key_activity = t
        if pitch in self._sustained:        # re-struck under the pedal: end the old one first
            self._end_sustained(pitch, t)
        self._held[key] = _Held(pitch, t, velocity)
        n = self._holders.get(pitch, 0)
        self._holders[pitch] = n + 1
        if n == 0:
            self._sound_on(pitch, velocity, t)

    def release(self, key: Key, t: float) -> bool:
        """End what ``key`` holds; False when it held nothing."""
        held = self._held.pop(key, None)
        if held is None:
            return False
        self._last_key_activity = t
        note = Note(held.pitch, held.start, t, held.velocity)
        n = self._holders.get(held.pitch, 1) - 1
        if n > 0:
            self._holders[held.pitch] = n
            self._finished(note)
            return True
        self._holders.pop(held.pitch, None)
        if self.pedal_down:
            self._sustained[held.pitch] = held
        else:
            self._sound_off(held.pitch)
            self._finished(note)
        return True

    def pedal(self, down: bool, t: float) -> None:
        if not down:
            self._pedal_ignored = False
            if self._pedal:
                self._end_all_sustained(t)
        elif not self._pedal:
            self._last_key_activity = t
        self._pedal = down

    # --- time passing -----------------------------------------------------------------------
    def expire(self, now: float) -> list[Key]:
        """Apply both safety nets at ``now``; returns the keys released for being held too
        long (the caller turns their LEDs off)."""
        expired = [k for k, h in self._held.items() if now - h.start >= self.max_hold]
        for key in expired:
            self.expired_keys += 1
            self.release(key, now)
        if (self.pedal_down and not self._held
                and now - self._last_key_activity >= self.pedal_timeout):
            self.pedal_timeouts += 1
            self._pedal_ignored = True
            self._end_all_sustained(now)
        return expired

    def next_deadline(self) -> float | None:
        """When :meth:`expire` will next have something to do (None: nothing pending)."""
        due = [h.start + self.max_hold for h in self._held.values()]
        if self.pedal_down and not self._held:
            due.append(self._last_key_activity + self.pedal_timeout)
        return min(due) if due else None

    def release_everything(self, t: float) -> None:
        """Every key up and the pedal lifted: a panic or a shutdown."""
        for key in list(self._held):
            self.release(key, t)
        self._pedal = self._pedal_ignored = False
        self._end_all_sustained(t)

    def _end_all_sustained(self, t: float) -> None:
        for pitch in list(self._sustained):
            self._end_sustained(pitch, t)

    def _end_sustained(self, pitch: int, t: float) -> None:
        held = self._sustained.pop(pitch)
        self._sound_off(pitch)
        self._finished(Note(held.pitch, held.start, t, held.velocity))
