"""Latency of the live firmware, through real alsa-lib into a JACK dummy server.

Method: the real Box (mock pins, the committed models, the synth, the ALSA writer thread)
plays into ``jackd -d dummy -p 128`` (48 kHz), which paces the stream like a sound card.
The sink is wrapped so every ``pcm.write()`` call records when it was made and which frames
it carried. The synth records the frame of each note's first sample together with the
note's stamp (the button edge time). So:

- button-to-stream = (time the block holding the note's first sample went to pcm.write)
  - (time of the button edge in the gpiozero callback);
- button-to-DAC = button-to-stream + the frames queued ahead of that sample in the ALSA
  buffer (``queued_frames()``, i.e. the buffer's fill read right after the write, less the
  block, plus the sample's place in its block), which is when a card that drains sample by
  sample plays it. Every press counts: the synth's started-notes ring is read after each one;
- pause-to-AI = (time the block holding the AI's first sample went to pcm.write)
  - (the last release + the configured pause).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import Figure

SR = 48000


class TimedSink:
    """An AlsaSink that notes, for every write, its first frame, when the call was made,
    when it returned, and the buffer's fill right after it."""

    def __init__(self, inner, period: int):
        self.inner, self.period = inner, period
        self.log: list[tuple[int, float]] = []
        self.after: dict[int, tuple[float, int | None, int]] = {}
        self.frames = 0

    def open(self):
        self.inner.open()
        return self

    def write(self, block):
        start = self.frames
        self.log.append((start, time.monotonic()))
        self.frames += len(block)
        self.inner.write(block)
        self.after[start] = (time.monotonic(), self.inner.queued_frames(), len(block))

    def when_at_dac(self, frame: int) -> float | None:
        """When ``frame`` leaves the buffer: the write's return + what was queued ahead."""
        for start, _t in self.log:
            if start <= frame < start + self.period:
                got = self.after.get(start)
                if got is None or got[1] is None:
                    return None
                t, queued, n = got
                return t + (queued - n + (frame - start)) / SR
        return None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self):
        self.inner.close()

    def when_written(self, frame: int) -> float | None:
        for start, t in self.log:
            if start <= frame < start + self.period:
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
    import os
    cfg = Config()
    # the buffer under test: the config's default, or BENCH_PERIOD_FRAMES x BENCH_PERIODS
    audio = dataclasses.replace(
        cfg.audio, period_frames=int(os.environ.get("BENCH_PERIOD_FRAMES",
                                                     cfg.audio.period_frames)),
        periods=int(os.environ.get("BENCH_PERIODS", cfg.audio.periods)))
    cfg = dataclasses.replace(cfg, audio=audio,
                              midi=dataclasses.replace(cfg.midi, enabled=False),
                              recording=dataclasses.replace(cfg.recording, enabled=False),
                              stats=dataclasses.replace(cfg.stats, enabled=False))
    PERIOD = audio.period_frames
    presses = 40 if quick else 200
    replies = 3 if quick else 10
    press_ms: list[float] = []
    dac_ms: list[float] = []
    pause_ms: list[float] = []
    with JackServer(period=PERIOD, realtime=True) as jack:
        os.environ.update(jack.env_vars())
        sinks: list[TimedSink] = []

        def open_sink():
            s = TimedSink(AlsaSink("default", sample_rate=SR, channels=2, period_frames=PERIOD,
                                   periods=cfg.audio.periods), PERIOD)
            sinks.append(s)
            return s
        factory = mock_factory()
        box = Box(cfg, pin_factory=factory, open_sink=open_sink, seed=11)
        box.start()
        rng = np.random.default_rng(0)
        try:
            time.sleep(0.5)
            pins = [factory.pin(p) for p in cfg.panel.buttons]
            # button edge -> stream and -> DAC: presses at random phases of the period;
            # the synth's ring of started notes is read after each press, so all count
            started: dict[tuple[float, int], None] = {}
            for i in range(presses):
                b = i % 8
                time.sleep(float(rng.uniform(0.02, 0.05)))
                pins[b].drive_low()
                time.sleep(0.03)
                pins[b].drive_high()   # gaps stay far below the pause: no AI turn here
                started.update(dict.fromkeys(box.synth.started()))
            time.sleep(0.1)
            started.update(dict.fromkeys(box.synth.started()))
            sink = sinks[-1]
            for stamp, frame in started:
                t = sink.when_written(frame)
                if t is not None and stamp is not None:
                    press_ms.append((t - stamp) * 1000)
                    at_dac = sink.when_at_dac(frame)
                    if at_dac is not None:
                        dac_ms.append((at_dac - stamp) * 1000)
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
                       period_ms + 1, note=f"{len(a)} presses, {PERIOD}-frame periods"),
                Figure("latency", "button edge -> stream, p99", float(np.percentile(a, 99)),
                       "ms", period_ms + 1),
                Figure("latency", "button edge -> stream, max", float(a.max()), "ms")]
    if dac_ms:
        a = np.array(dac_ms)
        out += [Figure("latency", "button edge -> DAC, median", float(np.median(a)), "ms",
                       note=f"{len(a)} presses; {PERIOD} x {cfg.audio.periods} frames"),
                Figure("latency", "button edge -> DAC, p99", float(np.percentile(a, 99)), "ms",
                       7.0)]
    if pause_ms:
        a = np.array(pause_ms)
        out += [Figure("latency", "pause end -> AI's first sample, median",
                       float(np.median(a)), "ms", 20.0, note=f"{len(a)} replies"),
                Figure("latency", "pause end -> AI's first sample, max", float(a.max()), "ms",
                       20.0)]
    return out
