"""Attract mode: a museum box with nobody at it invites the next visitor.

After ``attract.after_minutes`` without play (0: never), the button lamps chase slowly round
the panel and the turn lamp breathes slowly, unlike anything in play; every
``attract.phrase_every_minutes`` the box plays a short, quiet phrase (the conductor plays it
like a reply, so its lamps show the buttons that would play it). Any press ends it at once:
the invitation stops, the lamps go dark and the press plays, as the first of a new session.

This class keeps only the timing and the chase; the conductor asks it each turn of its loop
what is due (:meth:`poll`) and tells it when a visitor came (:meth:`stop`). It runs on the
conductor's thread, the one owner of the lamps.
"""

from __future__ import annotations

from typing import Callable

from .encoding import NUM_BUTTONS

CHASE_STEP_SECONDS = 0.4      # one lamp to the next: slow enough to read as "waiting"
FIRST_PHRASE_SECONDS = 2.0    # the first invitation comes soon after the chase begins


class Attract:
    """Timing and lamps of attract mode. ``light(button, on)`` and ``show(mode)`` are the
    panel's ``button_led`` and ``turn``."""

    def __init__(self, after_seconds: float, phrase_every_seconds: float,
                 light: Callable[[int, bool], None], show: Callable[[str], None]) -> None:
        self.after = float(after_seconds)
        self.every = float(phrase_every_seconds)
        self._light, self._show = light, show
        self.active = False
        self.lamps: tuple[int, ...] = tuple(range(NUM_BUTTONS))   # the buttons in use
        self._lamp: int | None = None
        self._next_step = 0.0
        self._next_phrase = 0.0
        self.invitations = 0

    @property
    def enabled(self) -> bool:
        return self.after > 0

    def poll(self, now: float, idle_since: float | None) -> tuple[float | None, bool]:
        """(seconds until something is due, whether to play an invitation now). Called only
        while nobody plays and no phrase is sounding; ``idle_since`` is the last play."""
        if not self.enabled or idle_since is None:
            return None, False
        if not self.active:
            begin = idle_since + self.after
            if now < begin:
                return begin - now, False
            self.active = True
            self._show("attract")
            self._next_step = now
            self._next_phrase = now + FIRST_PHRASE_SECONDS
        if now >= self._next_phrase:
            self._next_phrase = now + self.every
            self._dark()
            self.invitations += 1
            return 0.0, True
        if now >= self._next_step:
            self._next_step = now + CHASE_STEP_SECONDS
            self._chase()
        return max(0.0, min(self._next_step, self._next_phrase) - now), False

    def phrase_over(self) -> None:
        """The invitation ended (or was cut): the chase carries on from the first lamp."""
        if self.active:
            self._show("attract")

    def stop(self) -> bool:
        """A visitor: lamps dark, the turn lamp back to the player's. True if it was on."""
        if not self.active:
            return False
        self.active = False
        self._dark()
        self._show("player")
        return True

    def _chase(self) -> None:
        lamps = self.lamps
        if self._lamp is not None:
            self._light(self._lamp, False)
        after = [b for b in lamps if self._lamp is not None and b > self._lamp]
        self._lamp = after[0] if after else lamps[0]
        self._light(self._lamp, True)

    def _dark(self) -> None:
        if self._lamp is not None:
            self._light(self._lamp, False)
        self._lamp = None
