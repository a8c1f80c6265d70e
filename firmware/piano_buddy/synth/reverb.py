"""A small room: a four-line feedback delay network, rendered a block at a time.

Why this shape: every delay line is longer than the chunk being rendered, so a chunk's
output depends only on what was written before it; the whole chunk is then a few numpy
calls over (lines, frames) arrays (a gather, a 4x4 matmul, a two-tap low-pass, a scatter),
with no per-sample loop and no allocation. The Householder feedback matrix is orthogonal
(no line builds up), each line's gain sets the decay time, and the two-tap average in the
loop takes the treble down faster than the bass, as a furnished room does.

Mono-compatible: both channels get positive sums of the lines (left 0+1, right 2+3), so a
mono amplifier's L+R never cancels the room. When every voice has ended, the room's tail
fades over ~0.1 s and its buffers are cleared, so an idle synth is exactly silent.
"""

from __future__ import annotations

import math

import numpy as np

DELAYS_S = (0.0219, 0.0276, 0.0336, 0.0406)
TAIL_FADE_S = 0.04          # after the last voice: the room fades with this time constant


class Reverb:
    def __init__(self, sample_rate: int, block_frames: int, channels: int,
                 amount: float = 0.25, seconds: float = 0.6):
        if not 0.0 <= amount <= 1.0:
            raise ValueError(f"reverb amount {amount} must be within 0..1")
        if not 0.1 <= seconds <= 5.0:
            raise ValueError(f"reverb time {seconds} s must be within 0.1..5")
        self.amount = float(amount)
        n = len(DELAYS_S)
        delays = np.array([max(int(round(d * sample_rate)), 16) for d in DELAYS_S])
        self.chunk = int(min(block_frames, delays.min()))
        size = 1 << int(math.ceil(math.log2(delays.max() + self.chunk + 1)))
        self._mask = size - 1
        self._buf = np.zeros(n * size)
        t = np.arange(self.chunk)
        self._rel_read = (t[None, :] - delays[:, None] + size).astype(np.intp)
        self._rel_write = np.repeat(t[None, :], n, axis=0).astype(np.intp)
        self._base = np.repeat((np.arange(n) * size)[:, None], self.chunk, axis=1).astype(np.intp)
        self._idx = np.zeros((n, self.chunk), dtype=np.intp)
        self._y = np.zeros((n, self.chunk))
        self._z = np.zeros((n, self.chunk))
        self._s = np.zeros((n, self.chunk))
        self._prev = np.zeros((n, 1))
        self._in = np.zeros(self.chunk)
        self._wet = np.zeros((self.chunk, 2))
        self._h = (np.eye(n) - 2.0 / n) * (10 ** (-3.0 * delays / (seconds * sample_rate)))[:, None]
        self._sign = np.array([1.0, -1.0, 1.0, -1.0])[:, None] * 0.5
        self._pos = 0
        self._mix_channels = 1 if channels == 1 else 2
        # the wet level: 0.3 x amount of the dry mix reaches the ear, at a steady state
        self._gain = 0.6 * self.amount
        self._tail = 1.0             # 1 while voices sound; fades once they have all ended
        self._tail_alpha = math.exp(-block_frames / (TAIL_FADE_S * sample_rate))
        self.drained = True

    def process(self, mix: np.ndarray, voices_active: bool) -> None:
        """Add the room to ``mix`` (frames, 1 or 2) in place."""
        if self.amount == 0.0:
            return
        if voices_active:
            self._tail = 1.0
            self.drained = False
        elif self.drained:
            return
        else:
            self._tail *= self._tail_alpha
            if self._tail < 1e-4:
                self._buf.fill(0.0)
                self._prev.fill(0.0)
                self.drained = True
                return
        frames = len(mix)
        pos = 0
        gain = self._gain * self._tail
        while pos < frames:
            n = min(self.chunk, frames - pos)
            self._chunk(mix[pos:pos + n], n, gain)
            pos += n

    def _chunk(self, mix: np.ndarray, n: int, gain: float) -> None:
        idx, y, z, s = self._idx[:, :n], self._y[:, :n], self._z[:, :n], self._s[:, :n]
        # every line's output for this chunk (written at least one chunk ago)
        np.add(self._rel_read[:, :n], self._pos, out=idx)
        np.bitwise_and(idx, self._mask, out=idx)
        np.add(idx, self._base[:, :n], out=idx)
        np.take(self._buf, idx, out=y)
        # the dry input, mono (before the room is added to the mix)
        inp = self._in[:n]
        if mix.shape[1] == 1:
            np.copyto(inp, mix[:, 0])
        else:
            np.add(mix[:, 0], mix[:, 1], out=inp)
        # feedback: orthogonal mix with each line's decay gain, then a two-tap low-pass
        np.matmul(self._h, y, out=z)
        s[:, 1:] = z[:, :n - 1]
        s[:, :1] = self._prev
        self._prev[:, 0] = z[:, n - 1]
        np.add(z, s, out=z)
        np.multiply(z, 0.5, out=z)
        np.multiply(self._sign, inp, out=s)       # into every line, alternating signs
        np.add(z, s, out=z)
        np.add(self._rel_write[:, :n], self._pos, out=idx)
        np.bitwise_and(idx, self._mask, out=idx)
        np.add(idx, self._base[:, :n], out=idx)
        np.put(self._buf, idx, z)
        # out: left = lines 0 + 1, right = lines 2 + 3
        wet = self._wet[:n]
        np.add(y[0], y[1], out=wet[:, 0])
        np.add(y[2], y[3], out=wet[:, 1])
        if mix.shape[1] == 1:
            np.add(wet[:, 0], wet[:, 1], out=wet[:, 0])
            np.multiply(wet[:, :1], 0.5 * gain, out=wet[:, :1])
            np.add(mix, wet[:, :1], out=mix, casting="same_kind")
        else:
            np.multiply(wet, gain, out=wet)
            np.add(mix, wet, out=mix, casting="same_kind")
        self._pos = (self._pos + n) & self._mask
