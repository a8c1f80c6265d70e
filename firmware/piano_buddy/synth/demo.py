"""A short listening demo: ``python -m piano_buddy.synth.demo out/synth_demo.wav``.

Plays a little of everything the synth does (a melody at varied velocities, chords in the
middle and the bass, an AI run up to the top key, a full-velocity bass hit), so one file
shows the timbre across registers, the release tails and the limiter. Prints the levels.
"""

from __future__ import annotations

import sys

import numpy as np

from .engine import AI, PLAYER
from .offline import render_offline, write_wav

TWINKLE = (60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60)


def demo_notes() -> list[tuple]:
    notes, t = [], 0.0
    for i, pitch in enumerate(TWINKLE):
        length = 0.6 if i in (6, 13) else 0.3
        notes.append((pitch, 60 + (i % 3) * 25, t, t + 0.9 * length, PLAYER))
        t += length
    notes += [(p, 60, 0.0, 2.0, PLAYER) for p in (48, 52, 55)]
    notes += [(p, 60, 2.4, 4.4, PLAYER) for p in (41, 45, 48)]
    notes += [(p, 100, 4.8 + i * 0.12, 5.1 + i * 0.12, AI) for i, p in enumerate(range(84, 109, 4))]
    notes += [(21, 127, 6.0, 8.0, PLAYER), (33, 110, 6.0, 8.0, PLAYER)]
    return notes


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "out/synth_demo.wav"
    samples = render_offline(demo_notes(), sample_rate=48000)
    write_wav(path, samples, 48000)
    x = samples.astype(np.float64) / 32768.0
    peak = 20 * np.log10(max(np.abs(x).max(), 1e-9))
    rms = 20 * np.log10(max(np.sqrt(np.mean(x ** 2)), 1e-9))
    print(f"wrote {path}: {len(samples) / 48000:.2f} s, peak {peak:.1f} dBFS, RMS {rms:.1f} dBFS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
