"""Keras 3 -> TFLite: the one conversion route that works here, shared by both models.

Why this shape (measured, see shared/notes/toolchain.md):

* A trained sequence ``keras.layers.LSTM`` converts to WHILE loops, and int8 conversion of
  those crashed. The box only ever runs ONE step at a time anyway, so we export a separate
  *step model* whose LSTM cells are written out in basic ops (:class:`LSTMStack`), and copy
  the trained weights into it (:meth:`LSTMStack.copy_from`).
* ``TFLiteConverter.from_concrete_functions`` with Keras 3 dropped the weights. What works is
  a SavedModel written by Keras' ``ExportArchive`` and ``TFLiteConverter.from_saved_model``.
* The current converter's per-channel dynamic-range quantization emits FULLY_CONNECTED v12,
  which tflite-runtime 2.14 cannot load; per-tensor quantization of dense layers (a private
  converter flag) gives v9, which loads in both runtimes.
* Full int8 (activations too) nearly doubles an LSTM's loss; int8 weights with float
  activations ("dynamic") or int16 activations x int8 weights ("int16x8") are within 1%.

Typical use (the melody model does exactly this)::

    stack = LSTMStack([128, 128], input_dim=39, name="lstm_stack")
    step = build_step_model(stack, input_dim=39, head=trained_dense_layer)
    stack.copy_from([trained_lstm_1, trained_lstm_2])
    export_tflite(step, {"token": (1, 39), "state": (1, stack.state_size)},
                  "melody.tflite", quantize="dynamic")

Input tensor names survive conversion as ``serving_default_<name>:0``; output tensor names do
NOT (they become ``StatefulPartitionedCall:N``), so :func:`signature_tensor_indices` maps the
signature's names to tensor indices for the runtime. All TensorFlow imports happen inside the
functions: importing this module is cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

QUANT_SCHEMES = ("float", "dynamic", "int16x8")


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    return keras


def lstm_stack_class():
    """The :class:`LSTMStack` layer class (defined lazily so this module imports without TF)."""
    global _LSTM_STACK
    if _LSTM_STACK is not None:
        return _LSTM_STACK
    keras = _keras()
    ops = keras.ops

    class LSTMStack(keras.layers.Layer):
        """Stacked LSTM cells for ONE time step, in basic ops (FULLY_CONNECTED, LOGISTIC, TANH,
        MUL, ADD): exact Keras ``LSTM`` maths (gate order i, f, g, o; sigmoid / tanh).

        The state of all layers is packed in one float vector ``[h1, c1, h2, c2, ...]`` of
        length :attr:`state_size`, so a runtime feeds back one tensor per step and tells the
        outputs apart by shape. ``call(x, state) -> (top_h, new_state)``.

        Each layer multiplies ``concat([x, h])`` by one stacked matrix ``[kernel;
        recurrent_kernel]`` (one FULLY_CONNECTED op per layer instead of two).
        """

        def __init__(self, units: Sequence[int], input_dim: int, **kwargs):
            super().__init__(**kwargs)
            self.units = [int(u) for u in units]
            self.input_dim = int(input_dim)
            self.state_size = 2 * sum(self.units)
            self.kernels, self.biases = [], []
            d = self.input_dim
            for i, u in enumerate(self.units):
                self.kernels.append(self.add_weight(
                    shape=(d + u, 4 * u), initializer="glorot_uniform", name=f"kernel_{i}"))
                self.biases.append(self.add_weight(
                    shape=(4 * u,), initializer="zeros", name=f"bias_{i}"))
                d = u

        def call(self, x, state):
            new_states = []
            offset = 0
            for kernel, bias, u in zip(self.kernels, self.biases, self.units):
                h = state[:, offset:offset + u]
                c = state[:, offset + u:offset + 2 * u]
                offset += 2 * u
                z = ops.matmul(ops.concatenate([x, h], axis=-1), kernel) + bias
                i = ops.sigmoid(z[:, :u])
                f = ops.sigmoid(z[:, u:2 * u])
                g = ops.tanh(z[:, 2 * u:3 * u])
                o = ops.sigmoid(z[:, 3 * u:])
                c = f * c + i * g
                h = o * ops.tanh(c)
                new_states += [h, c]
                x = h
            return x, ops.concatenate(new_states, axis=-1)

        def copy_from(self, lstm_layers: Sequence) -> None:
            """Copy trained weights from Keras ``LSTM`` layers (bottom first)."""
            if len(lstm_layers) != len(self.units):
                raise ValueError(f"{len(lstm_layers)} LSTM layers for {len(self.units)} cells")
            for layer, kernel, bias, u in zip(lstm_layers, self.kernels, self.biases,
                                              self.units):
                k, r, b = lstm_weights(layer)
                if r.shape != (u, 4 * u):
                    raise ValueError(f"layer {layer.name}: recurrent kernel {r.shape}, "
                                     f"expected {(u, 4 * u)}")
                kernel.assign(np.concatenate([k, r], axis=0))
                bias.assign(b)

        def get_config(self):
            return {**super().get_config(), "units": self.units, "input_dim": self.input_dim}

    _LSTM_STACK = LSTMStack
    return LSTMStack


_LSTM_STACK = None


def LSTMStack(units: Sequence[int], input_dim: int, **kwargs):
    """Make an :class:`LSTMStack` layer (see :func:`lstm_stack_class`)."""
    return lstm_stack_class()(units, input_dim, **kwargs)


def lstm_weights(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kernel, recurrent_kernel, bias) of a Keras ``LSTM`` layer (or its cell) as numpy.

    A layer trained with ``use_bias=False`` gets a zero bias.
    """
    cell = getattr(layer, "cell", layer)
    kernel = np.asarray(cell.kernel.numpy(), np.float32)
    rec = np.asarray(cell.recurrent_kernel.numpy(), np.float32)
    bias = (np.asarray(cell.bias.numpy(), np.float32) if getattr(cell, "use_bias", True)
            and cell.bias is not None else np.zeros(rec.shape[1], np.float32))
    return kernel, rec, bias


def build_step_model(stack, input_dim: int, head=None, pre=None,
                     input_name: str = "token", state_name: str = "state"):
    """A Keras functional step model: ``(x[1, input_dim], state[1, S]) -> (out, new_state)``.

    ``pre``: optional layer applied to x before the stack (e.g. the Genie's dense 123->128);
    ``head``: optional layer applied to the top h (e.g. the trained Dense producing logits).
    Pass the TRAINED layer objects to share their weights; the stack's weights are copied
    with :meth:`LSTMStack.copy_from`.
    """
    keras = _keras()
    x_in = keras.Input(shape=(input_dim,), batch_size=1, name=input_name)
    s_in = keras.Input(shape=(stack.state_size,), batch_size=1, name=state_name)
    x = pre(x_in) if pre is not None else x_in
    top, new_state = stack(x, s_in)
    out = head(top) if head is not None else top
    return keras.Model([x_in, s_in], [out, new_state], name="step_model")


def export_tflite(model, inputs: Mapping[str, Sequence[int]], path: str | Path, *,
                  quantize: str = "dynamic",
                  representative: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None,
                  output_names: Sequence[str] = ("logits", "state_out"),
                  strip_names: bool = False) -> bytes:
    """Convert a Keras model to a .tflite file and return its bytes.

    ``inputs`` maps each input name to its fixed shape, in the order ``model`` takes them
    (a list of tensors for a multi-input model). ``output_names`` names the model's outputs
    in the SavedModel signature (visible through :func:`signature_tensor_indices`).

    ``quantize``:
      * ``"float"``: float32 weights and activations.
      * ``"dynamic"``: int8 weights, float activations, per-tensor dense quantization so that
        tflite-runtime 2.14 loads it (FULLY_CONNECTED v9). No calibration data needed.
      * ``"int16x8"``: int16 activations x int8 weights; needs ``representative``, a callable
        returning an iterable of dicts keyed by input name (float32 arrays of the input
        shapes). The inputs must be float (one-hot, not an int index).
    The float32 interface (inputs and outputs) is kept in every scheme.
    ``strip_names``: drop inner tensor names (:func:`strip_inner_names`).
    """
    if quantize not in QUANT_SCHEMES:
        raise ValueError(f"quantize={quantize!r}, expected one of {QUANT_SCHEMES}")
    keras = _keras()
    import tensorflow as tf

    names = list(inputs)
    specs = [tf.TensorSpec(tuple(inputs[n]), tf.float32, name=n) for n in names]

    def serve(*args):
        outs = model(list(args) if len(args) > 1 else args[0])
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return {name: out for name, out in zip(output_names, outs)}

    tmp = Path(tempfile.mkdtemp(prefix="tflite_export_"))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", tf.function(serve, input_signature=specs))
        archive.write_out(str(tmp / "saved"), verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved"))
        if quantize == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True
        elif quantize == "int16x8":
            if representative is None:
                raise ValueError("int16x8 quantization needs a representative dataset")
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True

            def rep():
                for sample in representative():
                    yield {k: np.asarray(v, np.float32) for k, v in sample.items()}
            conv.representative_dataset = rep
        data = conv.convert()
        if strip_names:
            data = strip_inner_names(data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(path.suffix + ".tmp")
    tmp_path.write_bytes(data)
    tmp_path.replace(path)  # atomic: a half-written model never sits at the real path
    return data


def strip_inner_names(data: bytes) -> bytes:
    """The same model with the names of its inner tensors dropped (inputs, outputs and the
    signature keep theirs). An unrolled model has thousands of inner tensors whose long
    generated names would otherwise be a quarter of the file."""
    from tensorflow.lite.python import schema_py_generated as schema
    import flatbuffers
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for sub in model.subgraphs:
        keep = set(sub.inputs) | set(sub.outputs)
        for i, tensor in enumerate(sub.tensors):
            if i not in keep:
                tensor.name = b""
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def signature_tensor_indices(interp, signature: str | None = None) -> tuple[dict, dict]:
    """({input name: tensor index}, {output name: tensor index}) from the model's signature.

    Works with ai_edge_litert and tflite_runtime 2.14; lets a runtime use the fast
    ``set_tensor``/``invoke``/``get_tensor`` path with the names given at export.
    """
    import gc
    runner = interp.get_signature_runner(signature)
    ins = {k: int(v["index"]) for k, v in runner.get_input_details().items()}
    outs = {k: int(v["index"]) for k, v in runner.get_output_details().items()}
    # tflite_runtime 2.14's runner keeps references to tensor buffers; while it lives,
    # interp.invoke() fails with "There is at least 1 reference to internal data".
    del runner
    gc.collect()
    return ins, outs


def run_step_model_tflite(interp, x_seq: np.ndarray, state0: np.ndarray | None = None,
                          input_name: str = "token", output_name: str = "logits"
                          ) -> np.ndarray:
    """Feed a sequence ``x_seq[T, D]`` one step at a time, state fed back; outputs [T, K].

    For tests and evaluation (golden vectors, quantized vs float NLL).
    """
    ins, outs = signature_tensor_indices(interp)
    state_in = ins["state"]
    size = int(interp.get_tensor(state_in).shape[-1]) if state0 is None else state0.shape[-1]
    state = np.zeros((1, size), np.float32) if state0 is None else state0.reshape(1, -1)
    result = []
    for x in np.asarray(x_seq, np.float32):
        interp.set_tensor(ins[input_name], x.reshape(1, -1))
        interp.set_tensor(state_in, state)
        interp.invoke()
        result.append(interp.get_tensor(outs[output_name])[0].copy())
        state = interp.get_tensor(outs["state_out"]).copy()
    return np.stack(result)


def op_summary(data: bytes) -> dict[str, int]:
    """Operator name -> count in a .tflite flatbuffer (to check nothing exotic slipped in)."""
    from tensorflow.lite.python import schema_py_generated as schema
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    from tensorflow.lite.python.schema_util import get_builtin_code_from_operator_code
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for sub in model.subgraphs:
        for op in sub.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(get_builtin_code_from_operator_code(code), "?")
            key = f"{name}_v{code.version}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def bilstm_sequence_class():
    """The :class:`BiLSTMSequence` layer class (defined lazily, like :func:`lstm_stack_class`)."""
    global _BILSTM_SEQUENCE
    if _BILSTM_SEQUENCE is not None:
        return _BILSTM_SEQUENCE
    keras = _keras()
    ops = keras.ops

    class BiLSTMSequence(keras.layers.Layer):
        """Stacked bidirectional LSTM layers over a WHOLE fixed-length sequence, unrolled in
        basic ops (no WHILE loop, so int8-weight conversion works; see the module doc).

        ``call(x[T, D], mask[T, 1]) -> [T, 2 * units[-1]]``: rows are time steps. Rows whose
        mask is 0 (padding after the last note) leave the state untouched, so the backward
        direction starts from a zero state at the last real note, exactly as the Keras
        ``Bidirectional(LSTM)`` does on the unpadded sequence. Output rows of padding are
        meaningless. Gate order and maths are Keras' (i, f, g, o).

        Unrolled, every step is a dozen small ops: the flatbuffer's per-tensor overhead,
        not the int8 weights, sets the file size, so the ops per step are kept few (one
        SPLIT for the gates, masking only where padding can reach).
        """

        def __init__(self, units: Sequence[int], input_dim: int, length: int, **kwargs):
            super().__init__(**kwargs)
            self.units = [int(u) for u in units]
            self.input_dim, self.length = int(input_dim), int(length)
            self.kernels, self.biases = [], []
            d = self.input_dim
            for i, u in enumerate(self.units):
                for direction in ("fw", "bw"):
                    self.kernels.append(self.add_weight(
                        shape=(d + u, 4 * u), initializer="glorot_uniform",
                        name=f"kernel_{i}_{direction}"))
                    self.biases.append(self.add_weight(
                        shape=(4 * u,), initializer="zeros", name=f"bias_{i}_{direction}"))
                d = 2 * u

        def _run(self, rows, masks, kernel, bias, u, order, masked):
            h = ops.zeros((1, u))
            c = ops.zeros((1, u))
            out = [None] * len(rows)
            for t in order:
                z = ops.matmul(ops.concatenate([rows[t], h], axis=-1), kernel) + bias
                zi, zf, zg, zo = ops.split(z, 4, axis=-1)
                c_new = ops.sigmoid(zf) * c + ops.sigmoid(zi) * ops.tanh(zg)
                h_new = ops.sigmoid(zo) * ops.tanh(c_new)
                if masked:  # padding keeps the state: x + m * (new - x)
                    c = c + masks[t] * (c_new - c)
                    h = h + masks[t] * (h_new - h)
                else:
                    c, h = c_new, h_new
                out[t] = h
            return out

        def call(self, x, mask):
            n = self.length
            rows = [x[t:t + 1] for t in range(n)]
            masks = [mask[t:t + 1] for t in range(n)]
            for i, u in enumerate(self.units):
                # forward: padding comes after the notes, so it cannot touch them
                fw = self._run(rows, masks, self.kernels[2 * i], self.biases[2 * i], u,
                               range(n), masked=False)
                bw = self._run(rows, masks, self.kernels[2 * i + 1], self.biases[2 * i + 1],
                               u, range(n - 1, -1, -1), masked=True)
                rows = [ops.concatenate([a, b], axis=-1) for a, b in zip(fw, bw)]
            return ops.concatenate(rows, axis=0)

        def copy_from(self, bidirectional_layers: Sequence) -> None:
            """Copy trained weights from Keras ``Bidirectional(LSTM)`` layers (bottom first)."""
            if len(bidirectional_layers) != len(self.units):
                raise ValueError(f"{len(bidirectional_layers)} layers for {len(self.units)}")
            for i, layer in enumerate(bidirectional_layers):
                for j, sub in enumerate((layer.forward_layer, layer.backward_layer)):
                    k, r, b = lstm_weights(sub)
                    self.kernels[2 * i + j].assign(np.concatenate([k, r], axis=0))
                    self.biases[2 * i + j].assign(b)

        def get_config(self):
            return {**super().get_config(), "units": self.units, "input_dim": self.input_dim,
                    "length": self.length}

    _BILSTM_SEQUENCE = BiLSTMSequence
    return BiLSTMSequence


_BILSTM_SEQUENCE = None


def build_sequence_model(units: Sequence[int], input_dim: int, length: int, pre, head,
                         trained_bidirectional: Sequence, input_name: str = "features",
                         mask_name: str = "mask"):
    """A Keras functional model ``(x[length, input_dim], mask[length, 1]) -> head output``:
    ``pre`` (trained Dense) -> :class:`BiLSTMSequence` (weights copied from the trained
    ``Bidirectional`` layers) -> ``head`` (trained Dense). For the Genie's encoder."""
    keras = _keras()
    x_in = keras.Input(batch_shape=(length, input_dim), name=input_name)
    m_in = keras.Input(batch_shape=(length, 1), name=mask_name)
    seq = bilstm_sequence_class()(units, input_dim=pre.units, length=length,
                                  name="bilstm_sequence")
    out = head(seq(pre(x_in), m_in))
    seq.copy_from(trained_bidirectional)
    return keras.Model([x_in, m_in], out, name="sequence_model")
