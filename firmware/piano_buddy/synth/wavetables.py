"""Band-limited wavetables built from the analysed piano: per key, a fast and a slow table
for each band of partials, and a strike-noise burst for every analysed key.

Why this layout, built at start-up (about 0.1 s, cached per sample rate):
- A single-cycle table can only hold harmonic partials, so each band of partials
  (``timbre.BANDS``) gets its own table, played at its own stretch: inharmonicity then grows
  with the partial number band by band, while partials 1-2 keep the key in tune.
- The fast and slow tables of a band hold the analysed amplitudes of the two decay stages;
  the voice plays them with their own decay rates and a slight detune, which gives the
  two-stage decay and the beating of unison strings with no per-sample work.
- Every table holds only partials below ``max_partial_hz`` for its key and at most one per
  eight points of the cycle (linear interpolation's images then stay far down), so no note
  can alias. Tables of a band have one size (``timbre.BAND_TABLE_SIZE``): small for the low
  partials, 2048 for the many upper ones; a voice row reads its table through an offset and
  a mask.
- The strike is a burst of noise shaped like the reference's off-partial spectrum (plus a
  low knock in the bass), played once at one sample per frame (no interpolation, so it is
  kept as plain samples in ``strike``, only as long as it is not zero: ~75 ms).
- Linear interpolation reads ``midpoint + (frac - 0.5) * slope`` from one interleaved
  (value half-way to the next sample, slope) pair: a single gather per output sample, and
  the renderer finds the index by rounding the phase less half a sample (engine.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import timbre

TABLE_SIZE = max(timbre.BAND_TABLE_SIZE)      # the largest cycle (kept for callers)
LN_DB = math.log(10.0) / 20.0                 # dB -> natural-log units


@dataclass(frozen=True)
class WavetableBank:
    """All band tables in one (samples, 2) float32 array of (midpoint, slope) pairs; a voice
    row finds its table by offset and size. The strike bursts are ``strike`` (anchors,
    samples) float32, a key's burst is row ``row_offset[key, STRIKE_ROW]``. Per key and row:
    the frequency ratio to the key's f0 (1 for the strike), the decay rate and the gain."""
    sample_rate: int
    table: np.ndarray
    strike: np.ndarray            # (anchors, samples) float32: the bursts, up to their end
    row_offset: np.ndarray        # (keys, rows) intp
    row_size: np.ndarray          # (keys, rows) intp, powers of two
    row_ratio: np.ndarray         # (keys, rows) float64
    row_rate: np.ndarray          # (keys, rows) float64, natural-log decay per second
    row_gain: np.ndarray          # (keys, rows) float64 (loudness trim; strike gain)
    row_velocity_exponent: np.ndarray   # (rows,) brightness: gain ~ (v / v_ref) ** exponent
    release_s: np.ndarray         # (keys,) release time constant
    partials: tuple               # per key: ((frequencies of every component), ...)
    max_partial_hz: float

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + self.strike.nbytes)

    def index(self, pitch: int) -> int:
        return int(pitch) - timbre.LOWEST_PITCH

    def partial_frequencies(self, pitch: int) -> np.ndarray:
        """Every partial this key can sound (each band's fast and slow component), in Hz."""
        return np.asarray(self.partials[self.index(pitch)], dtype=np.float64)


def _cycle(size: int, harmonics: np.ndarray, amplitudes: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """One period holding a_k sin(2 pi k n / size + phase_k) for each harmonic k."""
    spectrum = np.zeros(size // 2 + 1, dtype=np.complex128)
    spectrum[harmonics] = amplitudes * np.exp(1j * (phases - math.pi / 2)) * (size / 2)
    return np.fft.irfft(spectrum, size)


def _extended_amplitudes(pitch: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The analysed (fast, slow) amplitudes of partials 1..count; above the analysed ones the
    spectrum continues from the last few, falling as 1/n^4 (a felt hammer's roll-off)."""
    fast, slow = timbre.partial_amplitudes(pitch)
    n_an = len(fast)
    if count <= n_an:
        return fast[:count], slow[:count]
    n = np.arange(n_an + 1, count + 1, dtype=np.float64)
    tail = (n / n_an) ** -4.0

    def last(a):                       # the last few analysed partials' level (dB mean)
        return 10 ** np.mean(np.log10(np.maximum(a[-4:], 1e-9)))
    return np.concatenate([fast, last(fast) * tail]), np.concatenate([slow, last(slow) * tail])


def _strike_burst(anchor: dict, sample_rate: int, rng: np.random.Generator,
                  partial_power: float) -> np.ndarray:
    """Noise with the anchor's off-partial octave spectrum, shaped in time so that, played
    under the row's own fade (``timbre.STRIKE_FADE_DB`` per ``STRIKE_SIZE`` samples), it
    decays with the key's knock time and ends at ``timbre.STRIKE_END_S``; scaled so its
    first 30 ms carry the analysed share of the note's energy."""
    n = timbre.STRIKE_SIZE
    pitch = anchor["pitch"]
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    centres = np.log2(np.asarray(timbre.table()["octave_bands_hz"], dtype=np.float64))
    shape_db = np.interp(np.log2(np.maximum(freqs, 20.0)), centres, anchor["strike_db"])
    shape = 10 ** (shape_db / 20) * (freqs > timbre.STRIKE_HIGHPASS_HZ) * (freqs < 0.45 * sample_rate)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
    t = np.arange(n) / sample_rate
    row_tau = n / sample_rate / (timbre.STRIKE_FADE_DB * LN_DB)
    knock_tau = float(timbre.register("strike_decay_s", pitch))
    onset = 1.0 - np.exp(-t / timbre.STRIKE_ONSET_S)
    burst = noise * onset * np.exp(-t / knock_tau)
    # energy share: the reference's off-partial bands, re its whole first 30 ms
    share = float(np.sum(10 ** (np.asarray(anchor["strike_db"]) / 10)))
    share = min(share, 0.9)
    first = t < 0.030
    want = partial_power * 0.030 * share / (1 - share)
    burst *= math.sqrt(want / max(np.sum(burst[first] ** 2) / sample_rate, 1e-30))
    thump = float(timbre.register("thump", pitch))
    if thump > 0:
        knock = np.sin(2 * math.pi * timbre.THUMP_HZ * t) * onset * np.exp(-t / timbre.THUMP_DECAY_S)
        rms = math.sqrt(np.mean(burst[first] ** 2)) / max(math.sqrt(np.mean(knock[first] ** 2)), 1e-30)
        burst = burst + thump * rms * knock
    # the knock is over by STRIKE_END_S: a raised-cosine fade after STRIKE_HOLD_S, so
    # nothing of it is left under the ringing partials (the samples after it are zeros)
    hold, end = timbre.STRIKE_HOLD_S, timbre.STRIKE_END_S
    fade = np.clip((end - t) / (end - hold), 0.0, 1.0)
    return burst * np.exp(t / row_tau) * np.sin(0.5 * math.pi * fade) ** 2


def clear_caches() -> None:
    """Forget the built tables and the loaded analysis (after the table file changed)."""
    timbre.clear_cache()
    build_wavetables.cache_clear()


@lru_cache(maxsize=4)
def build_wavetables(sample_rate: int = 48000, max_partial_hz: float = 20000.0) -> WavetableBank:
    """Build (once per sample rate; cached) every key's band tables and the strike bursts."""
    limit = min(max_partial_hz, 0.45 * sample_rate)
    n_keys, rows = timbre.N_PITCHES, timbre.ROWS_PER_VOICE
    keys_table = timbre.table()["keys"]
    per_key = 2 * sum(timbre.BAND_TABLE_SIZE)
    total = n_keys * per_key
    table = np.zeros((total, 2), dtype=np.float32)
    row_offset = np.zeros((n_keys, rows), dtype=np.intp)
    row_size = np.zeros((n_keys, rows), dtype=np.intp)
    row_ratio = np.zeros((n_keys, rows))
    row_rate = np.zeros((n_keys, rows))
    row_gain = np.ones((n_keys, rows))
    release_s = np.zeros(n_keys)
    partials = []
    pos = 0

    def put(cycle: np.ndarray) -> int:
        nonlocal pos
        start = pos
        slope = np.roll(cycle, -1) - cycle
        table[start:start + len(cycle), 0] = cycle + 0.5 * slope     # the midpoint
        table[start:start + len(cycle), 1] = slope
        pos += len(cycle)
        return start

    # one scale for every key: the analysed C4 at velocity 80 has a unit sine's RMS
    f60, s60 = timbre.partial_amplitudes(60)
    norm = (1.0 / math.sqrt(2.0)) / math.sqrt(float(np.sum((f60 + s60) ** 2)) / 2)
    anchor_power = {}
    for i in range(n_keys):
        pitch = timbre.LOWEST_PITCH + i
        f0 = float(timbre.pitch_hz(pitch))
        stretch = timbre.band_stretch(pitch)
        unison = timbre.unison_ratio(pitch)
        rates = timbre.band_rates_db_s(pitch) * LN_DB         # (bands, fast/slow)
        n_all = int(limit / f0) + 1
        fast, slow = _extended_amplitudes(pitch, max(n_all, 2))
        fast, slow = fast * norm, slow * norm
        rng = np.random.default_rng(pitch)            # fixed phases: the same every start
        phases = rng.uniform(0, 2 * math.pi, len(fast))
        freqs = []
        power = 0.0
        for b, ((lo, hi), size) in enumerate(zip(timbre.BANDS, timbre.BAND_TABLE_SIZE)):
            top = min(hi or 10 ** 6, timbre.MAX_BAND_PARTIALS[b], size // 8)
            pair = (fast, slow)
            if b in timbre.TWO_STRING_BANDS and rates[b, 0] >= timbre.TWO_STRING_FAST_DB_S * LN_DB:
                # this band's fast stage is over within the attack: its rows
                # play two strings of the slow stage instead, detuned, so they beat
                share = timbre.SECOND_STRING_SHARE
                pair = (slow * share, slow * (1.0 - share))
                rates[b, 0] = rates[b, 1] * timbre.SECOND_STRING_RATE
            for c, amps in enumerate(pair):
                ratio = stretch[b] * (unison[b] if c == 1 else 1.0)
                k = np.arange(lo, top + 1)
                k = k[(k * f0 * ratio <= limit) & (k <= len(amps))]
                r = 2 * b + c
                row_offset[i, r] = put(_cycle(size, k, amps[k - 1], phases[k - 1]) if len(k)
                                       else np.zeros(size))
                row_size[i, r] = size
                row_ratio[i, r] = ratio
                row_rate[i, r] = rates[b, c]
                freqs.extend(k * f0 * ratio)
                power += float(np.sum(amps[k - 1] ** 2) / 2)
        loud = 10 ** (timbre.loudness_db(pitch) / 20)
        row_gain[i, :timbre.STRIKE_ROW] = loud
        row_gain[i, timbre.STRIKE_ROW] = loud * 10 ** (timbre.key_value("strike_gain_db", pitch) / 20)
        t = -timbre.RELEASE_TARGET               # time constant: -60 dB at the key's R60
        release_s[i] = timbre.release_r60_s(pitch) / math.log((1 + t) / (1e-3 + t))
        partials.append(tuple(sorted(freqs)))
        anchor_power[pitch] = power
    bursts = []
    for j, anchor in enumerate(keys_table):
        rng = np.random.default_rng(1000 + anchor["pitch"])
        power = anchor_power[min(max(anchor["pitch"], timbre.LOWEST_PITCH), timbre.HIGHEST_PITCH)]
        bursts.append(_strike_burst(anchor, sample_rate, rng, power).astype(np.float32))
    length = 1 + max(int(np.flatnonzero(b).max()) for b in bursts)   # zeros after STRIKE_END_S
    strike = np.ascontiguousarray(np.stack(bursts)[:, :length])
    for i in range(n_keys):
        r = timbre.STRIKE_ROW
        row_offset[i, r] = timbre.strike_anchor(timbre.LOWEST_PITCH + i)
        row_size[i, r] = timbre.STRIKE_SIZE
        row_ratio[i, r] = 1.0
        row_rate[i, r] = timbre.STRIKE_FADE_DB * LN_DB * sample_rate / timbre.STRIKE_SIZE
    exponent = np.zeros(rows)
    for b, e in enumerate(timbre.VELOCITY_BAND_EXPONENT):
        # a harder strike is brighter mostly in the attack: the fast stage takes the whole
        # exponent, the slow one (the tone that rings on) a third of it
        exponent[2 * b] = e
        exponent[2 * b + 1] = e * timbre.VELOCITY_SLOW_SHARE
    exponent[timbre.STRIKE_ROW] = timbre.VELOCITY_STRIKE_EXPONENT
    for arr in (table, strike, row_offset, row_size, row_ratio, row_rate, row_gain, release_s, exponent):
        arr.setflags(write=False)
    return WavetableBank(sample_rate=int(sample_rate), table=table, strike=strike,
                         row_offset=row_offset,
                         row_size=row_size, row_ratio=row_ratio, row_rate=row_rate,
                         row_gain=row_gain, row_velocity_exponent=exponent, release_s=release_s,
                         partials=tuple(partials), max_partial_hz=limit)
