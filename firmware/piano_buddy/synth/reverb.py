"""A small room: a four-line feedback delay network, rendered a block at a time.

Why this shape: every delay line is longer than the chunk being rendered, so a chunk's
output depends only on what was written before it; the whole chunk is then a few numpy
calls over (lines, frames) arrays with no per-sample loop and no allocation: one gather of
two taps per line, one matmul for the feedback (and the input), one scatter, and one
matmul that adds the room to the dry mix. The Householder feedback matrix is orthogonal
(no line builds up), each line's gain sets the decay time, and the two taps (delay d and
d + 1, summed inside the feedback matmul) are a two-tap average in the loop, which takes
the treble down faster than the bass, as a furnished room does.

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
        mc = 1 if channels == 1 else 2
        self._mc = mc
        delays = np.array([max(int(round(d * sample_rate)), 16) for d in DELAYS_S])
        self.chunk = c = int(min(block_frames, delays.min() - 1))
        size = 1 << int(math.ceil(math.log2(delays.max() + c + 2)))
        self._size = size
        self._buf = np.zeros(n * size, dtype=np.float32)   # float32 like the mix: no casts
        self._delays = delays
        # gather/scatter indices of a chunk at every position the write head can take
        # (one table lookup per chunk); positions repeat when the chunk divides the size
        taps = np.concatenate([delays, delays + 1])
        lines = np.concatenate([np.arange(n), np.arange(n)])
        self._cycle = size // c if size % c == 0 else 0
        self._read_idx = self._write_idx = None
        if self._cycle:
            self._read_idx = np.stack([self._indices(k * c, c, taps, lines) for k in range(self._cycle)])
            self._write_idx = np.stack([self._indices(k * c, c, 0 * delays, np.arange(n))
                                        for k in range(self._cycle)])
        # per chunk length (a block is whole chunks plus one remainder): contiguous scratch
        # arrays, so that gathers, scatters and matmuls never copy
        self._scratch = {}
        for m in {c, block_frames % c or c}:
            t = np.arange(m)[None, :]
            self._scratch[m] = (
                np.zeros((2 * n, m), dtype=np.intp),                      # read indices
                (t - taps[:, None] + size).astype(np.intp),               # read, re the head
                (np.repeat((lines * size)[:, None], m, axis=1)).astype(np.intp),
                np.zeros((n, m), dtype=np.intp),                          # write indices
                np.repeat(t, n, axis=0).astype(np.intp),                  # write, re the head
                np.repeat((np.arange(n) * size)[:, None], m, axis=1).astype(np.intp),
                np.zeros((2 * n + mc, m), dtype=np.float32),              # taps + the dry mix
                np.zeros((n, m), dtype=np.float32))                       # what is written
        gains = 10 ** (-3.0 * delays / (seconds * sample_rate))
        h = (np.eye(n) - 2.0 / n) * gains[:, None]                # Householder x decay
        inject = np.array([1.0, -1.0, 1.0, -1.0])[:, None] * 0.5  # alternating signs
        # z = 0.5 (H (tap d + tap d+1) + inject (L + R)): the two-tap average and the mono
        # input in one matmul
        self._h = (0.5 * np.hstack([h, h] + [inject] * mc)).astype(np.float32)
        out_unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
        if channels == 1:
            out_unit = np.full((n, 1), 0.5, dtype=np.float32)
        # mix = [taps; dry].T @ [wet gain x out_unit (both taps); identity]
        self._out_unit = np.vstack([out_unit, out_unit])
        self._out = np.vstack([self._out_unit, np.eye(mc, dtype=np.float32)])
        # the views a whole chunk needs, made once: (read indices, write indices) per
        # position of the head, and the scratch's taps, dry rows and their transposes
        self._cycle_idx = ([(self._read_idx[k], self._write_idx[k]) for k in range(self._cycle)]
                           if self._cycle else [])
        self._views = {m: (sc[6][:2 * n], sc[6][2 * n:], sc[6].T) for m, sc in self._scratch.items()}
        self._pos = 0
        self._gain = 0.6 * self.amount
        self._tail = 1.0             # 1 while voices sound; fades once they have all ended
        self._tail_alpha = math.exp(-block_frames / (TAIL_FADE_S * sample_rate))
        self._last_gain = -1.0
        self.drained = True

    def _indices(self, pos: int, n: int, taps: np.ndarray, lines: np.ndarray) -> np.ndarray:
        t = np.arange(n)[None, :]
        return ((pos + t - taps[:, None]) % self._size + lines[:, None] * self._size).astype(np.intp)

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
                self.drained = True
                return
        gain = self._gain * self._tail
        if gain != self._last_gain:
            np.multiply(self._out_unit, gain, self._out[:2 * self.n_lines])
            self._last_gain = gain
        frames = len(mix)
        if frames == self.chunk:
            self._chunk(mix, frames)
            return
        pos = 0
        while pos < frames:
            n = min(self.chunk, frames - pos)
            self._chunk(mix[pos:pos + n], n)
            pos += n

    def _chunk(self, mix: np.ndarray, n: int) -> None:
        ridx, rel_read, rbase, widx, rel_write, wbase, y, z = self._scratch[n]
        taps, dry, y_t = self._views[n]
        if self._cycle and n == self.chunk and self._pos % self.chunk == 0:
            read, write = self._cycle_idx[self._pos // self.chunk]
        else:
            read, write = ridx, widx
            for idx, rel, base in ((ridx, rel_read, rbase), (widx, rel_write, wbase)):
                np.add(rel, self._pos, idx)
                np.bitwise_and(idx, self._size - 1, idx)
                np.add(idx, base, idx)
        # both taps of every line for this chunk (written at least one chunk ago), and the
        # dry mix (before the room is added to it)
        self._buf.take(read, None, taps, "clip")            # (mode "raise" copies)
        np.copyto(dry, mix.T)
        np.dot(self._h, y, z)
        self._buf.put(write, z, "clip")
        # out: dry + left = lines 0 + 1, right = lines 2 + 3, times the wet gain
        np.dot(y_t, self._out, mix)
        self._pos = (self._pos + n) % self._size
