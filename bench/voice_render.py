"""The same notes through our synth and through the sampled reference (FluidR3 GM in
FluidSynth), as mono float signals, so the report, the analysis and the tests compare like
with like.

Reference: Debian ``fluidsynth`` with ``fluid-soundfont-gm`` (FluidR3_GM.sf2, MIT licence,
program 0, the grand piano), reverb and chorus off, gain 0.5, 48 kHz:
``fluidsynth -ni -q -R 0 -C 0 -g 0.5 -r 48000 -F out.wav FluidR3_GM.sf2 notes.mid``
(here as raw float32, so no dither floor limits the decays).
The box never needs either: only this comparison (``make voice-report``, the tests) does.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SR = 48000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def reference_available() -> str | None:
    """None when the reference can be rendered, else why not (for a skip reason)."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (apt-get install fluidsynth; make test does it)"
    if not SOUNDFONT.exists():
        return f"{SOUNDFONT} is missing (apt-get install fluid-soundfont-gm)"
    return None


def render_reference(notes, seconds: float | None = None, sr: int = SR) -> np.ndarray:
    """``notes`` = (pitch, velocity, start_s, end_s) through FluidR3's piano; mono float.
    ``seconds`` pads (or cuts) the result to that length."""
    import mido
    why = reference_available()
    if why:
        raise RuntimeError(why)
    events = []
    for pitch, velocity, start, end in ((n[0], n[1], n[2], n[3]) for n in notes):
        events.append((float(start), 1, int(pitch), int(velocity)))
        events.append((float(end), 0, int(pitch), 0))
    events.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(ticks_per_beat=960)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=1_000_000))    # 960 ticks a second
    track.append(mido.Message("program_change", program=0, time=0))
    now = 0
    for t, on, pitch, velocity in events:
        tick = int(round(t * 960))
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now))
        now = tick
    last = max((e[0] for e in events), default=0.0)
    total = seconds if seconds is not None else last + 2.0
    track.append(mido.MetaMessage("end_of_track", time=max(0, int(round(total * 960)) - now)))
    with tempfile.TemporaryDirectory() as tmp:
        mid_path, raw_path = Path(tmp) / "notes.mid", Path(tmp) / "out.raw"
        mid.save(str(mid_path))
        # raw float32 stereo: a 16-bit file's dither floor (-76 dB under a note) would end
        # every measured decay early
        subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5",
                        "-r", str(sr), "-T", "raw", "-O", "float", "-F", str(raw_path),
                        str(SOUNDFONT), str(mid_path)],
                       check=True, capture_output=True, timeout=300)
        x = np.fromfile(raw_path, dtype="<f4").astype(np.float64).reshape(-1, 2).mean(axis=1)
    return _fit(x, total, sr)


def render_ours(notes, seconds: float | None = None, sr: int = SR, reverb: bool = False,
                **synth_kwargs) -> np.ndarray:
    """The same notes through our synth (offline, exactly what the box plays, before the
    rounding to 16 bits: the reference is measured in float too); mono float in full-scale
    units. Reverb is off by default, as the reference's is."""
    from piano_buddy.synth import render_offline
    y = render_offline(list(notes), sample_rate=sr, reverb=reverb, rounded=False, **synth_kwargs)
    x = y.astype(np.float64).mean(axis=1) / 32768.0
    last = max((n[3] for n in notes), default=0.0)
    return _fit(x, seconds if seconds is not None else last + 2.0, sr)


def _fit(x: np.ndarray, seconds: float, sr: int) -> np.ndarray:
    n = int(round(seconds * sr))
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x))])
