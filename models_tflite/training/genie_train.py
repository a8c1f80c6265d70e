"""Train Piano Genie (the whole autoencoder, as the paper) and export its decoder to TFLite.

Model (Donahue et al. 2019, Magenta's ``stp_iq_auto_dt`` with the contour loss):

* encoder: one-hot key (88) + one-hot dt bin (33) -> dense 64 -> 2 bidirectional LSTM
  layers of 64 -> dense 1, a real number per note (64 units, not 128: its unrolled
  whole-sequence export must stay under 1 MB);
* bottleneck: clipped to [-1, 1] and rounded to 8 levels (the buttons), straight-through
  gradients; range penalty ``max(|z| - 1, 0)^2`` (weight 10, ``Config.range_weight``) and
  contour loss ``max(0, 1 - dkey * dz)^2`` (dkey in semitones) make the buttons follow the
  melody;
* decoder: button (2b/7 - 1) + one-hot previous key (89, 0 = start) + one-hot dt bin (33)
  + one-hot button move (16, ``genie.move_class``) = 139 features
  (``piano_buddy.genie.fill_features``) -> dense 128 -> 2 LSTM of 128 ->
  dense 88 logits.

A baseline decoder of the same shape WITHOUT the button input is trained on the same data,
so the card can show how much the buttons tell the decoder (perplexity ratio).

Both halves ship, int8 weights: the decoder as a single-step model (features, packed state
[h1,c1,h2,c2]) -> (logits, new state) in ``genie.tflite``; the encoder as a whole-sequence
model (64 note rows + padding mask) -> one value per note in ``genie_encoder.tflite``, for
the copy-me LEDs. Training windows are drawn by ``genie_data.Recipe`` (whole-keyboard
transposition, piano music weighted up); a sweep run (GENIE_VARIANT=name, with
GENIE_TRANSPOSE / GENIE_TEXTURES / GENIE_KEYBOARD_WEIGHT) writes only under build/.

    .venv-train/bin/python -m models_tflite.training.genie_train            # full build
    GENIE_SMOKE=1 .venv-train/bin/python -m models_tflite.training.genie_train   # tiny

Env overrides: GENIE_STEPS, GENIE_BASELINE_STEPS, GENIE_BATCH, GENIE_INTERVAL_BIAS,
GENIE_REPEAT_WEIGHT, GENIE_CONTOUR_MARGIN, GENIE_RANGE_WEIGHT, the recipe's (genie_data.Recipe.from_env:
GENIE_TRANSPOSE, GENIE_TEXTURES, GENIE_KEYBOARD_WEIGHT, GENIE_REPEAT_KEEP,
GENIE_DROP_UNISONS, GENIE_TEMPO, GENIE_LOG_TEMPO), GENIE_OUT (the decoder's
.tflite path; the encoder goes beside it), GENIE_NONCOMMERCIAL=1 (adds the encodings whose
licence forbids commercial use: never for the committed model).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from piano_buddy import encoding as enc
from piano_buddy import genie as rt

from . import common, genie_data

MODEL_PATH = common.MODELS_DIR / "genie.tflite"
ENCODER_PATH = common.MODELS_DIR / rt.ENCODER_NAME
REFERENCE_PATH = Path(__file__).resolve().parent / "genie_reference.npz"
WORK_DIR = common.BUILD_DIR / "genie"
NUM_LEVELS = 8


@dataclass
class Config:
    steps: int = 1500
    baseline_steps: int = 1000
    batch: int = 32
    seq_len: int = 128
    units: int = 128
    enc_units: int = 64            # the encoder's LSTMs (its .tflite must stay < 1 MB)
    lr: float = 1e-3
    lr_final: float = 1e-4
    contour_weight: float = 1.0
    contour_margin: float = 1.0    # max(0, margin - dkey * dz)^2: the dz a 1-semitone step needs
    # Weight of the repeat term (GenieModel.losses): -log(1 - p(previous key)) on the steps
    # whose key differs from the one before. 0: off.
    repeat_weight: float = 0.0
    # Weight of the range penalty (values past +-1, which clip to buttons 0 and 7). The
    # contour loss asks for more button movement per semitone than +-1 holds, so at weight
    # 1 the encoder's values grew past the ends as training went on (penalty 0.04 at step
    # 300, 0.25 at 1500; 28.5% of test notes on buttons 0 and 7): the inner buttons then
    # stood for 3.2-3.4 semitones each, and the walks' mean key spanned only 31.6. At 10
    # the values stay inside (penalty 0.005, 11.9% on the end buttons, 3.8 semitones a
    # button move) and the span is 43.9 (MODEL_CARD.md, the fourth retrain).
    range_weight: float = 10.0
    # The interval bias (IntervalBias): a learnt logit per (button move, interval from the
    # previous key) and per (dt group, interval), added to the decoder's logits.
    interval_bias: bool = True
    eval_windows: int = 256        # test windows for the float/quantized metrics
    walks: int = 64                # random button walks for the contour check
    walk_len: int = 128
    walk_temperature: float = 0.25
    quantize: str = "dynamic"
    smoke: bool = False
    limit: int | None = None       # corpus files per collection (smoke)
    seed: int = 0
    recipe: dict = field(default_factory=dict)   # genie_data.Recipe (how windows are drawn)
    variant: str = ""              # GENIE_VARIANT: a sweep run, written under build/ only
    notes: dict = field(default_factory=dict)


def config_from_env(smoke: bool = False) -> Config:
    smoke = smoke or os.environ.get("GENIE_SMOKE", "") not in ("", "0")
    cfg = Config()
    if smoke:
        cfg = Config(steps=4, baseline_steps=2, batch=4, seq_len=32, eval_windows=4, walks=2,
                     walk_len=16, smoke=True, limit=1)
    cfg.steps = int(os.environ.get("GENIE_STEPS", cfg.steps))
    cfg.baseline_steps = int(os.environ.get("GENIE_BASELINE_STEPS", cfg.baseline_steps))
    cfg.batch = int(os.environ.get("GENIE_BATCH", cfg.batch))
    cfg.recipe = asdict(genie_data.Recipe.from_env())
    cfg.variant = os.environ.get("GENIE_VARIANT", "")
    cfg.repeat_weight = float(os.environ.get("GENIE_REPEAT_WEIGHT", cfg.repeat_weight))
    cfg.contour_margin = float(os.environ.get("GENIE_CONTOUR_MARGIN", cfg.contour_margin))
    cfg.range_weight = float(os.environ.get("GENIE_RANGE_WEIGHT", cfg.range_weight))
    cfg.interval_bias = os.environ.get("GENIE_INTERVAL_BIAS",
                                       "1" if cfg.interval_bias else "0") not in ("", "0")
    return cfg


# --- the Keras model ---------------------------------------------------------------------

def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    return keras


# dt groups of the interval bias, by dt bin (32 ms): chord notes (< 48 ms), fast (48-144
# ms: the walks' fast playing), moderate (160-450 ms), slow (>= 480 ms).
DT_GROUP_EDGES = (2, 5, 15)
INTERVALS = 2 * enc.NUM_KEYS - 1   # key - previous key, -87..+87


def dt_groups() -> np.ndarray:
    """The dt group (0..3) of every dt bin."""
    return np.searchsorted(np.array(DT_GROUP_EDGES), np.arange(enc.DT_CLASSES),
                           side="right").astype(np.int32)


def _interval_bias_layer():
    keras = _keras()
    ops = keras.ops

    class IntervalBias(keras.layers.Layer):
        """A logit per (button move, interval to the previous key) plus one per (dt group,
        interval), read from the decoder's own input features and added to its logits.

        The LSTM decoder must learn "the same button again: a step away, rarely the same
        key" through a dense map of a one-hot previous key to 88 logits, and at 600-2000
        steps it had not: it kept a bump of probability on the previous key that the box's
        T=0.25 turns into a repeat on half the repeated presses. This term states it in the
        interval space directly (a few thousand weights, zero at the start); dt groups let
        the time between presses move it too. Exported as the same ops (GATHER from the weights)."""

        def build(self, input_shape):
            self.r_move = self.add_weight(shape=(rt.MOVE_CLASSES * INTERVALS,),
                                          initializer="zeros", name="r_move")
            self.r_dt = self.add_weight(shape=((len(DT_GROUP_EDGES) + 1) * INTERVALS,),
                                        initializer="zeros", name="r_dt")

        @staticmethod
        def _index(one_hot):
            """The class of a one-hot block, as a dot with 0..n-1 (argmax brings ops
            TFLite lacks)."""
            n = int(one_hot.shape[-1])
            return ops.cast(ops.round(ops.sum(one_hot * ops.arange(n, dtype="float32"),
                                              axis=-1)), "int32")

        def call(self, features):
            prev = self._index(features[..., rt.PREV_KEY_OFFSET:rt.DT_OFFSET])
            dt_bin = self._index(features[..., rt.DT_OFFSET:rt.MOVE_OFFSET])
            move = self._index(features[..., rt.MOVE_OFFSET:rt.FEATURES])
            group = ops.take(ops.convert_to_tensor(dt_groups()), dt_bin)
            keys = ops.arange(enc.NUM_KEYS, dtype="int32")
            # prev is key + 1 (0 = start): interval index = key - (prev - 1) + 87
            iv = ops.clip(keys - prev[..., None] + enc.NUM_KEYS, 0, INTERVALS - 1)
            bias = (ops.take(self.r_move, move[..., None] * INTERVALS + iv)
                    + ops.take(self.r_dt, group[..., None] * INTERVALS + iv))
            return bias * ops.cast(prev > 0, "float32")[..., None]

    return IntervalBias


class GenieModel:
    """The layers of the autoencoder (or of the button-less baseline decoder)."""

    def __init__(self, units: int = 128, with_encoder: bool = True, seed: int = 0,
                 enc_units: int = 64, interval_bias: bool = False):
        keras = _keras()
        keras.utils.set_random_seed(seed)
        self._keras, self._ops = keras, keras.ops  # (no os.environ access inside tf.function)
        L = keras.layers
        self.with_encoder = with_encoder
        self.units, self.enc_units = units, enc_units
        if with_encoder:
            self.enc_in = L.Dense(enc_units, name="enc_in")
            self.enc_rnn = [L.Bidirectional(L.LSTM(enc_units, return_sequences=True),
                                            name=f"enc_bilstm_{i}") for i in range(2)]
            self.enc_out = L.Dense(1, name="enc_out")
        self.dec_in = L.Dense(units, name="dec_in")
        self.dec_rnn = [L.LSTM(units, return_sequences=True, name=f"dec_lstm_{i}")
                        for i in range(2)]
        self.dec_out = L.Dense(enc.NUM_KEYS, name="dec_out")
        # only with buttons: the bias reads the button move
        self.interval_bias = (_interval_bias_layer()(name="interval_bias")
                              if interval_bias and with_encoder else None)

    # All tensors: keys [B, T] int32 (0..87), dts [B, T] int32 bins.
    def encode(self, keys, dts):
        ops = self._ops
        x = ops.concatenate([ops.one_hot(keys, enc.NUM_KEYS),
                             ops.one_hot(dts, enc.DT_CLASSES)], axis=-1)
        x = self.enc_in(x)
        for rnn in self.enc_rnn:
            x = rnn(x)
        return self.enc_out(x)[..., 0]  # [B, T] unbounded pre-quantization value

    def quantize(self, z):
        """(button index [B, T] float, straight-through scaled value [B, T])."""
        ops = self._ops
        s = float(NUM_LEVELS - 1)
        idx = ops.round(s * ops.clip((z + 1.0) / 2.0, 0.0, 1.0))
        zq = 2.0 * idx / s - 1.0
        return idx, z + ops.stop_gradient(zq - z)

    def decoder_features(self, keys, dts, button_value=None):
        """The runtime's layout (``piano_buddy.genie.fill_features``) for whole windows:
        button | previous key | dt bin | button move (``genie.move_class``, from the
        quantized buttons; no gradient flows through the move). The baseline (no
        ``button_value``) has neither the button nor the move."""
        ops = self._ops
        prev = ops.pad(keys[:, :-1] + 1, [[0, 0], [1, 0]])  # 0 = start
        parts = [ops.one_hot(prev, enc.PREV_KEY_CLASSES), ops.one_hot(dts, enc.DT_CLASSES)]
        if button_value is not None:
            parts.insert(0, button_value[..., None])
            level = ops.stop_gradient(ops.cast(ops.round(
                (button_value + 1.0) * (NUM_LEVELS - 1) / 2.0), "int32"))
            move = ops.pad(level[:, 1:] - level[:, :-1] + enc.NUM_BUTTONS,
                           [[0, 0], [1, 0]])  # 0 = first press
            parts.append(ops.one_hot(move, rt.MOVE_CLASSES))
        return ops.concatenate(parts, axis=-1)

    def decode(self, features):
        x = self.dec_in(features)
        for rnn in self.dec_rnn:
            x = rnn(x)
        logits = self.dec_out(x)
        if self.interval_bias is not None:
            logits = logits + self.interval_bias(features)
        return logits

    def decoder_layers(self) -> list:
        return [self.dec_in, *self.dec_rnn, self.dec_out] + (
            [self.interval_bias] if self.interval_bias is not None else [])

    def losses(self, keys, dts, contour_margin: float = 1.0):
        """Dict of scalar losses and the tensors the metrics need."""
        ops = self._ops
        out = {}
        if self.with_encoder:
            z = self.encode(keys, dts)
            idx, zst = self.quantize(z)
            feats = self.decoder_features(keys, dts, zst)
            dkey = ops.cast(keys[:, 1:] - keys[:, :-1], "float32")
            dz = z[:, 1:] - z[:, :-1]
            out["contour"] = ops.mean(ops.square(ops.maximum(0.0, contour_margin - dkey * dz)))
            out["range"] = ops.mean(ops.square(ops.maximum(ops.abs(z) - 1.0, 0.0)))
            out["buttons"] = idx
        else:
            feats = self.decoder_features(keys, dts)
        logits = self.decode(feats)
        ce = self._keras.losses.sparse_categorical_crossentropy(keys, logits, from_logits=True)
        out["nll"] = ops.mean(ce)
        out["nll_per_step"] = ce
        out["repeat"] = self.repeat_loss(keys, logits)
        return out

    def repeat_loss(self, keys, logits):
        """Mean -log(1 - p(previous key)) over the steps whose key is not the previous one.

        The cross-entropy alone taught the decoder a smooth bump of probability around the
        previous key, whose peak IS the previous key: at the box's T=0.25 a repeated button
        then repeated its key on half the presses although the (thinned) data repeat a key
        on 1% of steps. This term (an unlikelihood loss) is the binary "repeat or not"
        likelihood of those steps, so the notch at the previous key is learnt directly; with
        the cross-entropy on the repeats themselves it stays near the data's repeat rate.
        Measured (MODEL_CARD.md, sweep): it did not move the walks' repeat rate at 600 or
        2000 steps; off (weight 0) in the committed recipe."""
        ops = self._ops
        probs = ops.softmax(logits[:, 1:], axis=-1)
        prev = keys[:, :-1]
        p_prev = ops.take_along_axis(probs, prev[..., None], axis=-1)[..., 0]
        moved = ops.cast(ops.not_equal(prev, keys[:, 1:]), "float32")
        ul = -ops.log(ops.clip(1.0 - p_prev, 1e-6, 1.0)) * moved
        return ops.sum(ul) / ops.maximum(ops.sum(moved), 1.0)

    def trainable_variables(self):
        layers = self.decoder_layers()
        if self.with_encoder:
            layers = [self.enc_in, *self.enc_rnn, self.enc_out] + layers
        return [v for layer in layers for v in layer.trainable_variables]

    def weights_dict(self) -> dict[str, np.ndarray]:
        layers = self.decoder_layers()
        if self.with_encoder:
            layers = [self.enc_in, *self.enc_rnn, self.enc_out] + layers
        return {f"{layer.name}/{i}": np.asarray(w)
                for layer in layers for i, w in enumerate(layer.get_weights())}

    def load_weights_dict(self, weights: dict[str, np.ndarray], keys, dts) -> None:
        self.losses(keys, dts)  # build every layer
        layers = self.decoder_layers()
        if self.with_encoder:
            layers = [self.enc_in, *self.enc_rnn, self.enc_out] + layers
        for layer in layers:
            n = len(layer.get_weights())
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(n)])


def train(model: GenieModel, sampler: genie_data.WindowSampler, steps: int, cfg: Config,
          desc: str, valid: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Adam with a cosine learning-rate decay; returns a log of the losses."""
    keras = _keras()
    import tensorflow as tf

    sched = keras.optimizers.schedules.CosineDecay(
        cfg.lr, decay_steps=max(1, steps), alpha=cfg.lr_final / cfg.lr)
    opt = keras.optimizers.Adam(learning_rate=sched, clipnorm=1.0)
    keys0, dts0 = sampler.batch(cfg.batch)
    model.losses(tf.constant(keys0), tf.constant(dts0))  # build
    variables = model.trainable_variables()

    @tf.function(reduce_retracing=True)
    def step(keys, dts):
        with tf.GradientTape() as tape:
            out = model.losses(keys, dts, cfg.contour_margin)
            loss = out["nll"]
            if cfg.repeat_weight:
                loss = loss + cfg.repeat_weight * out["repeat"]
            if model.with_encoder:
                loss = loss + cfg.contour_weight * out["contour"] + cfg.range_weight * out["range"]
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return {k: out[k] for k in ("nll", "contour", "range", "repeat") if k in out}

    @tf.function(reduce_retracing=True)
    def valid_step(keys, dts):
        out = model.losses(keys, dts)
        return out["nll"]

    log = {"steps": steps, "train": [], "valid": []}
    prog = common.Progress(desc, steps, every=5.0)
    t0 = time.monotonic()
    run = {}
    for i in range(steps):
        keys, dts = sampler.batch(cfg.batch)
        vals = {k: float(v) for k, v in step(tf.constant(keys), tf.constant(dts)).items()}
        for k, v in vals.items():
            run[k] = 0.95 * run.get(k, v) + 0.05 * v
        if (i + 1) % 100 == 0 or i + 1 == steps:
            log["train"].append({"step": i + 1, **{k: round(v, 4) for k, v in run.items()}})
        if valid is not None and ((i + 1) % 1000 == 0 or i + 1 == steps):
            v = float(np.mean([float(valid_step(tf.constant(valid[0][j:j + 64]),
                                                tf.constant(valid[1][j:j + 64])))
                               for j in range(0, len(valid[0]), 64)]))
            log["valid"].append({"step": i + 1, "nll": round(v, 4)})
            run["valid_nll"] = v
        prog.update(1, " ".join(f"{k}={v:.3f}" for k, v in run.items()))
    prog.close()
    log["seconds"] = round(time.monotonic() - t0, 1)
    log["seconds_per_step"] = round(log["seconds"] / max(1, steps), 4)
    return log


# --- evaluation on fixed windows ------------------------------------------------------------

def contour_violation(keys: np.ndarray, buttons: np.ndarray) -> float:
    """Share of consecutive steps where key and button move in opposite directions."""
    dk = np.diff(keys.astype(np.int64), axis=-1)
    db = np.diff(buttons.astype(np.int64), axis=-1)
    return float(np.mean(np.sign(dk) * np.sign(db) < 0))


def float_metrics(model: GenieModel, keys: np.ndarray, dts: np.ndarray) -> dict:
    """NLL / perplexity and the encoder's buttons (float model, whole sequences)."""
    import tensorflow as tf
    nll, buttons = [], []
    for j in range(0, len(keys), 64):
        out = model.losses(tf.constant(keys[j:j + 64]), tf.constant(dts[j:j + 64]))
        nll.append(np.asarray(out["nll_per_step"]))
        if model.with_encoder:
            buttons.append(np.asarray(out["buttons"]).astype(np.int32))
    nll = np.concatenate(nll)
    res = {"nll": float(nll.mean()), "perplexity": float(np.exp(nll.mean()))}
    if model.with_encoder:
        b = np.concatenate(buttons)
        res["buttons"] = b
        res["contour_violation"] = contour_violation(keys, b)
        res["button_usage"] = np.bincount(b.ravel(), minlength=NUM_LEVELS).tolist()
    return res


def step_features(keys: np.ndarray, dts: np.ndarray, buttons: np.ndarray) -> np.ndarray:
    """[T, FEATURES] decoder inputs of one teacher-forced sequence (previous key = true
    key), through the runtime's own ``fill_features``."""
    feats = np.zeros((len(keys), rt.FEATURES), np.float32)
    prev, prev_button = 0, None
    for t in range(len(keys)):
        rt.fill_features(feats[t], 2.0 * buttons[t] / (NUM_LEVELS - 1) - 1.0, prev,
                         int(dts[t]), rt.move_class(int(buttons[t]), prev_button))
        prev, prev_button = int(keys[t]) + 1, int(buttons[t])
    return feats


def tflite_nll(interp, keys: np.ndarray, dts: np.ndarray, buttons: np.ndarray) -> float:
    """Mean NLL of the step model over teacher-forced windows (state reset per window)."""
    from .tflite_export import signature_tensor_indices
    ins, outs = signature_tensor_indices(interp)
    total, n = 0.0, 0
    state = np.zeros((1, rt.STATE_SIZE), np.float32)
    for k, d, b in zip(keys, dts, buttons):
        feats = step_features(k, d, b)
        state[...] = 0.0
        logits = np.empty((len(k), enc.NUM_KEYS), np.float64)
        for t in range(len(k)):
            interp.set_tensor(ins["features"], feats[t:t + 1])
            interp.set_tensor(ins["state"], state)
            interp.invoke()
            logits[t] = interp.get_tensor(outs["logits"])[0]
            state[...] = interp.get_tensor(outs["state_out"])
        m = logits.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        total += float(np.sum(logz - logits[np.arange(len(k)), k]))
        n += len(k)
    return total / n


# --- export --------------------------------------------------------------------------------

def decoder_step_model(model: GenieModel, stack_name: str):
    """The single-step decoder (features, state) -> (logits, new state) that is exported,
    sharing the trained layers (the interval bias included)."""
    from . import tflite_export as tx
    stack = tx.LSTMStack([model.units, model.units], input_dim=model.units, name=stack_name)
    if model.interval_bias is None:
        step = tx.build_step_model(stack, input_dim=rt.FEATURES, head=model.dec_out,
                                   pre=model.dec_in, input_name="features")
    else:
        keras = _keras()
        x_in = keras.Input(shape=(rt.FEATURES,), batch_size=1, name="features")
        s_in = keras.Input(shape=(stack.state_size,), batch_size=1, name="state")
        top, new_state = stack(model.dec_in(x_in), s_in)
        out = model.dec_out(top) + model.interval_bias(x_in)
        step = keras.Model([x_in, s_in], [out, new_state], name="step_model")
    stack.copy_from(model.dec_rnn)
    return step


def export_decoder(model: GenieModel, path: Path, quantize: str,
                   representative=None) -> bytes:
    step = decoder_step_model(model, "dec_lstm_stack")
    from . import tflite_export as tx
    return tx.export_tflite(step, {"features": (1, rt.FEATURES), "state": (1, rt.STATE_SIZE)},
                            path, quantize=quantize, representative=representative)


def export_encoder(model: GenieModel, path: Path, quantize: str) -> bytes:
    """The encoder as one whole-sequence model (ENCODER_LENGTH rows, padding masked), its
    bidirectional LSTMs unrolled in basic ops (``tflite_export.build_sequence_model``)."""
    from . import tflite_export as tx
    seq = tx.build_sequence_model([model.enc_units, model.enc_units], rt.ENCODER_FEATURES,
                                  rt.ENCODER_LENGTH, pre=model.enc_in, head=model.enc_out,
                                  trained_bidirectional=model.enc_rnn)
    return tx.export_tflite(seq, {"features": (rt.ENCODER_LENGTH, rt.ENCODER_FEATURES),
                                  "mask": (rt.ENCODER_LENGTH, 1)},
                            path, quantize=quantize, output_names=("values",),
                            strip_names=True)


def encoder_golden(model: GenieModel, keys: np.ndarray, dts: np.ndarray,
                   lengths: tuple[int, ...] = (48, 64, 17)) -> dict[str, np.ndarray]:
    """Golden vectors of the FLOAT encoder (Keras, unpadded sequences) on test notes:
    a short, a full and a very short melody, so the padding mask is exercised."""
    out_keys = np.zeros((len(lengths), rt.ENCODER_LENGTH), np.int32)
    out_dts = np.zeros_like(out_keys)
    out_z = np.zeros((len(lengths), rt.ENCODER_LENGTH), np.float32)
    lengths = tuple(min(n, keys.shape[1]) for n in lengths)  # (smoke windows are short)
    for i, n in enumerate(lengths):
        k = keys[i % len(keys), :n].astype(np.int32)
        d = dts[i % len(keys), :n].astype(np.int32).copy()
        d[0] = 0
        out_keys[i, :n], out_dts[i, :n] = k, d
        out_z[i, :n] = np.asarray(model.encode(k[None], d[None]))[0]
    return {"encoder_keys": out_keys, "encoder_dts": out_dts, "encoder_values": out_z,
            "encoder_lengths": np.array(lengths, np.int32)}


def encoder_export_check(model: GenieModel, data: bytes, path: Path,
                         golden: dict[str, np.ndarray]) -> dict:
    """Size, max |value| difference and button agreement of the exported encoder against
    the float encoder's golden vectors (through the firmware's GenieEncoder)."""
    from piano_buddy.genie import GenieEncoder
    encoder = GenieEncoder(path)
    diffs, agree, n = [], 0, 0
    for k, d, z, m in zip(golden["encoder_keys"], golden["encoder_dts"],
                          golden["encoder_values"], golden["encoder_lengths"]):
        got = encoder.values(k[:m], d[:m])
        diffs.append(float(np.max(np.abs(got - z[:m]))))
        agree += int(np.sum(rt.value_to_button(got) == rt.value_to_button(z[:m])))
        n += int(m)
    return {"bytes": len(data), "max_abs_diff": max(diffs), "button_agreement": agree / n}


def float_step_check(model: GenieModel, feats: np.ndarray) -> float:
    """Max |logit difference| between the Keras step model (state fed back) and the
    sequence decoder on one sequence: the step export computes the same function."""
    step = decoder_step_model(model, "check_stack")
    seq = np.asarray(model.decode(feats[None]))[0]
    state = np.zeros((1, rt.STATE_SIZE), np.float32)
    outs = []
    for t in range(len(feats)):
        logits, state = step([feats[t:t + 1], state])
        outs.append(np.asarray(logits)[0])
        state = np.asarray(state)
    return float(np.max(np.abs(np.stack(outs) - seq)))


# --- the whole build -------------------------------------------------------------------------

def build(smoke: bool = False, out_path: Path | None = None,
          reference_path: Path | None = None) -> dict:
    """Parse (cached), train the autoencoder and the baseline, evaluate, export genie.tflite
    and the reference fixture. Returns the report dict (also written to build/genie/)."""
    cfg = config_from_env(smoke)
    work = WORK_DIR / ("smoke" if cfg.smoke else cfg.variant or "full")
    work.mkdir(parents=True, exist_ok=True)
    # a smoke or sweep run never overwrites the committed models and fixture
    scratch = cfg.smoke or bool(cfg.variant)
    default_out = work / "genie.tflite" if scratch else MODEL_PATH
    out_path = Path(os.environ.get("GENIE_OUT", out_path or default_out))
    reference_path = Path(reference_path or (work / "genie_reference.npz" if scratch
                                             else REFERENCE_PATH))
    t_start = time.monotonic()
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)

    pieces = genie_data.load_pieces(limit=cfg.limit)
    recipe = genie_data.Recipe(**cfg.recipe)
    if recipe.drop_unisons:
        pieces = [genie_data.drop_unisons(p) for p in pieces]
    splits = genie_data.by_split(pieces)
    if cfg.smoke:  # a tiny run may lack some split: borrow from train
        for s in ("valid", "test"):
            splits[s] = splits[s] or splits["train"][:2]
    data_stats = genie_data.stats(pieces)
    print("genie data:", json.dumps({k: data_stats[k] for k in ("pieces", "notes")}),
          flush=True)
    train_sampler = genie_data.WindowSampler(splits["train"], cfg.seq_len, seed=cfg.seed,
                                             recipe=recipe)
    valid = genie_data.fixed_windows(splits["valid"], cfg.seq_len, seed=11, max_windows=128)
    test = genie_data.fixed_windows(splits["test"], cfg.seq_len, seed=13,
                                    max_windows=cfg.eval_windows)

    report: dict = {"config": asdict(cfg), "data": data_stats,
                    "windows": {"valid": int(len(valid[0])), "test": int(len(test[0]))}}

    # 1. the autoencoder
    genie = GenieModel(cfg.units, with_encoder=True, seed=cfg.seed, enc_units=cfg.enc_units,
                       interval_bias=cfg.interval_bias)
    report["train_genie"] = train(genie, train_sampler, cfg.steps, cfg, "train genie", valid)
    np.savez(work / "genie_weights.npz", **genie.weights_dict())
    # 2. the baseline decoder without buttons (same data stream, fresh sampler)
    base_sampler = genie_data.WindowSampler(splits["train"], cfg.seq_len, seed=cfg.seed + 1,
                                            recipe=recipe)
    base = GenieModel(cfg.units, with_encoder=False, seed=cfg.seed + 1)
    report["train_baseline"] = train(base, base_sampler, cfg.baseline_steps, cfg,
                                     "train no-button baseline", valid)
    report["train_seconds"] = round(time.monotonic() - t_start, 1)

    # 3. float metrics on the test windows
    fm = float_metrics(genie, *test)
    bm = float_metrics(base, *test)
    buttons = fm.pop("buttons")
    report["float"] = fm
    report["baseline_float"] = bm
    report["unigram_perplexity"] = unigram_perplexity(splits["train"], test[0])

    # 4. export, choosing the quantization by measurement
    from .tflite_export import op_summary
    from piano_buddy.tflite import load_interpreter
    n_eval = len(test[0]) if not cfg.smoke else 2
    exports = {}
    for scheme in ("float", cfg.quantize):
        p = work / f"genie-{scheme}.tflite"
        data = export_decoder(genie, p, scheme)
        interp = load_interpreter(p)
        nll = tflite_nll(interp, test[0][:n_eval], test[1][:n_eval], buttons[:n_eval])
        exports[scheme] = {"bytes": len(data), "nll": nll, "perplexity": float(np.exp(nll)),
                           "ops": op_summary(data)}
    rel = exports[cfg.quantize]["nll"] / exports["float"]["nll"] - 1.0
    report["exports"] = exports
    report["quantized_vs_float_nll"] = rel
    final = work / f"genie-{cfg.quantize}.tflite"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_bytes(final.read_bytes())
    tmp.replace(out_path)
    _refresh_manifest(out_path.parent)
    report["model_path"] = str(out_path)
    report["model_bytes"] = out_path.stat().st_size

    # 4b. the encoder (copy-me LEDs), checked against the float encoder's golden vectors
    encoder_path = out_path.with_name(rt.ENCODER_NAME)
    golden_enc = encoder_golden(genie, *test)
    encoder_data = export_encoder(genie, encoder_path, cfg.quantize)
    _refresh_manifest(encoder_path.parent)
    report["encoder"] = encoder_export_check(genie, encoder_data, encoder_path, golden_enc)
    from piano_buddy.genie import GenieDecoder
    from . import genie_walks
    report["walks"] = genie_walks.measure(GenieDecoder(out_path),
                                          *((4, 16) if cfg.smoke else ()))
    report["params"] = {"decoder": int(sum(np.prod(w.shape) for k, w in
                                           genie.weights_dict().items()
                                           if k.startswith(("dec_", "interval_bias")))),
                        "encoder": int(sum(np.prod(w.shape) for k, w in
                                           genie.weights_dict().items()
                                           if k.startswith("enc_")))}

    # 5. reference fixture: golden vectors + the encoded test windows for `make eval`
    golden_feats = step_features(test[0][0][:32], test[1][0][:32], buttons[0][:32])
    golden_logits = np.asarray(genie.decode(golden_feats[None]))[0]
    report["float_step_max_abs_diff"] = float_step_check(genie, golden_feats)
    recorded = {k: report[k] for k in ("float", "baseline_float", "unigram_perplexity",
                                       "quantized_vs_float_nll", "train_seconds")}
    recorded["exports"] = {k: {kk: vv for kk, vv in v.items() if kk != "ops"}
                           for k, v in exports.items()}
    recorded["train_seconds_per_step"] = {"genie": report["train_genie"]["seconds_per_step"],
                                          "baseline": report["train_baseline"]["seconds_per_step"]}
    recorded["steps"] = {"genie": cfg.steps, "baseline": cfg.baseline_steps}
    recorded["data"] = {k: data_stats[k] for k in ("pieces", "notes")}
    recorded["params"] = report["params"]
    recorded["smoke"] = cfg.smoke
    recorded["encoder"] = report["encoder"]
    np.savez_compressed(
        reference_path, **golden_enc,
        golden_features=golden_feats.astype(np.float32),
        golden_logits=golden_logits.astype(np.float32),
        test_keys=test[0].astype(np.int8), test_dts=test[1].astype(np.int8),
        test_buttons=buttons.astype(np.int8),
        recorded=np.array(json.dumps(recorded, default=float)))
    report["total_seconds"] = round(time.monotonic() - t_start, 1)
    (work / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    print_summary(report)
    return report


def _refresh_manifest(folder: Path) -> None:
    """Rewrite ``folder``'s MANIFEST.sha256 after writing a model there, so that loading the
    new file (the build measures it through the firmware) passes the checksum check. A
    build into the committed folder once failed here after 30 minutes of training."""
    from piano_buddy.tflite import MANIFEST_NAME, write_manifest
    if (folder / MANIFEST_NAME).exists():
        write_manifest(folder)


def _json_default(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def unigram_perplexity(train_pieces, test_keys: np.ndarray) -> float:
    counts = np.ones(enc.NUM_KEYS)
    for p in train_pieces:
        k = np.clip(p.pitches.astype(np.int64) - enc.PIANO_LOWEST, 0, enc.NUM_KEYS - 1)
        counts += np.bincount(k, minlength=enc.NUM_KEYS)
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[test_keys.ravel()].mean()))


def print_summary(report: dict) -> None:
    f, b = report["float"], report["baseline_float"]
    ex = report["exports"]
    q = report["config"]["quantize"]
    print(f"genie: test perplexity float {f['perplexity']:.2f}, {q} "
          f"{ex[q]['perplexity']:.2f} ({100 * report['quantized_vs_float_nll']:+.1f}% NLL); "
          f"no-button baseline {b['perplexity']:.2f} (ratio "
          f"{f['perplexity'] / b['perplexity']:.2f}); encoder contour violation "
          f"{100 * f['contour_violation']:.1f}%; "
          f"{report['model_bytes']} bytes; {report['total_seconds']:.0f} s", flush=True)
    from . import genie_walks
    genie_walks.print_rows(report["walks"])


# --- `make eval`: figures from the committed model --------------------------------------

def evaluate(model_path: Path | None = None, reference_path: Path | None = None,
             encoder_path: Path | None = None) -> list[dict]:
    """Metric rows for the card, computed from the COMMITTED genie.tflite and
    genie_encoder.tflite and the encoded test windows in the reference fixture (float-model
    figures are as recorded in training), with Magenta's figures beside the walk rows."""
    from piano_buddy.genie import GenieDecoder, GenieEncoder
    from piano_buddy.tflite import load_interpreter

    from . import genie_copyme, genie_walks
    model_path = Path(model_path or MODEL_PATH)
    encoder_path = Path(encoder_path or model_path.with_name(rt.ENCODER_NAME))
    reference_path = Path(reference_path or REFERENCE_PATH)
    ref = np.load(reference_path)
    rec = json.loads(str(ref["recorded"]))
    keys = ref["test_keys"].astype(np.int64)
    dts = ref["test_dts"].astype(np.int64)
    buttons = ref["test_buttons"].astype(np.int64)
    interp = load_interpreter(model_path)
    q_nll = tflite_nll(interp, keys, dts, buttons)
    q_ppl = float(np.exp(q_nll))
    base_ppl = rec["baseline_float"]["perplexity"]
    enc_cv = contour_violation(keys, buttons)
    src, esrc = model_path.name, encoder_path.name
    size, esize = model_path.stat().st_size, encoder_path.stat().st_size

    def row(metric, value, target="", ok=None, source=src, magenta=None):
        r = {"model": "genie", "metric": metric, "value": value, "target": target, "ok": ok,
             "source": source}
        if magenta is not None:
            r["magenta"] = magenta
        return r

    rows = [
        row("encoder contour violation (test)", enc_cv, "<= 0.03", enc_cv <= 0.03,
            "fixture buttons"),
        row("decoder perplexity, float (test)", rec["float"]["perplexity"], source="recorded"),
        row("decoder perplexity, quantized (test)", q_ppl,
            f"<= {base_ppl / 2:.2f} (half the no-button baseline)", q_ppl <= base_ppl / 2),
        row("quantized vs float NLL", q_nll / rec["float"]["nll"] - 1.0, "<= +0.02",
            q_nll / rec["float"]["nll"] - 1.0 <= 0.02),
        row("baseline perplexity, no buttons (test)", base_ppl, source="recorded"),
        row("unigram perplexity (test)", rec["unigram_perplexity"], source="recorded"),
        row("decoder model size (bytes)", size, "< 1048576", size < 1 << 20),
        row("encoder model size (bytes)", esize, "< 1048576", esize < 1 << 20, esrc),
    ]
    walks = genie_walks.measure(GenieDecoder(model_path))
    for name, ours, magenta, target, ok in genie_walks.rows(walks):
        rows.append(row(f"walks: {name}", ours, target, ok, magenta=magenta))
    replies = genie_copyme.sample_replies()
    copy = genie_copyme.both(GenieDecoder(model_path), GenieEncoder(encoder_path), replies)
    for name, value, target, ok in genie_copyme.rows(copy):
        rows.append(row(f"{name}, {len(replies)} replies", value, target, ok,
                        f"{src} + {esrc}"))
    return rows


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description="train Piano Genie and export genie.tflite")
    ap.add_argument("--smoke", action="store_true", help="tiny run (a few steps)")
    ap.add_argument("--eval", action="store_true", help="only print the metric rows")
    args = ap.parse_args()
    if args.eval:
        for row in evaluate():
            print(row)
        return
    build(smoke=args.smoke)


if __name__ == "__main__":
    main()
