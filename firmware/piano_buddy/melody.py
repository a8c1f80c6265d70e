"""The melody model at run time: prime the LSTM on the player's phrase, sample a reply.

Notes and events: the model speaks MelodyRNN-style events on a 16th-note grid (see
:mod:`piano_buddy.encoding`); :func:`notes_to_events` and :func:`events_to_notes` translate
between those and :class:`StepNote` lists. Training uses the same two functions, so the
firmware and the training data can never disagree on what a token means.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .encoding import (FIRST_PITCH_TOKEN, MELODY_MAX_PITCH, MELODY_MIN_PITCH, NO_EVENT,
                       NOTE_OFF, pitch_to_token, token_to_pitch)


class StepNote(NamedTuple):
    """A note on the 16th-note grid: MIDI pitch, first step, step after its last."""
    pitch: int
    start: int
    end: int


def monophonic(notes: Sequence[StepNote]) -> list[StepNote]:
    """One note at a time: a note that starts cuts the one sounding; at the same start the
    highest pitch wins. Notes with end <= start last one step."""
    by_start: dict[int, StepNote] = {}
    for n in notes:
        s, e = int(n.start), int(n.end)
        n = StepNote(int(n.pitch), s, max(e, s + 1))
        if n.start not in by_start or n.pitch > by_start[n.start].pitch:
            by_start[n.start] = n
    ordered = [by_start[s] for s in sorted(by_start)]
    out = []
    for i, n in enumerate(ordered):
        end = n.end if i + 1 == len(ordered) else min(n.end, ordered[i + 1].start)
        out.append(StepNote(n.pitch, n.start, end))
    return out


def notes_to_events(notes: Sequence[StepNote], total_steps: int | None = None) -> list[int]:
    """Monophonic event tokens for notes already inside the melody range.

    ``total_steps`` defaults to the last note's end (so the last NOTE_OFF is implied).
    Notes starting at or after ``total_steps`` are dropped.
    """
    mono = [n for n in monophonic(notes) if n.start >= 0]
    if total_steps is None:
        total_steps = mono[-1].end if mono else 0
    events = [NO_EVENT] * total_steps
    for n in mono:
        if n.start >= total_steps:
            break
        events[n.start] = pitch_to_token(n.pitch)
        if n.end < total_steps and events[n.end] == NO_EVENT:
            events[n.end] = NOTE_OFF  # a following note starting here overwrites it
    return events


def events_to_notes(events: Sequence[int], offset: int = 0) -> list[StepNote]:
    """Notes from event tokens; a note still sounding at the end closes there."""
    notes: list[StepNote] = []
    pitch, start = None, 0
    for i, tok in enumerate(events):
        tok = int(tok)
        if tok == NO_EVENT:
            continue
        if pitch is not None:
            notes.append(StepNote(pitch, start + offset, i + offset))
            pitch = None
        if tok >= FIRST_PITCH_TOKEN:
            pitch, start = token_to_pitch(tok), i
    if pitch is not None:
        notes.append(StepNote(pitch, start + offset, len(events) + offset))
    return notes


def octave_shift_into_range(pitches: Sequence[int], low: int = MELODY_MIN_PITCH,
                            high: int = MELODY_MAX_PITCH) -> int:
    """Whole-octave shift that brings as many pitches as possible into [low, high].

    Prefers the shift that centres the phrase; pitches still outside (a span wider than the
    range) are folded in by octaves by the caller.
    """
    if not len(pitches):
        return 0
    lo, hi = min(pitches), max(pitches)
    centre = (lo + hi) / 2.0
    target = (low + high) / 2.0
    best, best_key = 0, None
    for k in range(-10, 11):
        s = 12 * k
        inside = sum(low <= p + s <= high for p in pitches)
        key = (-inside, abs(centre + s - target))
        if best_key is None or key < best_key:
            best, best_key = s, key
    return best


def fold_into_range(pitch: int, low: int = MELODY_MIN_PITCH, high: int = MELODY_MAX_PITCH
                    ) -> int:
    """Move a pitch by octaves until it lies in [low, high] (high - low >= 11)."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch
