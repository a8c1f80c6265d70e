"""A played phrase: notes with real onsets and durations, its tempo, and the 16th-note grid.

The browser original laid the player's notes end to end (rests and overlaps lost) and never
set a tempo. Here the phrase keeps every onset, duration and rest; the tempo is estimated
from the onsets, and the notes are put on the melody model's grid at that tempo, so the AI
answers in the player's rhythm and the reply comes back at the same speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from .encoding import BAR_STEPS, STEPS_PER_QUARTER


class Note(NamedTuple):
    """A sounded note in seconds on one clock (the conductor's)."""
    pitch: int
    start: float
    end: float
    velocity: int = 90


class StepNote(NamedTuple):
    """A note on the 16th-note grid: ``start`` and ``end`` in steps."""
    pitch: int
    start: int
    end: int


class BarGrid(NamedTuple):
    """Where bar lines fall on the 16th grid: every ``steps`` steps, one of them at step
    ``downbeat`` (any step of the grid; negative is fine)."""
    steps: int = BAR_STEPS
    downbeat: int = 0

    def position(self, step: int) -> int:
        """The step's position in its bar, 0 on a downbeat (the melody model's input)."""
        return (int(step) - self.downbeat) % self.steps


def bar_grid(primer: Sequence[StepNote]) -> BarGrid:
    """The bar lines of a played phrase, as the box feeds them to the melody model.

    The tempo estimate (:func:`estimate_tempo`) reads the phrase so that its typical note
    is an eighth, and :func:`quantize` puts step 0 at the first onset; on that grid the
    player's first note is taken as a downbeat and a bar is four quarters (16 steps):
    a child starts on "one", and a pickup or a 3/4 phrase is read as 4/4 from its first
    note. The reply continues the same bars from the primer's end.
    """
    first = min((int(n.start) for n in primer), default=0)
    return BarGrid(BAR_STEPS, first)


MIN_TEMPO_QPM = 60.0
MAX_TEMPO_QPM = 180.0
_PREFERRED_QPM = 110.0
_PREFERRED_IOI_STEPS = 2.0  # the typical gap between onsets in a tune is an eighth note
_IOI_WEIGHT = 0.1      # grid error (in steps) that a median gap of a quarter (or 16th) costs
_QPM_WEIGHT = 0.02     # and a tempo an octave away from 110 qpm (a tie-breaker)
_CHORD_SECONDS = 0.05  # onsets closer than this count as one (a chord, or a mash)
MIN_ONSETS_FOR_TEMPO = 4


def onsets(notes: Iterable[Note]) -> list[float]:
    """Distinct onset times, chords merged."""
    out: list[float] = []
    for t in sorted(n.start for n in notes):
        if not out or t - out[-1] >= _CHORD_SECONDS:
            out.append(t)
    return out


def estimate_tempo(notes: Sequence[Note], fallback_qpm: float = 120.0) -> float:
    """Quarter notes per minute that put the onsets best on a 16th grid.

    A finer grid always fits better, so each candidate's mean distance to the grid (in
    steps) is weighed against how far its median gap between onsets is from an eighth note
    (and, lightly, its distance from a moderate tempo): halving or doubling a tempo fits
    the grid equally, and the reading in which the player mostly plays eighths wins. With fewer than four distinct onsets there is no rhythm to
    read, and ``fallback_qpm`` is used.
    """
    ts = onsets(notes)
    if len(ts) < MIN_ONSETS_FOR_TEMPO:
        return fallback_qpm
    t0 = ts[0]
    rel = [t - t0 for t in ts[1:]]
    gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
    median_gap = gaps[len(gaps) // 2]
    best, best_score = fallback_qpm, math.inf
    qpm = MIN_TEMPO_QPM
    while qpm <= MAX_TEMPO_QPM + 1e-9:
        step = 60.0 / qpm / STEPS_PER_QUARTER
        err = sum(abs(r / step - round(r / step)) for r in rel) / len(rel)
        score = (err + _IOI_WEIGHT * abs(math.log2(median_gap / step / _PREFERRED_IOI_STEPS))
                 + _QPM_WEIGHT * abs(math.log2(qpm / _PREFERRED_QPM)))
        if score < best_score:
            best, best_score = qpm, score
        qpm += 1.0
    return best


def step_seconds(qpm: float) -> float:
    return 60.0 / qpm / STEPS_PER_QUARTER


def quantize(notes: Sequence[Note], qpm: float, origin: float | None = None) -> list[StepNote]:
    """Notes on the grid, step 0 at ``origin`` (default: the first onset). Every note keeps
    at least one step, so a staccato tap is never lost."""
    if not notes:
        return []
    step = step_seconds(qpm)
    t0 = min(n.start for n in notes) if origin is None else origin
    out = []
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        s = max(0, round((n.start - t0) / step))
        e = max(s + 1, round((n.end - t0) / step))
        out.append(StepNote(n.pitch, s, e))
    return out


def unquantize(notes: Iterable[StepNote], qpm: float, origin: float = 0.0,
               velocity: int = 90) -> list[Note]:
    """Grid notes back to seconds from ``origin``."""
    step = step_seconds(qpm)
    return [Note(n.pitch, origin + n.start * step, origin + n.end * step, velocity)
            for n in notes]


@dataclass(frozen=True)
class ReplyPlan:
    """How the AI will answer a phrase: its tempo and the reply's length in steps."""
    qpm: float
    primer: list[StepNote]
    primer_steps: int
    reply_steps: int
    bar: BarGrid = BarGrid()


def plan_reply(notes: Sequence[Note], *, ratio: float = 1.0, min_seconds: float = 2.0,
               max_seconds: float = 8.0, fallback_qpm: float = 120.0) -> ReplyPlan:
    """Tempo, grid primer, its bar lines and the reply's length (about the phrase's
    length, clamped)."""
    qpm = estimate_tempo(notes, fallback_qpm)
    primer = quantize(notes, qpm)
    primer_steps = max((n.end for n in primer), default=0)
    length = (max(n.end for n in notes) - min(n.start for n in notes)) if notes else 0.0
    seconds = min(max_seconds, max(min_seconds, length * ratio))
    steps = max(1, round(seconds / step_seconds(qpm)))
    return ReplyPlan(qpm, primer, primer_steps, steps, bar_grid(primer))
