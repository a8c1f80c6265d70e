"""Audio output: underruns, write-loop CPU and pacing of the real AudioThread.

Method: a JACK dummy server (``jackd --realtime -d dummy -r 48000 -p 128``, started by
tests/audio_rig.JackServer) paces the stream like a sound card; ALSA "default" goes to it
through the ``jack`` plugin, 128-frame periods x 4. jackd and the AudioThread ask for SCHED_FIFO
(as on the box); where that is refused, a busy machine's scheduler shows up in the figures. The AudioThread writes a pre-rendered
block (the synth's cost is bench_synth's business), so the CPU figure is the write loop alone:
pyalsaaudio, poll() and the thread's bookkeeping, read from the thread's own CPU clock. The
first second is warm-up; xruns are counted over the rest. Block intervals are the time between
successive render() calls (each follows one completed write).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import Figure

RATE = 48000
PERIOD = 128


class _PrerenderedBlock:
    """A synth stand-in: the same 440 Hz block every time, and when each render() happened."""

    def __init__(self, max_blocks: int):
        k = np.arange(PERIOD)
        tone = np.round(8000 * np.sin(2 * np.pi * 375 * k / RATE)).astype(np.int16)
        self.block = np.stack([tone, tone], axis=1)     # 375 Hz: whole cycles per block
        self.block_frames, self.channels, self.sample_rate = PERIOD, 2, RATE
        self.times = np.zeros(max_blocks)
        self.count = 0

    def render(self) -> np.ndarray:
        if self.count < len(self.times):
            self.times[self.count] = time.monotonic()
            self.count += 1
        return self.block


def _thread_cpu(thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread._thread.ident))


def wakeup_latency(seconds: float) -> Figure | None:
    """The machine itself: how late a SCHED_FIFO thread that only sleeps and wakes is woken
    (``cyclictest`` from Debian's rt-tests, priority 80, 1 ms interval, every core). No audio
    buffer shorter than this worst case, less one period, can play without underruns here,
    whatever the firmware does: it is the kernel's and the hypervisor's. None where cyclictest
    is missing or may not use real-time priority."""
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("cyclictest") is None:
        print("cyclictest not found (Debian package rt-tests): wake-up latency not measured",
              file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile(suffix=".hist") as hist:
        done = subprocess.run(["cyclictest", "-m", "-S", "-p", "80", "-i", "1000", "-q",
                               "-D", str(int(seconds)), "-h", "20000",
                               f"--histfile={hist.name}"],
                              capture_output=True, text=True, timeout=seconds + 30)
        text = open(hist.name).read()
    found = re.search(r"^# Max Latencies:(.*)$", text, re.M)
    if done.returncode != 0 or not found:
        print(f"cyclictest failed ({done.stderr.strip()[:200]}): wake-up latency not measured",
              file=sys.stderr)
        return None
    worst_us = max(int(v) for v in found.group(1).split())
    return Figure("audio", "real-time wake-up latency, worst (cyclictest)", worst_us / 1000,
                  "ms", note=f"{seconds:g} s, FIFO 80, all cores; the machine, not the firmware")


def run(quick: bool) -> list[Figure]:
    from piano_buddy.audio_out import AlsaSink, AudioThread
    from tests.audio_rig import JackServer, jack_missing_reason

    reason = jack_missing_reason()
    if reason:
        print(f"bench_audio skipped: {reason}", file=sys.stderr)
        return []
    seconds = 2.0 if quick else 5.0
    warmup = 1.0
    saved = {k: os.environ.get(k) for k in ("ALSA_CONFIG_PATH", "JACK_DEFAULT_SERVER",
                                            "JACK_NO_START_SERVER", "JACK_NO_AUDIO_RESERVATION")}
    try:
        with JackServer(rate=RATE, period=PERIOD, realtime=True) as jack:
            os.environ.update(jack.env_vars())
            synth = _PrerenderedBlock(int((seconds + warmup + 2) * RATE / PERIOD))
            thread = AudioThread(synth, lambda: AlsaSink("default", sample_rate=RATE,
                                                         period_frames=PERIOD, periods=4),
                                 retry_seconds=1.0)
            thread.start()
            deadline = time.monotonic() + 30
            while thread.frames_written < warmup * RATE and time.monotonic() < deadline:
                time.sleep(0.01)
            if not thread.device_ok:
                thread.stop()
                thread.join(2)
                raise RuntimeError(f"audio device did not open: {thread.last_error}")
            x0, f0, c0, t0 = thread.xruns, thread.frames_written, _thread_cpu(thread), \
                time.monotonic()
            first_block = synth.count
            time.sleep(seconds)
            x1, f1, c1, t1 = thread.xruns, thread.frames_written, _thread_cpu(thread), \
                time.monotonic()
            last_block = synth.count
            t_stop = time.monotonic()
            thread.stop()
            thread.join(5)
            stop_s = time.monotonic() - t_stop
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    intervals = np.diff(synth.times[first_block:last_block]) * 1000
    stream_s = (f1 - f0) / RATE
    wall_s = t1 - t0
    note = f"JACK dummy {RATE} Hz, {PERIOD}-frame periods x4, {seconds:g} s"
    machine = wakeup_latency(3.0 if quick else 20.0)
    return [*([machine] if machine else []),
        Figure("audio", "xruns in steady state", x1 - x0, "count", 0, note=note),
        Figure("audio", "write-loop CPU (audio thread, no synth)",
               100 * (c1 - c0) / wall_s, "% core", 3.0,
               note="the idle firmware's whole budget is 3%"),
        Figure("audio", "stream rate / wall clock", stream_s / wall_s, "ratio",
               note="1.0 = paced at real time"),
        Figure("audio", "block interval p99", float(np.percentile(intervals, 99)), "ms",
               note=f"one period is {1000 * PERIOD / RATE:.2f} ms"),
        Figure("audio", "block interval max", float(intervals.max()), "ms",
               note=f"buffer is {4000 * PERIOD / RATE:.1f} ms"),
        Figure("audio", "stop() to thread joined", 1000 * stop_s, "ms", 1000.0),
    ]
