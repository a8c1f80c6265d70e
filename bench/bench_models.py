"""Model speed: a Genie press and a melody reply, through the committed quantized models.

* Genie: ``GenieDecoder.press`` (one decoder step plus sampling at T=0.25 over the 88 keys),
  median and p99 over a few thousand presses of a button walk with realistic press times.
* Genie with held keys: the same presses with two pitches excluded (``exclude=``, the
  no-silent-press path), median and p99.
* Genie copy-me: ``GenieEncoder.buttons_for(reply, check=planner)`` on a 32-note reply
  (the encoder plus the note-by-note decoder check the box runs once per AI reply when it
  is planned), median and p99.
* Melody: ``MelodyModel.continue_phrase`` on a 16-note primer (8th notes: 32 steps) plus 64
  generated steps at T=1.0, median and p99 of the whole call; the same for each melody
  style's model and for "auto" (every style's model scores the phrase, the best answers),
  through :class:`piano_buddy.styles.StyledMelody` as the box calls it.

Measured in this venv (ai_edge_litert or tflite_runtime, whichever the loader picks) and,
when .venv-tflr exists, again under tflite-runtime 2.14 in a subprocess. One interpreter
thread, as on the box. Targets: press median <= 50 us, p99 <= 200 us (with held keys too);
melody reply <= 10 ms; copy-me buttons <= 20 ms a reply (our own bar: it runs once while the
reply is planned, beside the melody's 10 ms, inside the 20 ms from the end of the pause to
the AI's first sample).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import Figure

ROOT = Path(__file__).resolve().parents[1]
TFLR_PY = ROOT / ".venv-tflr" / "bin" / "python"


def measure(quick: bool, prefer: str | None = None) -> dict:
    """{name: seconds list summary} for this process's interpreter."""
    from piano_buddy.melody import StepNote
    from piano_buddy.paths import model_path
    from piano_buddy.tflite import interpreter_class

    out = {"backend": interpreter_class(prefer)[0]}
    if model_path("genie.tflite").exists():
        try:
            from piano_buddy.genie import GenieDecoder
        except ImportError:
            GenieDecoder = None
        if GenieDecoder is not None:
            g = GenieDecoder(rng=np.random.default_rng(0), prefer=prefer)
            n = 500 if quick else 5000
            rng = np.random.default_rng(1)
            buttons, b = [], 3
            for move in rng.integers(-2, 3, n):  # a random walk over the 8 buttons
                b = min(7, max(0, b + int(move)))
                buttons.append(b)
            gaps = rng.uniform(0.05, 0.6, n)
            t, times = 0.0, []
            for i in range(200):  # warm up
                g.press(int(buttons[i]), t)
                t += gaps[i]
            for b, dt in zip(buttons, gaps):
                t += dt
                a = time.perf_counter()
                g.press(int(b), t, temperature=0.25)
                times.append(time.perf_counter() - a)
            out["genie_press"] = times
            times = []
            for b, dt in zip(buttons, gaps):
                t += dt
                a = time.perf_counter()
                g.press(int(b), t, temperature=0.25, exclude=(60, 67))
                times.append(time.perf_counter() - a)
            out["genie_press_held"] = times
    if model_path("genie_encoder.tflite").exists():
        from piano_buddy.genie import GenieDecoder, GenieEncoder
        e = GenieEncoder(prefer=prefer)
        planner = GenieDecoder(prefer=prefer)
        reply = [(60 + (i * 5) % 14, 0.125 * i) for i in range(32)]
        for _ in range(5):
            e.buttons_for(reply, check=planner)
        times = []
        for _ in range(30 if quick else 200):
            a = time.perf_counter()
            e.buttons_for(reply, check=planner)
            times.append(time.perf_counter() - a)
        out["genie_encoder_reply"] = times
    from piano_buddy.paths import models_dir
    from piano_buddy.styles import AUTO, load_styles
    styled = load_styles(models_dir(), "all", rng=np.random.default_rng(0), prefer=prefer)
    primer = [StepNote(p, 2 * i, 2 * i + 2)
              for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62,
                                     60, 64, 67, 72, 71, 67, 64, 62])]
    # the general model, each style's, and "auto" (every style's model scores the phrase)
    for name in [*styled.models, *([AUTO] if len(styled.models) > 1 else [])]:
        styled.set_style(name)
        for _ in range(5):
            styled.continue_phrase(primer, 64)
        times = []
        for _ in range(30 if quick else 300):
            a = time.perf_counter()
            styled.continue_phrase(primer, 64, 1.0, primer_steps=32)
            times.append(time.perf_counter() - a)
        out["melody_reply" if name == "all" else f"melody_reply_{name}"] = times
    return out


def _figures(res: dict, suffix: str) -> list[Figure]:
    figs = []
    note = f"{res['backend']}, 1 thread"
    pairs = (("genie_press", "genie press", 1e6, "us", (50.0, 200.0)),
             ("genie_press_held", "genie press, 2 keys held", 1e6, "us", (50.0, 200.0)),
             ("genie_encoder_reply", "genie copy-me buttons, 32-note reply", 1e3, "ms",
              (20.0, 20.0)))
    for key, name, scale, unit, (median_target, p99_target) in pairs:
        if key in res:
            t = np.array(res[key]) * scale
            figs += [Figure("models", f"{name}, median{suffix}", float(np.median(t)), unit,
                            median_target, note=note),
                     Figure("models", f"{name}, p99{suffix}", float(np.percentile(t, 99)),
                            unit, p99_target, note=note)]
    t = np.array(res["melody_reply"]) * 1e3
    figs += [Figure("models", f"melody prime 16 notes + 64 steps, median{suffix}",
                    float(np.median(t)), "ms", 10.0, note=note),
             Figure("models", f"melody prime 16 notes + 64 steps, p99{suffix}",
                    float(np.percentile(t, 99)), "ms", 10.0, note=note)]
    for key in sorted(k for k in res if k.startswith("melody_reply_")):
        style = key[len("melody_reply_"):]
        t = np.array(res[key]) * 1e3
        figs += [Figure("models", f"melody reply, style {style}, median{suffix}",
                        float(np.median(t)), "ms", 10.0, note=note),
                 Figure("models", f"melody reply, style {style}, p99{suffix}",
                        float(np.percentile(t, 99)), "ms", 10.0, note=note)]
    return figs


def run(quick: bool) -> list[Figure]:
    figs = _figures(measure(quick), "")
    if TFLR_PY.exists():
        code = ("import json, sys; from bench.bench_models import measure; "
                f"print('BENCH' + json.dumps(measure({quick!r}, 'tflite_runtime')))")
        res = subprocess.run([str(TFLR_PY), "-c", code], capture_output=True, text=True,
                             cwd=ROOT, timeout=600)
        lines = [x for x in res.stdout.splitlines() if x.startswith("BENCH")]
        if res.returncode == 0 and lines:
            figs += _figures(json.loads(lines[-1][5:]), " (tflite-runtime)")
        else:
            print(f"bench_models: tflite-runtime run failed: {res.stderr[-500:]}",
                  file=sys.stderr)
    return figs
