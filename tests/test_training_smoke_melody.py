"""The melody training pipeline end to end on a tiny subset, so it cannot rot: parse three
tunes per collection, fit the Markov baseline, train a few steps, check that stepping the
exported state equals evaluating the whole sequence, convert in every scheme, write the
model and fixture, then load the result in the firmware's runtime and sample a reply; then
the style fine-tunes (``melody_styles``) from those weights, likewise.

Also: the bar positions training reads from a score's measures against those the box
gives the same notes played in seconds (a fixed phrase).

Runs in the training venv (TensorFlow, music21) in a subprocess; skips when it is missing.
Everything it writes goes to a temporary build folder: the committed model is untouched.
"""

from __future__ import annotations

import json
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
    # the styles start from these weights: a few fine-tuning steps each, exported the same way
    styles_before = {p.name: p.read_bytes() for p in (ROOT / "models_tflite").glob("melody-*")}
    res = subprocess.run([str(TRAIN_PY), "-m", "models_tflite.training.melody_styles",
                          "--smoke"], capture_output=True, text=True, timeout=900,
                         cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    styles = tmp_path / "build" / "melody" / "styles-smoke"
    sref = np.load(styles / "melody_styles_reference.npz")
    for style in ("dance", "airs", "chorale"):
        assert f"styles: {style}: wrote" in res.stdout
        path = styles / f"melody-{style}.tflite"
        assert 0 < path.stat().st_size < 1 << 20
        assert sref[f"{style}_golden_probs"].shape == (len(sref[f"{style}_golden_tokens"]), 39)
        assert MelodyModel(path).continue_phrase([StepNote(60, 0, 2), StepNote(64, 2, 4)], 8)
    assert (committed.read_bytes() if committed.exists() else None) == before
    assert {p.name: p.read_bytes() for p in (ROOT / "models_tflite").glob("melody-*")} == \
        styles_before


_POSITIONS = r"""
import json
from models_tflite.training import melody_data
from piano_buddy.phrase import Note, plan_reply
from piano_buddy.melody import MelodyModel
HEAD = "X:1\nT:fixed\nL:1/8\n"
# 4/4, starting on the downbeat; 3/4 with a one-eighth pickup; a bar split by a repeat
out = {}
for name, body in (("four", "M:4/4\nK:G\nG2 AB c2 BA|G2 B2 d4|e2 dc B2 AG|A8|\n"),
                   ("pickup", "M:3/4\nK:D\nA|d2 f2 e2|d4 A2|B2 c2 d2|e6|\n"),
                   ("repeat", "M:2/4\nK:C\nc2 e2|g4|e2 c2|d2 :: G2|c2 e2|g4|\n")):
    m = melody_data.parse_piece(("test/fixed.abc#" + name, "abc", HEAD + body))
    played = [Note(n.pitch, 2.0 + 0.125 * n.start, 2.0 + 0.125 * (n.end - 0.2))
              for n in m.notes]
    plan = plan_reply(played)
    out[name] = {"score": [int(p) for p in m.bar_pos], "bar_steps": m.bar_steps,
                 "qpm": plan.qpm, "box": [plan.bar.position(t) for t in range(len(m.bar_pos))],
                 "onsets": [n.start for n in m.notes]}
print("POS" + json.dumps(out))
"""


def test_runtime_bar_positions_match_the_score_on_a_fixed_phrase():
    """The training encoding (bar positions from music21's measures, melody_data) and the
    box's (plan_reply of the same notes played in seconds at 120 qpm) agree step by step
    on a 4/4 tune that starts on its downbeat; a pickup or a split bar is where the score
    knows more than the box (bar_grid takes the first note as a downbeat, 16-step bars)."""
    if not TRAIN_PY.exists():
        pytest.skip(f"{TRAIN_PY} missing (make train-venv)")
    res = subprocess.run([str(TRAIN_PY), "-c", _POSITIONS], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads([x for x in res.stdout.splitlines() if x.startswith("POS")][-1][3:])
    four = out["four"]
    assert four["qpm"] == 120 and four["bar_steps"] == 16
    assert four["score"] == four["box"] == [t % 16 for t in range(64)]
    # 3/4 with an eighth-note pickup: the score puts the first note 2 steps before a bar
    # line of a 12-step bar; the box reads it as a downbeat of 16-step bars
    pickup = out["pickup"]
    assert pickup["bar_steps"] == 12
    assert pickup["score"][:4] == [10, 11, 0, 1] and pickup["score"][14] == 0
    assert pickup["box"][:4] == [0, 1, 2, 3]
    # 2/4 split by a repeat sign: the bar before it has one beat (4 steps), the pickup
    # after it completes that bar, so the next bar line is where the score has it
    rep = out["repeat"]
    assert rep["bar_steps"] == 8
    assert rep["score"][:8] == list(range(8)) and rep["score"][24:28] == [0, 1, 2, 3]
    assert rep["score"][28:36] == [4, 5, 6, 7, 0, 1, 2, 3]
