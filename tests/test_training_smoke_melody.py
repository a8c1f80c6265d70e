"""The melody training pipeline end to end on a tiny subset, so it cannot rot: parse three
tunes per collection, fit the Markov baseline, train a few steps, check that stepping the
exported state equals evaluating the whole sequence, convert in every scheme, write the
model and fixture, then load the result in the firmware's runtime and sample a reply.

Runs in the training venv (TensorFlow, music21) in a subprocess; skips when it is missing.
Everything it writes goes to a temporary build folder: the committed model is untouched.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from piano_buddy.melody import MelodyModel, StepNote

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / ".venv-train" / "bin" / "python"
STEP_TOLERANCE = 1e-4   # float32 basic-op cell vs Keras' fused LSTM: ~1e-6 measured


@pytest.mark.slow
def test_melody_training_smoke_run(tmp_path):
    if not TRAIN_PY.exists():
        pytest.skip(f"{TRAIN_PY} missing (make train-venv)")
    committed = ROOT / "models_tflite" / "melody.tflite"
    before = committed.read_bytes() if committed.exists() else None
    env = {**os.environ, "PIANO_BUDDY_BUILD": str(tmp_path / "build"), "MELODY_SMOKE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([str(TRAIN_PY), "-m", "models_tflite.training.melody_train",
                          "--smoke"], capture_output=True, text=True, timeout=900,
                         cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    diff = re.search(r"max \|logit diff\| (\S+)", res.stdout)
    assert diff and float(diff.group(1)) <= STEP_TOLERANCE, res.stdout
    assert "Markov baseline" in res.stdout
    work = tmp_path / "build" / "melody" / "smoke"
    model = work / "melody.tflite"
    assert 0 < model.stat().st_size < 1 << 20
    for scheme in ("float", "dynamic", "int16x8"):
        assert (work / f"melody-{scheme}.tflite").exists()
    ref = np.load(work / "melody_reference.npz")
    assert ref["golden_probs"].shape == (len(ref["golden_tokens"]), 39)
    reply = MelodyModel(model, rng=np.random.default_rng(0)).continue_phrase(
        [StepNote(60, 0, 2), StepNote(64, 2, 4), StepNote(67, 4, 8)], 16)
    assert reply and all(0 <= n.start < n.end <= 16 for n in reply)
    assert (committed.read_bytes() if committed.exists() else None) == before
