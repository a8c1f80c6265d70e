"""`make eval`: the metric tables of the COMMITTED models, recomputed where they can be.

Melody (from models_tflite/melody.tflite, the parsed test split and the fixture):
  * test NLL per step: Markov baseline (refitted, order chosen on validation), float LSTM
    (as recorded at training time: the float model is not committed), quantized LSTM
    (recomputed from the committed file);
  * in-key share of T=1.0 continuations (64 steps) from test primers (the first two bars of
    each test melody), key estimated from the primer with the Krumhansl-Kessler profiles;
  * the same share for the real continuations (how "in key" the data itself is);
  * empty replies.
Genie: the rows of :func:`models_tflite.training.genie_train.evaluate`: test-split
perplexities and contour, the random button walks of shared/notes/genie-behaviour.md with
Magenta's figures beside ours (``genie_walks``), and the copy-me LEDs on 200 sampled AI
replies (``genie_copyme``).

The key functions here are pure numpy, so the firmware tests use them without music21.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor plus the leading tone (harmonic)
IN_KEY_TARGET = 0.85
REPLY_STEPS = 64
SEED = 2024


def estimate_key(pitches: Sequence[int], durations: Sequence[float] | None = None
                 ) -> tuple[int, str]:
    """(tonic pitch class, "major"|"minor") maximising the Krumhansl-Schmuckler correlation
    with the duration-weighted pitch-class histogram."""
    hist = np.zeros(12)
    weights = durations if durations is not None else np.ones(len(pitches))
    for p, w in zip(pitches, weights):
        hist[int(p) % 12] += float(w)
    best, best_r = (0, "major"), -np.inf
    if not hist.any():
        return best
    for mode, prof in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if r > best_r:
                best, best_r = (tonic, mode), r
    return best


def in_key(pitch: int, key: tuple[int, str]) -> bool:
    tonic, mode = key
    return (int(pitch) - tonic) % 12 in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)


def in_key_counts(primer_notes, reply_notes) -> tuple[int, int]:
    """(reply notes in the primer's key, reply notes)."""
    key = estimate_key([n.pitch for n in primer_notes],
                       [max(1, n.end - n.start) for n in primer_notes])
    return sum(in_key(n.pitch, key) for n in reply_notes), len(reply_notes)


def primers_from_fixture(ref) -> list[tuple[list, int]]:
    """[(primer notes, primer steps)] from the arrays in melody_reference.npz."""
    from piano_buddy.melody import StepNote
    out: dict[int, list] = {}
    for p, s, e, k in zip(ref["primer_pitch"], ref["primer_start"], ref["primer_end"],
                          ref["primer_piece"]):
        out.setdefault(int(k), []).append(StepNote(int(p), int(s), int(e)))
    steps = int(ref["primer_steps"])
    return [(out[k], steps) for k in sorted(out)]


def melody_quality(model_path: Path | None, primers: Sequence[tuple[list, int]],
                   temperature: float = 1.0, steps: int = REPLY_STEPS, seed: int = SEED,
                   prefer: str | None = None) -> dict:
    """In-key share and empty replies of continuations sampled from ``primers``."""
    from piano_buddy.melody import MelodyModel
    model = MelodyModel(model_path, rng=np.random.default_rng(seed), prefer=prefer)
    good = total = empty = 0
    for notes, primer_steps in primers:
        reply = model.continue_phrase(notes, steps, temperature, primer_steps=primer_steps)
        empty += not reply
        g, n = in_key_counts(notes, reply)
        good, total = good + g, total + n
    return {"in_key": good / max(1, total), "notes": total, "empty": empty,
            "replies": len(primers)}


def primers_with_continuations(melodies, primer_steps: int = 32, min_notes: int = 6,
                               reply_steps: int = 64):
    """(primer notes, steps, real continuation notes) from test melodies long enough."""
    from piano_buddy.melody import StepNote
    out = []
    for m in melodies:
        primer = [StepNote(n.pitch, n.start, min(n.end, primer_steps))
                  for n in m.notes if n.start < primer_steps]
        rest = [StepNote(n.pitch, n.start - primer_steps, n.end - primer_steps)
                for n in m.notes if primer_steps <= n.start < primer_steps + reply_steps]
        if len(primer) >= min_notes and rest:
            out.append((primer, primer_steps, rest))
    return out


def melody_rows(model_path: Path | None = None, reference_path: Path | None = None) -> list[dict]:
    """Metric rows for the melody model, in the same layout as the Genie's."""
    from . import common, markov, melody_data, melody_train
    model_path = Path(model_path or common.MODELS_DIR / melody_train.MODEL_NAME)
    reference_path = Path(reference_path or
                          common.MODELS_DIR / "training" / melody_train.REFERENCE_NAME)
    ref = np.load(reference_path)
    data = melody_data.load_melodies()
    splits = melody_data.by_split(data["melodies"])
    train = melody_train.token_arrays(splits["train"])
    valid = melody_train.token_arrays(splits["valid"])
    test = melody_train.token_arrays(splits["test"])
    t = time.monotonic()
    base, _ = markov.fit_best(train, valid)
    markov_nll = base.nll(test)
    print(f"eval: Markov baseline refitted ({time.monotonic() - t:.0f}s)", file=sys.stderr)
    t = time.monotonic()
    q_nll = melody_train.tflite_nll(model_path, test)
    print(f"eval: quantized test NLL ({time.monotonic() - t:.0f}s)", file=sys.stderr)
    float_nll = float(ref["float_test_nll"])
    prim = primers_with_continuations(splits["test"])
    quality = melody_quality(model_path, [(p, s) for p, s, _ in prim])
    real_good = real_total = 0
    for p, _, rest in prim:
        g, n = in_key_counts(p, rest)
        real_good, real_total = real_good + g, real_total + n
    size = model_path.stat().st_size
    src = model_path.name
    return [
        {"model": "melody", "metric": "test NLL/step, Markov baseline "
         f"(Witten-Bell, order {base.order})", "value": markov_nll, "target": "",
         "ok": None, "source": "refitted"},
        {"model": "melody", "metric": "test NLL/step, float LSTM", "value": float_nll,
         "target": "", "ok": None, "source": "recorded"},
        {"model": "melody", "metric": "test NLL/step, quantized LSTM", "value": q_nll,
         "target": f"<= {0.9 * markov_nll:.4f} (10% under Markov)",
         "ok": q_nll <= 0.9 * markov_nll, "source": src},
        {"model": "melody", "metric": "quantized vs float NLL", "value": q_nll / float_nll - 1,
         "target": "<= +0.02", "ok": q_nll / float_nll - 1 <= 0.02, "source": src},
        {"model": "melody", "metric": f"in-key share, T=1.0, {len(prim)} test primers",
         "value": quality["in_key"], "target": f">= {IN_KEY_TARGET}",
         "ok": quality["in_key"] >= IN_KEY_TARGET, "source": src},
        {"model": "melody", "metric": "in-key share of the real continuations",
         "value": real_good / max(1, real_total), "target": "", "ok": None,
         "source": "test data"},
        {"model": "melody", "metric": "empty replies", "value": quality["empty"],
         "target": "0", "ok": quality["empty"] == 0, "source": src},
        {"model": "melody", "metric": "model size (bytes)", "value": size,
         "target": "< 1048576", "ok": size < 1 << 20, "source": src},
    ]


def genie_rows() -> list[dict]:
    from . import genie_train
    return genie_train.evaluate()


def print_rows(rows: list[dict]) -> None:
    """The metric table; rows with Magenta's figure (the Genie walks) show it beside ours,
    and values too long for the column (key lists) get lines of their own."""
    print(f"{'model':<7} {'metric':<64} {'value':>12} {'Magenta':<14} {'target':<34} "
          f"{'ok':<4} source")
    for r in rows:
        v = r["value"]
        val = f"{v:.4f}" if isinstance(v, float) and abs(v) < 1000 else f"{v}"
        mag = r.get("magenta", "")
        ok = {None: "", True: "yes", False: "NO"}[r["ok"]]
        if len(val) > 12 or len(mag) > 14:
            print(f"{r['model']:<7} {r['metric']:<64} {'':>12} {'':<14} {r['target']:<34} "
                  f"{ok:<4} {r['source']}\n{'':<8}ours:    {val}"
                  + (f"\n{'':<8}Magenta: {mag}" if mag else ""))
        else:
            print(f"{r['model']:<7} {r['metric']:<64} {val:>12} {mag:<14} {r['target']:<34} "
                  f"{ok:<4} {r['source']}")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ap = argparse.ArgumentParser(description="print the metric tables of the committed models")
    ap.add_argument("--only", choices=("melody", "genie"), default=None)
    args = ap.parse_args(argv)
    rows, failed = [], []
    for name, fn in (("melody", melody_rows), ("genie", genie_rows)):
        if args.only and args.only != name:
            continue
        try:
            rows += fn()
        except Exception as exc:  # one model's trouble must not hide the other's table
            import traceback
            traceback.print_exc()
            failed.append(f"{name}: {exc}")
    print_rows(rows)
    for f in failed:
        print(f"FAILED {f}")
    return 1 if failed or any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
