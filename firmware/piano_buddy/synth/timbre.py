"""How the piano sounds in each register: one table of anchor values, interpolated by pitch.

Keeping every register-dependent number in one table (rather than scattered through the
envelope and wavetable code) lets the sound be tuned in one place and shown in the docs.
Bass notes ring longer, are darker per partial but have many partials and nearly harmonic
ones; treble notes decay fast, have few partials and the most inharmonicity (stiff short
strings), like a real piano. The values are chosen by ear for a bright, friendly toy piano.
"""

from __future__ import annotations

import math

import numpy as np

LOWEST_PITCH = 21    # A0
HIGHEST_PITCH = 108  # C8
N_PITCHES = HIGHEST_PITCH - LOWEST_PITCH + 1

# Values at anchor pitches; every key takes the linear interpolation (in pitch) between them.
ANCHOR_PITCHES = (21, 36, 48, 60, 72, 84, 96, 108)
REGISTER_TABLE = {
    # held note: exponential decay towards `sustain` with time constant `decay_s`
    "decay_s":        (3.0, 2.6, 2.0, 1.5, 1.0, 0.70, 0.50, 0.35),
    "sustain":        (0.30, 0.30, 0.28, 0.25, 0.22, 0.18, 0.15, 0.12),
    # after note-off: time constant of the fade (silent after about 6 of them)
    "release_s":      (0.055, 0.050, 0.045, 0.042, 0.038, 0.034, 0.030, 0.028),
    # the upper partials (the "bright" table) fade faster than the body
    "bright_decay_s": (0.60, 0.50, 0.40, 0.30, 0.22, 0.16, 0.12, 0.08),
    # string inharmonicity coefficient B: partial k sits at k*f0*sqrt(1 + B k^2)
    "inharmonicity":  (1.5e-4, 1.5e-4, 2.0e-4, 4.0e-4, 8.0e-4, 1.6e-3, 3.2e-3, 6.0e-3),
    # partial amplitudes fall as 1/k^rolloff ...
    "rolloff":        (0.75, 0.85, 1.0, 1.15, 1.3, 1.5, 1.7, 1.9),
    # ... and above this frequency as a 4th-order low-pass (the hammer's felt)
    "cutoff_hz":      (1200.0, 1800.0, 2800.0, 4000.0, 5500.0, 8000.0, 11000.0, 15000.0),
    # loudness trim so the registers sound about equally loud
    "loudness":       (1.10, 1.05, 1.00, 1.00, 0.95, 0.90, 0.85, 0.80),
    # stereo position: bass a little left, treble a little right (the player's seat)
    "pan":            (-0.35, -0.25, -0.15, 0.0, 0.12, 0.22, 0.30, 0.35),
}

STRIKE_POSITION = 1.0 / 7.3     # hammer at 1/7.3 of the string: partials near 7, 15 are weak
BODY_PARTIALS = 3               # partials 1..3 are the "body" table, played exactly harmonic
STRETCH_PARTIAL = 6.0           # the bright table is stretched as partial 6 would be
MAX_STRETCH = 1.02              # at most 34 cents, so the treble stays in tune with itself
ATTACK_S = 0.002                # hammer: 2 ms to full level
STEAL_FADE_S = 0.001            # stolen or retriggered voice: 1 ms time constant (~3 ms fade)
VOICE_LEVEL = 0.30              # one full-velocity voice, as a fraction of the ceiling


def pitch_hz(pitch) -> np.ndarray | float:
    """Equal temperament, A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def register(name: str, pitch) -> np.ndarray:
    """The REGISTER_TABLE row `name` interpolated at `pitch` (scalar or array)."""
    return np.interp(np.asarray(pitch, dtype=np.float64), ANCHOR_PITCHES, REGISTER_TABLE[name])


def bright_stretch(pitch) -> np.ndarray:
    """Frequency ratio of the bright table: the upper partials sit a little sharp."""
    b = register("inharmonicity", pitch)
    return np.minimum(np.sqrt(1.0 + b * STRETCH_PARTIAL ** 2), MAX_STRETCH)


def velocity_gain(velocity) -> np.ndarray:
    """Velocity 1..127 to amplitude: about 36 dB of range, a gentle curve."""
    v = np.clip(np.asarray(velocity, dtype=np.float64), 1, 127) / 127.0
    return 10.0 ** (-36.0 * (1.0 - v) ** 1.4 / 20.0) * v ** 0.3


def velocity_brightness(velocity) -> np.ndarray:
    """How much of the bright table a strike starts with: harder hits are brighter."""
    v = np.clip(np.asarray(velocity, dtype=np.float64), 1, 127) / 127.0
    return 0.25 + 0.75 * v ** 1.5


def pan_gains(pitch) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power left/right gains."""
    theta = (register("pan", pitch) + 1.0) * math.pi / 4.0
    return np.cos(theta), np.sin(theta)
