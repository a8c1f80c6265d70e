"""The audio output layer against real alsa-lib (pyalsaaudio): the file plugin for exact
samples, a JACK dummy server for real-time pacing, underruns and a device that vanishes."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

from piano_buddy.audio_out import (AlsaSink, AudioThread, MemorySink, PacedNullSink,
                                   WavSink)
from piano_buddy.errors import AudioDeviceError
from piano_buddy.synth import Synth

try:
    from tests.audio_rig import cents, dominant_frequency
except ImportError:
    from audio_rig import cents, dominant_frequency

RATE = 48000
WAIT = 30.0     # generous: CI is a busy 2-core machine


class ToneSynth:
    """A real tone generator: left a sine at ``freq``, right one at ``freq * 1.5``, each
    sample a pure function of its absolute frame index so a test can recompute any span."""

    def __init__(self, freq: float = 440.0, block_frames: int = 128, channels: int = 2,
                 amplitude: float = 0.5, sample_rate: int = RATE):
        self.freq, self.block_frames, self.channels = freq, block_frames, channels
        self.amplitude, self.sample_rate = amplitude, sample_rate
        self.frame = 0              # frames rendered so far
        self.stall_once_at: int | None = None   # frame at which render() sleeps once
        self.stall_seconds = 0.0
        self.fail_once_at: int | None = None    # frame at which render() raises once

    def expected(self, start: int, count: int) -> np.ndarray:
        k = np.arange(start, start + count, dtype=np.float64)
        scale = self.amplitude * 32767.0
        left = np.round(scale * np.sin(2 * np.pi * self.freq * k / self.sample_rate))
        right = np.round(scale * np.sin(2 * np.pi * 1.5 * self.freq * k / self.sample_rate))
        return np.stack([left, right], axis=1).astype(np.int16)[:, :self.channels]

    def render(self) -> np.ndarray:
        if self.fail_once_at is not None and self.frame >= self.fail_once_at:
            self.fail_once_at = None
            raise RuntimeError("synth fault injected by the test")
        if self.stall_once_at is not None and self.frame >= self.stall_once_at:
            self.stall_once_at = None
            time.sleep(self.stall_seconds)
        block = self.expected(self.frame, self.block_frames)
        self.frame += self.block_frames
        return block


def wait_for(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


class StatusLog:
    """Collects on_status calls (called from the audio thread)."""

    def __init__(self):
        self.calls: list[tuple[bool, str, int]] = []
        self.synth: ToneSynth | None = None

    def __call__(self, ok: bool, message: str) -> None:
        self.calls.append((ok, message, self.synth.frame if self.synth else -1))

    def oks(self) -> list[bool]:
        return [ok for ok, _, _ in self.calls]


def make_thread(synth, open_sink, **kw) -> tuple[AudioThread, StatusLog]:
    status = StatusLog()
    status.synth = synth
    kw.setdefault("realtime_priority", None)    # never an unpaced SCHED_FIFO loop in CI
    return AudioThread(synth, open_sink, on_status=status, **kw), status


def stop_and_join(thread: AudioThread) -> float:
    t0 = time.monotonic()
    thread.stop()
    thread.join(5.0)
    assert not thread.is_alive(), "audio thread did not stop"
    return time.monotonic() - t0


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "piano_buddy.audio" and r.levelno >= logging.ERROR]


# --- the ALSA sink through the file plugin ------------------------------------------------------
def test_alsa_sink_captures_exact_samples(alsa_capture):
    synth = ToneSynth()
    sent = synth.expected(0, 10_000)
    sink = AlsaSink(alsa_capture.device, sample_rate=RATE, channels=2, period_frames=128,
                    periods=4).open()
    for start in range(0, len(sent), 333):              # blocks that are not whole periods
        sink.write(sent[start:start + 333])
    sink.close()
    sink.close()                                        # safe twice
    np.testing.assert_array_equal(alsa_capture.samples(), sent)


def test_audio_thread_streams_the_synth_exactly(alsa_capture):
    synth = ToneSynth()
    thread, status = make_thread(synth, lambda: AlsaSink(alsa_capture.device))
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE, what="one second of audio")
    stop_and_join(thread)
    got = alsa_capture.samples()
    assert len(got) == thread.frames_written == synth.frame
    np.testing.assert_array_equal(got, synth.expected(0, len(got)))
    assert status.oks() == [True] and thread.device_ok and thread.last_error is None
    assert thread.xruns == 0 and thread.unexpected_errors == 0


def test_a_440_hz_tone_comes_back_at_440_hz(alsa_capture):
    synth = ToneSynth(freq=440.0)
    thread, _ = make_thread(synth, lambda: AlsaSink(alsa_capture.device))
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE // 2, what="half a second of audio")
    stop_and_join(thread)
    got = alsa_capture.samples()
    window = got[RATE // 8: RATE // 8 + RATE // 4]      # 250 ms
    assert abs(cents(dominant_frequency(window[:, 0], RATE), 440.0)) < 1.0
    assert abs(cents(dominant_frequency(window[:, 1], RATE), 660.0)) < 1.0


def test_open_errors_name_the_device_and_reason(alsa_capture):
    with pytest.raises(AudioDeviceError, match=r"'no_such_pcm' cannot be opened: .*"):
        AlsaSink("no_such_pcm").open()
    alsa_capture.unplug()
    with pytest.raises(AudioDeviceError, match=r"ALSA device 'default' cannot be opened"):
        AlsaSink("default").open()


def test_write_rejects_blocks_of_the_wrong_shape(alsa_capture):
    with AlsaSink(alsa_capture.device) as sink:
        with pytest.raises(ValueError, match=r"int16 of shape \(frames, 2\)"):
            sink.write(np.zeros((128, 1), np.int16))
        with pytest.raises(ValueError, match="int16"):
            sink.write(np.zeros((128, 2), np.float32))


# --- a device that is missing at start and appears later ---------------------------------------
def test_missing_device_paces_then_resumes_on_the_real_device(alsa_capture, caplog):
    caplog.set_level(logging.DEBUG, logger="piano_buddy.audio")
    alsa_capture.unplug()
    synth = ToneSynth()
    thread, status = make_thread(synth, lambda: AlsaSink(alsa_capture.device),
                                 retry_seconds=0.2)
    thread.start()
    wait_for(lambda: status.calls, what="the first status report")
    assert status.oks() == [False] and not thread.device_ok
    assert "default" in status.calls[0][1] and "cannot be opened" in status.calls[0][1]
    # without a device the synth is still rendered, at real time
    f0, t0 = thread.frames_written, time.monotonic()
    time.sleep(1.0)                                     # several retries happen meanwhile
    rate = (thread.frames_written - f0) / (time.monotonic() - t0)
    assert 0.5 * RATE < rate < 1.5 * RATE, f"paced at {rate:.0f} frames/s"
    assert status.oks() == [False]
    assert len(error_lines(caplog)) == 1                # one line, not one per retry

    alsa_capture.plug_in()
    wait_for(lambda: len(status.calls) >= 2, what="the device to come back")
    wait_for(lambda: thread.frames_written >= status.calls[1][2] + RATE // 4,
             what="audio on the device")
    stop_and_join(thread)
    assert status.oks() == [False, True]
    resumed_at = status.calls[1][2]                     # synth frame when the device opened
    got = alsa_capture.samples()
    assert len(got) == synth.frame - resumed_at
    np.testing.assert_array_equal(got, synth.expected(resumed_at, len(got)))
    assert len(error_lines(caplog)) == 1 and thread.unexpected_errors == 0


def test_jack_server_not_started_yet_then_appears(jack_server_factory):
    server = jack_server_factory(start=False)
    synth = ToneSynth()
    thread, status = make_thread(synth, lambda: AlsaSink("default"), retry_seconds=0.3)
    thread.start()
    wait_for(lambda: status.calls, what="the first status report")
    assert status.oks() == [False]
    server.start()
    wait_for(lambda: thread.device_ok, what="the JACK device")
    f0, t0 = thread.frames_written, time.monotonic()
    wait_for(lambda: thread.frames_written >= f0 + RATE // 2, what="audio into JACK")
    assert time.monotonic() - t0 >= 0.4                 # JACK paces it, half a second
    stop_and_join(thread)
    assert status.oks() == [False, True] and thread.unexpected_errors == 0


# --- real-time pacing, underruns, short writes (JACK dummy) ------------------------------------
def test_jack_paces_writes_at_real_time(jack_server):
    block = ToneSynth().expected(0, 128)
    with AlsaSink("default", period_frames=128, periods=4) as sink:
        t0 = time.monotonic()
        for _ in range(2 * RATE // 128):                # two seconds of audio
            sink.write(block)
        elapsed = time.monotonic() - t0
    # The buffer (512 frames, 11 ms) is all that may run ahead of the clock.
    assert elapsed >= 1.95, f"2 s of audio written in {elapsed:.2f} s: not paced"
    assert elapsed < 10.0


def test_stall_causes_an_xrun_that_is_counted_and_every_frame_still_arrives(
        jack_server_factory, tmp_path):
    captured = tmp_path / "through_jack.raw"
    jack_server_factory(capture=captured)
    synth = ToneSynth()
    sent = synth.expected(0, RATE)
    with AlsaSink("default", period_frames=128, periods=4) as sink:
        for start in range(0, RATE // 2, 300):          # 300 frames: never whole periods
            sink.write(sent[start:start + 300])
        time.sleep(0.5)                                 # the writer stalls: JACK runs dry
        for start in range(RATE // 2, RATE, 300):
            sink.write(sent[start:start + 300])
        assert sink.xruns >= 1
        assert sink.short_writes > 0                    # the buffer took part of a block
    got = np.fromfile(captured, "<i2").reshape(-1, 2)
    np.testing.assert_array_equal(got, sent)            # nothing lost, nothing doubled


def test_audio_thread_counts_an_xrun_and_plays_on(jack_server):
    synth = ToneSynth()
    synth.stall_once_at, synth.stall_seconds = RATE // 4, 0.5
    thread, status = make_thread(synth, lambda: AlsaSink("default"))
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE, what="a second of audio")
    stop_and_join(thread)
    assert thread.xruns >= 1
    assert status.oks() == [True] and thread.device_ok    # an xrun is not a lost device


def test_device_vanishes_mid_stream_and_returns(jack_server, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.audio")
    synth = ToneSynth()
    thread, status = make_thread(synth, lambda: AlsaSink("default"), retry_seconds=0.3)
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE // 4, what="audio into JACK")
    jack_server.stop()                                  # the device vanishes
    wait_for(lambda: not thread.device_ok, what="the loss to be noticed")
    assert status.oks() == [True, False] and "vanished" in status.calls[1][1]
    f0, t0 = thread.frames_written, time.monotonic()
    time.sleep(1.0)                                     # paced while it is gone
    rate = (thread.frames_written - f0) / (time.monotonic() - t0)
    assert 0.5 * RATE < rate < 1.5 * RATE, f"paced at {rate:.0f} frames/s"
    jack_server.start()                                 # ... and returns
    wait_for(lambda: thread.device_ok, what="the device to come back")
    f1 = thread.frames_written
    wait_for(lambda: thread.frames_written >= f1 + RATE // 4, what="audio after the return")
    stop_and_join(thread)
    assert status.oks() == [True, False, True]
    assert len(error_lines(caplog)) == 1 and thread.unexpected_errors == 0


def jack_client_ports(server) -> list[str]:
    return [p for p in server.ports() if not p.startswith("system:")]


def test_stop_is_prompt_and_closes_the_device(jack_server):
    thread, _ = make_thread(ToneSynth(), lambda: AlsaSink("default"))
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE // 4, what="audio into JACK")
    assert jack_client_ports(jack_server), "the ALSA jack client should be connected"
    assert stop_and_join(thread) < 1.0
    assert jack_client_ports(jack_server) == []         # the device was closed


def test_stop_is_prompt_while_the_device_is_missing(alsa_capture):
    alsa_capture.unplug()
    thread, status = make_thread(ToneSynth(), lambda: AlsaSink("default"), retry_seconds=0.2)
    thread.start()
    wait_for(lambda: status.calls, what="the first status report")
    assert stop_and_join(thread) < 1.0


def test_a_negotiated_format_other_than_s16_is_refused(jack_server):
    # pb_jackout is the bare jack plugin (FLOAT_LE only); pyalsaaudio would open it as float.
    with pytest.raises(AudioDeviceError, match=r"'pb_jackout' opened as FLOAT_LE .*plug"):
        AlsaSink("pb_jackout").open()


# --- faults inside the loop ---------------------------------------------------------------------
def test_an_unexpected_exception_is_logged_counted_and_the_loop_goes_on(alsa_capture, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.audio")
    synth = ToneSynth()
    cut = synth.fail_once_at = 38 * 128     # a block edge

    def on_status(ok, message):
        raise RuntimeError("status callback fault injected by the test")

    thread = AudioThread(synth, lambda: AlsaSink(alsa_capture.device), on_status=on_status,
                         realtime_priority=None)
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE // 2, what="audio after the faults")
    stop_and_join(thread)
    assert thread.unexpected_errors == 2
    assert thread.device_ok
    logged = "\n".join(error_lines(caplog))
    assert "synth fault injected" in logged and "status callback fault" in logged
    assert "Traceback" in logged
    # the failed block became silence; everything before and after is the synth's own
    got = alsa_capture.samples()
    np.testing.assert_array_equal(got[:cut], synth.expected(0, cut))
    assert not got[cut:cut + 128].any()
    np.testing.assert_array_equal(got[cut + 128:], synth.expected(cut, len(got) - cut - 128))


def test_open_sink_raising_something_odd_does_not_kill_the_thread():
    calls = []

    def open_sink():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise KeyError("odd fault from open_sink")
        return MemorySink(RATE)

    synth = ToneSynth()
    thread, status = make_thread(synth, open_sink, retry_seconds=0.2)
    thread.start()
    wait_for(lambda: thread.device_ok, what="the second open")
    stop_and_join(thread)
    assert thread.unexpected_errors == 1 and status.oks() == [True]


# --- sinks without a device ---------------------------------------------------------------------
def test_paced_null_sink_runs_at_real_time():
    sink = PacedNullSink(RATE).open()
    block = np.zeros((128, 2), np.int16)
    t0 = time.monotonic()
    for _ in range(RATE // 2 // 128):
        sink.write(block)
    elapsed = time.monotonic() - t0
    assert 0.48 < elapsed < 5.0


def test_wav_sink_writes_a_valid_file(tmp_path):
    path = tmp_path / "sub" / "out.wav"
    synth = ToneSynth()
    sent = synth.expected(0, 3 * RATE // 2)
    sink = WavSink(path, sample_rate=RATE, channels=2, patch_seconds=0.5).open()
    for start in range(0, RATE, 250):
        sink.write(sent[start:start + 250])
    # before close: the header is patched every 0.5 s, so a crash leaves a playable file
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() >= RATE // 2
    for start in range(RATE, len(sent), 250):
        sink.write(sent[start:start + 250])
    sink.close()
    sink.close()
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        assert w.getnframes() == len(sent)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    np.testing.assert_array_equal(data, sent)
    with pytest.raises(AudioDeviceError, match="not open"):
        sink.write(sent[:128])


def test_wav_sink_in_an_unwritable_place_names_the_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(AudioDeviceError, match=r"a_file/out.wav' cannot be written"):
        WavSink(blocker / "out.wav").open()


def test_audio_thread_into_a_wav_file(tmp_path):
    path = tmp_path / "thread.wav"
    synth = ToneSynth()
    thread, status = make_thread(synth, lambda: WavSink(path, realtime=True))
    thread.start()
    t0 = time.monotonic()
    wait_for(lambda: thread.frames_written >= RATE // 2, what="half a second")
    assert time.monotonic() - t0 >= 0.4                 # realtime=True paces it
    stop_and_join(thread)
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    np.testing.assert_array_equal(data, synth.expected(0, synth.frame))
    assert status.oks() == [True]


def test_jack_server_helper_runs_outside_pytest(tmp_path):
    """The bench uses JackServer as a plain context manager in a subprocess's environment."""
    try:
        from tests.audio_rig import JackServer, jack_missing_reason
    except ImportError:
        from audio_rig import JackServer, jack_missing_reason
    if jack_missing_reason():
        pytest.skip(jack_missing_reason())
    with JackServer(workdir=tmp_path) as server:
        pid = server.pid
        assert "system:playback_2" in server.ports()
    assert server.pid is None and not server.is_running()
    # the process is gone (reaped), not just signalled
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


# --- with the firmware's own synth and scheduling ------------------------------------------
def test_the_real_synth_plays_a4_through_alsa(alsa_capture):
    synth = Synth(sample_rate=RATE, block_frames=128, channels=2)
    synth.note_on(69, 100)                              # A4
    thread, status = make_thread(synth, lambda: AlsaSink(alsa_capture.device))
    thread.start()
    wait_for(lambda: thread.frames_written >= RATE // 2, what="half a second")
    stop_and_join(thread)
    got = alsa_capture.samples()
    assert len(got) == thread.frames_written and status.oks() == [True]
    window = got[RATE // 10: RATE // 10 + RATE // 4]
    assert np.abs(window).max() > 300                   # audible, not silence
    assert abs(cents(dominant_frequency(window[:, 0], RATE), 440.0)) < 5.0


@pytest.mark.parametrize("priority, expect_realtime", [(5000, False), (10, True)])
def test_real_time_priority_is_tried_and_its_refusal_logged_once(caplog,
                                                                  priority, expect_realtime):
    caplog.set_level(logging.INFO, logger="piano_buddy.audio")
    if expect_realtime:
        import os
        try:     # only where this process may use SCHED_FIFO (root or LimitRTPRIO)
            old = os.sched_getscheduler(0), os.sched_getparam(0)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            os.sched_setscheduler(0, old[0], old[1])
        except OSError as exc:
            pytest.skip(f"SCHED_FIFO not permitted here: {exc}")
    thread = AudioThread(ToneSynth(), lambda: PacedNullSink(RATE), realtime_priority=priority)
    thread.start()
    wait_for(lambda: thread.frames_written >= 1280, what="ten blocks")
    stop_and_join(thread)
    assert thread.realtime is expect_realtime
    lines = [r.getMessage() for r in caplog.records if "real-time priority" in r.getMessage()
             or "SCHED_FIFO" in r.getMessage()]
    assert len(lines) == 1 and thread.unexpected_errors == 0


def test_a_non_contiguous_block_is_written_as_its_values(alsa_capture):
    wide = ToneSynth().expected(0, 1000)
    block = np.repeat(wide, 2, axis=1)[:, ::2]            # a strided view, same values
    assert not block.flags.c_contiguous
    with AlsaSink(alsa_capture.device) as sink:
        sink.write(block)
    np.testing.assert_array_equal(alsa_capture.samples(), wide)


def test_stop_and_join_before_start_are_harmless():
    thread = AudioThread(ToneSynth(), lambda: PacedNullSink(RATE), realtime_priority=None)
    thread.stop()
    thread.join(0.1)
    assert not thread.is_alive()
