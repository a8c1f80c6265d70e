"""Melody styles: the AI answers "like" a kind of music, or picks the kind the player plays.

Each style is its own melody model (``melody-<style>.tflite``, fine-tuned from the general
model on one licence-clean corpus family by ``models_tflite/training/melody_styles.py``);
``all`` is the general model itself (``melody.tflite``, every licence-clean tune), the
box's default. ``auto`` asks every style's model (dance, airs, chorale) how likely the
player's phrase is (:meth:`~piano_buddy.melody.MelodyModel.prime` with ``score``) and lets
the one that finds it most likely answer, from where reading the phrase left it, so a
chorale-like phrase gets a chorale-like reply for the cost of one priming per style.

Chosen by ``turns.style`` at start, and on the box by holding buttons 2 and 7 for 2 s,
which steps to the next style (``STYLE_ORDER``, then round again); the box confirms with the
style's two-note cue and shows its lamp pattern. A style whose file is missing or broken is
left out with a message naming the file, and the box answers in the others: only the
general model is required.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

AUTO = "auto"
GENERAL = "all"


@dataclass(frozen=True)
class Style:
    name: str
    file: str                        # in the models folder
    about: str                       # what it was trained on (the config's help, the view)
    cue: tuple[int, int]             # its two-note cue (MIDI pitches)
    lamps: tuple[int, ...]           # its lamp pattern (buttons 0-7)


STYLES: dict[str, Style] = {s.name: s for s in (
    Style(GENERAL, "melody.tflite", "every licence-clean tune (folk, dance and chorale)",
          (72, 79), tuple(range(8))),
    Style("dance", "melody-dance.tflite",
          "Irish and American dance tunes (O'Neill's 1850, Ryan's Mammoth)",
          (76, 81), (0, 2, 4, 6)),
    Style("airs", "melody-airs.tflite",
          "Scottish airs and folk songs (Aird's Airs, misc folk)", (69, 76), (3, 4)),
    Style("chorale", "melody-chorale.tflite", "Bach chorale melodies (soprano lines)",
          (65, 72), (0, 1, 6, 7)),
)}
# the cycle of the button combination; "auto" shows the outer lamps, its cue an octave
STYLE_ORDER = (*STYLES, AUTO)
AUTO_CUE = (72, 84)
AUTO_LAMPS = (0, 7)
CHOICES = STYLE_ORDER


def cue_and_lamps(style: str) -> tuple[tuple[int, int], tuple[int, ...]]:
    """The two-note cue and the lamp pattern that confirm ``style``."""
    if style == AUTO:
        return AUTO_CUE, AUTO_LAMPS
    s = STYLES[style]
    return s.cue, s.lamps


class StyledMelody:
    """The box's melody model: one :class:`~piano_buddy.melody.MelodyModel` per available
    style, answering in the chosen one (or, in ``auto``, the one the phrase suits best).
    It has the melody model's ``continue_phrase``, so the conductor, the demo, the bench
    and the tests use it the same way. ``answered_by`` names the style of the last reply,
    ``answer_counts`` counts the replies per style.
    """

    def __init__(self, models: Mapping[str, object], style: str = GENERAL,
                 missing: Mapping[str, str] | None = None) -> None:
        if GENERAL not in models:
            raise ValueError("the general melody model is required")
        self.models = {name: models[name] for name in STYLES if name in models}
        self.missing = dict(missing or {})      # style -> why it is not there
        self.answered_by = GENERAL
        self.answer_counts: Counter[str] = Counter()   # style -> replies (bounded: 4 keys)
        self.style = self._available(style)

    @property
    def available(self) -> tuple[str, ...]:
        """The styles the box can switch to, in the order of the combination's cycle."""
        return tuple(s for s in STYLE_ORDER if s in self.models or
                     (s == AUTO and len(self.candidates) > 1))

    def _available(self, style: str) -> str:
        if style in self.available:
            return style
        why = self.missing.get(style, "no such style" if style not in CHOICES else
                               "it needs two styles' models to choose between")
        log.warning("melody style %r is not available (%s): answering in %r", style, why,
                    GENERAL)
        return GENERAL

    def set_style(self, style: str) -> str:
        self.style = self._available(style)
        return self.style

    def cycle(self) -> str:
        """Step to the next available style (the button combination)."""
        order = self.available
        self.style = order[(order.index(self.style) + 1) % len(order)]
        return self.style

    @property
    def candidates(self) -> tuple[str, ...]:
        """The models "auto" chooses between: the styles proper, not the general model."""
        return tuple(name for name in self.models if name != GENERAL)

    def _primed(self, primer: Sequence, primer_steps: int | None, bar) -> tuple[str, object]:
        """(the style that answers, its model primed on the phrase). In ``auto``, every
        candidate reads the phrase and scores it, and the one that gives it the lowest
        negative log-likelihood per step answers, from where its reading left it."""
        if self.style != AUTO:
            return self.style, self.models[self.style].prime(primer, primer_steps, bar)
        primed = {name: self.models[name].prime(primer, primer_steps, bar, score=True)
                  for name in self.candidates}
        best = min(primed, key=lambda name: primed[name].nll)
        return best, primed[best]

    def choose(self, primer: Sequence, primer_steps: int | None = None, bar=None) -> str:
        """The style that answers this phrase (``auto``: the likeliest candidate)."""
        return self.style if self.style != AUTO else self._primed(primer, primer_steps, bar)[0]

    def continue_phrase(self, primer: Sequence, steps: int, temperature: float = 1.0,
                        primer_steps: int | None = None, bar=None) -> list:
        name, primed = self._primed(primer, primer_steps, bar)
        self.answered_by = name
        self.answer_counts[name] += 1
        return self.models[name].continue_primed(primed, steps, temperature)


def load_styles(folder: Path, style: str, *, rng=None, prefer: str | None = None,
                num_threads: int = 1) -> StyledMelody:
    """Every style's model from ``folder``. The general model's :class:`ModelError` is
    raised (the box cannot answer without it); another style's is logged, naming the file,
    and that style is left out."""
    from .errors import ModelError
    from .melody import MelodyModel
    models, missing = {}, {}
    for name, s in STYLES.items():
        path = Path(folder) / s.file
        if name != GENERAL and not path.exists():
            missing[name] = f"{path} is missing"
            log.warning("melody style %r left out: %s", name, missing[name])
            continue
        try:
            models[name] = MelodyModel(path, rng=rng, prefer=prefer, num_threads=num_threads)
        except ModelError as exc:
            if name == GENERAL:
                raise
            missing[name] = str(exc)
            log.warning("melody style %r left out: %s", name, exc)
    return StyledMelody(models, style, missing)
