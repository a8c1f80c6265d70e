"""The Genie training pipeline end to end on a tiny subset, so it cannot rot: parse one score
per corpus collection, train a few steps, export the int8-weight decoder step model, the
int8-weight whole-sequence encoder and the reference fixture, then load both in the
firmware's runtime, decode a press and light the buttons of a melody.

Runs in the training venv (TensorFlow, music21) in a subprocess; skips when it is missing.
Everything it writes goes to a temporary build folder: the committed model is untouched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from piano_buddy import encoding as enc
from piano_buddy.genie import ENCODER_LENGTH, FEATURES, GenieDecoder, GenieEncoder

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / ".venv-train" / "bin" / "python"


def test_genie_training_smoke_run(tmp_path):
    if not TRAIN_PY.exists():
        pytest.skip(f"{TRAIN_PY} missing (make train-venv)")
    env = {**os.environ, "PIANO_BUDDY_BUILD": str(tmp_path / "build"), "GENIE_SMOKE": "1"}
    res = subprocess.run([str(TRAIN_PY), "-m", "models_tflite.training.genie_train",
                          "--smoke"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "genie: test perplexity" in res.stdout
    work = tmp_path / "build" / "genie" / "smoke"
    model = work / "genie.tflite"
    assert 0 < model.stat().st_size < 1 << 20
    ref = np.load(work / "genie_reference.npz")
    assert ref["golden_features"].shape[1] == FEATURES  # the runtime layout
    dec = GenieDecoder(model, rng=np.random.default_rng(0))
    pitch = dec.press(5, 0.0, temperature=0.25, allowed=range(48, 85))
    assert 48 <= pitch <= 84
    assert enc.PIANO_LOWEST <= dec.press(2, 0.3) <= enc.PIANO_HIGHEST
    encoder_file = work / "genie_encoder.tflite"
    assert 0 < encoder_file.stat().st_size < 1 << 20
    assert ref["encoder_keys"].shape[1] == ENCODER_LENGTH
    encoder = GenieEncoder(encoder_file)
    got = encoder.values(ref["encoder_keys"][0][:ref["encoder_lengths"][0]],
                         ref["encoder_dts"][0][:ref["encoder_lengths"][0]])
    assert np.max(np.abs(got - ref["encoder_values"][0][:len(got)])) < 0.1
    buttons = encoder.buttons_for([(60 + i, 0.2 * i) for i in range(10)], check=dec)
    assert len(buttons) == 10 and all(0 <= b < 8 for b in buttons)
    assert "Genie walk figure" in res.stdout  # the walk harness ran on the smoke model
