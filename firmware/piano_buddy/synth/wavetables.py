"""Band-limited single-cycle wavetables, two per key: the body and the bright partials.

Why two tables per key, built at start-up:
- One table set per key (88 x 2 x 2048 samples) holds only partials below ``max_partial_hz``
  *for that key*, so no note can alias, and each register gets its own spectrum. It costs
  about 2.9 MB (float32, with the interpolation slopes stored beside the samples), well under
  the 8 MB budget, and 16 voices touch at most 512 KB of it (fits a Pi 4's L2 cache).
- The body table (partials 1..3) plays exactly in tune; the bright table (partials 4 and up)
  plays a little sharp (``timbre.bright_stretch``), which gives the slight inharmonicity of a
  stiff string. The voice fades the bright table faster than the body, so the attack is
  bright and the tone mellows, and harder strikes start brighter.
- Linear interpolation reads ``sample + frac * slope`` from one interleaved (value, slope)
  pair, a single gather per output sample; 2048 points per cycle keep its error far below
  the partials that matter (partials are capped at ``size // 8``, 8 points per cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import timbre

TABLE_SIZE = 2048


@dataclass(frozen=True)
class WavetableBank:
    """All keys' tables in one array, so a voice's table is just an offset into it."""
    sample_rate: int
    size: int
    # (2 * N_PITCHES * size, 2) float32: column 0 the sample, column 1 the slope to the next
    table: np.ndarray
    body_offset: np.ndarray       # (N_PITCHES,) int32: where key i's body table starts
    bright_offset: np.ndarray     # (N_PITCHES,) int32
    stretch: np.ndarray           # (N_PITCHES,) float64: bright table's frequency ratio
    body_partials: tuple          # per key: the partial numbers in the body table
    bright_partials: tuple        # per key: the partial numbers in the bright table
    max_partial_hz: float

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def index(self, pitch: int) -> int:
        return int(pitch) - timbre.LOWEST_PITCH

    def partial_frequencies(self, pitch: int) -> np.ndarray:
        """Every partial this key can sound, in Hz (for tests and plots)."""
        i = self.index(pitch)
        f0 = float(timbre.pitch_hz(pitch))
        body = np.asarray(self.body_partials[i], dtype=np.float64) * f0
        bright = np.asarray(self.bright_partials[i], dtype=np.float64) * f0 * self.stretch[i]
        return np.concatenate([body, bright])


def partial_amplitudes(pitch: int, partials: np.ndarray) -> np.ndarray:
    """The additive spectrum of one key: hammer position comb, 1/k^r roll-off, felt low-pass."""
    f0 = float(timbre.pitch_hz(pitch))
    k = partials.astype(np.float64)
    comb = 0.2 + np.abs(np.sin(math.pi * k * timbre.STRIKE_POSITION))
    rolloff = k ** -float(timbre.register("rolloff", pitch))
    cutoff = float(timbre.register("cutoff_hz", pitch))
    felt = 1.0 / np.sqrt(1.0 + (k * f0 / cutoff) ** 4)
    return comb * rolloff * felt


def _cycle(size: int, partials: np.ndarray, amplitudes: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """One period holding sin(2 pi k n / size + phase) for each partial k (an inverse FFT)."""
    spectrum = np.zeros(size // 2 + 1, dtype=np.complex128)
    spectrum[partials] = amplitudes * np.exp(1j * (phases - math.pi / 2)) * (size / 2)
    return np.fft.irfft(spectrum, size)


@lru_cache(maxsize=4)
def build_wavetables(sample_rate: int = 48000, size: int = TABLE_SIZE,
                     max_partial_hz: float = 20000.0) -> WavetableBank:
    """Build (once per sample rate; cached) the body and bright tables of all 88 keys."""
    if size < 256 or size & (size - 1):
        raise ValueError(f"wavetable size {size} must be a power of two >= 256")
    limit = min(max_partial_hz, 0.45 * sample_rate)
    n = timbre.N_PITCHES
    table = np.zeros((2 * n * size, 2), dtype=np.float32)
    body_offset = np.zeros(n, dtype=np.int32)
    bright_offset = np.zeros(n, dtype=np.int32)
    stretch = np.zeros(n, dtype=np.float64)
    body_partials, bright_partials = [], []
    for i in range(n):
        pitch = timbre.LOWEST_PITCH + i
        f0 = float(timbre.pitch_hz(pitch))
        s = float(timbre.bright_stretch(pitch))
        k_body = np.arange(1, timbre.BODY_PARTIALS + 1)
        k_body = k_body[k_body * f0 <= limit]
        k_max = min(int(limit / (f0 * s)), size // 8)
        k_bright = np.arange(timbre.BODY_PARTIALS + 1, max(k_max, timbre.BODY_PARTIALS) + 1)
        rng = np.random.default_rng(pitch)     # fixed phases: the same tables every start
        body = _cycle(size, k_body, partial_amplitudes(pitch, k_body), np.zeros(len(k_body)))
        bright = _cycle(size, k_bright, partial_amplitudes(pitch, k_bright),
                        rng.uniform(0, 2 * math.pi, len(k_bright)))
        # same loudness for every key: the mix at medium brightness has a unit sine's RMS
        rms = float(np.sqrt(np.mean((body + 0.6 * bright) ** 2)))
        scale = (1.0 / math.sqrt(2.0)) / rms
        for which, cycle in ((0, body), (1, bright)):
            start = (2 * i + which) * size
            cycle = cycle * scale
            table[start:start + size, 0] = cycle
            table[start:start + size, 1] = np.roll(cycle, -1) - cycle
        body_offset[i] = 2 * i * size
        bright_offset[i] = (2 * i + 1) * size
        stretch[i] = s
        body_partials.append(tuple(int(k) for k in k_body))
        bright_partials.append(tuple(int(k) for k in k_bright))
    for arr in (table, body_offset, bright_offset, stretch):
        arr.setflags(write=False)
    return WavetableBank(sample_rate=int(sample_rate), size=size, table=table,
                         body_offset=body_offset, bright_offset=bright_offset, stretch=stretch,
                         body_partials=tuple(body_partials), bright_partials=tuple(bright_partials),
                         max_partial_hz=limit)
