"""Train the melody LSTM, export its single-step TFLite model, write the golden fixture.

Model: one-hot event token (39 classes, :mod:`piano_buddy.encoding`) and the bar position
of the next step (5 binary counters, :func:`piano_buddy.melody.model_inputs`) -> LSTM 128 ->
LSTM 128 -> Dense 39 logits; trained on random 128-step windows of the training split with a
random transposition (-5..+6 semitones, only as far as the window stays inside MIDI 48-84).
2x128 because a step costs ~6 us in tflite-runtime, so priming on a phrase and answering
64 steps stays a few ms even on a Pi 4 (toolchain.md: 2x256 is 3.5x slower to train).

Export: the trained LSTM weights go into a basic-op step model (token, position, state) ->
(logits, state_out) (:mod:`tflite_export`), converted as float, int8-weight ("dynamic") and int16x8;
the scheme is chosen by measured test NLL (the smallest file within 2% of float).

``python -m models_tflite.training.melody_train`` trains the committed model (writes
models_tflite/melody.tflite and models_tflite/training/melody_reference.npz);
``--smoke`` (or MELODY_SMOKE=1) trains a few steps on a tiny subset into the build folder.
``--steps N`` / MELODY_STEPS overrides the step budget; MELODY_EXCLUDE=oneills1850 (comma
list) trains without a collection into the build folder; MELODY_NONCOMMERCIAL=1 adds the
Essen folksongs (licensed for non-commercial use only) for a non-commercial installation:
that model replaces models_tflite/melody.tflite like a default run, and must never be
committed; add ``--out models_tflite`` to an excluding run to replace the model anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from piano_buddy.encoding import FIRST_PITCH_TOKEN, MELODY_VOCAB, POSITION_BITS
from piano_buddy.melody import model_inputs

from . import common

UNITS = (128, 128)
BATCH = 64
WINDOW = 128
STEPS = 4000
LEARNING_RATE = 3e-3
TRANSPOSE = (-5, 6)
MAX_NLL_INCREASE = 0.02   # the quantized model may lose at most 2% test NLL
REFERENCE_NAME = "melody_reference.npz"
MODEL_NAME = "melody.tflite"
WEIGHTS_NAME = "melody.weights.h5"  # in the work folder, for the style fine-tunes
GOLDEN_STEPS = 48
N_PRIMERS = 64
PRIMER_STEPS = 32         # two 4/4 bars of the test melody: the player's phrase


# --- data ----------------------------------------------------------------------------------

INPUT_DIM = MELODY_VOCAB + POSITION_BITS


def token_arrays(melodies) -> list[np.ndarray]:
    return [np.asarray(m.tokens, np.int64) for m in melodies]


def position_arrays(melodies) -> list[np.ndarray]:
    """Bar position of every step of each melody and one step more (model_inputs wants
    the position of the step after the last token)."""
    from .melody_data import extend_positions
    return [extend_positions(m.bar_pos, len(m.tokens) + 1, m.bar_steps).astype(np.int64)
            for m in melodies]


def inputs_of(tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[T, INPUT_DIM] model inputs of a sequence (token t and the position of step t+1)."""
    onehot, pos = model_inputs(tokens, positions)
    return np.concatenate([onehot, pos], axis=-1)


class WindowSampler:
    """Random training windows (window+1 tokens and their bar positions, with a mask) with
    transposition."""

    def __init__(self, seqs: list[np.ndarray], positions: list[np.ndarray], window: int,
                 rng: np.random.Generator, transpose: tuple[int, int] = TRANSPOSE):
        keep = [i for i, s in enumerate(seqs) if len(s) >= 2]
        self.seqs = [seqs[i] for i in keep]
        self.positions = [positions[i] for i in keep]
        lengths = np.array([len(s) for s in self.seqs], np.float64)
        self.p = lengths / lengths.sum()
        self.window, self.rng, self.transpose = window, rng, transpose

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = self.window + 1
        toks = np.zeros((size, w), np.int64)
        pos = np.zeros((size, w + 1), np.int64)
        mask = np.zeros((size, w), np.float32)
        for row, i in enumerate(self.rng.choice(len(self.seqs), size, p=self.p)):
            s = self.seqs[i]
            off = int(self.rng.integers(0, max(1, len(s) - w + 1)))
            piece = s[off:off + w]
            toks[row, :len(piece)] = piece
            pos[row, :len(piece) + 1] = self.positions[i][off:off + len(piece) + 1]
            mask[row, :len(piece)] = 1.0
        is_pitch = toks >= FIRST_PITCH_TOKEN
        lo = np.where(is_pitch, toks, MELODY_VOCAB).min(axis=1)
        hi = np.where(is_pitch, toks, -1).max(axis=1)
        down = np.maximum(self.transpose[0], FIRST_PITCH_TOKEN - lo)
        up = np.minimum(self.transpose[1], MELODY_VOCAB - 1 - hi)
        up = np.maximum(up, down)  # windows without pitches: any shift is 0 effect
        shift = self.rng.integers(down, up + 1)
        toks = np.where(is_pitch, toks + shift[:, None], toks)
        x = np.stack([inputs_of(t[:-1], p[:-1]) for t, p in zip(toks, pos)])
        return x, toks[:, 1:], mask[:, 1:]


# --- model ---------------------------------------------------------------------------------

def build_model(units=UNITS):
    import keras
    inp = keras.Input((None, INPUT_DIM), name="inputs")
    x = inp
    for i, u in enumerate(units):
        x = keras.layers.LSTM(u, return_sequences=True, name=f"lstm_{i}")(x)
    out = keras.layers.Dense(MELODY_VOCAB, name="logits")(x)
    return keras.Model(inp, out, name="melody_lstm")


def build_step_model(model):
    """Single-step twin of the trained model, sharing its Dense head, weights copied:
    (token [1, 39], position [1, 5], state) -> (logits, state_out)."""
    from . import tflite_export as te
    import keras
    lstms = [l for l in model.layers if isinstance(l, keras.layers.LSTM)]
    stack = te.LSTMStack([l.units for l in lstms], INPUT_DIM, name="lstm_stack")
    tok = keras.Input(shape=(MELODY_VOCAB,), batch_size=1, name="token")
    pos = keras.Input(shape=(POSITION_BITS,), batch_size=1, name="position")
    s_in = keras.Input(shape=(stack.state_size,), batch_size=1, name="state")
    top, new_state = stack(keras.layers.Concatenate(name="token_position")([tok, pos]), s_in)
    out = model.get_layer("logits")(top)
    step = keras.Model([tok, pos, s_in], [out, new_state], name="step_model")
    stack.copy_from(lstms)
    return step, stack.state_size


def step_inputs(state_size: int) -> dict:
    """The step model's input names and shapes, in the order it takes them."""
    return {"token": (1, MELODY_VOCAB), "position": (1, POSITION_BITS),
            "state": (1, state_size)}


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sequence_nll(model, seqs: list[np.ndarray], positions: list[np.ndarray],
                 batch: int = 64) -> float:
    """Mean NLL per predicted step (every token but each piece's first), float Keras model."""
    order = np.argsort([len(s) for s in seqs])
    total, count = 0.0, 0
    for a in range(0, len(order), batch):
        idx = [i for i in order[a:a + batch] if len(seqs[i]) >= 2]
        if not idx:
            continue
        group = [seqs[i] for i in idx]
        n = max(len(s) for s in group)
        toks = np.zeros((len(group), n), np.int64)
        x = np.zeros((len(group), n - 1, INPUT_DIM), np.float32)
        mask = np.zeros((len(group), n - 1), bool)
        for r, i in enumerate(idx):
            s = seqs[i]
            toks[r, :len(s)] = s
            x[r, :len(s) - 1] = inputs_of(s[:-1], positions[i][:len(s)])
            mask[r, :len(s) - 1] = True
        logits = np.asarray(model(x, training=False))
        lp = log_softmax(logits)
        picked = np.take_along_axis(lp, toks[:, 1:, None], axis=-1)[..., 0]
        total -= float(picked[mask].sum())
        count += int(mask.sum())
    return total / max(1, count)


def tflite_nll(path: Path, seqs: list[np.ndarray], positions: list[np.ndarray]) -> float:
    """Mean NLL per predicted step of a .tflite step model run one step at a time."""
    from ai_edge_litert.interpreter import Interpreter
    from .tflite_export import signature_tensor_indices
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    ins, outs = signature_tensor_indices(interp)
    state_shape = [d["shape"] for d in interp.get_input_details() if d["index"] == ins["state"]]
    total, count = 0.0, 0
    for s, ps in zip(seqs, positions):
        state = np.zeros(state_shape[0], np.float32)
        onehot, pos = model_inputs(s[:-1], ps[:len(s)])
        for t in range(len(s) - 1):
            interp.set_tensor(ins["token"], onehot[t][None])
            interp.set_tensor(ins["position"], pos[t][None])
            interp.set_tensor(ins["state"], state)
            interp.invoke()
            logits = interp.get_tensor(outs["logits"])[0]
            state = interp.get_tensor(outs["state_out"])
            total -= float(log_softmax(logits)[s[t + 1]])
            count += 1
    return total / max(1, count)


def step_vs_sequence(model, step_model, state_size: int, tokens: np.ndarray,
                     positions: np.ndarray) -> float:
    """Max |logit difference| between stepping the state and evaluating the whole sequence."""
    onehot, pos = model_inputs(tokens, positions[:len(tokens) + 1])
    full = np.asarray(model(np.concatenate([onehot, pos], -1)[None], training=False))[0]
    state = np.zeros((1, state_size), np.float32)
    diffs = []
    for t in range(len(tokens)):
        logits, state = step_model([onehot[t][None], pos[t][None], state], training=False)
        state = np.asarray(state)
        diffs.append(np.abs(np.asarray(logits)[0] - full[t]).max())
    return float(max(diffs))


# --- training ------------------------------------------------------------------------------

def train(model, sampler: WindowSampler, steps: int, batch: int, lr: float,
          log_every: int = 100, max_minutes: float | None = None) -> dict:
    import keras
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(sched, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    prog = common.Progress("training melody LSTM", steps, every=5.0)
    start = time.monotonic()
    loss_avg, done = None, 0
    for step in range(steps):
        x, y, w = sampler.batch(batch)
        loss, acc = model.train_on_batch(x, y, sample_weight=w)
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        done = step + 1
        prog.update(1, f"loss {loss_avg:.3f} acc {acc:.3f}")
        if max_minutes and time.monotonic() - start > 60 * max_minutes:
            print(f"\nmelody: wall-clock cap of {max_minutes} min reached at step {done}",
                  file=sys.stderr)
            break
    prog.close()
    return {"steps": done, "seconds": time.monotonic() - start, "final_loss": float(loss_avg)}


# --- export and fixture --------------------------------------------------------------------

def export_schemes(step_model, state_size: int, work: Path, eval_seqs: list[np.ndarray],
                   eval_pos: list[np.ndarray], calib_seqs: list[np.ndarray],
                   calib_pos: list[np.ndarray], schemes=("float", "dynamic", "int16x8")
                   ) -> dict:
    """Convert with each scheme, measure NLL; {scheme: {"path", "bytes", "nll"}}."""
    from .tflite_export import export_tflite

    def representative():
        n = 0
        for s, ps in zip(calib_seqs, calib_pos):
            state = np.zeros((1, state_size), np.float32)
            onehot, pos = model_inputs(s[:64], ps[:len(s[:64]) + 1])
            for t in range(len(onehot)):
                yield {"token": onehot[t][None], "position": pos[t][None], "state": state}
                _, state = step_model([onehot[t][None], pos[t][None], state], training=False)
                state = np.asarray(state)
                n += 1
            if n >= 800:
                return

    out = {}
    for scheme in schemes:
        path = work / f"melody-{scheme}.tflite"
        data = export_tflite(step_model, step_inputs(state_size),
                             path, quantize=scheme,
                             representative=representative if scheme == "int16x8" else None)
        t = time.monotonic()
        nll = tflite_nll(path, eval_seqs, eval_pos)
        out[scheme] = {"path": str(path), "bytes": len(data), "nll": nll}
        print(f"melody: {scheme:>8}: {len(data) / 1024:.0f} KiB, test NLL {nll:.4f} "
              f"({time.monotonic() - t:.0f}s)", flush=True)
    return out


def choose_scheme(results: dict) -> str:
    """Smallest quantized file whose NLL is within MAX_NLL_INCREASE of float; else float."""
    ref = results["float"]["nll"]
    ok = [s for s in ("dynamic", "int16x8") if s in results
          and results[s]["nll"] <= ref * (1 + MAX_NLL_INCREASE)]
    return min(ok, key=lambda s: results[s]["bytes"]) if ok else "float"


def reference_fixture(model, test_melodies, rng: np.random.Generator) -> dict:
    """Golden vectors (fixed tokens and bar positions -> float softmax) and test-split
    primers with their bar grids, for the tests."""
    from .melody_data import bar_grid_of
    # the first test melody long enough whose opening keeps one bar length (the runtime's
    # BarGrid is regular, and tests/test_melody.py compares the two step by step)
    def regular(m):
        grid = bar_grid_of(m)
        return all(grid.position(t) == int(m.bar_pos[t]) for t in range(GOLDEN_STEPS + 1))
    long_enough = [m for m in test_melodies if len(m.tokens) > GOLDEN_STEPS]
    golden_melody = next((m for m in long_enough if regular(m)), long_enough[0])
    golden = np.asarray(golden_melody.tokens[:GOLDEN_STEPS], np.int64)
    golden_pos = position_arrays([golden_melody])[0][:GOLDEN_STEPS + 1]
    golden_grid = bar_grid_of(golden_melody)
    logits = np.asarray(model(inputs_of(golden, golden_pos)[None], training=False))[0]
    probs = np.exp(log_softmax(logits))
    cands = [m for m in test_melodies if len(m.tokens) >= PRIMER_STEPS + 16
             and sum(n.start < PRIMER_STEPS for n in m.notes) >= 6]
    pick = rng.choice(len(cands), min(N_PRIMERS, len(cands)), replace=False)
    pitch, start, end, piece, bar_steps, downbeat = [], [], [], [], [], []
    for k, i in enumerate(sorted(pick)):
        grid = bar_grid_of(cands[i])
        bar_steps.append(grid.steps)
        downbeat.append(grid.downbeat)
        for n in cands[i].notes:
            if n.start < PRIMER_STEPS:
                pitch.append(n.pitch)
                start.append(n.start)
                end.append(min(n.end, PRIMER_STEPS))
                piece.append(k)
    return {"golden_tokens": golden.astype(np.int8), "golden_positions": golden_pos.astype(np.int8),
            "golden_bar_steps": np.int16(golden_grid.steps),
            "golden_downbeat": np.int16(golden_grid.downbeat),
            "golden_logits": logits.astype(np.float32),
            "primer_bar_steps": np.asarray(bar_steps, np.int16),
            "primer_downbeat": np.asarray(downbeat, np.int16),
            "golden_probs": probs.astype(np.float32),
            "primer_pitch": np.asarray(pitch, np.int16),
            "primer_start": np.asarray(start, np.int16),
            "primer_end": np.asarray(end, np.int16), "primer_piece": np.asarray(piece, np.int16),
            "primer_steps": np.int16(PRIMER_STEPS)}


# --- entry point ---------------------------------------------------------------------------

def run(smoke: bool = False, steps: int | None = None, out_dir: Path | None = None,
        max_minutes: float | None = None) -> dict:
    """Train, export, choose, write. Returns the figures (also saved as JSON in the work dir)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from . import markov, melody_data
    keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(1234)
    exclude = sorted(c for c in os.environ.get("MELODY_EXCLUDE", "").split(",") if c)
    nc = melody_data.noncommercial()
    tag = (("smoke" if smoke else "full") + ("-noncommercial" if nc else "")
           + "".join(f"-no-{c}" for c in exclude))
    work = common.BUILD_DIR / "melody" / tag
    work.mkdir(parents=True, exist_ok=True)
    # a full run with every collection of the build replaces the files in models_tflite
    # (with MELODY_NONCOMMERCIAL=1: a non-commercial installation's model, never committed)
    committed = not smoke and not exclude and out_dir is None
    out_dir = Path(out_dir) if out_dir else (common.MODELS_DIR if committed else work)
    into_repo = out_dir.resolve() == common.MODELS_DIR.resolve()  # e.g. --out models_tflite
    ref_dir = common.MODELS_DIR / "training" if into_repo else out_dir
    if steps is None:
        steps = int(os.environ.get("MELODY_STEPS", 5 if smoke else STEPS))
    batch, window = (8, 32) if smoke else (BATCH, WINDOW)

    t0 = time.monotonic()
    data = melody_data.load_melodies(3 if smoke else None)
    print(f"melody: collections {', '.join(melody_data.abc_collections())}, "
          f"{melody_data.CHORALE_COLLECTION}"
          + (" (MELODY_NONCOMMERCIAL=1: non-commercial use only)" if nc else ""), flush=True)
    if exclude:
        print(f"melody: leaving out {', '.join(sorted(exclude))}", flush=True)
    splits = melody_data.by_split([m for m in data["melodies"]
                                   if m.collection not in exclude])
    if smoke:  # a tiny corpus may leave a split empty: borrow from train
        for s in ("valid", "test"):
            splits[s] = splits[s] or splits["train"][:2]
    train_seqs = token_arrays(splits["train"])
    valid_seqs = token_arrays(splits["valid"])
    test_seqs = token_arrays(splits["test"])
    train_pos = position_arrays(splits["train"])
    valid_pos = position_arrays(splits["valid"])
    test_pos = position_arrays(splits["test"])
    print(f"melody: {len(train_seqs)} train / {len(valid_seqs)} valid / {len(test_seqs)} test "
          f"melodies, {sum(map(len, train_seqs))} training steps "
          f"({time.monotonic() - t0:.0f}s)", flush=True)

    base, orders = markov.fit_best(train_seqs, valid_seqs,
                                   orders=(1, 2, 3) if smoke else tuple(range(1, 11)))
    markov_nll = base.nll(test_seqs, skip_first=True)
    print(f"melody: Markov baseline order {base.order}: test NLL {markov_nll:.4f}", flush=True)

    model = build_model()
    sampler = WindowSampler(train_seqs, train_pos, window, rng)
    stats = train(model, sampler, steps, batch, LEARNING_RATE, max_minutes=max_minutes)
    # the style models (melody_styles) are fine-tuned from these weights
    model.save_weights(work / WEIGHTS_NAME)
    float_nll = sequence_nll(model, test_seqs, test_pos)
    valid_nll = sequence_nll(model, valid_seqs, valid_pos)
    print(f"melody: trained {stats['steps']} steps in {stats['seconds'] / 60:.1f} min; "
          f"float test NLL {float_nll:.4f} (valid {valid_nll:.4f}), Markov {markov_nll:.4f}",
          flush=True)

    step_model, state_size = build_step_model(model)
    equiv = step_vs_sequence(model, step_model, state_size, test_seqs[0][:64], test_pos[0])
    print(f"melody: step model vs sequence model: max |logit diff| {equiv:.2e}", flush=True)
    results = export_schemes(step_model, state_size, work, test_seqs, test_pos,
                             valid_seqs[:20], valid_pos[:20])
    scheme = choose_scheme(results)
    chosen = Path(results[scheme]["path"])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_NAME
    target.write_bytes(chosen.read_bytes())
    fixture = reference_fixture(model, splits["test"], rng)
    fixture.update(float_test_nll=np.float64(float_nll), quant_test_nll=np.float64(
        results[scheme]["nll"]), markov_test_nll=np.float64(markov_nll),
        markov_order=np.int16(base.order), scheme=np.str_(scheme),
        units=np.asarray(UNITS, np.int16), train_steps=np.int32(stats["steps"]),
        train_seconds=np.float64(stats["seconds"]),
        step_vs_sequence_max_diff=np.float64(equiv))
    ref_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(ref_dir / REFERENCE_NAME, **fixture)
    figures = {
        "units": list(UNITS), "steps": stats["steps"], "batch": batch, "window": window,
        "train_seconds": stats["seconds"], "total_seconds": time.monotonic() - t0,
        "markov_order": base.order, "markov_valid_nll": orders, "markov_test_nll": markov_nll,
        "float_test_nll": float_nll, "float_valid_nll": valid_nll,
        "schemes": results, "scheme": scheme, "step_vs_sequence_max_diff": equiv,
        "model_bytes": target.stat().st_size,
        "melodies": {s: len(v) for s, v in splits.items()},
        "collections": {s: dict(sorted(Counter(m.collection for m in v).items()))
                        for s, v in splits.items()},
        "noncommercial": nc,
        "train_steps_of_data": int(sum(map(len, train_seqs))),
        "nll_reduction_vs_markov": 1 - results[scheme]["nll"] / markov_nll,
    }
    (work / "melody_figures.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"melody: wrote {target} ({scheme}, {target.stat().st_size / 1024:.0f} KiB), "
          f"test NLL {results[scheme]['nll']:.4f} vs Markov {markov_nll:.4f} "
          f"({100 * figures['nll_reduction_vs_markov']:.1f}% lower)", flush=True)
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", default=bool(os.environ.get("MELODY_SMOKE")))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="where melody.tflite goes")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-clock cap")
    args = ap.parse_args(argv)
    run(args.smoke, args.steps, args.out, args.max_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
