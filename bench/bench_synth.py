"""Synth cost and quality: render CPU per second of 48 kHz stereo audio, table memory, and
the measured pitch and aliasing margins.

Method: each figure renders seconds of audio in the box's own blocks (``audio.period_frames``,
64 frames: the ALSA buffer is 64 x 3) with every voice of a ``Synth(voices=N, reverb=True)``
held at full velocity, and times each second with ``time.process_time`` (CPU time of this
process; wall time is in the note). On a shared machine the neighbours only ever add time,
so the headline is the least of the repeats and the median is in the note, with the load
average and the ratio to a fixed numpy reference workload timed between the repeats (a
ratio that moves less with the load than either time). The render cost does not depend on
how many of the N voices sound (all six table rows of every voice are always computed, see
engine.py), except that a block in which no voice changes level (all held or idle) skips
the envelope step, and the strike stage runs only in the ~75 ms after a note starts: the
held figures are timed after their strikes have ended, so "re-struck every 50 ms" is the
busy case, every voice fading, striking and ringing. numpy's OpenBLAS is used only for
small matrix products per block.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from . import Figure

SR = 48000


def _box_block() -> int:
    from piano_buddy.config import AudioConfig
    return int(AudioConfig().period_frames)


BLOCK = _box_block()


def _held_synth(voices: int, block: int = BLOCK, **kwargs):
    from piano_buddy.synth import Synth
    kwargs.setdefault("reverb", True)          # as the box plays (config audio.reverb)
    synth = Synth(sample_rate=SR, block_frames=block, channels=2, voices=voices,
                  max_hold_s=None, **kwargs)
    for i in range(voices):
        synth.note_on(21 + (i * 87) // max(1, voices - 1), 127)
    for _ in range(max(20, int(0.1 * SR) // block + 1)):    # (past the strikes: 75 ms)
        synth.render()
    return synth


def _reference_workload():
    """A fixed numpy workload of the synth's kind (small ufuncs and a gather on a 64 x 112
    block, one small matmul), for a ratio that moves less with the machine's load."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 112)).astype(np.float32)
    b = np.empty_like(a)
    idx = rng.integers(0, 100000, (64, 112))
    table = rng.standard_normal(100000).astype(np.float32)
    w = rng.standard_normal((112, 4)).astype(np.float32)
    y = np.empty((64, 4), dtype=np.float32)

    def go():
        for _ in range(375):
            for _ in range(8):
                np.multiply(a, 0.999, b)
                np.add(b, a, b)
            table.take(idx, None, b, "clip")
            np.matmul(b, w, y)
    return go


def _cpu_percent(render_second, repeats: int, seconds: int = 1) -> dict:
    """CPU and wall time of ``seconds`` of audio over ``repeats`` tries, as % of one core:
    least and median, with the reference workload's CPU time around each try."""
    cpu, wall, ref = [], [], []
    reference = _reference_workload()
    for _ in range(repeats):
        t = time.process_time()
        reference()
        ref.append(time.process_time() - t)
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        render_second()
        cpu.append((time.process_time() - t_cpu) / seconds)
        wall.append((time.perf_counter() - t_wall) / seconds)
    return {"min": 100 * min(cpu), "median": 100 * float(np.median(cpu)),
            "wall": 100 * min(wall), "ratio": float(np.median(cpu) / np.median(ref)),
            "ref_ms": 1000 * float(np.median(ref)), "load": os.getloadavg()[0]}


def _blocks(synth, n: int):
    def go():
        for _ in range(n):
            synth.render()
    return go


def _restruck(synth, every_s: float = 0.05):
    """Every voice struck again every ``every_s`` in turn (each strike a steal fade, a new
    attack and knock, the others ringing or fading): the envelope path never rests."""
    block = synth.block_frames
    per = max(1, int(every_s * SR / block) // synth.n_voices)
    keys = [21 + (i * 87) // max(1, synth.n_voices - 1) for i in range(synth.n_voices)]

    def go():
        for b in range(SR // block):
            if b % per == 0:
                synth.note_on(keys[(b // per) % len(keys)], 127)
            synth.render()
    return go


def _with_events(synth):
    """An AI reply as dense as it gets: a note-on and a note-off every 10 ms, each on its
    own frame, so blocks are split for sample-accurate starts."""
    from piano_buddy.synth import AI
    block = synth.block_frames

    def go():
        start = synth.frame
        for i in range(100):
            at = start + 3 * block + i * 480 + 37
            synth.note_on(60 + i % 24, 100, AI, at_frame=at)
            synth.note_off(60 + i % 24, AI, at_frame=at + 400)
        for _ in range(SR // block):
            synth.render()
    return go


def _note(c: dict, what: str) -> str:
    return (f"{what}; median {c['median']:.2f}%, wall {c['wall']:.2f}%, "
            f"{c['ratio']:.2f}x the reference workload ({c['ref_ms']:.0f} ms), load {c['load']:.1f}")


def _pitch_error_cents() -> float:
    from piano_buddy.synth import Synth
    from piano_buddy.synth.timbre import pitch_hz
    worst = 0.0
    for pitch in range(21, 109):
        synth = Synth(voices=1)
        synth.note_on(pitch, 100)
        seconds = 1.0 if pitch < 40 else 0.4
        x = np.concatenate([synth.render()[:, 0].astype(np.float64)
                            for _ in range(int((seconds + 0.1) * SR / synth.block_frames))])
        x = x[int(0.1 * SR):]
        n = len(x)
        spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(n), 4 * n))
        freqs = np.fft.rfftfreq(4 * n, 1 / SR)
        f0 = float(pitch_hz(pitch))
        band = np.flatnonzero(np.abs(1200 * np.log2(np.maximum(freqs, 1) / f0)) < 50)
        k = band[np.argmax(spec[band])]
        a, b, c = np.log(spec[k - 1:k + 2])
        f = (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (4 * n)
        err = 1200 * math.log2(f / f0)
        worst = err if abs(err) > abs(worst) else worst
    return abs(worst)


def _top_note_alias_db() -> float:
    """Energy of C8 (full velocity, held steady) outside its own partials, relative to all
    of it, in the int16 output (0 dBFS ceiling, so 16-bit rounding is not what is measured)."""
    from piano_buddy.synth import Synth
    from .voice_measures import steady_tone
    synth = Synth(voices=1, channels=1, ceiling_dbfs=0.0, block_frames=BLOCK)
    synth.note_on(108, 127)
    steady_tone(synth)               # the tables' band-limiting, not the note's fast decay
    x = np.concatenate([synth.render()[:, 0].astype(np.float64) for _ in range(SR * 5 // 4 // BLOCK + 1)])
    x = x[SR // 4:SR // 4 + SR]
    t = 2 * np.pi * np.arange(SR) / SR
    w = 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)
    power = np.abs(np.fft.rfft(x * w)) ** 2
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    near = np.zeros(len(freqs), dtype=bool)
    for f in synth.bank.partial_frequencies(108):
        near |= np.abs(freqs - f) <= 10
    return 10 * math.log10(power[~near].sum() / power.sum())


def run(quick: bool) -> list[Figure]:
    from piano_buddy.synth.wavetables import build_wavetables
    repeats = 3 if quick else 9
    figures = []
    what = f"48 kHz stereo, {BLOCK}-frame blocks, room on, least of {repeats}"
    for voices in (1, 8, 16, 32):
        synth = _held_synth(voices)
        c = _cpu_percent(_blocks(synth, SR // BLOCK), repeats)
        name = f"render {voices} voice{'s' if voices > 1 else ''}, CPU per second of audio"
        figures.append(Figure("synth", name, c["min"], "% of one core",
                              target=3.0 if voices == 16 else None, note=_note(c, what)))
    synth = _held_synth(16)
    c = _cpu_percent(_restruck(synth), repeats)
    figures.append(Figure("synth", "render 16 voices re-struck every 50 ms", c["min"],
                          "% of one core", note=_note(c, "steal fade, attack, knock, release")))
    synth = _held_synth(16, block=128)
    c = _cpu_percent(_blocks(synth, SR // 128), repeats)
    figures.append(Figure("synth", "render 16 voices, 128-frame blocks", c["min"],
                          "% of one core", note=_note(c, "the previous default period")))
    synth = _held_synth(16)
    c = _cpu_percent(_with_events(synth), repeats)
    figures.append(Figure("synth", "render 16 voices + scheduled note every 10 ms", c["min"],
                          "% of one core", note=_note(c, "blocks split at event frames")))
    from piano_buddy.synth import Synth
    idle = Synth(voices=16, block_frames=BLOCK)
    c = _cpu_percent(_blocks(idle, SR // BLOCK), repeats)
    figures.append(Figure("synth", "render when silent", c["min"], "% of one core"))
    build_wavetables.cache_clear()
    t0 = time.perf_counter()
    bank = build_wavetables(SR)
    build_ms = 1000 * (time.perf_counter() - t0)
    figures.append(Figure("synth", "wavetable memory", bank.nbytes / 2 ** 20, "MiB", target=8.0,
                          note="88 keys x 3 bands x (fast, slow) as (midpoint, slope) float32 pairs + 30 strike bursts as float32 samples, up to their end"))
    figures.append(Figure("synth", "wavetable build at start-up", build_ms, "ms"))
    if not quick:
        figures.append(Figure("synth", "worst pitch error A0-C8", _pitch_error_cents(), "cents",
                              target=3.0, note="FFT peak, Hann, 4x zero padding, parabolic fit"))
    figures.append(Figure("synth", "C8 energy outside its partials", _top_note_alias_db(), "dB",
                          target=-60.0, note="full velocity, held steady, 0.25-1.25 s, Blackman-Harris"))
    return figures
