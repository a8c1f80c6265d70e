"""The melody styles: one model per corpus family, fine-tuned from the general melody model.

A style model has the general model's shape and inputs (so the firmware runs it with the
same code, :class:`piano_buddy.melody.MelodyModel`) and starts from its trained weights
(``melody_train`` leaves them in its work folder); it is then trained on the training split
of its own collections only, with the validation NLL checked every ``EVAL_EVERY`` steps and
the best weights kept (the Bach chorales are 329 tunes: a few hundred steps overfit them).
The split is the general model's (by piece), so no style ever saw a test piece of any style.

Each style is exported like the general model (int8 weights if within 2% of float) into
``models_tflite/<styles.STYLES[name].file>``; the golden vectors and 64 test primers of
every style (keys prefixed with the style's name) go into
``training/melody_styles_reference.npz`` for the tests. Which collections make a style is
:data:`STYLE_COLLECTIONS`, all licence-clean (``melody_data.LICENCE``).

    .venv-train/bin/python -m models_tflite.training.melody_styles          # every style
    .venv-train/bin/python -m models_tflite.training.melody_styles --smoke  # tiny, build/

Env: MELODY_STYLE_STEPS (the most fine-tuning steps per style), MELODY_STYLES (a comma
list: only these styles).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from piano_buddy.styles import STYLES

from . import common

STYLE_COLLECTIONS = {
    "dance": ("oneills1850", "ryansMammoth"),
    "airs": ("airdsAirs", "miscFolk"),
    "chorale": ("bach",),
}
STEPS = 600
EVAL_EVERY = 50
LEARNING_RATE = 1e-3
REFERENCE_NAME = "melody_styles_reference.npz"


def base_weights(smoke: bool) -> Path:
    """Where ``melody_train`` left the general model's Keras weights."""
    from .melody_train import WEIGHTS_NAME
    return common.BUILD_DIR / "melody" / ("smoke" if smoke else "full") / WEIGHTS_NAME


def style_splits(splits: dict, style: str) -> dict:
    colls = STYLE_COLLECTIONS[style]
    return {s: [m for m in v if m.collection in colls] for s, v in splits.items()}


def fine_tune(model, sampler, valid_seqs, valid_pos, steps: int, batch: int,
              lr: float = LEARNING_RATE, every: int = EVAL_EVERY) -> dict:
    """Train from the loaded weights, keep the weights of the best validation NLL."""
    import keras
    from .melody_train import sequence_nll
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(sched, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    best = sequence_nll(model, valid_seqs, valid_pos)
    curve = [(0, best)]
    best_step, best_weights = 0, model.get_weights()
    prog = common.Progress("fine-tuning", steps, every=5.0)
    start = time.monotonic()
    for step in range(1, steps + 1):
        x, y, w = sampler.batch(batch)
        loss, _acc = model.train_on_batch(x, y, sample_weight=w)
        if step % every == 0 or step == steps:
            nll = sequence_nll(model, valid_seqs, valid_pos)
            curve.append((step, nll))
            if nll < best:
                best, best_step, best_weights = nll, step, model.get_weights()
        prog.update(1, f"loss {float(loss):.3f} valid best {best:.4f} at {best_step}")
    prog.close()
    model.set_weights(best_weights)
    return {"best_step": best_step, "valid_nll": best, "curve": curve,
            "seconds": time.monotonic() - start}


def run(smoke: bool = False, steps: int | None = None, only: list[str] | None = None,
        out_dir: Path | None = None) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from . import markov, melody_data, melody_train as mt
    weights = base_weights(smoke)
    if not weights.exists():
        raise SystemExit(f"melody_styles: {weights} is missing: the styles start from the "
                         "general model's weights; run melody_train first (make models does)")
    steps = steps or int(os.environ.get("MELODY_STYLE_STEPS", 3 if smoke else STEPS))
    only = only or [s for s in os.environ.get("MELODY_STYLES", "").split(",") if s] \
        or list(STYLE_COLLECTIONS)
    batch, window = (8, 32) if smoke else (mt.BATCH, mt.WINDOW)
    work = common.BUILD_DIR / "melody" / ("styles-smoke" if smoke else "styles")
    work.mkdir(parents=True, exist_ok=True)
    into_repo = not smoke and out_dir is None
    out_dir = Path(out_dir) if out_dir else (common.MODELS_DIR if into_repo else work)
    ref_path = (common.MODELS_DIR / "training" if into_repo else out_dir) / REFERENCE_NAME
    data = melody_data.load_melodies(3 if smoke else None)
    splits = melody_data.by_split(data["melodies"])
    figures, fixture = {}, {}
    if ref_path.exists():   # a run of some styles keeps the others' golden vectors
        fixture = dict(np.load(ref_path))
    for style in only:
        t0 = time.monotonic()
        keras.utils.set_random_seed(1234)
        rng = np.random.default_rng(1234)
        sp = style_splits(splits, style)
        if smoke:
            for s in ("valid", "test"):
                sp[s] = sp[s] or sp["train"][:2]
        seqs = {s: mt.token_arrays(v) for s, v in sp.items()}
        pos = {s: mt.position_arrays(v) for s, v in sp.items()}
        print(f"styles: {style} ({', '.join(STYLE_COLLECTIONS[style])}): "
              f"{len(seqs['train'])} train / {len(seqs['valid'])} valid / "
              f"{len(seqs['test'])} test melodies", flush=True)
        base, _orders = markov.fit_best(seqs["train"], seqs["valid"],
                                        orders=(1, 2, 3) if smoke else tuple(range(1, 11)))
        markov_nll = base.nll(seqs["test"], skip_first=True)
        model = mt.build_model()
        model.load_weights(weights)
        general_test = mt.sequence_nll(model, seqs["test"], pos["test"])
        sampler = mt.WindowSampler(seqs["train"], pos["train"], window, rng)
        stats = fine_tune(model, sampler, seqs["valid"], pos["valid"], steps, batch)
        float_nll = mt.sequence_nll(model, seqs["test"], pos["test"])
        step_model, state_size = mt.build_step_model(model)
        swork = work / style
        swork.mkdir(parents=True, exist_ok=True)
        results = mt.export_schemes(step_model, state_size, swork, seqs["test"], pos["test"],
                                    seqs["valid"][:20], pos["valid"][:20])
        scheme = mt.choose_scheme(results)
        target = out_dir / STYLES[style].file
        out_dir.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(results[scheme]["path"]).read_bytes())
        ref = mt.reference_fixture(model, sp["test"], rng)
        for k in ("golden_tokens", "golden_positions", "golden_bar_steps", "golden_downbeat",
                  "golden_probs", "primer_pitch", "primer_start", "primer_end", "primer_piece",
                  "primer_steps", "primer_bar_steps", "primer_downbeat"):
            fixture[f"{style}_{k}"] = ref[k]
        fixture[f"{style}_quant_test_nll"] = np.float64(results[scheme]["nll"])
        fixture[f"{style}_float_test_nll"] = np.float64(float_nll)
        figures[style] = {
            "collections": STYLE_COLLECTIONS[style],
            "melodies": {s: len(v) for s, v in seqs.items()},
            "markov_order": base.order, "markov_test_nll": markov_nll,
            "general_model_float_test_nll": general_test,
            "float_test_nll": float_nll, "scheme": scheme, "schemes": results,
            "quant_test_nll": results[scheme]["nll"], "bytes": target.stat().st_size,
            "fine_tune": stats, "seconds": time.monotonic() - t0,
            "nll_reduction_vs_markov": 1 - results[scheme]["nll"] / markov_nll,
        }
        print(f"styles: {style}: wrote {target} ({scheme}, {target.stat().st_size // 1024} "
              f"KiB); test NLL {results[scheme]['nll']:.4f} (general model {general_test:.4f}, "
              f"Markov order {base.order} {markov_nll:.4f}: "
              f"{100 * figures[style]['nll_reduction_vs_markov']:.1f}% lower); best valid at "
              f"step {stats['best_step']} of {steps} ({figures[style]['seconds'] / 60:.1f} min)",
              flush=True)
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(ref_path, **fixture)
    (work / "styles_figures.json").write_text(json.dumps(figures, indent=2, default=str))
    if into_repo:
        from piano_buddy.tflite import write_manifest
        write_manifest(common.MODELS_DIR)
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", default=bool(os.environ.get("MELODY_SMOKE")))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--only", nargs="*", choices=sorted(STYLE_COLLECTIONS), default=None)
    ap.add_argument("--out", type=Path, default=None, help="where the style files go")
    args = ap.parse_args(argv)
    run(args.smoke, args.steps, args.only, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
