"""The last stage: master gain (the volume knob), an RMS compressor, a look-at-the-block
limiter, a soft clip that makes the ceiling a hard guarantee, and the conversion to int16.

Why a compressor before the limiter: a peak limiter alone holds a loud chord up at the
ceiling for as long as it rings (it fell 2.4 dB in 2.7 s where a piano falls 25 dB), and
ducks hard at every new strike of a mash. The compressor follows the mix's smoothed RMS
(20 ms attack, 150 ms release) above a threshold, at a gentle ratio, and keeps its recent
peaks under ``COMP_PEAK_TARGET``. Its gain may fall slowly by itself
(``COMP_MAX_DOWN_DB_S``) and faster only as far as new strikes allow: every note started
(the synth counts them in ``strikes``) lets it catch up by ``COMP_STRIKE_DB`` more (30 ms
time constant), so a mash gets quieter by under 1 dB per strike from its very first
strike on, while one big chord (many strikes at once) lets it come down ~9 dB within
~0.1 s; it recovers at ``COMP_MAX_UP_DB_S``, so a chord's decay still shows. The limiter
is left for sudden loud blocks: a single v127 note's attack, the first strikes of a mash,
a chord's first few tenths of a second.

Why this shape: the mix is computed a whole block before it is played, so the limiter can
see the block's peak and lower its gain before the loud samples go out (no overshoot
waiting for an attack time). Gain changes, the knob's and the limiter's, are ramped
linearly across the block, so they never step (no zipper noise). A ramp that starts from a
higher gain could still let the first samples of a sudden loud block through; the soft clip
catches those: linear up to ``KNEE`` of the ceiling, then a tanh curve that approaches the
ceiling and never reaches it. With every voice at full velocity, the output stays under the
ceiling by construction, not by tuning.
"""

from __future__ import annotations

import math

import numpy as np

_max = np.maximum.reduce
KNEE = 0.90                 # of the ceiling: the soft clip is linear below this
LIMIT_TARGET = 0.88         # the limiter aims the block peak here, just under the knee
LIMIT_RELEASE_S = 0.25      # limiter gain recovers with this time constant
GAIN_SMOOTH_S = 0.03        # the volume knob glides with this time constant
COMP_THRESHOLD_DB = -13.0   # RMS re the ceiling above which the compressor works
COMP_RATIO = 3.0
COMP_ATTACK_S = 0.020
COMP_RELEASE_S = 0.150
COMP_MAX_DOWN_DB_S = 2.0    # its gain falls at most this fast by itself ...
COMP_STRIKE_DB = 0.6        # ... and this much more per note started (spent as it catches
COMP_STRIKE_KEEP_S = 0.15   # up; what is not spent fades with this time constant, and a
                            # block's strikes replace what is left, they never pile up)
COMP_MAX_UP_DB_S = 1.0      # ... and recovers at most this fast (a chord still decays)
COMP_PEAK_TARGET = 0.80     # ... and keeps block peaks (held 0.3 s) under this, so that in
COMP_PEAK_HOLD_S = 0.3      # a mash the limiter has little left to do (held, then falling)
COMP_FAST_S = 0.030         # catching up (within the strikes' allowance): this time constant
COMP_DEADBAND_DB = 0.8      # and holds still while within this of where it should be: the
                            # detector ripples with the waveform, a moving gain would be AM


class OutputStage:
    def __init__(self, sample_rate: int, block_frames: int, channels: int,
                 ceiling_dbfs: float, gain: float):
        if not -60.0 <= ceiling_dbfs <= 0.0:
            raise ValueError(f"ceiling_dbfs {ceiling_dbfs} must be within -60..0 dBFS")
        self.ceiling = 10.0 ** (ceiling_dbfs / 20.0)
        self.channels = channels
        self.block_frames = block_frames
        self.target_gain = self._clamp(gain)
        self.gain = self.target_gain
        self.limiter_gain = 1.0
        self._gain_alpha = 1.0 - math.exp(-block_frames / (GAIN_SMOOTH_S * sample_rate))
        self._release_alpha = 1.0 - math.exp(-block_frames / (LIMIT_RELEASE_S * sample_rate))
        mix_channels = 2 if channels > 1 else 1
        # ramps as full (block, channels) arrays: same-shape operands need no numpy buffers
        self._ramp = np.repeat((np.arange(1, block_frames + 1, dtype=np.float32)
                                / block_frames)[:, None], mix_channels, axis=1)
        self._gain_ramp = np.empty((block_frames, mix_channels), dtype=np.float32)
        self._scratch = np.empty((block_frames, mix_channels), dtype=np.float32)
        self._scratch_flat = self._scratch.reshape(-1)   # 1-D max: numpy 1.26 buffers a 2-D one
        self._sign = np.empty_like(self._scratch)
        self._soft = np.empty_like(self._scratch)
        # whole LSBs: the soft clip stays under 1, so rounding can never pass the ceiling
        self._int_scale = float(math.floor(32767.0 * self.ceiling))
        self.limited_blocks = 0
        self.clipped_blocks = 0
        # compressor: smoothed mean square, gain in dB, per-block coefficients
        seconds = block_frames / sample_rate
        self.comp_power = 0.0
        self.comp_peak = 0.0
        self._comp_peak_fall = math.exp(-seconds / COMP_PEAK_HOLD_S)
        self._comp_peak_hold = int(math.ceil(COMP_PEAK_HOLD_S / seconds))
        self._comp_peak_age = 0
        self._comp_moving = False
        self._comp_fast = 1.0 - math.exp(-seconds / COMP_FAST_S)
        self.strikes = 0             # notes started since the last block (the synth counts)
        self.comp_allowance_db = 0.0
        self._comp_keep = math.exp(-seconds / COMP_STRIKE_KEEP_S)
        self.float_out = None        # (block, channels) float32: set to keep unrounded output
        self.comp_gain_db = 0.0
        self.compressor_gain = 1.0
        self._comp_attack = 1.0 - math.exp(-seconds / COMP_ATTACK_S)
        self._comp_release = 1.0 - math.exp(-seconds / COMP_RELEASE_S)
        self._comp_down = COMP_MAX_DOWN_DB_S * seconds
        self._comp_up = COMP_MAX_UP_DB_S * seconds
        self._comp_threshold = 10 ** (COMP_THRESHOLD_DB / 10)     # as a mean square
        self._mix_flat_len = block_frames * mix_channels

    @staticmethod
    def _clamp(gain: float) -> float:
        gain = float(gain)
        if not gain == gain:       # NaN: keep silent rather than raise in someone's thread
            return 0.0
        return min(max(gain, 0.0), 1.0)

    def set_gain(self, gain: float) -> None:
        self.target_gain = self._clamp(gain)

    def process(self, mix: np.ndarray, out: np.ndarray) -> None:
        """mix: (block, 1 or 2) float32 in ceiling units, overwritten. out: (block, channels)."""
        # the knob: glide one step per block
        old_gain = self.gain
        diff = self.target_gain - old_gain
        self.gain = self.target_gain if abs(diff) < 2e-3 else old_gain + diff * self._gain_alpha
        # the compressor: the smoothed RMS of this block (after the knob) sets its gain
        flat = mix.reshape(-1)
        power = float(np.dot(flat, flat)) / self._mix_flat_len * self.gain * self.gain
        alpha = self._comp_attack if power > self.comp_power else self._comp_release
        self.comp_power += alpha * (power - self.comp_power)
        old_comp = self.compressor_gain
        if self.comp_power > self._comp_threshold:
            wanted_db = -10 * math.log10(self.comp_power / self._comp_threshold) * (1 - 1 / COMP_RATIO)
        else:
            wanted_db = 0.0
        np.abs(mix, self._scratch)
        raw_peak = float(_max(self._scratch_flat))
        level = raw_peak * self.gain
        if level >= self.comp_peak:
            self.comp_peak, self._comp_peak_age = level, 0
        else:                          # hold the peak for a while, then let it fall
            self._comp_peak_age += 1
            if self._comp_peak_age > self._comp_peak_hold:
                self.comp_peak *= self._comp_peak_fall
        if self.comp_peak > COMP_PEAK_TARGET:
            wanted_db = min(wanted_db, 20 * math.log10(COMP_PEAK_TARGET / self.comp_peak))
        # hysteresis: start moving when off by more than the deadband, then move steadily
        # until there (one smooth ramp, not a jerky one that would modulate the tone)
        error = wanted_db - self.comp_gain_db
        if abs(error) > COMP_DEADBAND_DB or (wanted_db == 0.0 and error > 0):
            self._comp_moving = True
        allowance = self.comp_allowance_db * self._comp_keep
        if self.strikes:
            allowance = max(allowance, self.strikes * COMP_STRIKE_DB)
            self.strikes = 0
        if self._comp_moving:
            down = self._comp_down
            if error < -down:          # catch up, as far as the strikes allow
                fast = min(-error * self._comp_fast, allowance)
                allowance -= fast
                down += fast
            step = min(max(error, -down), self._comp_up)
            self.comp_gain_db += step
            if abs(error) <= abs(step) + 1e-9 or abs(error) < 0.05:
                self._comp_moving = False
        self.comp_allowance_db = allowance
        self.compressor_gain = 10 ** (self.comp_gain_db / 20)
        # the limiter: the gain that puts this block's peak at LIMIT_TARGET
        peak = raw_peak * self.gain * self.compressor_gain
        old_limit = self.limiter_gain
        wanted = LIMIT_TARGET / peak if peak > LIMIT_TARGET else 1.0
        if wanted < old_limit:
            self.limiter_gain = wanted                    # duck within this block
            self.limited_blocks += 1
        else:
            self.limiter_gain = old_limit + (wanted - old_limit) * self._release_alpha
            if self.limiter_gain > 0.9999:
                self.limiter_gain = 1.0
        start = old_gain * old_comp * old_limit
        end = self.gain * self.compressor_gain * self.limiter_gain
        clip = raw_peak * max(start, end) > KNEE
        if not clip:                   # the usual case: gain and int16 scale in one ramp
            start, end = start * self._int_scale, end * self._int_scale
        if start == end:
            np.multiply(mix, start, mix)
        else:
            np.multiply(self._ramp, end - start, self._gain_ramp)
            np.add(self._gain_ramp, start, self._gain_ramp)
            np.multiply(mix, self._gain_ramp, mix)
        if clip:
            self._soft_clip(mix)
            np.multiply(mix, self._int_scale, mix)
        if self.float_out is not None:       # measuring below 16-bit rounding (offline)
            np.copyto(self.float_out, mix)
        np.rint(mix, mix)
        if self.channels <= 2:
            np.copyto(out, mix, casting="unsafe")
        else:                      # extra channels repeat left, right
            for c in range(self.channels):
                np.copyto(out[:, c], mix[:, c % 2], casting="unsafe")

    def _soft_clip(self, mix: np.ndarray) -> None:
        """Linear below KNEE; above it KNEE + (1 - KNEE) * tanh(excess / (1 - KNEE)) < 1,
        written as x + sign(x) * ((1 - KNEE) * tanh(e / (1 - KNEE)) - e), e = max(|x| - KNEE, 0)."""
        self.clipped_blocks += 1
        e, s, t = self._scratch, self._sign, self._soft
        np.abs(mix, e)
        np.subtract(e, KNEE, e)
        np.maximum(e, 0.0, out=e)
        np.multiply(e, 1.0 / (1.0 - KNEE), t)
        np.tanh(t, t)
        np.multiply(t, 1.0 - KNEE, t)
        np.subtract(t, e, t)
        np.sign(mix, s)
        np.multiply(t, s, t)
        np.add(mix, t, mix)
