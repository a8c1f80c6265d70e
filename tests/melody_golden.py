"""The melody models' golden-vector check, one way for the general model and every style."""

from __future__ import annotations

import numpy as np


def stepped_probs(model, tokens, positions) -> np.ndarray:
    """[T, vocab] softmax of a TFLite melody model fed ``tokens`` one step at a time from a
    zero state, each with the bar position of the step after it (``positions`` has one
    more entry than ``tokens``), as the golden vectors were taken from the float model."""
    model.reset()
    got = []
    for t, tok in enumerate(tokens):
        logits = model._step(int(tok), int(positions[t + 1])).astype(np.float64)
        p = np.exp(logits - logits.max())
        got.append(p / p.sum())
    return np.array(got)
