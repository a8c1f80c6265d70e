"""Rendering without a sound card: the same ``Synth``, block by block, into an array or a WAV.

The demo, the tests and recordings use this, so what they hear is exactly what the box
plays: notes become scheduled (``at_frame``) commands fed a little ahead of the render
position, through the same queue the conductor uses.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Iterable

import numpy as np

from .engine import PLAYER, Synth

MAX_TAIL_S = 10.0     # after the last note-off; release is far shorter, this only bounds a bug


def render_offline(notes: Iterable[tuple], sample_rate: int = 48000, rounded: bool = True,
                   **synth_kwargs) -> np.ndarray:
    """Render ``notes`` = (pitch, velocity, start_s, end_s[, tag]) to int16 (frames, channels),
    until every note has faded out. ``rounded=False`` returns the same samples as float32
    before the rounding to int16 (to measure decays below 16-bit rounding, as the reference
    is measured)."""
    synth = Synth(sample_rate=sample_rate, **synth_kwargs)
    if not rounded:
        synth.output.float_out = np.zeros((synth.block_frames, 2 if synth.channels > 1 else 1),
                                          dtype=np.float32)
    events = []
    for note in notes:
        pitch, velocity, start_s, end_s = note[:4]
        tag = note[4] if len(note) > 4 else PLAYER
        on = max(0, int(round(float(start_s) * sample_rate)))
        off = max(on + 1, int(round(float(end_s) * sample_rate)))
        events.append((on, 1, int(pitch), int(velocity), int(tag)))
        events.append((off, 0, int(pitch), 0, int(tag)))
    events.sort()              # at the same frame, note-offs (kind 0) before note-ons
    last = events[-1][0] if events else 0
    horizon = 4 * synth.block_frames
    room = synth._queue.maxsize
    blocks, i = [], 0
    while True:
        queued = len(synth._queue)
        while i < len(events) and events[i][0] < synth.frame + horizon and queued < room:
            frame, kind, pitch, velocity, tag = events[i]
            if kind:
                synth.note_on(pitch, velocity, tag, at_frame=frame)
            else:
                synth.note_off(pitch, tag, at_frame=frame)
            i += 1
            queued += 1
        block = synth.render()
        blocks.append(block.copy() if rounded else synth.output.float_out.copy())
        if i >= len(events) and synth.frame > last and synth.is_silent():
            break
        if synth.frame > last + MAX_TAIL_S * sample_rate:
            break
    return np.concatenate(blocks)


def write_wav(path, samples_int16: np.ndarray, sample_rate: int) -> Path:
    """Write int16 samples, shape (frames,) or (frames, channels), as a PCM WAV file."""
    samples = np.asarray(samples_int16)
    if samples.dtype != np.int16:
        raise ValueError(f"write_wav {path}: samples must be int16, not {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise ValueError(f"write_wav {path}: samples must be (frames, channels), not {samples.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.ascontiguousarray(samples).astype("<i2", copy=False).tobytes())
    return path
