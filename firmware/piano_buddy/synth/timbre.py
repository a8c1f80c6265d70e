"""How the piano sounds, key by key: the analysed table of a sampled grand, interpolated by
pitch, plus the few hand-set numbers the analysis cannot give.

The table (``piano_table.json``, made by ``python -m bench.voice_analysis`` from the FluidR3
GM piano, MIT licence) holds, for every third key at velocity 80: the string's inharmonicity
B; for each band of partials (``BANDS``) a fast and a slow decay rate (a piano's two-stage
decay: the strings' coupled motion first, the slow in-plane one after); each partial's fast
and slow amplitude; the strike noise's octave spectrum; the release time; and two trims set
by rendering this synth (loudness, strike level). Keys in between take the neighbours'
values, interpolated in dB.

Each band is a pair of wavetables per key (fast and slow component), stretched as its middle
partial would be (``BAND_PARTIAL``), so inharmonicity grows with the partial number band by
band; the slow component is detuned a little from the fast one (``UNISON_BEAT_HZ``), as a
piano's unison strings are, which makes the partials beat.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

LOWEST_PITCH = 21    # A0
HIGHEST_PITCH = 108  # C8
N_PITCHES = HIGHEST_PITCH - LOWEST_PITCH + 1

TABLE_PATH = Path(__file__).with_name("piano_table.json")

# Partials 1-2 keep the fundamental exactly in tune; 3-8 and 9+ each get their own stretch.
BANDS = ((1, 2), (3, 8), (9, None))
BAND_PARTIAL = (1.0, 6.0, 14.0)        # the band is stretched as this partial would be
BAND_TABLE_SIZE = (256, 512, 2048)     # points per cycle: >= 64 per cycle of the band's top
MAX_BAND_PARTIALS = (2, 8, 256)
MAX_STRETCH = 1.06                     # a band sits at most 100 cents sharp
# beating between the unison components: the slow one is this much sharp (Hz at the band's
# middle partial), within these limits in cents (band 1's keeps the pitch within 3 cents)
UNISON_BEAT_HZ = (0.6, 1.5, 2.5)
UNISON_CENTS = ((0.4, 2.0), (1.0, 6.0), (1.0, 6.0))
COMPONENTS = ("fast", "slow")
ROWS_PER_VOICE = 2 * len(BANDS) + 1    # (fast, slow) per band, then the strike
STRIKE_ROW = ROWS_PER_VOICE - 1
TONE_ROWS = STRIKE_ROW                 # the interpolated table rows of a voice (no strike)
STRIKE_SIZE = 8192                     # samples of noise a burst is shaped from (it ends at 75 ms)
STRIKE_FADE_DB = 100.0                 # the strike's gain falls this much per STRIKE_SIZE frames
                                       # (its burst is made up for it: the knock's shape)
STRIKE_ONSET_S = 0.0025                # the knock builds up over this (a felt hammer, no click)
STRIKE_HOLD_S = 0.035                  # ... rings with the key's decay until here ...
STRIKE_END_S = 0.075                   # ... and has faded out completely here

# Hand-set values at anchor pitches; every key takes the linear interpolation (in pitch).
ANCHOR_PITCHES = (21, 36, 48, 60, 72, 84, 96, 108)
REGISTER_TABLE = {
    # how long the hammer's knock rings (s): a felt hammer on a long bass string thumps
    "strike_decay_s": (0.030, 0.024, 0.020, 0.016, 0.012, 0.010, 0.008, 0.006),
    # a low body knock under the noise in the bass (level re the noise; 0 = none)
    "thump":          (1.0, 0.8, 0.4, 0.1, 0.0, 0.0, 0.0, 0.0),
    # stereo position: bass a little left, treble a little right (the player's seat)
    "pan":            (-0.35, -0.25, -0.15, 0.0, 0.12, 0.22, 0.30, 0.35),
}
THUMP_HZ = 70.0
THUMP_DECAY_S = 0.030
UPPER_BAND_MIN_RATE = 2.0
MAX_FAST_DB_S = 120.0                 # (the analysis' limit too: faster is the attack itself)
# FluidR3's top octave dies far faster than a piano's (-110 dB at 3 s on C8): above D6 the
# decay rates (fast, slow; dB/s) are capped to what a real treble string does
TREBLE_CAP_FROM = 86
TREBLE_MAX_RATES_DB_S = (30.0, 10.0)
FUNDAMENTAL_FLOOR_DB = -14.0
BASS_TILT_FROM = 48                   # C3
BASS_FUNDAMENTAL_CUT_DB = 12.0        # per octave below C3
# from C#2 to D3 (69-147 Hz, under what a small speaker plays well) the fundamental carries
# at most this much of the energy of partials 2-20 (dB; -12: a sixteenth), fading to no cap
# at G3; below C#2 the tilt above already keeps it far lower, and the cap there is loose
# (it would take the fundamental's share of C2's two-stage decay): the bass is heard
# through the partials the speaker can play
BASS_CAP_PITCHES = (36, 39, 50, 55)          # C2, D#2, D3, G3
BASS_CAP_DB = (-6.0, -12.0, -12.0, 10.0)      # (above G3: none)
STRIKE_HIGHPASS_HZ = 45.0             # the knock's noise stays off the lowest fundamentals
RELEASE_R60_S = (0.22, 0.30)          # the analysed release times (0.33-0.38 s), kept within
                                      # these: the box's shutdown waits 0.35 s for silence
RELEASE_TARGET = -0.01                # the release aims this far under zero and stops at zero,
                                      # just after -60 dB (a kink there is inaudible)
ATTACK_S = 0.002                      # hammer: 2 ms to full level
STEAL_FADE_S = 0.001                  # stolen or retriggered voice: ~3 ms fade
VOICE_LEVEL = 0.27                    # one velocity-80 C4, as a fraction of the ceiling
# velocity: level and brightness, re the analysed velocity (80). A harder strike is louder
# (about 40 dB over the range) and brighter: the upper bands and the knock grow faster.
VELOCITY_LEVEL_EXPONENT = 1.3
VELOCITY_BAND_EXPONENT = (0.0, 2.4, 3.2)
VELOCITY_STRIKE_EXPONENT = 1.5
VELOCITY_SLOW_SHARE = 0.33
# partials 3-8: where their fast stage is over within the attack, their two rows play two
# unison strings of the slow stage (30% and 70%, the weaker decaying a little faster)
TWO_STRING_BANDS = (1,)
TWO_STRING_FAST_DB_S = 0.0            # (only where that fast stage decays this fast or more)
SECOND_STRING_SHARE = 0.3
SECOND_STRING_RATE = 1.3


def pitch_hz(pitch) -> np.ndarray | float:
    """Equal temperament, A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def register(name: str, pitch) -> np.ndarray:
    """The REGISTER_TABLE row `name` interpolated at `pitch` (scalar or array)."""
    return np.interp(np.asarray(pitch, dtype=np.float64), ANCHOR_PITCHES, REGISTER_TABLE[name])


@lru_cache(maxsize=2)
def _load(path: Path = TABLE_PATH) -> dict:
    return json.loads(path.read_text())


def clear_cache() -> None:
    _load.cache_clear()


def table() -> dict:
    return _load(TABLE_PATH)


def _neighbours(pitch: int):
    keys = table()["keys"]
    anchors = [k["pitch"] for k in keys]
    j = int(np.searchsorted(anchors, pitch))
    if j < len(anchors) and anchors[j] == pitch:
        return keys[j], keys[j], 0.0
    lo, hi = keys[max(j - 1, 0)], keys[min(j, len(keys) - 1)]
    w = 0.0 if hi is lo else (pitch - lo["pitch"]) / (hi["pitch"] - lo["pitch"])
    return lo, hi, w


def _lerp(a, b, w):
    return (1.0 - w) * np.asarray(a, dtype=np.float64) + w * np.asarray(b, dtype=np.float64)


def key_value(name: str, pitch: int) -> float:
    lo, hi, w = _neighbours(pitch)
    return float(_lerp(lo[name], hi[name], w))


def loudness_db(pitch: int) -> float:
    """The key's loudness trim: its analysed neighbours' plus its own (both calibrated by
    rendering this synth, see bench.voice_analysis)."""
    own = table().get("key_loudness_db")
    return key_value("loudness_db", pitch) + (own[pitch - LOWEST_PITCH] if own else 0.0)


def inharmonicity(pitch: int) -> float:
    lo, hi, w = _neighbours(pitch)
    return float(10 ** _lerp(math.log10(lo["B"]), math.log10(hi["B"]), w))


def band_rates_db_s(pitch: int) -> np.ndarray:
    """(bands, 2): the fast and slow decay rate of each band, dB per second."""
    lo, hi, w = _neighbours(pitch)
    rates = _lerp(lo["bands"], hi["bands"], w)
    # higher partials lose energy faster (air, string losses): a band never decays slower
    # than the one below it, so the tone always mellows as it rings
    if pitch > TREBLE_CAP_FROM:
        rates = np.minimum(rates, TREBLE_MAX_RATES_DB_S)
    for b in range(1, len(rates)):
        rates[b] = np.maximum(rates[b], rates[b - 1] * UPPER_BAND_MIN_RATE)
        rates[b, 0] = min(rates[b, 0], max(MAX_FAST_DB_S, rates[b - 1, 0]))
    return rates


def partial_amplitudes(pitch: int) -> tuple[np.ndarray, np.ndarray]:
    """(fast, slow) amplitude of partials 1..N (linear, reference full scale), in dB between
    the two analysed neighbours; a partial only the lower one has keeps its value."""
    lo, hi, w = _neighbours(pitch)
    out = []
    for name in ("fast_db", "slow_db"):
        a, b = np.asarray(lo[name]), np.asarray(hi[name])
        n = len(a)
        b_full = np.concatenate([b, a[len(b):]]) if len(b) < n else b[:n]
        amps = 10 ** (_lerp(a, b_full, w) / 20)
        # the sampled bass has almost no fundamental (-55 dB under partial 2 at A0); keep
        # it at least FUNDAMENTAL_FLOOR_DB under the strongest partial, so the key's pitch
        # is still there (and measurable), while the energy stays in the partials above
        amps[0] = max(amps[0], amps.max() * 10 ** (FUNDAMENTAL_FLOOR_DB / 20))
        # below C3 the box's small speaker cannot play the fundamental: its energy goes to
        # the partials above (the ear hears the pitch from them)
        if pitch < BASS_TILT_FROM:
            amps[0] *= 10 ** (-BASS_FUNDAMENTAL_CUT_DB * (BASS_TILT_FROM - pitch) / 12 / 20)
        out.append(amps)
    fast, slow = out
    # up to D3 the fundamental's energy (both stages together) is capped re partials 2-20,
    # both stages scaled alike, so the note keeps its two-stage decay
    cap_db = bass_fundamental_cap_db(pitch)
    if cap_db is not None:
        fundamental = math.hypot(fast[0], slow[0])
        upper = math.sqrt(float(np.sum(fast[1:20] ** 2) + np.sum(slow[1:20] ** 2)))
        scale = min(1.0, upper * 10 ** (cap_db / 20) / max(fundamental, 1e-30))
        fast[0] *= scale
        slow[0] *= scale
    return fast, slow


def bass_fundamental_cap_db(pitch: int) -> float | None:
    """The most the fundamental may have re partials 2-20 (dB of power), or None (no cap)."""
    if pitch >= BASS_CAP_PITCHES[-1]:
        return None
    return float(np.interp(pitch, BASS_CAP_PITCHES, BASS_CAP_DB))


def band_stretch(pitch: int) -> np.ndarray:
    """Frequency ratio of each band's table: partial m of a stiff string sits at
    m f0 sqrt(1 + B m^2) / sqrt(1 + B) (the fundamental stays in tune)."""
    b = inharmonicity(pitch)
    m = np.asarray(BAND_PARTIAL)
    return np.minimum(np.sqrt((1 + b * m ** 2) / (1 + b)), MAX_STRETCH)


def unison_ratio(pitch: int) -> np.ndarray:
    """Frequency ratio of each band's slow component to its fast one."""
    f0 = float(pitch_hz(pitch))
    out = []
    for beat, m, (lo, hi) in zip(UNISON_BEAT_HZ, BAND_PARTIAL, UNISON_CENTS):
        c = float(np.clip(1200 * math.log2(1 + beat / (m * f0)), lo, hi))
        out.append(2 ** (c / 1200))
    return np.asarray(out)


def release_r60_s(pitch: int) -> float:
    return float(np.clip(key_value("release_r60_s", pitch), *RELEASE_R60_S))


def strike_anchor(pitch: int) -> int:
    """Index of the analysed key whose strike noise this key plays."""
    anchors = np.asarray([k["pitch"] for k in table()["keys"]])
    return int(np.argmin(np.abs(anchors - pitch)))


def velocity_gain(velocity) -> np.ndarray:
    """Velocity 1..127 to amplitude, 1 at the analysed velocity (80)."""
    v = np.clip(np.asarray(velocity, dtype=np.float64), 1, 127)
    return (v / table()["velocity"]) ** VELOCITY_LEVEL_EXPONENT


def velocity_band_gains(velocity) -> np.ndarray:
    """Per band, the extra gain of a harder (or softer) strike: the brightness."""
    v = float(np.clip(velocity, 1, 127)) / table()["velocity"]
    return v ** np.asarray(VELOCITY_BAND_EXPONENT)


def velocity_strike_gain(velocity) -> float:
    v = float(np.clip(velocity, 1, 127)) / table()["velocity"]
    return v ** VELOCITY_STRIKE_EXPONENT


def pan_gains(pitch) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power left/right gains."""
    theta = (register("pan", pitch) + 1.0) * math.pi / 4.0
    return np.cos(theta), np.sin(theta)
