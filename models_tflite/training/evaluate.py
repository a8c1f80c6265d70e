"""`make eval`: the metric tables of the COMMITTED models, recomputed where they can be.

Melody (from models_tflite/melody.tflite, the parsed test split and the fixture):
  * test NLL per step: Markov baseline (refitted, order chosen on validation), float LSTM
    (as recorded at training time: the float model is not committed), quantized LSTM
    (recomputed from the committed file);
  * in-key share of T=1.0 continuations (64 steps) from test primers (the first two bars of
    each test melody), key estimated from the primer with the Krumhansl-Kessler profiles;
  * the same share for the real continuations (how "in key" the data itself is);
  * rhythm: the share of reply bars with no note starting on the downbeat, and the share of
    replies holding a run of 4+ repeated pitches, beside the same figures of the real
    continuations; on the test primers and on 200 primers of a corpus the committed model
    never saw (Essen folksongs: evaluation only), with the bar lines of the score, and
    once more with the bar lines as the box reads them (:func:`piano_buddy.phrase.bar_grid`);
  * empty replies.
Styles (``style_rows``): each style model's test NLL against its own Markov baseline and
against the general model, its in-key share, rhythm figures and size, and how often "auto"
picks each style for each style's test primers.
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
REPEAT_RUN = 4            # this many notes in a row on one pitch make a "repeated run"
RHYTHM_FACTOR = 2.0       # the model may miss downbeats / repeat at most twice as often as tunes
UNSEEN_PRIMERS = 200
UNSEEN_TUNES = 330        # every k-th Essen tune; 200 of them are long enough for a primer


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


def downbeat_misses(reply_notes, grid, primer_steps: int, steps: int = REPLY_STEPS,
                    positions: Sequence[int] | None = None) -> tuple[int, int]:
    """(bars of the reply with no note starting on their downbeat, whole bars in the reply).

    Reply step k lies on the primer's grid at ``primer_steps + k`` (or has the bar position
    ``positions[k]``, the score's, for a real continuation); only bars wholly inside the
    ``steps`` of the reply count."""
    onsets = {int(n.start) for n in reply_notes}
    if positions is None:
        positions = [grid.position(primer_steps + k) for k in range(steps)]
    downbeats = [k for k in range(steps) if positions[k] == 0]
    ends = downbeats[1:] + [steps if positions[steps - 1] == grid.steps - 1 else steps + 1]
    misses = bars = 0
    for k, end in zip(downbeats, ends):
        if end <= steps:
            bars += 1
            misses += k not in onsets
    return misses, bars


def repeated_run(notes, run: int = REPEAT_RUN) -> bool:
    """Whether ``run`` or more notes in a row have the same pitch."""
    pitches = [n.pitch for n in sorted(notes, key=lambda n: n.start)]
    length = 1
    for a, b in zip(pitches, pitches[1:]):
        length = length + 1 if a == b else 1
        if length >= run:
            return True
    return False


def primers_from_fixture(ref, bars: bool = False) -> list[tuple]:
    """[(primer notes, primer steps)] from the arrays in melody_reference.npz; with
    ``bars``, [(notes, steps, the score's bar grid)]."""
    from piano_buddy.melody import BarGrid, StepNote
    out: dict[int, list] = {}
    for p, s, e, k in zip(ref["primer_pitch"], ref["primer_start"], ref["primer_end"],
                          ref["primer_piece"]):
        out.setdefault(int(k), []).append(StepNote(int(p), int(s), int(e)))
    steps = int(ref["primer_steps"])
    if not bars:
        return [(out[k], steps) for k in sorted(out)]
    grids = [BarGrid(int(b), int(d)) for b, d in zip(ref["primer_bar_steps"],
                                                     ref["primer_downbeat"])]
    return [(out[k], steps, grids[k]) for k in sorted(out)]


def melody_quality(model_path: Path | None, primers: Sequence[tuple],
                   temperature: float = 1.0, steps: int = REPLY_STEPS, seed: int = SEED,
                   prefer: str | None = None, box_bars: bool = False) -> dict:
    """In-key share, rhythm figures and empty replies of continuations sampled from
    ``primers`` ((notes, primer steps[, bar grid]) each). ``box_bars``, or no grid: give
    the model the bar lines as the box reads them (:func:`piano_buddy.phrase.bar_grid`)
    instead of the score's, and count downbeats on those."""
    from piano_buddy.melody import MelodyModel
    from piano_buddy.phrase import bar_grid
    model = MelodyModel(model_path, rng=np.random.default_rng(seed), prefer=prefer)
    good = total = empty = misses = bars = runs = 0
    for notes, primer_steps, *grid in primers:
        grid = bar_grid(notes) if box_bars or not grid else grid[0]
        reply = model.continue_phrase(notes, steps, temperature, primer_steps=primer_steps,
                                      bar=grid)
        empty += not reply
        g, n = in_key_counts(notes, reply)
        good, total = good + g, total + n
        m, b = downbeat_misses(reply, grid, primer_steps, steps)
        misses, bars = misses + m, bars + b
        runs += repeated_run(reply)
    return {"in_key": good / max(1, total), "notes": total, "empty": empty,
            "replies": len(primers), "downbeat_missed": misses / max(1, bars), "bars": bars,
            "repeated_runs": runs / max(1, len(primers))}


def real_rhythm(primers: Sequence[tuple], steps: int = REPLY_STEPS) -> dict:
    """The same rhythm figures for the real continuations ((notes, steps, grid, rest))."""
    misses = bars = runs = 0
    for _, primer_steps, grid, rest, positions in primers:
        m, b = downbeat_misses(rest, grid, primer_steps, steps, positions)
        misses, bars = misses + m, bars + b
        runs += repeated_run(rest)
    return {"downbeat_missed": misses / max(1, bars), "bars": bars,
            "repeated_runs": runs / max(1, len(primers))}


def primers_with_continuations(melodies, primer_steps: int = 32, min_notes: int = 6,
                               reply_steps: int = 64):
    """(primer notes, steps, bar grid, real continuation notes, the score's bar positions
    of the continuation's steps) from melodies long enough."""
    from piano_buddy.melody import StepNote
    from .melody_data import bar_grid_of
    out = []
    for m in melodies:
        primer = [StepNote(n.pitch, n.start, min(n.end, primer_steps))
                  for n in m.notes if n.start < primer_steps]
        rest = [StepNote(n.pitch, n.start - primer_steps, n.end - primer_steps)
                for n in m.notes if primer_steps <= n.start < primer_steps + reply_steps]
        if len(primer) >= min_notes and rest and len(m.tokens) >= primer_steps + reply_steps:
            out.append((primer, primer_steps, bar_grid_of(m), rest,
                        [int(p) for p in m.bar_pos[primer_steps:primer_steps + reply_steps]]))
    return out


def rhythm_rows(label: str, model_path: Path, prim: Sequence[tuple], src: str) -> list[dict]:
    """Downbeat and repeated-run rows for one set of primers, the real rates beside."""
    real = real_rhythm(prim)
    rows = []
    for box in (False, True):
        q = melody_quality(model_path, [(p, s, g) for p, s, g, *_ in prim], box_bars=box)
        how = "box's bars" if box else "score's bars"   # box: phrase.bar_grid
        limit_d = RHYTHM_FACTOR * real["downbeat_missed"]
        limit_r = RHYTHM_FACTOR * real["repeated_runs"]
        rows += [
            {"model": "melody", "metric": f"{label}: reply bars, no downbeat note ({how})",
             "value": q["downbeat_missed"],
             "target": f"<= {limit_d:.4f} (2x real {real['downbeat_missed']:.4f})",
             "ok": q["downbeat_missed"] <= limit_d if not box else None, "source": src},
            {"model": "melody", "metric": f"{label}: replies, {REPEAT_RUN}+ repeated pitches "
             f"({how})", "value": q["repeated_runs"],
             "target": f"<= {limit_r:.4f} (2x real {real['repeated_runs']:.4f})",
             "ok": q["repeated_runs"] <= limit_r if not box else None, "source": src},
        ]
    rows += [
        {"model": "melody", "metric": f"{label}: real, bars with no downbeat note "
         f"({real['bars']})", "value": real["downbeat_missed"], "target": "",
         "ok": None, "source": "data"},
        {"model": "melody", "metric": f"{label}: real, {REPEAT_RUN}+ repeated pitches "
         f"({len(prim)})", "value": real["repeated_runs"], "target": "",
         "ok": None, "source": "data"},
    ]
    return rows


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
    test_pos = melody_train.position_arrays(splits["test"])
    t = time.monotonic()
    base, _ = markov.fit_best(train, valid)
    markov_nll = base.nll(test)
    print(f"eval: Markov baseline refitted ({time.monotonic() - t:.0f}s)", file=sys.stderr)
    t = time.monotonic()
    q_nll = melody_train.tflite_nll(model_path, test, test_pos)
    print(f"eval: quantized test NLL ({time.monotonic() - t:.0f}s)", file=sys.stderr)
    float_nll = float(ref["float_test_nll"])
    prim = primers_with_continuations(splits["test"])
    quality = melody_quality(model_path, [(p, s, g) for p, s, g, *_ in prim])
    real_good = real_total = 0
    for p, _, _, rest, _ in prim:
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
    ] + rhythm_rows(f"test, {len(prim)}", model_path, prim, src) + unseen_rows(
        model_path, src)


def unseen_rows(model_path: Path, src: str) -> list[dict]:
    """Rhythm rows on 200 primers of the Essen folksongs, when the committed model was
    trained without them (the licence-clean build); nothing when it was not."""
    from . import melody_data
    if melody_data.noncommercial():
        return []
    t = time.monotonic()
    unseen = melody_data.load_unseen(count=UNSEEN_TUNES)
    prim = primers_with_continuations(unseen)[:UNSEEN_PRIMERS]
    rows = rhythm_rows(f"unseen Essen, {len(prim)}", model_path, prim, src)
    quality = melody_quality(model_path, [(p, s, g) for p, s, g, *_ in prim])
    rows.append({"model": "melody", "metric": f"unseen Essen, {len(prim)}: in-key share, T=1.0",
                 "value": quality["in_key"],
                 "target": f">= {IN_KEY_TARGET}", "ok": quality["in_key"] >= IN_KEY_TARGET,
                 "source": src})
    print(f"eval: unseen corpus ({time.monotonic() - t:.0f}s)", file=sys.stderr)
    return rows


def style_rows() -> list[dict]:
    """Per melody style (``melody_styles``): test NLL against its own Markov baseline and
    against the general model on the same pieces, in-key share, rhythm figures and size;
    then how often "auto" picks each style for each style's test primers."""
    from piano_buddy.styles import AUTO, STYLES, load_styles
    from . import common, markov, melody_data, melody_train as mt
    from .melody_styles import STYLE_COLLECTIONS, style_splits
    data = melody_data.load_melodies()
    splits = melody_data.by_split(data["melodies"])
    general = common.MODELS_DIR / mt.MODEL_NAME
    rows, primers = [], {}
    for style in STYLE_COLLECTIONS:
        path = common.MODELS_DIR / STYLES[style].file
        if not path.exists():
            rows.append({"model": f"style {style}", "metric": "model file", "value": "missing",
                         "target": "", "ok": False, "source": str(path)})
            continue
        sp = style_splits(splits, style)
        seqs = {k: mt.token_arrays(v) for k, v in sp.items()}
        test_pos = mt.position_arrays(sp["test"])
        base, _ = markov.fit_best(seqs["train"], seqs["valid"])
        markov_nll = base.nll(seqs["test"])
        q_nll = mt.tflite_nll(path, seqs["test"], test_pos)
        g_nll = mt.tflite_nll(general, seqs["test"], test_pos)
        prim = primers_with_continuations(sp["test"])
        primers[style] = prim
        quality = melody_quality(path, [(p, st, g) for p, st, g, *_ in prim])
        size = path.stat().st_size
        label = f"style {style}"
        rows += [
            {"model": label, "metric": f"test NLL/step, Markov baseline (order {base.order}; "
             f"{len(seqs['test'])} test tunes of {', '.join(STYLE_COLLECTIONS[style])})",
             "value": markov_nll, "target": "", "ok": None, "source": "refitted"},
            {"model": label, "metric": "test NLL/step, quantized style model", "value": q_nll,
             "target": f"<= {0.9 * markov_nll:.4f} (10% under its Markov)",
             "ok": q_nll <= 0.9 * markov_nll, "source": path.name},
            {"model": label, "metric": "test NLL/step, the general model on the same tunes",
             "value": g_nll, "target": "", "ok": None, "source": general.name},
            {"model": label, "metric": f"in-key share, T=1.0, {len(prim)} test primers",
             "value": quality["in_key"], "target": f">= {IN_KEY_TARGET}",
             "ok": quality["in_key"] >= IN_KEY_TARGET, "source": path.name},
            {"model": label, "metric": "empty replies", "value": quality["empty"],
             "target": "0", "ok": quality["empty"] == 0, "source": path.name},
            {"model": label, "metric": "model size (bytes)", "value": size,
             "target": "< 1048576", "ok": size < 1 << 20, "source": path.name},
        ]
        rows += [dict(r, model=label) for r in rhythm_rows(f"test, {len(prim)}", path, prim,
                                                           path.name)]
    styled = load_styles(common.MODELS_DIR, AUTO)
    if styled.style == AUTO:
        for style, prim in primers.items():
            picks = {}
            for p, st, g, *_ in prim:
                name = styled.choose(p, st, g)
                picks[name] = picks.get(name, 0) + 1
            share = picks.get(style, 0) / max(1, len(prim))
            rows.append({"model": "style auto", "metric": f"{style} test primers answered by "
                         f"{style} ({len(prim)}; others: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(picks.items())
                                     if k != style) + ")",
                         "value": share, "target": "", "ok": None,
                         "source": "style models"})
    return rows


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
    ap.add_argument("--only", choices=("melody", "styles", "genie"), default=None)
    args = ap.parse_args(argv)
    rows, failed = [], []
    for name, fn in (("melody", melody_rows), ("styles", style_rows), ("genie", genie_rows)):
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
