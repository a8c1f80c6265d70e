"""`make soak MINUTES=N`: a museum day, compressed, through the real firmware.

The desktop-simulator configuration (mock pins through gpiozero's callback path, the
committed models, the synth, the ALSA writer) plays into a JACK dummy server that paces it
like a sound card, with the session recorder writing to a temporary folder. The traffic
cycles through what visitors do: children mashing all eight buttons at 20 presses a second,
a button held for a long time while others are tapped, long idle stretches, ordinary
phrases with the AI answering and being interrupted, and MIDI-keyboard garbage (notes out of
range, note-offs without note-ons, pedal floods).

It fails on: any exception in any thread (or logged error), any note left sounding at the
end of a cycle (every note-on matched by its note-off), resident memory growing more than
2 MB after the warm-up cycle, the input or synth queue not draining, or any xrun after the
warm-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RSS_GROWTH_LIMIT_MB = 2.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ErrorCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(self.format(record))


def run(minutes: float, seed: int = 0, out=print) -> dict:
    from piano_buddy.app import Box
    from piano_buddy.config import Config
    from piano_buddy.conductor import Turn
    from piano_buddy.events import InputEvent, Kind
    from piano_buddy.panel import mock_factory

    from tests.audio_rig import JackServer

    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    thread_errors: list[str] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(
        f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}")
    rng = np.random.default_rng(seed)
    result: dict = {"cycles": 0, "failures": []}
    fail = result["failures"].append
    with tempfile.TemporaryDirectory() as tmp, JackServer(realtime=True) as jack:
        os.environ.update(jack.env_vars())
        cfg = Config()
        cfg = dataclasses.replace(
            cfg, midi=dataclasses.replace(cfg.midi, enabled=False),
            recording=dataclasses.replace(cfg.recording, folder=str(Path(tmp) / "rec"),
                                          idle_seconds=5.0))
        factory = mock_factory()
        box = Box(cfg, pin_factory=factory, seed=seed)
        box.start()
        pins = [factory.pin(p) for p in cfg.panel.buttons]
        down: set[int] = set()
        c = box.conductor

        def press(b):
            if b not in down:
                pins[b].drive_low()
                down.add(b)

        def release(b):
            if b in down:
                pins[b].drive_high()
                down.discard(b)

        def mash(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                b = int(rng.integers(8))
                release(b) if b in down else press(b)
                time.sleep(1 / 20 / 2)   # 20 presses (40 edges) a second

        def hold_and_tap(seconds):
            press(7)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                b = int(rng.integers(7))
                press(b)
                time.sleep(0.1)
                release(b)
                time.sleep(float(rng.uniform(0.1, 0.6)))
            release(7)

        def phrases(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for b in rng.integers(8, size=int(rng.integers(3, 9))):
                    press(int(b))
                    time.sleep(float(rng.uniform(0.08, 0.3)))
                    release(int(b))
                    time.sleep(float(rng.uniform(0.02, 0.2)))
                time.sleep(float(rng.uniform(0.9, 3.0)))   # the AI answers; sometimes cut

        def midi_garbage(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                kind = [Kind.KEY_ON, Kind.KEY_OFF, Kind.PEDAL][int(rng.integers(3))]
                c.post(InputEvent(kind, int(rng.integers(-5, 140)), time.monotonic(),
                                  int(rng.integers(0, 128))))
                time.sleep(0.002)
            for pitch in range(-5, 140):      # the keyboard goes away: every key up
                c.post(InputEvent(Kind.KEY_OFF, pitch, time.monotonic()))
            c.post(InputEvent(Kind.PEDAL, 64, time.monotonic(), 0))

        scale = max(0.05, minutes / 8)     # an 8-minute soak runs each part at full length
        cycle = [("mash", mash, 20), ("hold", hold_and_tap, 60), ("idle", time.sleep, 30),
                 ("phrases", phrases, 40), ("midi", midi_garbage, 10)]
        deadline = time.monotonic() + minutes * 60
        baseline_rss = baseline_xruns = None
        max_queue = 0
        try:
            while True:
                for name, fn, seconds in cycle:
                    fn(seconds * scale)
                    max_queue = max(max_queue, c.queue.qsize())
                for b in list(down):
                    release(b)
                settle = time.monotonic() + 12
                while time.monotonic() < settle and (c.turn is not Turn.PLAYER
                                                     or c.queue.qsize()):
                    time.sleep(0.02)
                time.sleep(0.1)
                if box.synth.sounding():
                    fail(f"cycle {result['cycles']}: notes left sounding "
                         f"{sorted(box.synth.sounding())}")
                if c.held_pitches:
                    fail(f"cycle {result['cycles']}: conductor still holds {c.held_pitches}")
                result["cycles"] += 1
                if baseline_rss is None:
                    baseline_rss, baseline_xruns = rss_mb(), box.audio.xruns
                if time.monotonic() >= deadline and result["cycles"] >= 2:
                    break
            result["rss_growth_mb"] = rss_mb() - baseline_rss
            result["steady_xruns"] = box.audio.xruns - baseline_xruns
            result["max_input_queue"] = max_queue
            result["conductor"] = dict(c.stats)
            result["synth"] = dict(box.synth.stats)
            result["audio_unexpected_errors"] = box.audio.unexpected_errors
        finally:
            box.close()
            threading.excepthook = old_hook
            logging.getLogger().removeHandler(errors)
    if result.get("rss_growth_mb", 0) > RSS_GROWTH_LIMIT_MB:
        fail(f"resident memory grew {result['rss_growth_mb']:.1f} MB after warm-up")
    if result.get("steady_xruns"):
        fail(f"{result['steady_xruns']} xruns after warm-up")
    if result.get("max_input_queue", 0) > c.queue.maxsize // 2:
        fail(f"input queue reached {result['max_input_queue']}")
    if c.stats.get("errors") or result.get("audio_unexpected_errors"):
        fail(f"errors: conductor {c.stats.get('errors')}, audio "
             f"{result.get('audio_unexpected_errors')}")
    if thread_errors:
        fail("exceptions in threads: " + "; ".join(thread_errors[:5]))
    if errors.records:
        fail("logged errors: " + " | ".join(errors.records[:5]))
    out(f"soak: {minutes:g} min, {result['cycles']} cycles, RSS growth "
        f"{result.get('rss_growth_mb', float('nan')):+.2f} MB, steady xruns "
        f"{result.get('steady_xruns')}, max input queue {result.get('max_input_queue')}, "
        f"replies {c.stats['replies']}, interrupts {c.stats['interrupts']}, "
        f"events {c.stats['events']}")
    for f in result["failures"]:
        out(f"FAIL: {f}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("MINUTES", 5)))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    res = run(args.minutes, args.seed)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
