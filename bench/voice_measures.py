"""What "sounds like a piano" means in numbers: the measures of
``shared/notes/piano-reference.md``, one function each, applied alike to our synth and to the
sampled reference (numpy only).

Every function takes a mono float signal whose note starts at sample 0 (``trim_onset`` finds
that sample in a recording). Conventions, as in the reference note: levels come from a 50 ms
RMS envelope (10 ms hop); partial frequencies and amplitudes from a Hann-windowed FFT at
0.3 s with parabolic peak interpolation; "off-partial" energy lies outside +-3% bands around
the measured partials; irregularity is the spread of a partial's dB envelope around a fitted
two-slope line.
"""

from __future__ import annotations

import math

import numpy as np

HOP_S = 0.010
ENV_WINDOW_S = 0.050


def steady_tone(synth):
    """Start the synth's pending note (one block), then freeze every oscillator row's decay
    and mute the strike: a held copy of the same note. A piano's partials decay (each then
    has a spectral width of its own, wider than a +-10 Hz band at 20-60 dB/s) and its treble
    decays towards 16-bit rounding within a second, so the tables' band-limiting (what
    aliasing would spoil) is measured on this steady copy. Returns the synth."""
    synth.render()
    synth.voices.row_rate[:] = 0.0
    synth.voices.row_d2[:] = 1.0
    synth.voices.strike_gain[:] = 0.0
    return synth


def pitch_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def db(x) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(np.abs(np.asarray(x, dtype=np.float64)), 1e-12))


def trim_onset(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """The signal from its first sample above ``threshold`` of its peak (the note's start)."""
    x = np.asarray(x, dtype=np.float64)
    above = np.flatnonzero(np.abs(x) > threshold * np.max(np.abs(x)))
    return x[above[0]:] if len(above) else x


def envelope_db(x: np.ndarray, sr: int, window_s: float = ENV_WINDOW_S,
                hop_s: float = HOP_S) -> tuple[np.ndarray, np.ndarray]:
    """(times at window centres, RMS level in dB) of a sliding window."""
    win, hop = max(1, int(window_s * sr)), max(1, int(hop_s * sr))
    power = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)])
    starts = np.arange(0, max(1, len(x) - win + 1), hop)
    mean = (power[starts + win] - power[starts]) / win
    return (starts + win / 2) / sr, 10.0 * np.log10(np.maximum(mean, 1e-24))


def level_at_db(x: np.ndarray, sr: int, t: float) -> float:
    """Level at time t relative to the envelope's peak (dB)."""
    times, env = envelope_db(x, sr)
    return float(np.interp(t, times, env) - env.max())


def decay_slopes(x: np.ndarray, sr: int, early=(0.1, 1.0), late=(4.0, 11.0),
                 floor_db: float = -80.0) -> tuple[float, float]:
    """(early, late) decay slope in dB/s: straight-line fits of the envelope over the two
    windows, keeping only the part above ``floor_db`` re peak (a dead note has no late slope
    left to measure; the late window then shrinks to what is audible)."""
    times, env = envelope_db(x, sr)
    env = env - env.max()
    out = []
    for lo, hi in (early, late):
        keep = (times >= lo) & (times <= hi) & (env > floor_db)
        if np.count_nonzero(keep) < 5:
            keep = (times >= lo) & (times <= hi)
        out.append(float(np.polyfit(times[keep], env[keep], 1)[0]))
    return out[0], out[1]


def decay_time(x: np.ndarray, sr: int, drop_db: float) -> float:
    """Seconds from the envelope's peak until it stays ``drop_db`` under it (inf if never)."""
    times, env = envelope_db(x, sr)
    k = int(np.argmax(env))
    above = np.flatnonzero(env[k:] > env[k] - drop_db)
    if len(above) == 0 or k + above[-1] + 1 >= len(env):
        return math.inf
    return float(times[k + above[-1] + 1] - times[k])


def _spectrum(x: np.ndarray, sr: int, pad: int = 4):
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n), pad * n))
    return spec, np.fft.rfftfreq(pad * n, 1.0 / sr)


def centroid_hz(x: np.ndarray, sr: int, t: float, window_s: float = 0.1) -> float:
    """Spectral centroid (magnitude-weighted) of a Hann window of ``window_s`` centred on t."""
    n = int(window_s * sr)
    start = max(0, int(t * sr) - n // 2)
    seg = x[start:start + n]
    spec, freqs = _spectrum(seg, sr, 1)
    return float((spec * freqs).sum() / max(spec.sum(), 1e-30))


def partials(x: np.ndarray, sr: int, pitch: int, t: float = 0.3, n_max: int = 16,
             f_max: float = 16000.0) -> tuple[np.ndarray, np.ndarray]:
    """(frequency Hz, amplitude dB) of partials 1..n_max around time t. Each partial is
    looked for near where the ones below it predict it (so growing inharmonicity is
    followed), by parabolic interpolation of the log spectrum; missing ones are NaN."""
    f0 = pitch_hz(pitch)
    window_s = max(0.25, 8.0 / f0)
    start = max(0, int(t * sr) - int(window_s * sr) // 2)
    seg = x[start:start + int(window_s * sr)]
    spec, freqs = _spectrum(seg, sr, 4)
    df = freqs[1]
    logspec = np.log(np.maximum(spec, 1e-30))
    f_out = np.full(n_max, np.nan)
    a_out = np.full(n_max, np.nan)
    ratio = 1.0          # f_n / (n f0) so far: the stretch the partials below show
    for n in range(1, n_max + 1):
        guess = n * f0 * ratio
        if guess > min(f_max, 0.48 * sr):
            break
        half = 0.25 * f0
        band = np.flatnonzero(np.abs(freqs - guess) < half)
        if len(band) < 3:
            break
        k = int(band[np.argmax(spec[band])])
        if k <= 0 or k >= len(spec) - 1:
            continue
        a, b, c = logspec[k - 1:k + 2]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
        f_out[n - 1] = (k + shift) * df
        a_out[n - 1] = (b - 0.25 * (a - c) * shift) * 20 / math.log(10)
        if n >= 2 and np.isfinite(f_out[n - 1]):
            ratio = f_out[n - 1] / (n * f0)
    a_out = a_out - 20 * math.log10(max(np.hanning(len(seg)).sum() / 2, 1e-30))
    return f_out, a_out


def partial_levels_re_fundamental(x: np.ndarray, sr: int, pitch: int, upto: int = 8) -> np.ndarray:
    """Partials 2..upto in dB relative to partial 1, at 0.3 s."""
    _, amps = partials(x, sr, pitch, n_max=upto)
    return amps[1:upto] - amps[0]


def inharmonicity_cents(x: np.ndarray, sr: int, pitch: int, n: int) -> float:
    """Cents of partial n above n times the measured fundamental."""
    freqs, _ = partials(x, sr, pitch, n_max=n)
    return float(1200 * math.log2(freqs[n - 1] / (n * freqs[0])))


def off_partial_db(x: np.ndarray, sr: int, pitch: int, seconds: float = 0.030,
                   width: float = 0.03) -> float:
    """Energy of the first ``seconds`` outside +-width bands around the partials (measured at
    0.3 s, and beyond them where the inharmonicity fitted to them predicts), re all of it
    (dB). A band is never narrower than the window's main lobe, so a pure tone reads far
    down (about -35 dB); below C4 the partials' lobes cover nearly everything, so the
    measure means little there."""
    f0 = pitch_hz(pitch)
    freqs, _ = partials(x, sr, pitch, n_max=64)
    found = freqs[np.isfinite(freqs)]
    n = np.arange(1, 1 + int(0.5 * sr / f0))
    if len(found) >= 2:                 # continue the series with the stretch fitted so far
        k = np.flatnonzero(np.isfinite(freqs)) + 1
        b = np.polyfit(k.astype(float) ** 2, (freqs[k - 1] / (k * found[0])) ** 2, 1)
        pred = n * found[0] * np.sqrt(np.maximum(np.polyval(b, n.astype(float) ** 2), 0.5))
        m = min(len(freqs), len(pred))
        pred[:m] = np.where(np.isfinite(freqs[:m]), freqs[:m], pred[:m])
    else:
        pred = n * f0
    seg = x[:int(seconds * sr)]
    spec, bins = _spectrum(seg, sr, 8)
    power = spec ** 2
    near = np.zeros(len(bins), dtype=bool)
    lobe = 2.2 / seconds          # a Hann window's main lobe: a pure partial spreads this far
    for f in pred:
        near |= np.abs(bins - f) <= max(width * f, lobe)
    return float(10 * np.log10(max(power[~near].sum(), 1e-30) / max(power.sum(), 1e-30)))


def band_share_db(x: np.ndarray, sr: int, lo: float = 4000.0, hi: float = 12000.0,
                  seconds: float = 0.025) -> float:
    """Share of the first ``seconds`` that lies between lo and hi Hz (dB)."""
    spec, bins = _spectrum(x[:int(seconds * sr)], sr, 4)
    power = spec ** 2
    return float(10 * np.log10(max(power[(bins >= lo) & (bins < hi)].sum(), 1e-30)
                               / max(power.sum(), 1e-30)))


def partial_envelopes_db(x: np.ndarray, sr: int, pitch: int, t0: float = 0.3, t1: float = 2.9,
                         n_max: int = 6, hop_s: float = 0.02):
    """(times, dB envelopes (n_max, frames)) of partials 1..n_max, each read at its own
    measured frequency with a window long enough to separate it from its neighbours."""
    f0 = pitch_hz(pitch)
    freqs, _ = partials(x, sr, pitch, n_max=n_max)
    freqs = np.where(np.isfinite(freqs), freqs, np.arange(1, n_max + 1) * f0)
    win = int(max(0.06, 4.0 / f0) * sr)
    w = np.hanning(win)
    starts = np.arange(int(t0 * sr) - win // 2, int(t1 * sr) - win // 2, int(hop_s * sr))
    starts = starts[(starts >= 0) & (starts + win <= len(x))]
    frames = np.stack([x[s:s + win] * w for s in starts])
    t = np.arange(win) / sr
    basis = np.exp(-2j * np.pi * np.outer(t, freqs))          # (win, partials)
    amp = np.abs(frames @ basis) * 2 / w.sum()
    return (starts + win / 2) / sr, db(amp.T)


def two_slope_residual_db(times: np.ndarray, env_db: np.ndarray) -> float:
    """Std (dB) of env around the best two-slope line (knee anywhere in the middle 80%)."""
    best = math.inf
    for knee in np.linspace(times[0] + 0.1 * (times[-1] - times[0]),
                            times[-1] - 0.1 * (times[-1] - times[0]), 25):
        a = np.stack([np.ones_like(times), np.minimum(times, knee), np.maximum(times - knee, 0)], 1)
        coef, *_ = np.linalg.lstsq(a, env_db, rcond=None)
        best = min(best, float(np.std(env_db - a @ coef)))
    return best


def irregularity_db(x: np.ndarray, sr: int, pitch: int, n_max: int = 6) -> float:
    """Mean over partials 1..n_max of the spread of each one's dB envelope around a two-slope
    line, 0.3-2.9 s: the beating of unison strings shows here; a clean decay gives ~0."""
    times, envs = partial_envelopes_db(x, sr, pitch, n_max=n_max)
    values = [two_slope_residual_db(times, e) for e in envs
              if np.max(e) > np.max(envs) - 50]        # partials that are really there
    return float(np.mean(values))


# A-weighting (IEC 61672), as a gain per frequency
def a_weighting(f: np.ndarray) -> np.ndarray:
    f2 = np.asarray(f, dtype=np.float64) ** 2
    ra = (12194.0 ** 2 * f2 ** 2) / ((f2 + 20.6 ** 2) * np.sqrt((f2 + 107.7 ** 2) * (f2 + 737.9 ** 2))
                                     * (f2 + 12194.0 ** 2))
    return ra * 10 ** (2.0 / 20)


def a_weighted_db(x: np.ndarray, sr: int, seconds: float = 0.5) -> float:
    """A-weighted level of the first ``seconds`` (dB, arbitrary reference)."""
    seg = x[:int(seconds * sr)]
    spec = np.fft.rfft(seg)
    freqs = np.fft.rfftfreq(len(seg), 1.0 / sr)
    power = np.abs(spec * a_weighting(freqs)) ** 2
    return float(10 * np.log10(max(power.sum() * 2 / len(seg) ** 2, 1e-30)))


def release_r60(x: np.ndarray, sr: int, off_s: float) -> float:
    """Seconds after the note-off at ``off_s`` until the envelope (20 ms RMS) stays 60 dB
    under its level just before the note-off."""
    times, env = envelope_db(x, sr, window_s=0.02, hop_s=0.005)
    before = float(np.interp(off_s - 0.015, times, env))
    after = times > off_s
    above = np.flatnonzero(after & (env > before - 60.0))
    if len(above) == 0:
        return 0.0
    last = above[-1] + 1
    return float(times[min(last, len(times) - 1)] - off_s)


def fall_db(x: np.ndarray, sr: int, t0: float, t1: float) -> float:
    """How far the envelope falls from t0 to t1 (positive dB)."""
    times, env = envelope_db(x, sr)
    return float(np.interp(t0, times, env) - np.interp(t1, times, env))


def peak_dbfs(x_int16: np.ndarray) -> float:
    return float(db(np.max(np.abs(np.asarray(x_int16, dtype=np.float64))) / 32768.0))
