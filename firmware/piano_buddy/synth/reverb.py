"""A small room: a four-line feedback delay network, rendered a block at a time.

Why this shape: every delay line is longer than the chunk being rendered, so a chunk's
output depends only on what was written before it; the whole chunk is then a few numpy
calls over (lines, frames) arrays (a gather, a 4x4 matmul, a two-tap low-pass, a scatter),
with no per-sample loop and no allocation. The Householder feedback matrix is orthogonal
(no line builds up), each line's gain sets the decay time, and the two-tap average in the
loop takes the treble down faster than the bass, as a furnished room does.

Mono-compatible: both channels get positive sums of the lines (left 0+1, right 2+3), so a
mono amplifier's L+R never cancels the room. When every voice has ended, the room's tail
fades over ~0.2 s and its buffers are cleared, so an idle synth is exactly silent.
"""

from __future__ import annotations

import math

import numpy as np

DELAYS_S = (0.0219, 0.0276, 0.0336, 0.0406)
TAIL_FADE_S = 0.025         # after the last voice: the room fades with this time constant


class Reverb:
    def __init__(self, sample_rate: int, block_frames: int, channels: int,
                 amount: float = 0.25, seconds: float = 0.6):
        if not 0.0 <= amount <= 1.0:
            raise ValueError(f"reverb amount {amount} must be within 0..1")
        if not 0.1 <= seconds <= 5.0:
            raise ValueError(f"reverb time {seconds} s must be within 0.1..5")
        self.amount = float(amount)
        self.n_lines = n = len(DELAYS_S)
        delays = np.array([max(int(round(d * sample_rate)), 16) for d in DELAYS_S])
        self.chunk = c = int(min(block_frames, delays.min()))
        size = 1 << int(math.ceil(math.log2(delays.max() + c + 1)))
        self._size = size
        self._buf = np.zeros(n * size, dtype=np.float32)   # float32 like the mix: no casts
        self._delays = delays
        # gather/scatter indices of a chunk at every position the write head can take
        # (one table lookup per chunk); positions repeat when the chunk divides the size
        self._cycle = size // c if size % c == 0 else 0
        self._read_idx = self._write_idx = None
        if self._cycle:
            self._read_idx = np.stack([self._indices(k * c, c, delays) for k in range(self._cycle)])
            self._write_idx = np.stack([self._indices(k * c, c, 0 * delays) for k in range(self._cycle)])
        # per chunk length (a block is whole chunks plus one remainder): contiguous scratch
        # arrays, so that gathers, scatters and ufuncs never copy
        self._scratch = {}
        for m in {c, block_frames % c or c}:
            t = np.arange(m)[None, :]
            self._scratch[m] = (
                np.zeros((n, m), dtype=np.intp),                          # indices
                (t - delays[:, None] + size).astype(np.intp),             # read, re the head
                np.repeat(t, n, axis=0).astype(np.intp),                  # write, re the head
                np.repeat((np.arange(n) * size)[:, None], m, axis=1).astype(np.intp),
                np.zeros((n + 1, m), dtype=np.float32),                   # lines + the input
                np.zeros((n, m), dtype=np.float32),                       # feedback
                np.zeros((n, m), dtype=np.float32),                       # feedback, delayed
                np.zeros((m, 1 if channels == 1 else 2), dtype=np.float32))   # wet out
        self._prev = np.zeros((n, 1), dtype=np.float32)
        gains = 10 ** (-3.0 * delays / (seconds * sample_rate))
        h = (np.eye(n) - 2.0 / n) * gains[:, None]                # Householder x decay
        inject = np.array([1.0, -1.0, 1.0, -1.0])[:, None] * 0.5  # alternating signs
        self._h = (0.5 * np.hstack([h, inject])).astype(np.float32)   # 0.5: two-tap average
        self._out_unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
        if channels == 1:
            self._out_unit = np.full((n, 1), 0.5, dtype=np.float32)
        self._out = np.zeros_like(self._out_unit)
        self._pos = 0
        self._gain = 0.6 * self.amount
        self._tail = 1.0             # 1 while voices sound; fades once they have all ended
        self._tail_alpha = math.exp(-block_frames / (TAIL_FADE_S * sample_rate))
        self._last_gain = -1.0
        self.drained = True

    def _indices(self, pos: int, n: int, delays: np.ndarray) -> np.ndarray:
        t = np.arange(n)[None, :]
        lines = np.arange(self.n_lines)[:, None]
        return ((pos + t - delays[:, None]) % self._size + lines * self._size).astype(np.intp)

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
        gain = self._gain * self._tail
        if gain != self._last_gain:
            np.multiply(self._out_unit, gain, out=self._out)
            self._last_gain = gain
        frames = len(mix)
        pos = 0
        while pos < frames:
            n = min(self.chunk, frames - pos)
            self._chunk(mix[pos:pos + n], n)
            pos += n

    def _lookup(self, write: bool, n: int) -> np.ndarray:
        if self._cycle and n == self.chunk and self._pos % self.chunk == 0:
            table = self._write_idx if write else self._read_idx
            return table[self._pos // self.chunk]
        idx, rel_read, rel_write, base = self._scratch[n][:4]
        np.add(rel_write if write else rel_read, self._pos, out=idx)
        np.bitwise_and(idx, self._size - 1, out=idx)
        np.add(idx, base, out=idx)
        return idx

    def _chunk(self, mix: np.ndarray, n: int) -> None:
        y, z, s, wet = self._scratch[n][4:]
        lines = y[:self.n_lines]
        # every line's output for this chunk (written at least one chunk ago), and the dry
        # input, mono, in the last row (before the room is added to the mix)
        np.take(self._buf, self._lookup(False, n), out=lines, mode="clip")   # "raise" copies
        if mix.shape[1] == 1:
            np.copyto(y[self.n_lines], mix[:, 0])
        else:
            np.add(mix[:, 0], mix[:, 1], out=y[self.n_lines])
        # feedback and input in one matmul, then the two-tap low-pass (z[t] + z[t-1])
        np.matmul(self._h, y, out=z)
        s[:, 1:] = z[:, :n - 1]
        s[:, :1] = self._prev
        self._prev[:, 0] = z[:, n - 1]
        np.add(z, s, out=z)
        np.put(self._buf, self._lookup(True, n), z, mode="clip")
        # out: left = lines 0 + 1, right = lines 2 + 3, times the wet gain
        np.matmul(lines.T, self._out, out=wet)
        np.add(mix, wet, out=mix)
        self._pos = (self._pos + n) % self._size
