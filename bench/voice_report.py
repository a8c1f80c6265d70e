"""``make voice-report``: the same notes through our synth and through the sampled reference
(FluidR3 in FluidSynth), measured alike; prints the table of
``shared/notes/piano-reference.md`` with both columns and the targets of issue 11, writes
``out/voice_report.md``, decay and spectrogram PNGs, and an A/B WAV (ours, then the
reference).

``measure_all`` is also what ``tests/test_voice_reference.py`` checks, so the report and the
tests cannot disagree.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from . import voice_measures as vm
from .voice_render import SR, reference_available, render_ours, render_reference

C2, C3, C4, A4, C5, C6, C7, C8, A0 = 36, 48, 60, 69, 72, 84, 96, 108, 21
G2, D3 = 43, 50
BASS = (A0, C2, G2, C3, D3)
HELD = (C2, C4, C6)
LEVEL_KEYS = (A0, C2, C3, C4, A4, C5, C6, C7, C8)
HOLD_S = 12.0
CHORD = tuple(range(36, 36 + 16 * 3, 3))          # 16 keys, C2 up in minor thirds
MELODY = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84)


def _held(render, pitch, velocity=80, seconds=HOLD_S):
    return vm.trim_onset(render([(pitch, velocity, 0.0, seconds)], seconds + 0.5))


def _fmt(values, digits=1):
    return "/".join(f"{v:.{digits}f}" if np.isfinite(v) else "n/a" for v in values)


def measure_instrument(render) -> dict:
    """Every measure of the reference note on one instrument (``render(notes, seconds)``)."""
    m: dict = {}
    held = {p: _held(render, p) for p in HELD}
    short = {p: _held(render, p, seconds=3.0) for p in LEVEL_KEYS if p not in held}
    three = {**{p: held[p] for p in HELD}, **short}
    m["level_3s"] = [vm.level_at_db(three[p], SR, 3.0) for p in LEVEL_KEYS]
    m["level_11_5s"] = [vm.level_at_db(held[p], SR, 11.5) for p in HELD]
    m["t40"] = [vm.decay_time(held[p], SR, 40.0) for p in HELD]
    m["slopes"] = [vm.decay_slopes(held[p], SR) for p in HELD]
    m["centroid_c2"] = [vm.centroid_hz(held[C2], SR, t) for t in (0.05, 0.5, 2.5)]
    m["centroid_c4"] = [vm.centroid_hz(held[C4], SR, t) for t in (0.05, 0.5, 2.5)]
    m["partials_c2"] = list(vm.partial_levels_re_fundamental(held[C2], SR, C2))
    m["partials_c4"] = list(vm.partial_levels_re_fundamental(held[C4], SR, C4))
    m["inharmonicity_8"] = [vm.inharmonicity_cents(held[p], SR, p, 8) for p in HELD]
    m["inharmonicity_16"] = [vm.inharmonicity_cents(held[p], SR, p, 16) for p in (C2, C4)]
    off_keys = (C4, C5, C6, C7)
    off = {**held, **short}
    m["off_partial"] = [vm.off_partial_db(off[p], SR, p) for p in off_keys]
    m["hf_share"] = [vm.band_share_db(off[p], SR) for p in (C2, C3, C4)]
    m["irregularity"] = [vm.irregularity_db(held[p], SR, p) for p in HELD]
    a_keys = (A0, C2, C3, A4, C5, C6, C7, C8)
    ref = vm.a_weighted_db(off[C4], SR)
    m["a_weighted"] = [vm.a_weighted_db(off[p], SR) - ref for p in a_keys]
    rel_keys = (A0, C2, C3, C4, A4, C5, C6, C7)
    m["r60"] = []
    for p in rel_keys:
        x = vm.trim_onset(render([(p, 80, 0.0, 0.5)], 2.0))
        m["r60"].append(vm.release_r60(x, SR, 0.5))
    chord = vm.trim_onset(render([(p, 127, 0.0, 3.0) for p in CHORD], 3.5))
    m["chord_fall"] = vm.fall_db(chord, SR, 0.2, 2.9)
    vel = {v: vm.a_weighted_db(_held(render, C4, v, 1.0), SR) for v in (40, 80, 120)}
    m["velocity"] = [vel[40] - vel[120], vel[80] - vel[120]]
    m["fundamental_share"] = [fundamental_share(_held(render, p, seconds=1.0), p) for p in BASS]
    return m


def fundamental_share(x: np.ndarray, pitch: int) -> float:
    """The fundamental's share of the energy of partials 1-20 at 0.3 s (0..1)."""
    _, amps = vm.partials(x, SR, pitch, t=0.3, n_max=20)
    power = 10 ** (amps[np.isfinite(amps)] / 10)
    return float(power[0] / power.sum())


def mash_gains(block_frames: int = 64, strikes: int = 40, seed: int = 3):
    """A child hammering: a v127 strike every 100 ms on random keys (C2-F6), 16 voices, the
    room on, the same synth block by block as the offline renderer drives it. Returns the
    compressor's gain (dB) just before each strike and after the last, the limiter's lowest
    gain (dB) in each strike's 100 ms, and the output's peak (int16)."""
    from piano_buddy.synth import Synth
    rng = np.random.default_rng(seed)
    synth = Synth(voices=16, reverb=True, block_frames=block_frames)
    per_strike = int(0.1 * SR) // synth.block_frames
    comp, limiter, peak = [], [], 0
    for _ in range(strikes):
        comp.append(synth.output.comp_gain_db)
        synth.note_on(int(rng.integers(36, 90)), 127)
        low = 1.0
        for _ in range(per_strike):
            peak = max(peak, int(np.max(np.abs(synth.render().astype(np.int32)))))
            low = min(low, synth.output.limiter_gain)
        limiter.append(20 * math.log10(low))
    comp.append(synth.output.comp_gain_db)
    return np.array(comp), np.array(limiter), peak


def melody_peak_dbfs(velocity: int = 100) -> float:
    """Our synth as the box plays it (reverb on, default ceiling): a melody's peak."""
    from piano_buddy.synth import render_offline
    notes = [(p, velocity, 0.3 * i, 0.3 * i + 0.28) for i, p in enumerate(MELODY)]
    return vm.peak_dbfs(render_offline(notes))


def measure_all(with_reference: bool = True) -> dict:
    ours = measure_instrument(render_ours)
    ours["melody_peak"] = [melody_peak_dbfs(v) for v in (90, 100, 127)]
    comp, limiter, _ = mash_gains()
    steps = np.abs(np.diff(comp))
    ours["mash_comp_step"] = [float(steps[:3].max()), float(steps.max())]
    ours["mash_limiter"] = [float(limiter[:3].min()), float(limiter[10:].min())]
    ref = measure_instrument(render_reference) if with_reference else None
    return {"ours": ours, "reference": ref}


ROWS = (
    ("level at 3 s re peak, A0/C2/C3/C4/A4/C5/C6/C7/C8", "level_3s", " dB"),
    ("level at 11.5 s re peak, C2/C4/C6", "level_11_5s", " dB"),
    ("T40, C2/C4/C6", "t40", " s"),
    ("decay slope early (0.1-1 s) -> late (4-11 s), dB/s, C2/C4/C6", "slopes", ""),
    ("spectral centroid at 0.05/0.5/2.5 s, C2", "centroid_c2", " Hz"),
    ("same, C4", "centroid_c4", " Hz"),
    ("partials 2..8 re fundamental, C2", "partials_c2", " dB"),
    ("partials 2..8 re fundamental, C4", "partials_c4", " dB"),
    ("inharmonicity, cents of partial 8 vs 8 f1, C2/C4/C6", "inharmonicity_8", ""),
    ("same, partial 16, C2/C4", "inharmonicity_16", ""),
    ("off-partial energy in the first 30 ms, C4/C5/C6/C7", "off_partial", " dB"),
    ("4-12 kHz share of the first 25 ms, C2/C3/C4", "hf_share", " dB"),
    ("partial-envelope irregularity, partials 1-6, 0.3-2.9 s, C2/C4/C6", "irregularity", " dB"),
    ("A-weighted level, first 0.5 s, re C4, A0/C2/C3/A4/C5/C6/C7/C8", "a_weighted", " dB"),
    ("release R60 after a note-off at 0.5 s, A0/C2/C3/C4/A4/C5/C6/C7", "r60", " s"),
    ("16-note chord v127, fall from 0.2 to 2.9 s", "chord_fall", " dB"),
    ("velocity 40 / 80 re 120, A-weighted, C4", "velocity", " dB"),
    ("melody peak at v90/v100/v127 (reverb on, ceiling -6 dBFS)", "melody_peak", " dBFS"),
    ("fundamental's share of partials 1-20 at 0.3 s, A0/C2/G2/C3/D3", "fundamental_share", " share"),
    ("mash (v127 every 100 ms): compressor change per strike, largest in strikes 1-3 / all",
     "mash_comp_step", " dB"),
    ("same, the limiter's lowest gain in strikes 1-3 / from strike 11", "mash_limiter", " dB"),
)


def _cell(value, unit):
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], tuple):
        return " / ".join(f"{a:.1f}->{b:.1f}" for a, b in value)
    if isinstance(value, (list, tuple)):
        digits = 2 if unit in (" s", " share") else (0 if unit == " Hz" else 1)
        return _fmt(value, digits) + ("" if unit == " share" else unit)
    return f"{value:.1f}{unit}"


def targets(m: dict) -> list[tuple[str, bool, str]]:
    """The issue's targets: (what, met, the numbers)."""
    ours, ref = m["ours"], m["reference"]
    out = []
    if ref is not None:
        l3 = [ours["level_3s"][LEVEL_KEYS.index(p)] - ref["level_3s"][LEVEL_KEYS.index(p)] for p in HELD]
        l11 = [a - b for a, b in zip(ours["level_11_5s"], ref["level_11_5s"])]
        out.append(("level at 3 s within 6 dB of the reference, C2/C4/C6",
                    all(abs(d) <= 6 for d in l3), _fmt(l3) + " dB"))
        out.append(("level at 11.5 s within 6 dB of the reference, C2/C4/C6",
                    all(abs(d) <= 6 for d in l11), _fmt(l11) + " dB"))
        off = [a - b for a, b in zip(ours["off_partial"], ref["off_partial"])][:3]
        out.append(("strike noise within 6 dB of the reference, C4/C5/C6",
                    all(abs(d) <= 6 for d in off), _fmt(off) + " dB"))
    ratio = [e / l if l < 0 else math.inf for e, l in ours["slopes"]]
    out.append(("early decay slope >= 2x the late one, C2/C4/C6", all(r >= 2 for r in ratio),
                _fmt(ratio) + "x"))
    out.append(("partial-envelope irregularity >= 0.8 dB, C2/C4/C6",
                all(v >= 0.8 for v in ours["irregularity"]), _fmt(ours["irregularity"], 2) + " dB"))
    a = ours["a_weighted"][:6]
    out.append(("A-weighted level within 4 dB of C4, A0-C6", all(abs(v) <= 4 for v in a),
                _fmt(a) + " dB"))
    r60 = ours["r60"]
    out.append(("release R60 0.2-0.4 s", all(0.2 <= v <= 0.4 for v in r60), _fmt(r60, 2) + " s"))
    out.append(("16-note chord v127 falls >= 12 dB, 0.2-2.9 s", ours["chord_fall"] >= 12,
                f"{ours['chord_fall']:.1f} dB"))
    peak = ours["melody_peak"][1]
    out.append(("single melody at v100 peaks -9..-6 dBFS", -9 <= peak <= -6, f"{peak:.1f} dBFS"))
    share = ours["fundamental_share"]
    out.append(("bass energy in partials 2-20 (fundamental under 1/3), A0/C2/G2/C3/D3",
                all(v < 1 / 3 for v in share), _fmt(share, 2)))
    step = ours["mash_comp_step"]
    out.append(("compressor moves <= 1 dB per strike in a mash, from the first strike",
                max(step) <= 1.0, _fmt(step, 2) + " dB"))
    return out


def table_markdown(m: dict) -> str:
    lines = ["| measure | our synth | FluidR3 piano |", "|---|---|---|"]
    for label, key, unit in ROWS:
        ref = m["reference"][key] if m["reference"] is not None and key in m["reference"] else None
        lines.append(f"| {label} | {_cell(m['ours'][key], unit)} | {_cell(ref, unit)} |")
    lines += ["", "| target (issue 11) | met | ours (minus reference where compared) |",
              "|---|---|---|"]
    for what, ok, numbers in targets(m):
        lines.append(f"| {what} | {'yes' if ok else 'NO'} | {numbers} |")
    return "\n".join(lines)


def write_pictures(out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, p in zip(axes, HELD):
        for name, render, style in (("ours", render_ours, "-"), ("FluidR3", render_reference, "--")):
            t, env = vm.envelope_db(_held(render, p), SR)
            ax.plot(t, env - env.max(), style, label=name)
        ax.set_title(f"{('C2', 'C4', 'C6')[HELD.index(p)]} v80, held 12 s")
        ax.set_xlabel("s")
        ax.set_ylim(-90, 3)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dB re peak (50 ms RMS)")
    axes[0].legend()
    fig.tight_layout()
    path = out / "voice_decay.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, sharey=True)
    for row, (name, render) in enumerate((("ours", render_ours), ("FluidR3", render_reference))):
        for col, p in enumerate(HELD):
            x = _held(render, p, seconds=3.0)[:int(3.0 * SR)]
            ax = axes[row, col]
            ax.specgram(x + 1e-9, NFFT=2048, Fs=SR, noverlap=1536, cmap="magma", vmin=-140)
            ax.set_ylim(0, 8000)
            ax.set_title(f"{name}, {('C2', 'C4', 'C6')[col]}")
    fig.tight_layout()
    path = out / "voice_spectrogram.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written


AB_NOTES = ([(60, 80, 0.0, 1.2), (64, 70, 0.3, 1.2), (67, 70, 0.6, 1.2)]
             + [(36, 90, 1.4, 2.6), (48, 70, 1.4, 2.6)]
             + [(p, 90, 2.7 + 0.15 * i, 2.7 + 0.15 * i + 0.14) for i, p in enumerate((72, 76, 79, 84))]
             + [(84, 80, 3.3, 3.9)])
AB_SECONDS = 4.3


def write_ab(path: Path, rate: int = 16000) -> Path:
    """Ours, a short pause, then the reference: the same phrase, mono 16-bit at ``rate``,
    both normalised to the same peak (what differs is the sound, not the level)."""
    from piano_buddy.synth import write_wav
    ours = render_ours(AB_NOTES, AB_SECONDS, reverb=False)
    ref = render_reference(AB_NOTES, AB_SECONDS)
    step = SR / rate
    pieces = []
    for x in (ours, ref):
        x = x / max(np.max(np.abs(x)), 1e-9) * 0.5
        # resample by averaging then linear interpolation (both are band-limited below 9 kHz
        # enough for listening; this file is for ears, not for measuring)
        kernel = np.hanning(int(2 * step) + 3)
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
        t = np.arange(0, len(x) - 1, step)
        pieces += [np.interp(t, np.arange(len(x)), x), np.zeros(int(0.5 * rate))]
    y = np.round(np.concatenate(pieces) * 32767).astype(np.int16)
    return write_wav(path, y, rate)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--ab", type=Path, default=None, help="also write the A/B WAV here")
    args = parser.parse_args(argv)
    why = reference_available()
    if why:
        print(f"voice-report: {why}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    m = measure_all()
    text = table_markdown(m)
    print(text)
    (args.out / "voice_report.md").write_text(text + "\n")
    written = write_pictures(args.out)
    written.append(write_ab(args.ab or args.out / "voice_ab.wav"))
    print("\nwrote " + ", ".join(str(p) for p in [args.out / "voice_report.md", *written]))
    return 0 if all(ok for _, ok, _ in targets(m)) else 1


if __name__ == "__main__":
    sys.exit(main())
