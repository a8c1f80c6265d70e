"""The voices: per-voice state as arrays (so the renderer can work on all voices at once),
the envelope stages, and the policy that picks a voice for a new note.

Envelope: every stage is one formula, ``level -> target + (level - target) * exp(-n * rate)``
over a segment of n frames, evaluated for all voices with a handful of numpy calls; a stage
ends when the level crosses its ``end_above`` / ``end_below`` bound, which is rare and is
handled here in Python. Stages:

ATTACK   rises towards 1.5 and ends at 1.0 after ``ATTACK_S`` (a hammer, not a switch)
HELD     decays towards the key's sustain level while the key is down
RELEASE  falls towards -0.002 and ends at 0: silent after a few ``release_s``
FADE     a stolen or re-struck voice falls fast (~3 ms) and then starts its pending note

Nothing is ever cut: every change of level goes through one of these curves, and the
renderer ramps the gains linearly across each segment.
"""

from __future__ import annotations

import math

import numpy as np

from . import timbre
from .wavetables import WavetableBank

IDLE, ATTACK, HELD, RELEASE, FADE = 0, 1, 2, 3, 4
STAGE_NAMES = ("idle", "attack", "held", "release", "fade")

_ATTACK_TARGET = 1.5
_RELEASE_TARGET = -0.002
_FADE_TARGET = -0.05


class VoiceBank:
    """State of ``n`` voices. Rows of the oscillator arrays are interleaved per voice:
    row 2v plays voice v's body table, row 2v+1 its bright table. New notes take the lowest
    idle voice; ``highest_active`` (0 when all are idle) lets the renderer skip silence."""

    def __init__(self, n: int, bank: WavetableBank, channels: int, block_frames: int):
        self.n = n
        self.bank = bank
        fs = bank.sample_rate
        self.stage = np.zeros(n, dtype=np.int8)
        self.pitch = np.full(n, -1, dtype=np.int16)
        self.tag = np.zeros(n, dtype=np.int16)
        self.order = np.zeros(n, dtype=np.int64)        # start order, for stealing the oldest
        self.start_frame = np.zeros(n, dtype=np.int64)
        # key already up during the attack: the strike completes, then the release starts
        self.release_after_attack = np.zeros(n, dtype=bool)
        # envelope: row 0 the level, row 1 the brightness (share of the bright table)
        self.state = np.zeros((2, n))
        self.target = np.zeros((2, n))
        self.rate = np.zeros((2, n))                    # per frame
        self.end_above = np.full(n, np.inf)
        self.end_below = np.full(n, -np.inf)
        self.amp = np.zeros(n)
        # oscillators (2 rows per voice)
        self.inc = np.zeros(2 * n)                       # table samples per frame
        self.phase = np.zeros(2 * n)
        self.offset = np.zeros(2 * n, dtype=np.intp)    # table start in the bank
        # the same, repeated for every frame of a block (same-shape operands: no buffering)
        self.offset_frames = np.zeros((block_frames, 2 * n), dtype=np.intp)
        self.inc_phase_t = np.zeros((2, 2 * n), dtype=np.float32)  # [inc; phase] for the matmul
        # per channel and row: amplitude (velocity, loudness) times the pan gain
        self.amp_pan = np.zeros((1 if channels == 1 else 2, 2 * n))
        self.inc_block = np.zeros(2 * n)                 # inc * block_frames: one block's step
        self._block_frames = block_frames
        # a note waiting for its voice to finish fading (stolen or re-struck voice)
        self.pending = np.zeros(n, dtype=bool)
        self.pending_note = [None] * n                   # (pitch, velocity, tag, stamp)
        self._orders = 0
        self.highest_active = 0                           # voices [0, highest_active) may sound
        # per-key constants, looked up at note start
        keys = np.arange(timbre.LOWEST_PITCH, timbre.HIGHEST_PITCH + 1)
        self._sustain = timbre.register("sustain", keys)
        self._decay_rate = 1.0 / (timbre.register("decay_s", keys) * fs)
        self._release_rate = 1.0 / (timbre.register("release_s", keys) * fs)
        self._bright_rate = 1.0 / (timbre.register("bright_decay_s", keys) * fs)
        self._loudness = timbre.register("loudness", keys)
        self._inc_body = bank.size * timbre.pitch_hz(keys) / fs
        self._inc_bright = self._inc_body * bank.stretch
        left, right = timbre.pan_gains(keys)
        self._pan = (np.vstack([left, right]) if channels > 1
                     else np.full((1, len(keys)), 1.0 / math.sqrt(2.0)))
        self._attack_rate = math.log(_ATTACK_TARGET / (_ATTACK_TARGET - 1.0)) / (timbre.ATTACK_S * fs)
        self._fade_rate = 1.0 / (timbre.STEAL_FADE_S * fs)

    # ---- lifecycle (audio thread) -------------------------------------------------------
    def start(self, v: int, pitch: int, velocity: int, tag: int, frame: int) -> None:
        """Begin a note on an idle (or just faded) voice v, from level 0 and phase 0."""
        i = pitch - timbre.LOWEST_PITCH
        self._orders += 1
        self.stage[v] = ATTACK
        self.release_after_attack[v] = False
        self.pitch[v] = pitch
        self.tag[v] = tag
        self.order[v] = self._orders
        self.start_frame[v] = frame
        bright = float(timbre.velocity_brightness(velocity))
        self.state[0, v] = 0.0
        self.state[1, v] = bright
        self.target[0, v] = _ATTACK_TARGET
        self.target[1, v] = 0.15 * bright
        self.rate[0, v] = self._attack_rate
        self.rate[1, v] = self._bright_rate[i]
        self.end_above[v] = 1.0
        self.end_below[v] = -np.inf
        self.amp[v] = timbre.VOICE_LEVEL * float(timbre.velocity_gain(velocity)) * self._loudness[i]
        body, bright_row = 2 * v, 2 * v + 1
        self.inc[body] = self._inc_body[i]
        self.inc[bright_row] = self._inc_bright[i]
        self.phase[body] = self.phase[bright_row] = 0.0
        body_offset, bright_offset = int(self.bank.body_offset[i]), int(self.bank.bright_offset[i])
        self.offset[body] = body_offset
        self.offset[bright_row] = bright_offset
        # (Python ints: filling a column with a numpy int32 made numpy 1.26 buffer the cast)
        self.offset_frames[:, body] = body_offset
        self.offset_frames[:, bright_row] = bright_offset
        self.inc_phase_t[0, body] = self.inc[body]
        self.inc_phase_t[0, bright_row] = self.inc[bright_row]
        self.inc_phase_t[1, body] = self.inc_phase_t[1, bright_row] = 0.0
        self.inc_block[body] = self.inc[body] * self._block_frames
        self.inc_block[bright_row] = self.inc[bright_row] * self._block_frames
        self.amp_pan[:, body] = self.amp_pan[:, bright_row] = self.amp[v] * self._pan[:, i]
        self.highest_active = max(self.highest_active, v + 1)

    def release(self, v: int) -> None:
        """Key up: fade out from wherever the level is. During the attack (the first ~3 ms)
        the strike finishes first, like a piano's hammer: the shortest tap is still heard."""
        if self.stage[v] == ATTACK:
            self.release_after_attack[v] = True
            return
        self.stage[v] = RELEASE
        self.target[0, v] = _RELEASE_TARGET
        self.rate[0, v] = self._release_rate[self.pitch[v] - timbre.LOWEST_PITCH]
        self.end_above[v] = np.inf
        self.end_below[v] = 0.0

    def fade(self, v: int, note: tuple | None) -> None:
        """Stolen or re-struck: fade fast, then start ``note`` (pitch, velocity, tag, stamp)."""
        self.release_after_attack[v] = False
        if self.stage[v] != IDLE:
            self.stage[v] = FADE
            self.target[0, v] = _FADE_TARGET
            self.rate[0, v] = self._fade_rate
            self.end_above[v] = np.inf
            self.end_below[v] = 0.0
        self.pending[v] = note is not None
        self.pending_note[v] = note

    def _to_idle(self, v: int) -> None:
        self.stage[v] = IDLE
        self.pitch[v] = -1
        self.state[0, v] = 0.0
        self.target[0, v] = 0.0
        self.rate[0, v] = 0.0
        self.end_above[v] = np.inf
        self.end_below[v] = -np.inf
        self.amp[v] = 0.0

    def stage_ends(self, v: int, new_level) -> bool:
        """A crossing found by the renderer: clamp the level and move to the next stage.
        Returns True when the voice has a pending note to start after this segment."""
        stage = self.stage[v]
        if stage == ATTACK:
            new_level[v] = 1.0
            i = self.pitch[v] - timbre.LOWEST_PITCH
            self.stage[v] = HELD
            self.target[0, v] = self._sustain[i]
            self.rate[0, v] = self._decay_rate[i]
            self.end_above[v] = np.inf
            if self.release_after_attack[v]:
                self.release_after_attack[v] = False
                self.release(v)
            return False
        new_level[v] = 0.0
        self._to_idle(v)
        return bool(self.pending[v])

    def refresh_highest_active(self) -> None:
        active = np.flatnonzero(self.stage != IDLE)
        self.highest_active = int(active[-1]) + 1 if len(active) else 0

    # ---- allocation policy --------------------------------------------------------------
    def find(self, pitch: int, tag: int, stages=(ATTACK, HELD)) -> int:
        """The voice sounding (pitch, tag) in one of ``stages``, or -1. A voice whose key
        went up during its attack counts as released, not held."""
        for v in np.flatnonzero((self.pitch == pitch) & (self.tag == tag)):
            stage = self.stage[v]
            if stage in stages and not (stage == ATTACK and self.release_after_attack[v]
                                        and RELEASE not in stages):
                return int(v)
        return -1

    def is_held(self, v: int) -> bool:
        stage = self.stage[v]
        return stage == HELD or (stage == ATTACK and not self.release_after_attack[v])

    def find_pending(self, pitch: int, tag: int) -> int:
        for v in np.flatnonzero(self.pending):
            note = self.pending_note[v]
            if note[0] == pitch and note[2] == tag:
                return int(v)
        return -1

    def choose_victim(self) -> tuple[int, str]:
        """Where a new note goes: ('idle', v), else the quietest releasing voice, else the
        oldest held one ('steal'); if every voice is already fading, the one whose pending
        note is oldest gives that note up ('replace')."""
        idle = np.flatnonzero(self.stage == IDLE)
        if len(idle):
            return int(idle[0]), "idle"
        releasing = np.flatnonzero(self.stage == RELEASE)
        if len(releasing):
            return int(releasing[np.argmin(self.state[0, releasing])]), "steal"
        held = np.flatnonzero((self.stage == ATTACK) | (self.stage == HELD))
        if len(held):
            return int(held[np.argmin(self.order[held])]), "steal"
        return int(np.argmin(self.order)), "replace"

    def held_notes(self) -> set[tuple[int, int]]:
        notes = set()
        for v in range(self.n):
            if self.is_held(v):
                notes.add((int(self.pitch[v]), int(self.tag[v])))
            note = self.pending_note[v]
            if self.pending[v] and note is not None:
                notes.add((int(note[0]), int(note[2])))
        return notes
