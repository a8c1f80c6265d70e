"""Latency of the live firmware, through real alsa-lib into a JACK dummy server.

Method: the real Box (mock pins, the committed models, the synth, the ALSA writer thread)
plays into ``jackd -d dummy -p 128`` (48 kHz), which paces the stream like a sound card.
The sink is wrapped so every ``pcm.write()`` call records when it was made and which frames
it carried. The synth records the frame of each note's first sample together with the
note's stamp (the button edge time). So:

- button-to-stream = (time the block holding the note's first sample went to pcm.write)
  - (time of the button edge in the gpiozero callback);
- pause-to-AI = (time the block holding the AI's first sample went to pcm.write)
  - (the last release + the configured pause).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import Figure

SR, PERIOD = 48000, 128


class TimedSink:
    """An AlsaSink that notes (first frame, monotonic time) of every write."""

    def __init__(self, inner):
        self.inner = inner
        self.log: list[tuple[int, float]] = []
        self.frames = 0

    def open(self):
        self.inner.open()
        return self

    def write(self, block):
        self.log.append((self.frames, time.monotonic()))
        self.frames += len(block)
        self.inner.write(block)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self):
        self.inner.close()

    def when_written(self, frame: int) -> float | None:
        for start, t in self.log:
            if start <= frame < start + PERIOD:
                return t
        return None


def run(quick: bool = False) -> list[Figure]:
    from piano_buddy.app import Box
    from piano_buddy.audio_out import AlsaSink
    from piano_buddy.conductor import Turn
    from piano_buddy.config import Config
    from piano_buddy.panel import mock_factory

    from tests.audio_rig import JackServer, jack_missing_reason

    reason = jack_missing_reason()
    if reason:
        return [Figure("latency", f"skipped: {reason}", float("nan"), "")]
    cfg = Config()
    cfg = dataclasses.replace(cfg, midi=dataclasses.replace(cfg.midi, enabled=False),
                              recording=dataclasses.replace(cfg.recording, enabled=False))
    presses = 40 if quick else 200
    replies = 3 if quick else 10
    press_ms: list[float] = []
    pause_ms: list[float] = []
    with JackServer(period=PERIOD, realtime=True) as jack:
        import os
        os.environ.update(jack.env_vars())
        sinks: list[TimedSink] = []

        def open_sink():
            s = TimedSink(AlsaSink("default", sample_rate=SR, channels=2, period_frames=PERIOD,
                                   periods=cfg.audio.periods))
            sinks.append(s)
            return s
        factory = mock_factory()
        box = Box(cfg, pin_factory=factory, open_sink=open_sink, seed=11)
        box.start()
        rng = np.random.default_rng(0)
        try:
            time.sleep(0.5)
            pins = [factory.pin(p) for p in cfg.panel.buttons]
            # button edge -> stream: presses at random phases of the audio period
            for i in range(presses):
                b = i % 8
                time.sleep(float(rng.uniform(0.02, 0.05)))
                pins[b].drive_low()
                time.sleep(0.03)
                pins[b].drive_high()   # gaps stay far below the pause: no AI turn here
            time.sleep(0.1)
            starts = [(stamp, frame) for stamp, frame in box.synth.started()]
            sink = sinks[-1]
            for stamp, frame in starts[-min(len(starts), presses):]:
                t = sink.when_written(frame)
                if t is not None and stamp is not None:
                    press_ms.append((t - stamp) * 1000)
            # end of pause -> the AI's first sample in the stream
            box.conductor.silence_everything()
            for _ in range(replies):
                for b in (0, 2, 4, 6, 4):
                    pins[b].drive_low()
                    time.sleep(0.08)
                    released = time.monotonic()    # the release edge is stamped just after
                    pins[b].drive_high()
                    time.sleep(0.04)
                deadline = time.monotonic() + 3
                while box.conductor.turn is not Turn.AI and time.monotonic() < deadline:
                    time.sleep(0.002)
                time.sleep(0.1)
                ai = [f for s, f in box.synth.started() if s is not None and s > released]
                if ai:
                    t = sink.when_written(min(ai))
                    if t is not None:
                        pause_ms.append((t - (released + cfg.turns.pause)) * 1000)
                pins[1].drive_low()          # interrupt, to start the next round
                time.sleep(0.05)
                pins[1].drive_high()
                box.conductor.silence_everything()
                time.sleep(0.2)
        finally:
            box.close()
    period_ms = PERIOD / SR * 1000
    out = []
    if press_ms:
        a = np.array(press_ms)
        out += [Figure("latency", "button edge -> stream, median", float(np.median(a)), "ms",
                       period_ms + 1, note=f"{len(a)} presses, 128-frame periods"),
                Figure("latency", "button edge -> stream, p99", float(np.percentile(a, 99)),
                       "ms", period_ms + 1),
                Figure("latency", "button edge -> stream, max", float(a.max()), "ms")]
    if pause_ms:
        a = np.array(pause_ms)
        out += [Figure("latency", "pause end -> AI's first sample, median",
                       float(np.median(a)), "ms", 20.0, note=f"{len(a)} replies"),
                Figure("latency", "pause end -> AI's first sample, max", float(a.max()), "ms",
                       20.0)]
    return out
