"""Modes chosen on the box without a screen: a button combination held, a cue to confirm.

A box in a nursery has no keyboard or screen, so a mode is switched by holding a combination
of buttons together for ``HOLD_SECONDS`` (long enough that play never does it by chance, as
the fuzz of a mash cannot hold exactly two buttons still for 2 s) and confirmed by a cue: a
quick run of notes whose lamps sweep over the buttons the new mode uses, rising when a mode
turns on and falling when it turns off.

Modes so far:

* **small hands**: four buttons instead of eight, the ones at 0, 2, 5 and 7 (the original
  Piano Genie web app's four-button layout maps its keys onto those Genie buttons); the other
  four do nothing and their lamps stay dark, and the copy-me lamps use the nearest of the
  four. ``panel.small_hands`` sets it at start; the two outer buttons (1 and 8) held together
  switch it.
* **harmony**: the AI accompanies the player (:mod:`piano_buddy.harmony`); buttons 7 and 8
  held together switch it (``harmony.enabled`` at start).
* **melody style**: :mod:`piano_buddy.styles`; buttons 2 and 7 held together step to the next
  style, confirmed by the style's own two-note cue and lamp pattern (``turns.style`` at start).
* **copy me**: the game of :mod:`piano_buddy.copy_game`; buttons 1 and 2 held together start
  and stop it (``turns.mode = "copy"`` starts the box in it), and a long silence ends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .encoding import NUM_BUTTONS

HOLD_SECONDS = 2.0
CREATIVITY_BUTTON = NUM_BUTTONS - 1    # hold button 8 and turn the knob: how adventurous
CREATIVITY_LEVELS = 8                  # shown as 1-8 lamps lit
CREATIVITY_SHOW_SECONDS = 1.5          # the lamps show the level this long after a turn
SMALL_HANDS_BUTTONS = (0, 2, 5, 7)
SMALL_HANDS_COMBO = frozenset({0, NUM_BUTTONS - 1})
COPY_GAME_COMBO = frozenset({0, 1})    # buttons 1 and 2: the copy-me game
HARMONY_COMBO = frozenset({NUM_BUTTONS - 2, NUM_BUTTONS - 1})   # buttons 7 and 8
STYLE_COMBO = frozenset({1, NUM_BUTTONS - 2})   # buttons 2 and 7: the next melody style
CUE_PITCHES = (72, 76, 79, 84)         # C E G C: on rising, off falling
CUE_QPM = 150.0                        # 16th notes of 0.1 s
CUE_VELOCITY = 60


class Creativity:
    """How adventurous the AI is: a level 0..7 that scales the melody's temperature and the
    reply's length by a factor from ``low`` to ``high`` (the config's safe bounds), starting
    at the level whose factor is nearest 1. Changed by turning the knob while button 8 is
    held; shown as a bar of lamps."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = float(low), float(high)
        self.level = min(range(CREATIVITY_LEVELS), key=lambda i: abs(self._factor(i) - 1.0))

    def _factor(self, level: int) -> float:
        return self.low + (self.high - self.low) * level / (CREATIVITY_LEVELS - 1)

    @property
    def factor(self) -> float:
        return self._factor(self.level)

    def turn(self, steps: int) -> int:
        self.level = max(0, min(CREATIVITY_LEVELS - 1, self.level + int(steps)))
        return self.level

    def lamps(self, active: Sequence[int]) -> list[int]:
        """The lamps of the bar for this level, over the buttons in use."""
        n = round((self.level + 1) * len(active) / CREATIVITY_LEVELS)
        return list(active[:max(1, n)])


class LevelBar:
    """Shows a level on the button lamps for CREATIVITY_SHOW_SECONDS, then gives each lamp
    back to what it showed before (``lit(button)``: a held button stays lit)."""

    def __init__(self, light: Callable[[int, bool], None], lit: Callable[[int], bool]) -> None:
        self._light, self._lit = light, lit
        self.lamps: list[int] = []
        self.until: float | None = None

    def show(self, lamps: Sequence[int], now: float) -> None:
        self.hide()
        self.lamps = list(lamps)
        for b in self.lamps:
            self._light(b, True)
        self.until = now + CREATIVITY_SHOW_SECONDS

    def poll(self, now: float) -> float | None:
        """Seconds until the bar goes (None: not shown)."""
        if self.until is None:
            return None
        if now >= self.until:
            self.hide()
            return None
        return self.until - now

    def hide(self) -> None:
        for b in self.lamps:
            self._light(b, self._lit(b))
        self.lamps, self.until = [], None


def active_buttons(small_hands: bool) -> tuple[int, ...]:
    return SMALL_HANDS_BUTTONS if small_hands else tuple(range(NUM_BUTTONS))


def nearest_active(button: int, active: Sequence[int]) -> int:
    """The active button closest to ``button`` (ties: the outer one, so the layout stays
    symmetric), for the copy-me lamps."""
    centre = (NUM_BUTTONS - 1) / 2
    return min(active, key=lambda b: (abs(b - button), -abs(b - centre)))


@dataclass(frozen=True)
class Cue:
    """A mode's confirmation: (pitch, button) per 16th note, at CUE_QPM."""
    notes: tuple[tuple[int, int], ...]


def cue_for(buttons: Sequence[int], on: bool) -> Cue:
    """A run over ``buttons`` (the new mode's), rising for on and falling for off."""
    order = list(buttons) if on else list(reversed(buttons))
    pitches = CUE_PITCHES if on else tuple(reversed(CUE_PITCHES))
    return Cue(tuple((pitches[min(i, len(pitches) - 1)], b) for i, b in enumerate(order)))


class ComboWatcher:
    """Fires once when exactly one of ``combos`` is held, and nothing else, for
    ``HOLD_SECONDS``; it must be let go before it can fire again."""

    def __init__(self, combos: Iterable[frozenset[int]], hold: float = HOLD_SECONDS) -> None:
        self.combos = [frozenset(c) for c in combos]
        self.hold = float(hold)
        self._held: set[int] = set()
        self._since: float | None = None
        self._fired = False

    def press(self, button: int, now: float) -> None:
        self._held.add(button)
        self._changed(now)

    def release(self, button: int, now: float) -> None:
        self._held.discard(button)
        self._fired = False if not self._held else self._fired
        self._changed(now)

    def _changed(self, now: float) -> None:
        self._since = now if frozenset(self._held) in self.combos else None

    def poll(self, now: float) -> tuple[float | None, frozenset[int] | None]:
        """(seconds until it could fire, the combo that fires now)."""
        if self._since is None or self._fired:
            return None, None
        due = self._since + self.hold
        if now < due:
            return due - now, None
        self._fired = True
        return None, frozenset(self._held)

    def reset(self) -> None:
        self._held.clear()
        self._since, self._fired = None, False
