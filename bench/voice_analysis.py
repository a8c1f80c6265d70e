"""Analyse the sampled reference piano into the small table our synth is built from:
``python -m bench.voice_analysis`` writes ``firmware/piano_buddy/synth/piano_table.json``.

Route (analysis and resynthesis): every third key from A0 to C8 is rendered at velocity 80
through FluidR3 (``voice_render``), held 12 s, and once more released after 1 s. From each:
- the inharmonicity B, fitted to the partial frequencies at 0.3 s (f_n = n f1 sqrt(1 + B n^2)
  up to a constant), smoothed across the keyboard as a line in log B;
- each partial's amplitude over time (a DFT at its own frequency every 25 ms); per band of
  partials (``synth.timbre.BANDS``) a fast and a slow decay rate, fitted to the band's
  envelope as a sum of two exponentials (the two stages of a piano's decay), then each
  partial's fast and slow amplitude by least squares with those rates;
- the strike noise: the octave-band spectrum of what lies off the partials in the first
  30 ms (measurable from C4 up; lower keys take C4's shape, darker);
- the release time R60 after the key-up.
Then two calibration passes render our own synth from the table and set, per key, a loudness
trim (A-weighted level in the first 0.5 s within a few dB of C4) and a strike gain (from C4
up: our off-partial energy in the first 30 ms equal to the reference's; below: the 4-12 kHz
share of the first 25 ms).

Only the analysed table is committed (a few tens of KB); the samples stay in FluidR3
(Frank Wen's FluidR3 GM soundfont, MIT licence, Debian ``fluid-soundfont-gm``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from . import voice_measures as vm
from .voice_render import SR, render_ours, render_reference

ANCHORS = tuple(range(21, 109, 3))      # A0 ... C8
HOLD_S = 12.0
RELEASE_AFTER_S = 0.5
SLOT_S = 13.0
VELOCITY = 80
HOP_S = 0.025
MAX_FAST_DB_S = 120.0     # faster than this is the attack itself, not a decay stage
# the slow stage of the upper bands is matched to the reference over this window: their
# partials' own decays differ from their band's, so a match far from where they are heard
# (the band's late window, used for partials 1-2) would make the ringing tone too bright
UPPER_MATCH_S = (0.9, 1.8)
MAX_PARTIALS = 96
MAX_PARTIAL_HZ = 14000.0
OCTAVES = (63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000)   # strike noise bands (centres)
TABLE = Path(__file__).resolve().parents[1] / "firmware" / "piano_buddy" / "synth" / "piano_table.json"


def _bands():
    from piano_buddy.synth.timbre import BANDS
    return BANDS


def fit_inharmonicity(x: np.ndarray, pitch: int) -> float:
    f0 = vm.pitch_hz(pitch)
    n_max = int(min(16, 8000.0 / f0))
    if n_max < 3:
        return math.nan
    freqs, amps = vm.partials(x, SR, pitch, n_max=n_max)
    n = np.arange(1, n_max + 1)
    ok = np.isfinite(freqs) & (amps > np.nanmax(amps) - 50)
    if np.count_nonzero(ok) < 3:
        return math.nan
    ratio2 = (freqs[ok] / n[ok]) ** 2         # = f1'^2 (1 + B n^2)
    slope, intercept = np.polyfit(n[ok].astype(float) ** 2, ratio2, 1)
    return float(slope / intercept)


def partial_tracks(x: np.ndarray, pitch: int, b: float):
    """(times, amplitudes (partials, frames)) of partials 1..N at their inharmonic
    frequencies."""
    f0 = vm.pitch_hz(pitch)
    freqs, _ = vm.partials(x, SR, pitch, n_max=2)
    f1 = freqs[0] if np.isfinite(freqs[0]) else f0
    n_max = int(min(MAX_PARTIALS, MAX_PARTIAL_HZ / f0))
    n = np.arange(1, n_max + 1)
    fn = n * f1 * np.sqrt((1 + b * n ** 2) / (1 + b))
    n, fn = n[fn < MAX_PARTIAL_HZ], fn[fn < MAX_PARTIAL_HZ]
    # Blackman-Harris (sidelobes -92 dB), 8 periods: a weak partial's track is its own, not
    # its strong neighbours' leakage (which would pass for a slow decay stage)
    win = int(max(0.06, 8.0 / f0) * SR)
    tt = 2 * np.pi * np.arange(win) / win
    w = 0.35875 - 0.48829 * np.cos(tt) + 0.14128 * np.cos(2 * tt) - 0.01168 * np.cos(3 * tt)
    hop = int(HOP_S * SR)
    starts = np.arange(0, len(x) - win, hop)
    t = np.arange(win) / SR
    basis = np.exp(-2j * np.pi * np.outer(t, fn)) * w[:, None]
    amps = np.empty((len(fn), len(starts)))
    for i in range(0, len(starts), 64):
        frames = np.stack([x[s:s + win] for s in starts[i:i + 64]])
        amps[:, i:i + 64] = (np.abs(frames @ basis) * 2 / w.sum()).T
    return (starts + win / 2) / SR, n, amps


def fit_two_rates(times: np.ndarray, env: np.ndarray, at_least=(0.0, 0.0),
                  at_most=(np.inf, np.inf)) -> tuple[float, float]:
    """Fast and slow decay rates (dB/s) of env ~ a e^-rf t + b e^-rs t, fitted in dB over
    the part within 70 dB of the peak, with each rate within the given bounds (a higher
    band decays at least ``UPPER_BAND_MIN_RATE`` times as fast as the one below)."""
    keep = (times > 0.05) & (env > env.max() * 10 ** (-70 / 20))
    t, y = times[keep], env[keep]
    if len(t) < 8:
        return (max(60.0, at_least[0]), max(20.0, at_least[1]), 1.0, 0.1)
    target = vm.db(y)
    best = (math.inf, max(60.0, at_least[0]), max(20.0, at_least[1]))
    for rf in np.geomspace(4.0, MAX_FAST_DB_S, 32):
        if not at_least[0] <= rf <= at_most[0]:
            continue
        for rs in np.geomspace(0.5, 120.0, 32):
            if rs >= rf * 0.8 or not at_least[1] <= rs <= at_most[1]:
                continue
            a = np.stack([10 ** (-rf * t / 20), 10 ** (-rs * t / 20)], 1)
            coef, *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
            coef = np.maximum(coef, 0)
            err = float(np.mean((vm.db(a @ coef + 1e-12) - target) ** 2))
            if err < best[0]:
                best = (err, float(rf), float(rs), float(coef[0]), float(coef[1]))
    if len(best) == 3:
        return best[1], best[2], 1.0, 0.1
    return best[1], best[2], best[3], best[4]


def fast_slow_amplitudes(times, amps, rf, rs, band_fast, band_slow, match_at=None):
    """Per partial (fast, slow) amplitude at t = 0, for the band's rates: the slow one from
    the late part of its track (after the band's knee, where the fast stage has died), the
    fast one from what is left of its first frames (0.03-0.09 s). Robust where a joint least-squares
    fit trades one for the other (and sets the slow one to zero)."""
    if band_slow > 0 and band_fast > 0 and rf > rs:
        knee = 20 * math.log10(band_fast / band_slow) / (rf - rs)
    else:
        knee = 0.5
    knee = float(np.clip(knee, 0.2, 6.0))
    late = (times >= knee + 0.3) & (times <= knee + 4.0)
    if match_at is not None:           # upper bands: match the level where the tone is heard
        late = (times >= match_at[0]) & (times <= match_at[1])
    # (bass tracks use long windows, so their first frame may come after 0.09 s)
    early = (times >= min(0.03, times[0])) & (times <= max(0.09, times[0] + 0.06))
    out = np.zeros((len(amps), 2))
    if not np.any(late):
        late = times >= times[-1] - 1.0
    for i, y in enumerate(amps):
        slow = float(np.median(y[late] * 10 ** (rs * times[late] / 20)))
        rest = y[early] - slow * 10 ** (-rs * times[early] / 20)
        fast = float(np.median(np.maximum(rest, 0) * 10 ** (rf * times[early] / 20)))
        out[i] = fast, slow
    return out


def strike_spectrum_db(x: np.ndarray, pitch: int) -> np.ndarray:
    """Octave-band levels (dB re the whole first 30 ms) of what lies off the partials."""
    seconds = 0.030
    seg = x[:int(seconds * SR)]
    spec, bins = vm._spectrum(seg, SR, 8)
    power = spec ** 2
    f0 = vm.pitch_hz(pitch)
    freqs, _ = vm.partials(x, SR, pitch, n_max=64)
    b = fit_inharmonicity(x, pitch)
    b = 0.0 if not np.isfinite(b) else max(b, 0.0)
    f1 = freqs[0] if np.isfinite(freqs[0]) else f0
    near = np.zeros(len(bins), dtype=bool)
    for n in range(1, int(0.5 * SR / f0) + 1):
        f = n * f1 * math.sqrt((1 + b * n * n) / (1 + b))
        near |= np.abs(bins - f) <= max(0.03 * f, 2.2 / seconds)
    total = power.sum()
    out = []
    for c in OCTAVES:
        band = (bins >= c / math.sqrt(2)) & (bins < c * math.sqrt(2)) & ~near
        width = max(np.count_nonzero((bins >= c / math.sqrt(2)) & (bins < c * math.sqrt(2))), 1)
        share = power[band].sum() / max(np.count_nonzero(band), 1) * width
        out.append(10 * math.log10(max(share / total, 1e-12)))
    return np.array(out)


def analyse(verbose: bool = True) -> dict:
    bands = _bands()
    held = render_reference([(p, VELOCITY, i * SLOT_S, i * SLOT_S + HOLD_S)
                             for i, p in enumerate(ANCHORS)], len(ANCHORS) * SLOT_S)
    released = render_reference([(p, VELOCITY, i * 3.0, i * 3.0 + RELEASE_AFTER_S)
                                 for i, p in enumerate(ANCHORS)], len(ANCHORS) * 3.0)
    keys = []
    b_raw = []
    for i, p in enumerate(ANCHORS):
        x = vm.trim_onset(held[int(i * SLOT_S * SR):int((i * SLOT_S + HOLD_S) * SR)])
        b_raw.append(fit_inharmonicity(x, p))
    # B across the keyboard: a line in log B over the keys where it was measured (C2-C7)
    ok = [(p, b) for p, b in zip(ANCHORS, b_raw) if np.isfinite(b) and b > 0 and 36 <= p <= 96]
    line = np.polyfit([p for p, _ in ok], [math.log10(b) for _, b in ok], 1)
    for i, p in enumerate(ANCHORS):
        x = vm.trim_onset(held[int(i * SLOT_S * SR):int((i * SLOT_S + HOLD_S) * SR)])
        b = 10 ** float(np.polyval(line, p))
        times, n, amps = partial_tracks(x, p, b)
        entry = {"pitch": p, "B": round(b, 7), "bands": []}
        fast_db, slow_db = [], []
        from piano_buddy.synth import timbre
        floor = (0.0, 0.0)
        cap = (timbre.TREBLE_MAX_RATES_DB_S if p > timbre.TREBLE_CAP_FROM else (np.inf, np.inf))
        for lo, hi in bands:
            sel = (n >= lo) & ((n <= hi) if hi else True)
            if not np.any(sel):
                rf, rs = max(60.0, floor[0]), max(20.0, floor[1])
                entry["bands"].append([round(rf, 2), round(rs, 2)])
                floor = (min(rf * timbre.UPPER_BAND_MIN_RATE, MAX_FAST_DB_S), rs * timbre.UPPER_BAND_MIN_RATE)
                continue
            env = np.sqrt((amps[sel] ** 2).sum(axis=0))
            rf, rs, band_fast, band_slow = fit_two_rates(
                times, env, floor, (max(cap[0], floor[0]), max(cap[1], floor[1])))
            floor = (min(rf * timbre.UPPER_BAND_MIN_RATE, MAX_FAST_DB_S), rs * timbre.UPPER_BAND_MIN_RATE)
            entry["bands"].append([round(rf, 2), round(rs, 2)])
            fs = fast_slow_amplitudes(times, amps[sel], rf, rs, band_fast, band_slow,
                                      None if lo == 1 else UPPER_MATCH_S)
            fast_db += [round(float(v), 1) for v in vm.db(fs[:, 0])]
            slow_db += [round(float(v), 1) for v in vm.db(fs[:, 1])]
        top = max(max(fast_db), max(slow_db))
        entry["fast_db"] = [max(v, top - 90.0) for v in fast_db]
        entry["slow_db"] = [max(v, top - 90.0) for v in slow_db]
        entry["strike_db"] = [round(float(v), 1) for v in strike_spectrum_db(x, p)]
        r = released[int(i * 3.0 * SR):int((i * 3.0 + 2.9) * SR)]
        onset = len(r) - len(vm.trim_onset(r))
        entry["release_r60_s"] = round(vm.release_r60(r[onset:], SR, RELEASE_AFTER_S), 3)
        entry["a_weighted_db"] = round(vm.a_weighted_db(x, SR), 2)
        entry["off_partial_db"] = round(vm.off_partial_db(x, SR, p), 2)
        entry["hf_share_db"] = round(vm.band_share_db(x, SR), 2)
        keys.append(entry)
        if verbose:
            print(f"  {p:3d}  B {b:.2e}  bands {entry['bands']}  partials {len(fast_db)}"
                  f"  R60 {entry['release_r60_s']:.2f} s", file=sys.stderr)
    # below C4 the off-partial measure cannot see the strike: take C4's shape (its level
    # is then set by the 4-12 kHz share of the attack, in ``calibrate``)
    c4 = next(k for k in keys if k["pitch"] == 60)["strike_db"]
    for k in keys:
        if k["pitch"] < 60:
            k["strike_db"] = list(c4)
        k["loudness_db"] = 0.0
        k["strike_gain_db"] = 0.0
    return {"source": "FluidR3 GM (Frank Wen, MIT licence; Debian fluid-soundfont-gm), "
                      "program 0, rendered by FluidSynth 2.3 with reverb and chorus off",
            "made_by": "python -m bench.voice_analysis",
            "velocity": VELOCITY, "octave_bands_hz": list(OCTAVES),
            "bands": [list(b) for b in bands], "keys": keys}


def calibrate(table: dict, rounds: int = 6, verbose: bool = True) -> dict:
    """Set loudness and strike trims by rendering our synth from the table itself."""
    from piano_buddy.synth import wavetables
    keys = table["keys"]
    c4_ref = next(k for k in keys if k["pitch"] == 60)["a_weighted_db"]
    for rnd in range(rounds):
        _write(table)
        wavetables.clear_caches()
        ours = {}
        for k in keys:
            p = k["pitch"]
            x = vm.trim_onset(render_ours([(p, VELOCITY, 0.0, 0.6)], 0.8))
            ours[p] = (vm.a_weighted_db(x, SR), vm.off_partial_db(x, SR, p), vm.band_share_db(x, SR))
        c4 = ours[60][0]
        # every key's own trim, on top of its neighbours' (interpolating spectra between
        # the analysed keys moves the level by a few dB)
        trims = table.setdefault("key_loudness_db", [0.0] * 88)
        anchors = np.array([k["pitch"] for k in keys])
        ref_rel = np.array([k["a_weighted_db"] - c4_ref for k in keys])
        for pitch in range(21, 109):
            if pitch in ours:
                continue
            x = vm.trim_onset(render_ours([(pitch, VELOCITY, 0.0, 0.6)], 0.8))
            want = _wanted_loudness(pitch, float(np.interp(pitch, anchors, ref_rel)))
            got = vm.a_weighted_db(x, SR) - c4
            trims[pitch - 21] = round(trims[pitch - 21] + 0.8 * (want - got), 2)
        for k in keys:
            p = k["pitch"]
            want = _wanted_loudness(p, k["a_weighted_db"] - c4_ref)
            k["loudness_db"] = round(k["loudness_db"] + 0.8 * (want - (ours[p][0] - c4)), 2)
            if p >= 60:
                err = k["off_partial_db"] - ours[p][1]
            else:
                err = k["hf_share_db"] - ours[p][2]
            k["strike_gain_db"] = round(float(np.clip(k["strike_gain_db"] + 0.9 * err, -20, 6)), 2)
        if verbose:
            worst = max(abs(ours[k["pitch"]][0] - c4) for k in keys if k["pitch"] <= 84)
            print(f"calibration round {rnd + 1}: worst A-weighted re C4 (A0-C6) {worst:.1f} dB",
                  file=sys.stderr)
    return table


def _wanted_loudness(pitch: int, ref_rel: float) -> float:
    """A-weighted level re C4 to aim at: the reference's, but within 2 dB under C4 up to C6
    (the issue's 4 dB band, with room), falling to 10 dB under at C8."""
    floor = -2.0 if pitch <= 84 else -2.0 - 8.0 * (pitch - 84) / 24.0
    return max(ref_rel, floor) if pitch <= 84 else min(max(ref_rel, floor), 0.0)


def _write(table: dict, path: Path = TABLE) -> None:
    text = json.dumps(table, separators=(",", ":"))
    path.write_text(text.replace('{"pitch"', '\n{"pitch"') + "\n")


def main(argv=None) -> int:
    """Analyse, calibrate, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=TABLE)
    parser.add_argument("--calibrate-only", action="store_true",
                        help="keep the analysis in the committed table, redo only the trims "
                             "set by rendering our synth (after a change to the synth)")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    if args.calibrate_only:
        table = calibrate(json.loads(TABLE.read_text()), rounds=args.rounds)
    else:
        table = calibrate(analyse(), rounds=args.rounds)
    _write(table, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
