"""The voices: per-voice state as arrays (so the renderer can work on all voices at once),
the envelope stages, and the policy that picks a voice for a new note.

A voice plays ``timbre.ROWS_PER_VOICE`` oscillator rows: the fast and slow component of each
band of partials, and the strike noise. Each row decays on its own (``row_env``, one
exponential per row: the analysed rates), which gives the two-stage decay towards silence,
the mellowing, and the knock that dies in a few tens of ms. Over all rows of a voice sits
its level, whose stages are each one formula, ``level -> target + (level - target) *
exp(-n * rate)`` over a segment of n frames, evaluated for all voices with a handful of numpy
calls; a stage ends when the level crosses its ``end_above`` / ``end_below`` bound, which is
rare and is handled here in Python. Stages:

ATTACK   rises towards 1.5 and ends at 1.0 after ``ATTACK_S`` (a hammer, not a switch)
HELD     stays at 1 while the key is down (the rows decay)
RELEASE  falls towards -0.01 and ends at 0: silent just after the key's release time
         (R60 0.22-0.30 s, from the analysed damper)
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
_RELEASE_TARGET = timbre.RELEASE_TARGET
_FADE_TARGET = -0.05


class VoiceBank:
    """State of ``n`` voices. Oscillator rows are grouped per voice: rows
    [v * R, (v + 1) * R) belong to voice v (R = ``timbre.ROWS_PER_VOICE``). New notes take
    the lowest idle voice; ``highest_active`` (0 when all are idle) lets the renderer skip
    silence."""

    def __init__(self, n: int, bank: WavetableBank, channels: int, block_frames: int):
        self.n = n
        self.bank = bank
        self.rows_per_voice = R = timbre.ROWS_PER_VOICE
        rows = n * R
        self.fs = fs = bank.sample_rate
        self.stage = np.zeros(n, dtype=np.int8)
        self.pitch = np.full(n, -1, dtype=np.int16)
        self.tag = np.zeros(n, dtype=np.int16)
        self.order = np.zeros(n, dtype=np.int64)        # start order, for stealing the oldest
        self.start_frame = np.zeros(n, dtype=np.int64)
        # key already up during the attack: the strike completes, then the release starts
        self.release_after_attack = np.zeros(n, dtype=bool)
        # the voice's level envelope
        self.state = np.zeros(n)
        self.target = np.zeros(n)
        self.rate = np.zeros(n)                         # per frame
        self.end_above = np.full(n, np.inf)
        self.end_below = np.full(n, -np.inf)
        self.amp = np.zeros(n)
        # per row: its own decay (envelope value and rate per frame)
        self.row_env = np.zeros(rows)
        self.row_rate = np.zeros(rows)
        # oscillators
        self.inc = np.zeros(rows)                        # table samples per frame
        self.phase = np.zeros(rows)
        self.size = np.full(rows, float(timbre.STRIKE_SIZE))   # each row's table length
        # table start and mask, repeated for every frame of a block (same-shape operands:
        # numpy then needs no iteration buffer)
        self.offset_frames = np.zeros((block_frames, rows), dtype=np.intp)
        self.mask_frames = np.full((block_frames, rows), timbre.STRIKE_SIZE - 1, dtype=np.intp)
        self.inc_phase_t = np.zeros((2, rows), dtype=np.float32)  # [inc; phase] for the matmul
        # per channel and row: amplitude (velocity, loudness, brightness) times the pan gain
        self.amp_pan = np.zeros((1 if channels == 1 else 2, rows))
        self.inc_block = np.zeros(rows)                  # inc * block_frames: one block's step
        self._block_frames = block_frames
        # a note waiting for its voice to finish fading (stolen or re-struck voice)
        self.pending = np.zeros(n, dtype=bool)
        self.pending_note = [None] * n                   # (pitch, velocity, tag, stamp)
        self._orders = 0
        self.highest_active = 0                           # voices [0, highest_active) may sound
        # per-key constants, looked up at note start
        keys = np.arange(timbre.LOWEST_PITCH, timbre.HIGHEST_PITCH + 1)
        self._release_rate = 1.0 / (bank.release_s * fs)
        strike = np.zeros(R, dtype=bool)
        strike[timbre.STRIKE_ROW] = True
        self._inc = np.where(strike, bank.row_ratio,
                             bank.row_size * timbre.pitch_hz(keys)[:, None] * bank.row_ratio / fs)
        self._row_rate = bank.row_rate / fs
        left, right = timbre.pan_gains(keys)
        self._pan = (np.vstack([left, right]) if channels > 1
                     else np.full((1, len(keys)), 1.0 / math.sqrt(2.0)))
        self._attack_rate = math.log(_ATTACK_TARGET / (_ATTACK_TARGET - 1.0)) / (timbre.ATTACK_S * fs)
        self._fade_rate = 1.0 / (timbre.STEAL_FADE_S * fs)
        self._row_amp = np.zeros(R)

    # ---- lifecycle (audio thread) -------------------------------------------------------
    def start(self, v: int, pitch: int, velocity: int, tag: int, frame: int) -> None:
        """Begin a note on an idle (or just faded) voice v, from level 0 and phase 0."""
        i = pitch - timbre.LOWEST_PITCH
        R = self.rows_per_voice
        rows = slice(v * R, (v + 1) * R)
        bank = self.bank
        self._orders += 1
        self.stage[v] = ATTACK
        self.release_after_attack[v] = False
        self.pitch[v] = pitch
        self.tag[v] = tag
        self.order[v] = self._orders
        self.start_frame[v] = frame
        self.state[v] = 0.0
        self.target[v] = _ATTACK_TARGET
        self.rate[v] = self._attack_rate
        self.end_above[v] = 1.0
        self.end_below[v] = -np.inf
        self.amp[v] = timbre.VOICE_LEVEL * float(timbre.velocity_gain(velocity))
        relative = min(max(float(velocity), 1.0), 127.0) / timbre.table()["velocity"]
        np.power(relative, bank.row_velocity_exponent, out=self._row_amp)
        np.multiply(self._row_amp, bank.row_gain[i], out=self._row_amp)
        np.multiply(self._row_amp, self.amp[v], out=self._row_amp)
        self.row_env[rows] = 1.0
        self.row_rate[rows] = self._row_rate[i]
        self.inc[rows] = self._inc[i]
        self.phase[rows] = 0.0
        self.size[rows] = bank.row_size[i]
        self.offset_frames[:, rows] = bank.row_offset[i]
        self.mask_frames[:, rows] = bank.row_size[i] - 1
        self.inc_phase_t[0, rows] = self._inc[i]
        self.inc_phase_t[1, rows] = 0.0
        np.multiply(self._inc[i], float(self._block_frames), out=self.inc_block[rows])
        for c in range(self.amp_pan.shape[0]):
            np.multiply(self._row_amp, self._pan[c, i], out=self.amp_pan[c, rows])
        self.highest_active = max(self.highest_active, v + 1)

    def release(self, v: int) -> None:
        """Key up: fade out from wherever the level is. During the attack (the first ~3 ms)
        the strike finishes first, like a piano's hammer: the shortest tap is still heard."""
        if self.stage[v] == ATTACK:
            self.release_after_attack[v] = True
            return
        self.stage[v] = RELEASE
        self.target[v] = _RELEASE_TARGET
        self.rate[v] = self._release_rate[self.pitch[v] - timbre.LOWEST_PITCH]
        self.end_above[v] = np.inf
        self.end_below[v] = 0.0

    def fade(self, v: int, note: tuple | None) -> None:
        """Stolen or re-struck: fade fast, then start ``note`` (pitch, velocity, tag, stamp)."""
        self.release_after_attack[v] = False
        if self.stage[v] != IDLE:
            self.stage[v] = FADE
            self.target[v] = _FADE_TARGET
            self.rate[v] = self._fade_rate
            self.end_above[v] = np.inf
            self.end_below[v] = 0.0
        self.pending[v] = note is not None
        self.pending_note[v] = note

    def _to_idle(self, v: int) -> None:
        self.stage[v] = IDLE
        self.pitch[v] = -1
        self.state[v] = 0.0
        self.target[v] = 0.0
        self.rate[v] = 0.0
        self.end_above[v] = np.inf
        self.end_below[v] = -np.inf
        self.amp[v] = 0.0

    def stage_ends(self, v: int, new_level) -> bool:
        """A crossing found by the renderer: clamp the level and move to the next stage.
        Returns True when the voice has a pending note to start after this segment."""
        stage = self.stage[v]
        if stage == ATTACK:
            new_level[v] = 1.0
            self.stage[v] = HELD
            self.target[v] = 1.0
            self.rate[v] = 0.0
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
            return int(releasing[np.argmin(self.state[releasing])]), "steal"
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
