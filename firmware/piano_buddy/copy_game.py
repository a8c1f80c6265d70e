"""Copy me: a game for kids. The AI plays a short phrase and lights, note by note, the buttons
that would play it; the child plays it back; the box says "yes!" or "try again".

The phrase is the melody model's (a continuation of the last one, so the game has a tune's
shape), ``MIN_NOTES`` long at first and one note longer after each success up to
``MAX_NOTES``; its notes are at least an 8th apart so small fingers can follow. Its buttons are
the copy-me buttons the box lights for any reply (the Genie encoder, checked through a
planning decoder), so pressing them makes the phrase's shape.

The judge compares what the child did with what was lit, by contour and rhythm, not by keys:
the Genie is free to choose other keys for the same buttons. Contour: every step between two
notes goes the same way (up, down, or the same button) as the lit one. Rhythm: each gap between
onsets, once the child's own tempo is taken out (the median ratio of their gaps to the lit
ones), is within ``RHYTHM_TOLERANCE`` of the lit gap, and that tempo is within
``TEMPO_RANGE``. From a MIDI keyboard the keys' contour is compared with the phrase's pitches.
Three misses on one phrase make the next one a note shorter. The conductor owns the turns:
it asks this class for a phrase, tells it what was played, and plays the verdict's cue.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

from .phrase import Note, StepNote

MIN_NOTES, MAX_NOTES = 2, 6
MIN_GAP_STEPS = 2                  # 16ths between a phrase's onsets: an 8th at the least
GAME_QPM = 100.0                   # an 8th is 0.3 s
RHYTHM_TOLERANCE = 1.6             # a gap may be this much longer or shorter, tempo taken out
TEMPO_RANGE = (0.5, 2.0)           # the child may play twice as slow or fast as shown
MISSES_BEFORE_EASIER = 3
TASK_PRIMER = (StepNote(60, 0, 2), StepNote(64, 2, 4), StepNote(67, 4, 8))
TASK_STEPS = 32
HAPPY_CUE = (72, 76, 79, 84)       # a rising C major run: well done
TRY_AGAIN_CUE = (67, 64)           # two soft falling notes: try again


@dataclass
class Played:
    """One note of the child's copy: the button (None for a MIDI key), its key, its onset."""
    button: int | None
    pitch: int
    onset: float


@dataclass
class Task:
    notes: list[Note]              # as the AI plays them (conductor time at planning)
    buttons: list[int]             # the lamp lit for each

    @property
    def onsets(self) -> list[float]:
        return [n.start for n in self.notes]


def _direction(a: float, b: float) -> int:
    return (b > a) - (b < a)


def judge(task: Task, played: Sequence[Played]) -> tuple[bool, str]:
    """(right, why) for a copy of ``task``."""
    if len(played) != len(task.notes):
        return False, f"{len(played)} notes for {len(task.notes)}"
    if all(p.button is not None for p in played):
        mine, theirs = [p.button for p in played], task.buttons
    else:
        mine, theirs = [p.pitch for p in played], [n.pitch for n in task.notes]
    for i in range(1, len(mine)):
        if _direction(mine[i - 1], mine[i]) != _direction(theirs[i - 1], theirs[i]):
            return False, f"step {i} goes the other way"
    gaps_shown = [b - a for a, b in zip(task.onsets, task.onsets[1:])]
    gaps_played = [b.onset - a.onset for a, b in zip(played, played[1:])]
    ratios = [max(p, 1e-3) / max(s, 1e-3) for p, s in zip(gaps_played, gaps_shown)]
    if not ratios:
        return True, "one note"
    tempo = statistics.median(ratios)
    if not TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]:
        return False, f"tempo {tempo:.2f} x the phrase's"
    for i, r in enumerate(ratios, start=1):
        if not 1 / RHYTHM_TOLERANCE <= r / tempo <= RHYTHM_TOLERANCE:
            return False, f"gap {i} is {r / tempo:.2f} x the phrase's"
    return True, "contour and rhythm"


def pick_notes(steps: Sequence[StepNote], n: int) -> list[StepNote]:
    """The first ``n`` notes of ``steps`` at least MIN_GAP_STEPS apart, each cut to end at
    the next one's onset (a phrase a child can follow)."""
    chosen: list[StepNote] = []
    for s in sorted(steps, key=lambda s: (s.start, -s.pitch)):
        if chosen and s.start - chosen[-1].start < MIN_GAP_STEPS:
            continue
        chosen.append(s)
        if len(chosen) == n:
            break
    return [StepNote(s.pitch, s.start, min(s.end, chosen[i + 1].start)
                     if i + 1 < len(chosen) else s.end) for i, s in enumerate(chosen)]


@dataclass
class CopyMeGame:
    """The game's state: the phrase length, the phrase to copy, what the child played."""
    length: int = MIN_NOTES
    task: Task | None = None
    played: list[Played] = field(default_factory=list)
    misses: int = 0
    right: int = 0
    wrong: int = 0
    steps: list[StepNote] = field(default_factory=list)     # the phrase, for a replay

    def next_phrase(self, melody, temperature: float) -> list[StepNote]:
        """A new phrase on the 16th grid: ``length`` notes the model continues the rising
        triad of TASK_PRIMER with (sampled, so each phrase differs); kept for replays."""
        chosen: list[StepNote] = []
        for _ in range(3):
            steps = melody.continue_phrase(list(TASK_PRIMER), TASK_STEPS, temperature,
                                           primer_steps=TASK_PRIMER[-1].end)
            chosen = pick_notes(steps, self.length)
            if len(chosen) == self.length:
                break
        first = chosen[0].start if chosen else 0
        self.steps = [StepNote(s.pitch, s.start - first, s.end - first) for s in chosen]
        return self.steps

    def set_task(self, notes: Sequence[Note], buttons: Sequence[int]) -> None:
        self.task = Task(list(notes), list(buttons))
        self.played = []

    def press(self, button: int | None, pitch: int, onset: float) -> None:
        self.played.append(Played(button, pitch, onset))

    def verdict(self) -> tuple[bool, str]:
        """Judge the copy played since the phrase; move the level; start a fresh copy."""
        if self.task is None:
            self.played = []
            return False, "no phrase yet"
        right, why = judge(self.task, self.played)
        self.played = []
        if right:
            self.right += 1
            self.misses = 0
            self.length = min(MAX_NOTES, self.length + 1)
            self.task = None                     # a new phrase comes
        else:
            self.wrong += 1
            self.misses += 1
            if self.misses >= MISSES_BEFORE_EASIER:
                self.misses = 0
                self.length = max(MIN_NOTES, self.length - 1)
                self.task = None                 # a shorter one comes
        return right, why
