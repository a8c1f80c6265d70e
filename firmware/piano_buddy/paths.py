"""Where the firmware finds its models and writes its recordings, when the config is silent.

Running from a checkout, the models are the committed ones in ``models_tflite/``; installed
by ``make install`` they live under ``/opt/piano-buddy/models_tflite``. ``PIANO_BUDDY_MODELS``
overrides both (the tests use it for corrupt-file cases).
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT_MODELS = Path(__file__).resolve().parents[2] / "models_tflite"
_INSTALLED_MODELS = Path("/opt/piano-buddy/models_tflite")


def models_dir() -> Path:
    env = os.environ.get("PIANO_BUDDY_MODELS")
    if env:
        return Path(env)
    if _CHECKOUT_MODELS.is_dir():
        return _CHECKOUT_MODELS
    return _INSTALLED_MODELS


def model_path(name: str) -> Path:
    """Default path of ``genie.tflite`` or ``melody.tflite``."""
    return models_dir() / name
