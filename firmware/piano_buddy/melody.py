"""The melody model at run time: prime the LSTM on the player's phrase, sample a reply.

Notes and events: the model speaks MelodyRNN-style events on a 16th-note grid (see
:mod:`piano_buddy.encoding`); :func:`notes_to_events` and :func:`events_to_notes` translate
between those and :class:`StepNote` lists. Training uses the same two functions, so the
firmware and the training data can never disagree on what a token means.

Bar position: with each token the model gets the position in the bar of the NEXT step
(:func:`model_inputs`, used by training too): in training the bar lines come from the
score's measures, here from a :class:`~piano_buddy.phrase.BarGrid` (the conductor's
:func:`~piano_buddy.phrase.plan_reply`, else :func:`~piano_buddy.phrase.bar_grid` of the
primer: the first note is a downbeat, bars of 16 steps at the phrase's tempo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .encoding import (FIRST_PITCH_TOKEN, MAX_BAR_STEPS, MELODY_MAX_PITCH, MELODY_MIN_PITCH,
                       MELODY_VOCAB, NO_EVENT, NOTE_OFF, POSITION_BITS, pitch_to_token,
                       position_input, token_to_pitch)
# One StepNote (pitch, start, end in 16th steps) for the whole firmware: the conductor
# quantizes the phrase into it, the model answers in it.
from .phrase import BarGrid, StepNote, bar_grid

__all__ = ["MelodyModel", "StepNote", "BarGrid", "notes_to_events", "events_to_notes",
           "monophonic", "model_inputs"]

# position_input of every position, as the float rows the interpreter takes
_POSITION_ROWS = np.asarray([position_input(p) for p in range(MAX_BAR_STEPS)],
                            np.float32)[:, None, :]


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


def model_inputs(tokens: Sequence[int], positions: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The model's inputs for a token sequence: (one-hot tokens [T, 39], position
    counters [T, 5]), where row t carries token t and the bar position of step t + 1, the
    step the model predicts from it. ``positions`` holds the bar position of every step of
    the sequence and one more (T + 1 values). Training and the runtime both call this."""
    tokens = np.asarray(tokens, np.int64)
    positions = np.asarray(positions, np.int64)
    if len(positions) != len(tokens) + 1:
        raise ValueError(f"{len(tokens)} tokens need {len(tokens) + 1} positions, "
                         f"got {len(positions)}")
    onehot = np.eye(MELODY_VOCAB, dtype=np.float32)[tokens]
    return onehot, _POSITION_ROWS[positions[1:] % MAX_BAR_STEPS, 0]


# --- the model -------------------------------------------------------------------------------

MAX_PRIME_STEPS = 512      # longer primers keep their last 512 steps (bounded latency)
MAX_REPLY_STEPS = 1024     # 64 bars: a bound on the time one reply can take
EMPTY_PRIMER = (StepNote(60, 0, 4),)  # nothing played: prime on a middle C, not replied
_RESAMPLES = 2             # tries at the given temperature before forcing a first note


class MelodyModel:
    """Prime the melody LSTM on a phrase and sample a continuation (MelodyRNN-style).

    Every call to :meth:`continue_phrase` starts from a zero state (as Magenta's
    continueSequence does), so a reply depends only on the primer, the temperature and the
    random generator, which is injectable for reproducible replies.
    """

    def __init__(self, path=None, rng: np.random.Generator | None = None, *,
                 num_threads: int = 1, prefer: str | None = None):
        from .encoding import MELODY_VOCAB
        from .errors import ModelError
        from .paths import model_path
        from .tflite import load_interpreter
        from pathlib import Path

        self.path = Path(path) if path is not None else model_path("melody.tflite")
        self.rng = rng if rng is not None else np.random.default_rng()
        interp = load_interpreter(self.path, expect_inputs={"token": (1, MELODY_VOCAB),
                                                            "position": (1, POSITION_BITS)},
                                  num_threads=num_threads, prefer=prefer)
        ins = {d["name"]: d for d in interp.get_input_details()}
        state_in = [d for n, d in ins.items() if "state" in n]
        if not state_in or len(state_in[0]["shape"]) != 2 or state_in[0]["shape"][0] != 1:
            raise ModelError(f"model file {self.path} has no (1, N) input named like 'state' "
                             f"(it has: {', '.join(ins)}): wrong model for this firmware")
        state_shape = tuple(int(x) for x in state_in[0]["shape"])
        outs = interp.get_output_details()
        # Output names do not survive conversion; logits and state differ in shape.
        logits = [d for d in outs if tuple(d["shape"]) == (1, MELODY_VOCAB)]
        state_out = [d for d in outs if tuple(d["shape"]) == state_shape]
        if len(outs) != 2 or len(logits) != 1 or len(state_out) != 1:
            shapes = ", ".join(str(tuple(int(x) for x in d["shape"])) for d in outs)
            raise ModelError(f"model file {self.path} has outputs of shapes {shapes}, "
                             f"expected (1, {MELODY_VOCAB}) logits and {state_shape} state: "
                             f"wrong model for this firmware")
        self._interp = interp
        self._token_in = [d["index"] for n, d in ins.items() if "token" in n][0]
        self._position_in = [d["index"] for n, d in ins.items() if "position" in n][0]
        self._state_in = state_in[0]["index"]
        self._logits_out = logits[0]["index"]
        self._state_out = state_out[0]["index"]
        self._zero_state = np.zeros(state_shape, np.float32)
        self._onehot = np.eye(MELODY_VOCAB, dtype=np.float32)[:, None, :]
        self.state_size = state_shape[1]
        self.reset()

    def reset(self) -> None:
        """Forget the LSTM state (continue_phrase does this itself before priming)."""
        self._state = self._zero_state

    def _step(self, token: int, next_position: int) -> np.ndarray:
        """Feed one token and the bar position of the step after it; return the logits
        for that next step."""
        interp = self._interp
        interp.set_tensor(self._token_in, self._onehot[token])
        interp.set_tensor(self._position_in, _POSITION_ROWS[next_position % MAX_BAR_STEPS])
        interp.set_tensor(self._state_in, self._state)
        interp.invoke()
        self._state = interp.get_tensor(self._state_out)
        return interp.get_tensor(self._logits_out)[0]

    def _sample(self, logits: np.ndarray, temperature: float, pitch_only: bool = False) -> int:
        z = logits.astype(np.float64)
        if pitch_only:
            z = z.copy()
            z[:FIRST_PITCH_TOKEN] = -np.inf
        if temperature <= 0:
            return int(np.argmax(z))
        z = (z - z.max()) / temperature
        p = np.exp(z)
        c = np.cumsum(p)
        return int(min(len(c) - 1, np.searchsorted(c, self.rng.random() * c[-1], "right")))

    def _prepare(self, primer: Sequence[StepNote], primer_steps: int | None,
                 bar: BarGrid | None) -> tuple[list[int], int, BarGrid, int]:
        """The primer as the model reads it: (event tokens, the grid step of the first,
        the bar grid, the octave shift into the model's range)."""
        notes = [StepNote(int(n[0]), int(n[1]), int(n[2])) for n in primer]
        if primer_steps is None:
            primer_steps = max((max(n.end, n.start + 1) for n in notes), default=0)
        primer_steps = int(primer_steps)
        notes = [StepNote(n.pitch, max(0, n.start), min(max(n.end, n.start + 1), primer_steps))
                 for n in notes if 0 <= n.start < primer_steps and 0 <= n.pitch <= 127]
        if not notes:
            notes, primer_steps = list(EMPTY_PRIMER), EMPTY_PRIMER[0].end
        if bar is None:
            bar = bar_grid(notes)
        bar = BarGrid(max(1, min(MAX_BAR_STEPS, int(bar.steps))), int(bar.downbeat))
        shift = octave_shift_into_range([n.pitch for n in notes])
        notes = [StepNote(fold_into_range(n.pitch + shift), n.start, n.end) for n in notes]
        events = notes_to_events(notes, primer_steps)
        first = min(n.start for n in notes)
        cut = max(first, len(events) - MAX_PRIME_STEPS)  # no leading rest
        return events[cut:], cut, bar, shift

    def prime(self, primer: Sequence[StepNote], primer_steps: int | None = None,
              bar: BarGrid | None = None, score: bool = False) -> "Primed":
        """Read the primer from a zero state (as :meth:`continue_phrase` does) and keep
        where it left the model, so a reply can be sampled from it, more than once if need
        be, without reading the phrase again. With ``score``, also the primer's mean
        negative log-likelihood per step (nats): each token predicted from those before it,
        how much the phrase sounds like what the model was trained on (the "auto" style
        lets the model it suits best answer)."""
        events, cut, bar, shift = self._prepare(primer, primer_steps, bar)
        self.reset()
        total, step, logits = 0.0, cut, None
        for tok in events:
            if score and logits is not None:
                z = logits.astype(np.float64)
                m = z.max()
                total += m + np.log(np.exp(z - m).sum()) - z[tok]
            step += 1
            logits = self._step(tok, bar.position(step))
        nll = total / max(1, len(events) - 1) if score else float("nan")
        return Primed(logits, self._state, step, bar, shift, nll)

    def phrase_nll(self, primer: Sequence[StepNote], primer_steps: int | None = None,
                   bar: BarGrid | None = None) -> float:
        """The primer's mean negative log-likelihood per step under this model (nats)."""
        return self.prime(primer, primer_steps, bar, score=True).nll

    def continue_phrase(self, primer: Sequence[StepNote], steps: int,
                        temperature: float = 1.0, primer_steps: int | None = None,
                        bar: BarGrid | None = None) -> list[StepNote]:
        """Reply to ``primer`` with ``steps`` 16th steps of melody (steps relative to the
        primer's end). Never empty, never out of MIDI range, every note inside [0, steps);
        ``steps`` is taken as at least 1 and at most MAX_REPLY_STEPS.

        ``primer`` may overlap (made monophonic: a new note cuts the sounding one, highest
        wins on the same step) and lie anywhere in MIDI: it is moved into the model's range
        by octaves and the reply moved back. ``temperature`` <= 0 picks the argmax.
        ``bar``: the primer's bar lines on its grid (default :func:`bar_grid` of the
        primer); the reply continues them.
        """
        return self.continue_primed(self.prime(primer, primer_steps, bar), steps, temperature)

    def continue_primed(self, primed: "Primed", steps: int, temperature: float = 1.0
                        ) -> list[StepNote]:
        """:meth:`continue_phrase` from a :meth:`prime` of this model."""
        steps = min(MAX_REPLY_STEPS, max(1, int(steps)))
        temperature = float(temperature) if temperature == temperature else 1.0
        for attempt in range(_RESAMPLES + 1):
            reply = self._generate(primed, steps, temperature,
                                   force_pitch=attempt == _RESAMPLES)
            out = events_to_notes(reply)
            if out:
                break
        result = []
        for n in out:
            pitch = n.pitch - primed.shift
            while pitch < 0:
                pitch += 12
            while pitch > 127:
                pitch -= 12
            result.append(StepNote(pitch, n.start, min(n.end, steps)))
        return result

    def _generate(self, primed: "Primed", steps: int, temperature: float,
                  force_pitch: bool) -> list[int]:
        """Sample ``steps`` tokens from where :meth:`prime` left the model."""
        self._state, logits, step, bar = primed.state, primed.logits, primed.step, primed.bar
        reply = []
        for t in range(steps):
            tok = self._sample(logits, temperature, pitch_only=force_pitch and t == 0)
            reply.append(tok)
            if t + 1 < steps:
                step += 1
                logits = self._step(tok, bar.position(step))
        return reply


@dataclass(frozen=True)
class Primed:
    """Where priming on a phrase left a :class:`MelodyModel`: the logits of the next step,
    the LSTM state (a copy: the interpreter's outputs are copied out), the grid step, the
    bar lines, the octave shift into the model's range, and the phrase's NLL if scored."""
    logits: np.ndarray
    state: np.ndarray
    step: int
    bar: BarGrid
    shift: int
    nll: float
