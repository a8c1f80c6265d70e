"""The voices: per-voice state as arrays (so the renderer can work on all voices at once),
the envelope stages, and the policy that picks a voice for a new note.

A voice plays ``timbre.TONE_ROWS`` table rows, the fast and slow component of each band of
partials, and the strike noise. Each row decays on its own (its ``gain`` times ``row_d``
every block, one exponential per row: the analysed rates), which gives the two-stage decay
towards silence, the mellowing, and the knock that dies in a few tens of ms. The strike is
kept apart (``strike_*``): it plays its burst one sample per frame, so it needs no phase or
interpolation, and it is silent ~75 ms after the note starts, so the renderer skips it
altogether while no voice's strike is sounding (``strike_until``). Over all rows of a voice
sits its level, whose stages are each one formula, ``level -> target + (level - target) *
exp(-n * rate)`` over a segment of n frames, evaluated for all voices with two numpy calls;
a stage ends where the level crosses its bound, a frame the formula gives when the stage
starts (``cross_at``), so the renderer finds stage ends with one comparison and handles them
(rarely) here in Python. Stages:

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
    """State of ``n`` voices. Table rows are grouped per voice: rows [v * R, (v + 1) * R)
    belong to voice v (R = ``timbre.TONE_ROWS``); voice v's strike is column v of the
    ``strike_*`` arrays. New notes take the lowest idle voice; ``highest_active`` (0 when
    all are idle) lets the renderer skip silence.

    What the renderer reads, all float32 so that no numpy call has to cast:
    ``e`` (level - target), ``target``, ``d_block`` (e's decay over one full block), ``level``
    (at the last segment's end); per row ``gain`` (amplitude x pan x the row's own decay so
    far, per mix channel), ``row_d`` (its decay over one block), ``inc_phase`` ([table samples
    per frame; phase - 0.5], the right-hand side of the phase matmul), ``step`` (one block's
    phase advance) and ``size``; per voice ``strike_gain`` (amplitude x pan x its fade so
    far, per mix channel; it falls by ``strike_d`` per block, ``strike_rate`` per frame)
    and, per frame of the next segment and voice, ``strike_pos`` (the index in
    ``strike_table`` of the burst sample that frame plays) and ``strike_end`` (where the
    burst's zeros start; the renderer clamps the positions to it every few blocks, so a
    finished strike reads zeros). Each stage knows in advance the frame at which it ends
    (``cross_at``, from its one formula), so the renderer looks for stage ends with one
    comparison (``next_cross``) instead of comparing every level every block."""

    def __init__(self, n: int, bank: WavetableBank, channels: int, block_frames: int):
        self.n = n
        self.rows_per_voice = R = timbre.TONE_ROWS
        rows = n * R
        self.fs = fs = bank.sample_rate
        f32 = np.float32
        self.stage = np.zeros(n, dtype=np.int8)
        self.pitch = np.full(n, -1, dtype=np.int16)
        self.tag = np.zeros(n, dtype=np.int16)
        self.order = np.zeros(n, dtype=np.int64)        # start order, for stealing the oldest
        self.start_frame = np.zeros(n, dtype=np.int64)
        # key already up during the attack: the strike completes, then the release starts
        self.release_after_attack = np.zeros(n, dtype=bool)
        # the voice's level envelope: level = target + e, e *= exp(-frames * rate)
        self.e = np.zeros(n, dtype=f32)
        self.target = np.zeros(n, dtype=f32)
        self.level = np.zeros(n, dtype=f32)
        self.rate = np.zeros(n, dtype=f32)               # per frame
        self.d_block = np.ones(n, dtype=f32)
        self.cross_at = np.full(n, np.inf)               # absolute frame the stage ends at
        self.next_cross = np.full(1, np.inf)              # min of cross_at (no float objects
                                                          # kept alive by the audio thread)
        self.n_changing = 0
        self.amp = np.zeros(n)
        # per row: gain per mix channel (amplitude x pan x its own decay), decay rate; the
        # gain and its decay are kept twice per row, (sample, slope) as the table's pairs
        # are laid out, so the mixing weights come from them with one plain multiply
        mix_channels = 1 if channels == 1 else 2
        self.gain2 = np.zeros((mix_channels, rows, 2), dtype=f32)
        self.gain = self.gain2[:, :, 0]                  # (a view: one of the two copies)
        self.row_rate = np.zeros(rows, dtype=f32)        # per frame
        self.row_d2 = np.ones((mix_channels, rows, 2), dtype=f32)   # (same shape as gain2:
        self.row_d = self.row_d2[0, :, 0]                # a broadcast would need a buffer)
        # oscillators
        self.inc_phase = np.zeros((2, rows), dtype=f32)  # [inc; phase - 0.5] for the matmul
        self.step = np.zeros(rows, dtype=f32)            # inc * block_frames
        self.size = np.full(rows, float(max(timbre.BAND_TABLE_SIZE)), dtype=f32)
        # table start and mask, repeated for every frame of a block (same-shape operands:
        # numpy then needs no iteration buffer)
        # (int32: the renderer wraps and offsets the index in int32, then widens it once)
        self.offset_frames = np.zeros((block_frames, rows), dtype=np.int32)
        self.mask_frames = np.full((block_frames, rows), max(timbre.BAND_TABLE_SIZE) - 1,
                                   dtype=np.int32)
        self._block_frames = block_frames
        self.strike_gain = np.zeros((mix_channels, n), dtype=f32)
        self.strike_pos = np.zeros((block_frames, n), dtype=np.intp)
        self.strike_end = np.zeros((block_frames, n), dtype=np.intp)
        self.strike_until = 0                             # frame: no strike sounds from here
        self._frames = np.arange(block_frames, dtype=np.intp)
        self._channels = channels
        self.strike_clamp_every = max(1, 256 // block_frames)
        self.bank = bank
        # a note waiting for its voice to finish fading (stolen or re-struck voice)
        self.pending = np.zeros(n, dtype=bool)
        self.pending_note = [None] * n                   # (pitch, velocity, tag, stamp)
        self._orders = 0
        self.highest_active = 0                           # voices [0, highest_active) may sound

    @property
    def bank(self) -> WavetableBank:
        return self._bank

    @bank.setter
    def bank(self, bank: WavetableBank) -> None:
        """The tables and per-key constants notes start from (the tests mute rows with a
        changed copy of the bank; it applies to notes started after)."""
        self._bank = bank
        fs = bank.sample_rate
        f32 = np.float32
        R = self.rows_per_voice
        S = timbre.STRIKE_ROW
        # the strike: every burst, then a block of zeros, so that a block read from anywhere
        # up to a burst's end stays within its own row (one gather, no wrap)
        burst = bank.strike.shape[1]
        # (positions run on for up to strike_clamp_every blocks after the burst's end
        # before they are clamped: the zeros after each burst cover that and one block)
        self._strike_row = row = burst + (self.strike_clamp_every + 1) * self._block_frames
        table = np.zeros((bank.strike.shape[0], row), dtype=f32)
        table[:, :burst] = bank.strike
        self.strike_table = table.reshape(-1)
        self._strike_frames = burst                       # a strike sounds this long
        self._strike_start = bank.row_offset[:, S] * row
        self.strike_rate = rate = float(bank.row_rate[0, S]) / fs   # (the same for every key)
        self.strike_d = float(np.float32(math.exp(-rate * self._block_frames)))
        # per-key constants, looked up at note start
        keys = np.arange(timbre.LOWEST_PITCH, timbre.HIGHEST_PITCH + 1)
        self._release_rate = 1.0 / (bank.release_s * fs)
        tone = slice(0, R)
        self._inc = (bank.row_size * timbre.pitch_hz(keys)[:, None] * bank.row_ratio / fs)[:, tone]
        self._row_rate = bank.row_rate[:, tone] / fs
        left, right = timbre.pan_gains(keys)
        self._pan = (np.vstack([left, right]) if self._channels > 1
                     else np.full((1, len(keys)), 1.0 / math.sqrt(2.0)))
        self._attack_rate = math.log(_ATTACK_TARGET / (_ATTACK_TARGET - 1.0)) / (timbre.ATTACK_S * fs)
        self._fade_rate = 1.0 / (timbre.STEAL_FADE_S * fs)
        # everything a note start writes, per key and per velocity, computed once here: a
        # start is then a few slice copies (a mash restarts a voice every few blocks)
        self._row_d = np.exp(-self._row_rate * self._block_frames).astype(f32)
        self._inc32 = self._inc.astype(f32)
        self._step32 = (self._inc * self._block_frames).astype(f32)
        self._size32 = bank.row_size[:, tone].astype(f32)
        self._offset32 = bank.row_offset[:, tone].astype(np.int32)
        self._mask32 = (bank.row_size[:, tone] - 1).astype(np.int32)
        self._row_rate32 = self._row_rate.astype(f32)
        velocities = np.arange(128, dtype=np.float64)
        self._vel_amp = timbre.VOICE_LEVEL * timbre.velocity_gain(velocities)
        relative = np.clip(velocities, 1.0, 127.0) / timbre.table()["velocity"]
        # per velocity and row: brightness x level; per key, row and mix channel: trim x pan
        self._vel_rows = relative[:, None] ** bank.row_velocity_exponent[None, :] * self._vel_amp[:, None]
        self._key_rows = bank.row_gain[None, :, :] * self._pan[:, :, None]
        self._row_amp = np.zeros((self.gain2.shape[0], timbre.ROWS_PER_VOICE))

    # ---- lifecycle (audio thread) -------------------------------------------------------
    def _set_stage(self, v: int, stage: int, target: float, rate: float, bound: float | None,
                   frame: int) -> None:
        """Enter ``stage`` from the current level; it ends where the level crosses ``bound``
        (None: it does not end by itself), at a frame known now."""
        level = float(self.level[v])
        self.stage[v] = stage
        self.target[v] = target
        self.e[v] = level - target
        self.rate[v] = rate
        self.d_block[v] = math.exp(-rate * self._block_frames)
        cross = math.inf
        if bound is not None and rate > 0.0:
            ratio = (bound - target) / (level - target) if level != target else 0.0
            cross = frame + (-math.log(ratio) / rate if 0.0 < ratio < 1.0 else 0.0)
        self.cross_at[v] = cross
        np.minimum.reduce(self.cross_at, out=self.next_cross, keepdims=True)
        self.n_changing = int(np.count_nonzero(self.rate))   # voices whose level moves

    def start(self, v: int, pitch: int, velocity: int, tag: int, frame: int) -> None:
        """Begin a note on an idle (or just faded) voice v, from level 0 and phase 0."""
        i = pitch - timbre.LOWEST_PITCH
        R = self.rows_per_voice
        rows = slice(v * R, (v + 1) * R)
        self._orders += 1
        self.release_after_attack[v] = False
        self.pitch[v] = pitch
        self.tag[v] = tag
        self.order[v] = self._orders
        self.start_frame[v] = frame
        self.level[v] = 0.0
        self._set_stage(v, ATTACK, _ATTACK_TARGET, self._attack_rate, 1.0, frame)
        velocity = min(max(int(velocity), 1), 127)
        self.amp[v] = self._vel_amp[velocity]
        amp = self._row_amp
        np.multiply(self._vel_rows[velocity], self._key_rows[:, i], amp)
        self.gain2[:, rows] = amp[:, :R, None]
        self.strike_gain[:, v] = amp[:, timbre.STRIKE_ROW]
        self.row_rate[rows] = self._row_rate32[i]
        self.row_d2[:, rows] = self._row_d[i, :, None]
        self.inc_phase[0, rows] = self._inc32[i]
        self.inc_phase[1, rows] = -0.5
        self.step[rows] = self._step32[i]
        self.size[rows] = self._size32[i]
        self.offset_frames[:, rows] = self._offset32[i]
        self.mask_frames[:, rows] = self._mask32[i]
        np.add(self._frames, self._strike_start[i], out=self.strike_pos[:, v])
        self.strike_end[:, v] = self._strike_start[i] + self._strike_frames
        self.strike_until = max(self.strike_until, frame + self._strike_frames)
        self.highest_active = max(self.highest_active, v + 1)

    def release(self, v: int, frame: int) -> None:
        """Key up: fade out from wherever the level is. During the attack (the first ~3 ms)
        the strike finishes first, like a piano's hammer: the shortest tap is still heard."""
        if self.stage[v] == ATTACK:
            self.release_after_attack[v] = True
            return
        self._set_stage(v, RELEASE, _RELEASE_TARGET,
                        float(self._release_rate[self.pitch[v] - timbre.LOWEST_PITCH]), 0.0, frame)

    def fade(self, v: int, note: tuple | None, frame: int) -> None:
        """Stolen or re-struck: fade fast, then start ``note`` (pitch, velocity, tag, stamp)."""
        self.release_after_attack[v] = False
        if self.stage[v] != IDLE:
            self._set_stage(v, FADE, _FADE_TARGET, self._fade_rate, 0.0, frame)
        self.pending[v] = note is not None
        self.pending_note[v] = note

    def _to_idle(self, v: int) -> None:
        self.level[v] = 0.0
        R = self.rows_per_voice
        self.gain2[:, v * R:(v + 1) * R] = 0.0           # (the renderer relies on it)
        self.strike_gain[:, v] = 0.0
        self._set_stage(v, IDLE, 0.0, 0.0, None, 0)
        self.pitch[v] = -1
        self.amp[v] = 0.0

    def stage_ends(self, v: int, frame: int) -> bool:
        """A stage end the renderer found at ``frame`` (the segment's end): set the level to
        the stage's bound and move to the next stage. Returns True when the voice has a
        pending note to start after this segment."""
        if self.stage[v] == ATTACK:
            self.level[v] = 1.0
            self._set_stage(v, HELD, 1.0, 0.0, None, frame)
            if self.release_after_attack[v]:
                self.release_after_attack[v] = False
                self.release(v, frame)
            return False
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
            return int(releasing[np.argmin(self.level[releasing])]), "steal"
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
