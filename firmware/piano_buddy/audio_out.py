"""Where the synth's blocks go: an ALSA device, a WAV file, or nowhere at real time.

Every sink has the same small interface (``open()``, ``write(block)``, ``close()``) so the
firmware, the desktop simulator and the tests run the same audio thread whatever is at the
end of it. :class:`AudioThread` owns the hand-over from the synth to the sink and keeps the
box playing through device faults: a missing or vanished device is logged once, the synth
keeps being rendered at real time into a :class:`PacedNullSink` (scheduled notes and turns
advance as if heard), and the device is retried every few seconds.

Facts behind the ALSA writer (measured with alsa-lib 1.2.8, pyalsaaudio 0.11.0, jackd2 1.9.21):

* pyalsaaudio ignores a format/rate/channel setting the device refuses and opens it anyway
  (the ``jack`` plugin without ``plug`` in front opens as FLOAT_LE, so 128 int16 frames are
  taken as 64 float frames). :meth:`AlsaSink.open` checks what was negotiated.
* In blocking mode ``write()`` never returns once a JACK server dies, and ``PCM.close()``
  drains first, which also never returns. So the sink opens the PCM non-blocking, waits in
  ``poll()`` with a deadline, treats no progress for ``stall_seconds`` as a vanished device,
  and calls ``drop()`` before ``close()``.
* After an underrun ``write()`` returns -EPIPE (pyalsaaudio has already re-prepared the
  stream); a write may accept fewer frames than offered.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errorlog import ErrorLog
from .errors import AudioDeviceError
from .thread_names import name_this_thread

log = logging.getLogger("piano_buddy.audio")

# A device that takes no samples for this long has vanished (a JACK server that died, a USB
# card pulled out mid-poll). Far above one buffer (10 ms) and a busy machine's hiccups.
DEFAULT_STALL_SECONDS = 0.5
# close() waits at most this long (plus one buffer) for queued samples to play out.
DRAIN_SECONDS = 0.1


class Sink(Protocol):
    """What :class:`AudioThread` writes to."""
    sample_rate: int
    channels: int
    xruns: int

    def open(self) -> "Sink": ...
    def write(self, block: np.ndarray) -> None: ...
    def close(self) -> None: ...
    def describe(self) -> str: ...


def _check_block(block: np.ndarray, channels: int) -> None:
    if block.dtype != np.int16 or block.ndim != 2 or block.shape[1] != channels:
        raise ValueError(f"audio block must be int16 of shape (frames, {channels}), "
                         f"got {block.dtype} {block.shape}")


class _SinkBase:
    """Context-manager plumbing shared by every sink; ``open()`` returns the sink."""
    xruns = 0

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class AlsaSink(_SinkBase):
    """An ALSA playback device through pyalsaaudio, S16_LE interleaved.

    ``write()`` returns when every frame of the block was accepted: it loops over short writes,
    counts underruns (-EPIPE) in ``xruns`` and carries on, and raises :class:`AudioDeviceError`
    when the device reports an error or accepts nothing for ``stall_seconds``.
    """

    def __init__(self, device: str = "default", sample_rate: int = 48000, channels: int = 2,
                 period_frames: int = 128, periods: int = 4, *,
                 stall_seconds: float = DEFAULT_STALL_SECONDS):
        self.device, self.sample_rate, self.channels = device, sample_rate, channels
        self.period_frames, self.periods = period_frames, periods
        self.stall_seconds = stall_seconds
        self.xruns = 0
        self.short_writes = 0       # writes that took only part of what was offered
        self.buffer_frames = 0      # as negotiated with the device
        self._pcm = None
        self._poll = None
        self._broken = False        # a vanished device is dropped, never drained

    def describe(self) -> str:
        return f"ALSA {self.device!r}"

    @property
    def is_open(self) -> bool:
        return self._pcm is not None

    def open(self) -> "AlsaSink":
        """Open the device; raises :class:`AudioDeviceError` naming the device and reason."""
        if self._pcm is not None:
            return self
        import select

        import alsaaudio

        try:
            pcm = alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, alsaaudio.PCM_NONBLOCK,
                                device=self.device, rate=self.sample_rate,
                                channels=self.channels, format=alsaaudio.PCM_FORMAT_S16_LE,
                                periodsize=self.period_frames, periods=self.periods)
        except alsaaudio.ALSAAudioError as exc:
            raise AudioDeviceError(f"ALSA device {self.device!r} cannot be opened: {exc}") \
                from exc
        try:
            info = pcm.info()
            got = (info.get("format_name"), info.get("rate"), info.get("channels"))
            want = ("S16_LE", self.sample_rate, self.channels)
            if got != want:
                raise AudioDeviceError(
                    f"ALSA device {self.device!r} opened as {got[0]} {got[1]} Hz {got[2]} ch, "
                    f"not S16_LE {self.sample_rate} Hz {self.channels} ch (put a 'plug' "
                    "device in front of it in the ALSA config)")
            self.buffer_frames = int(info.get("buffer_size") or
                                     self.period_frames * self.periods)
            poll = select.poll()
            for fd, events in pcm.polldescriptors():
                poll.register(fd, events)
        except AudioDeviceError:
            pcm.close()
            raise
        except (alsaaudio.ALSAAudioError, OSError) as exc:
            pcm.close()
            raise AudioDeviceError(f"ALSA device {self.device!r} cannot be set up: {exc}") \
                from exc
        self._pcm, self._poll, self._broken = pcm, poll, False
        return self

    def write(self, block: np.ndarray) -> None:
        """Write every frame of ``block`` (int16, shape (frames, channels))."""
        pcm = self._pcm
        if pcm is None:
            raise AudioDeviceError(f"ALSA device {self.device!r} is not open")
        _check_block(block, self.channels)
        block = np.ascontiguousarray(block)    # no copy for the synth's own blocks
        import alsaaudio

        frames = block.shape[0]
        done = 0
        deadline = time.monotonic() + self.stall_seconds
        try:
            while done < frames:
                n = pcm.write(block if done == 0 else block[done:])
                if n > 0:
                    if done + n < frames:
                        self.short_writes += 1
                    done += n
                    deadline = time.monotonic() + self.stall_seconds
                elif n == -errno.EPIPE:
                    self.xruns += 1     # pyalsaaudio has re-prepared the stream already
                else:                   # 0: the buffer is full (non-blocking mode)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._broken = True
                        raise AudioDeviceError(
                            f"ALSA device {self.device!r} accepted no samples for "
                            f"{self.stall_seconds:g} s: it vanished or stopped")
                    ready = self._poll.poll(max(1, int(left * 1000)))
                    if ready:
                        # Lets plugins (jack, ioplug) consume their wake-up; else poll spins.
                        pcm.polldescriptors_revents(ready)
        except alsaaudio.ALSAAudioError as exc:
            self._broken = True
            raise AudioDeviceError(f"ALSA device {self.device!r} failed while playing: {exc}") \
                from exc

    def queued_frames(self) -> int | None:
        """Frames written but not yet played (the buffer's fill): what a note written now
        waits before it reaches the DAC. None when the device cannot tell."""
        pcm = self._pcm
        if pcm is None or not self.buffer_frames:
            return None
        try:
            return max(0, self.buffer_frames - int(pcm.avail()))
        except Exception:
            return None

    def close(self) -> None:
        """Let queued samples play out for a bounded time, then close; safe twice."""
        pcm, self._pcm, self._poll = self._pcm, None, None
        if pcm is None:
            return
        try:
            if not self._broken:
                limit = time.monotonic() + DRAIN_SECONDS + self.buffer_frames / self.sample_rate
                while time.monotonic() < limit and pcm.avail() < self.buffer_frames:
                    time.sleep(0.002)
            pcm.drop()      # pyalsaaudio's close() drains, which hangs on a dead JACK server
        except Exception as exc:    # the device is going away anyway
            log.debug("dropping %s: %s", self.describe(), exc)
        try:
            pcm.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.describe(), exc)


class PacedNullSink(_SinkBase):
    """No device: each ``write()`` returns when the block would have finished playing.

    Keeps the synth, its frame counter and everything scheduled on it moving at real time
    while the real device is missing. Falling more than ``resync_seconds`` behind (a slow
    device retry) restarts the schedule instead of rushing to catch up.
    """

    def __init__(self, sample_rate: int = 48000, channels: int = 2, *,
                 resync_seconds: float = 0.2):
        self.sample_rate, self.channels = sample_rate, channels
        self.resync_seconds = resync_seconds
        self.xruns = 0
        self.frames = 0
        self._t0: float | None = None
        self._frames_since_t0 = 0

    def describe(self) -> str:
        return "no device (paced)"

    def open(self) -> "PacedNullSink":
        return self

    def write(self, block: np.ndarray) -> None:
        _check_block(block, self.channels)
        now = time.monotonic()
        if self._t0 is None or now - (self._t0 + self._frames_since_t0 / self.sample_rate) \
                > self.resync_seconds:
            self._t0, self._frames_since_t0 = now, 0
        self._frames_since_t0 += block.shape[0]
        self.frames += block.shape[0]
        wait = self._t0 + self._frames_since_t0 / self.sample_rate - now
        if wait > 0:
            time.sleep(wait)

    def close(self) -> None:
        self._t0 = None


class WavSink(_SinkBase):
    """A 16-bit PCM WAV file written as the blocks arrive.

    The header's sizes are patched on ``close()`` and every ``patch_seconds`` of audio, so the
    file is valid after ``close()`` (any number of times) and nearly complete after a crash.
    ``realtime=True`` paces writes like :class:`PacedNullSink` (the interactive simulator).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = 48000, channels: int = 2, *,
                 realtime: bool = False, patch_seconds: float = 1.0):
        self.path = Path(path)
        self.sample_rate, self.channels = sample_rate, channels
        self.xruns = 0
        self.frames = 0
        self._patch_every = max(1, int(patch_seconds * sample_rate))
        self._unpatched = 0
        self._pace = PacedNullSink(sample_rate, channels) if realtime else None
        self._file = None

    def describe(self) -> str:
        return f"WAV {str(self.path)!r}"

    def open(self) -> "WavSink":
        if self._file is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
            self.frames = 0
            self._file.write(self._header(0))
        except OSError as exc:
            self._file = None
            raise AudioDeviceError(f"WAV file {str(self.path)!r} cannot be written: "
                                   f"{exc.strerror or exc}") from exc
        return self

    def _header(self, frames: int) -> bytes:
        data = frames * self.channels * 2
        return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1,
                           self.channels, self.sample_rate, self.sample_rate * self.channels * 2,
                           self.channels * 2, 16, b"data", data)

    def _patch_header(self) -> None:
        f = self._file
        end = f.tell()
        f.seek(0)
        f.write(self._header(self.frames))
        f.seek(end)
        self._unpatched = 0

    def write(self, block: np.ndarray) -> None:
        if self._file is None:
            raise AudioDeviceError(f"WAV file {str(self.path)!r} is not open")
        _check_block(block, self.channels)
        try:
            self._file.write(np.ascontiguousarray(block, dtype="<i2").data)
            self.frames += block.shape[0]
            self._unpatched += block.shape[0]
            if self._unpatched >= self._patch_every:
                self._patch_header()
        except OSError as exc:
            raise AudioDeviceError(f"WAV file {str(self.path)!r} stopped taking samples: "
                                   f"{exc.strerror or exc}") from exc
        if self._pace is not None:
            self._pace.write(block)

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._patch_header()
        except OSError as exc:
            log.warning("WAV file %r: header not updated: %s", str(self.path), exc)
        finally:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError as exc:
                log.warning("WAV file %r: not closed cleanly: %s", str(self.path), exc)


class MemorySink(_SinkBase):
    """Keeps every block in memory (tests of code above the audio layer; no ALSA needed).

    ``samples()`` returns everything written as one (frames, channels) int16 array.
    ``realtime=True`` paces writes like :class:`PacedNullSink`.
    """

    def __init__(self, sample_rate: int = 48000, channels: int = 2, *, realtime: bool = False):
        self.sample_rate, self.channels = sample_rate, channels
        self.xruns = 0
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._pace = PacedNullSink(sample_rate, channels) if realtime else None

    def describe(self) -> str:
        return "memory"

    def open(self) -> "MemorySink":
        return self

    def write(self, block: np.ndarray) -> None:
        _check_block(block, self.channels)
        with self._lock:
            self._blocks.append(block.copy())
        if self._pace is not None:
            self._pace.write(block)

    def samples(self) -> np.ndarray:
        with self._lock:
            if not self._blocks:
                return np.zeros((0, self.channels), np.int16)
            return np.concatenate(self._blocks)

    def close(self) -> None:
        pass


def _device_errors() -> tuple[type[BaseException], ...]:
    try:
        import alsaaudio
        return (OSError, alsaaudio.ALSAAudioError)   # AudioDeviceError is an OSError
    except ImportError:
        return (OSError,)


class AudioThread:
    """Renders the synth block by block into a sink, through any device fault, until stopped.

    ``synth`` has ``render() -> int16 (block_frames, channels)`` and ``block_frames``.
    ``open_sink()`` returns a sink (opened or not; the thread calls ``open()``). If it or a
    write fails, the thread logs one line, calls ``on_status(False, message)`` once, plays on
    into a :class:`PacedNullSink` and retries ``open_sink()`` every ``retry_seconds``; when
    the device is back it logs one line and calls ``on_status(True, message)``.

    Read by the supervisor (plain attributes, written only by the thread): ``frames_written``,
    ``heartbeat`` (``time.monotonic()`` after the last block), ``xruns``, ``device_ok``,
    ``last_error``, ``unexpected_errors``, ``sink_description``.
    """

    def __init__(self, synth, open_sink: Callable[[], Sink], *, retry_seconds: float = 3.0,
                 on_status: Callable[[bool, str], None] | None = None, name: str = "audio",
                 sample_rate: int | None = None, channels: int | None = None,
                 realtime_priority: int | None = 70,
                 fallback_sink: Callable[[], Sink] | None = None):
        self.synth = synth
        self.fallback_sink = fallback_sink
        self.open_sink = open_sink
        self.retry_seconds = retry_seconds
        self.on_status = on_status
        self.realtime_priority = realtime_priority
        self._rate = sample_rate or getattr(synth, "sample_rate", 48000)
        self._channels = channels or getattr(synth, "channels", 2)
        self.frames_written = 0
        self.heartbeat = time.monotonic()
        self.device_ok = False
        self.last_error: str | None = None
        self.unexpected_errors = 0
        self.realtime = False
        self.sink_description = "none"
        self._xruns_closed = 0      # from sinks already closed
        self._sink: Sink | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._silence = np.zeros((int(getattr(synth, "block_frames", 128)), self._channels),
                                 np.int16)
        self._errors = ErrorLog(log, "the audio thread carries on")

    # --- control ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish its block, drain and close the sink; join() to wait."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:     # joining a thread never started is a no-op
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def xruns(self) -> int:
        sink = self._sink
        return self._xruns_closed + (getattr(sink, "xruns", 0) if sink is not None else 0)

    # --- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        name_this_thread("pb-audio")
        self._try_realtime()
        self._connect(first=True)
        next_retry = time.monotonic() + self.retry_seconds
        while not self._stop.is_set():
            try:
                block = self._render()
                try:
                    self._sink.write(block)
                except _device_errors() as exc:
                    self._lost(exc)    # now a PacedNullSink: this block still takes its time
                    next_retry = time.monotonic() + self.retry_seconds
                    self._sink.write(block)
                self.frames_written += block.shape[0]
                self.heartbeat = time.monotonic()
                if not self.device_ok and self.heartbeat >= next_retry:
                    self._connect(first=False)
                    next_retry = time.monotonic() + self.retry_seconds
            except Exception as exc:   # never let anything end the audio thread
                self._unexpected("audio loop", exc)
                self._stop.wait(0.01)  # a fault that repeats every block must not spin
        self._close_sink()

    def _render(self) -> np.ndarray:
        try:
            return self.synth.render()
        except Exception as exc:
            self._unexpected("synth.render()", exc)
            return self._silence       # keep time moving; the next block may render

    def _connect(self, first: bool) -> None:
        """Try the real sink; on failure play on into a PacedNullSink (one log line)."""
        # threads that ALSA plugins start while opening (libjack's client thread) inherit
        # the opener's OS name: name them apart from the audio thread itself
        name_this_thread("pb-alsa-plugin")
        try:
            sink = self.open_sink()
            sink.open()
        except _device_errors() as exc:
            if first:
                self._report_down(f"audio device unavailable: {exc}")
            else:
                log.debug("audio device still unavailable: %s", exc)
            if self._sink is None:
                self._sink = self._stand_in()
                self.sink_description = self._sink.describe()
            return
        except Exception as exc:
            self._unexpected("open_sink()", exc)
            if self._sink is None:
                self._sink = self._stand_in()
                self.sink_description = self._sink.describe()
            return
        finally:
            name_this_thread("pb-audio")
        self._close_sink()
        self._sink = sink
        self.sink_description = sink.describe()
        was_error = self.last_error is not None
        self.device_ok = True
        message = f"audio on {sink.describe()}"
        if was_error:
            log.warning("audio device back: %s", sink.describe())
            self.last_error = None
        else:
            log.info("%s", message)
        self._notify(True, message)

    def _stand_in(self) -> Sink:
        """What plays while the device is missing: ``fallback_sink`` (a WAV file, from
        ``audio.wav_fallback``) if given and it opens, else silence paced at real time."""
        if self.fallback_sink is not None:
            try:
                sink = self.fallback_sink()
                sink.open()
                return sink
            except Exception as exc:
                log.warning("audio fallback unavailable (%s); playing on silently", exc)
                self.fallback_sink = None
        return PacedNullSink(self._rate, self._channels)

    def _lost(self, exc: BaseException) -> None:
        description = self._sink.describe() if self._sink is not None else "sink"
        self._close_sink()
        self._sink = self._stand_in()
        self.sink_description = self._sink.describe()
        self._report_down(f"audio device lost ({description}): {exc}")

    def _report_down(self, message: str) -> None:
        self.device_ok = False
        self.last_error = message
        log.error("%s; playing on silently, retrying every %g s", message, self.retry_seconds)
        self._notify(False, message)

    def _notify(self, ok: bool, message: str) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(ok, message)
        except Exception as exc:
            self._unexpected("on_status()", exc)

    def _close_sink(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return
        self._xruns_closed += getattr(sink, "xruns", 0)
        try:
            sink.close()
        except Exception as exc:
            log.debug("closing %s: %s", sink.describe(), exc)

    def _unexpected(self, where: str, exc: BaseException) -> None:
        """Count it; log the traceback the first time, then every 1000th repeat."""
        self.unexpected_errors += 1
        self._errors.record(where, exc)

    def _try_realtime(self) -> None:
        """SCHED_FIFO for this thread when the system allows it (LimitRTPRIO in the unit)."""
        if self.realtime_priority is None or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.realtime = True
            log.info("audio thread runs with SCHED_FIFO priority %d", self.realtime_priority)
        except (OSError, ValueError) as exc:
            log.info("audio thread runs without real-time priority (%s)", exc)


# --- audio.wav_fallback ------------------------------------------------------------------------
WAV_SILENCE_KEPT = 1.0       # seconds of silence kept after a sound (rests keep their rhythm)
WAV_CAP_BYTES = 50_000_000   # one fallback WAV stops growing here (about 4 min of sound)
WAV_FILES_KEPT = 5           # older fallback WAVs are removed


class SoundOnlyWavSink:
    """A paced sink for a machine without a sound card that keeps, in a WAV file, only the
    stretches where something sounds (plus up to :data:`WAV_SILENCE_KEPT` of each rest).

    An idle simulator writes nothing, the file is created at the first sound, and it stops
    growing at ``cap_bytes``; on opening, all but the newest ``keep`` files of the same name
    pattern are removed. Writing runs on the audio thread: one ``np.any`` per block, and the
    WAV writer's buffered file write (the same as the offline WavSink's).
    """

    def __init__(self, path: Path, sample_rate: int = 48000, channels: int = 2, *,
                 cap_bytes: int = WAV_CAP_BYTES, keep: int = WAV_FILES_KEPT):
        self.path = Path(path)
        self.sample_rate, self.channels = sample_rate, channels
        self.xruns = 0
        self.cap_frames = max(1, (cap_bytes - 44) // (2 * channels))
        self.keep = keep
        self.full = False
        self._pace = PacedNullSink(sample_rate, channels)
        self._wav = WavSink(self.path, sample_rate, channels)
        self._opened = False
        self._silent_frames = 0
        self._keep_silence = int(WAV_SILENCE_KEPT * sample_rate)

    @property
    def frames_written(self) -> int:
        return self._wav.frames if self._opened else 0

    def describe(self) -> str:
        return f"WAV {str(self.path)!r} (sound only)"

    def open(self) -> "SoundOnlyWavSink":
        self._pace.open()
        return self

    def write(self, block: np.ndarray) -> None:
        self._pace.write(block)
        if self.full:
            return
        if block.any():
            self._silent_frames = 0
        else:
            self._silent_frames += len(block)
            if not self._opened or self._silent_frames > self._keep_silence:
                return
        if not self._opened:
            self._remove_old()
            self._wav.open()
            self._opened = True
        self._wav.write(block)
        if self._wav.frames >= self.cap_frames:
            self.full = True
            self._wav.close()

    def _remove_old(self) -> None:
        pattern = sorted(self.path.parent.glob(f"{self.path.stem.rsplit('-', 2)[0]}-*.wav"))
        for old in pattern[:max(0, len(pattern) - (self.keep - 1))]:
            try:
                old.unlink()
            except OSError:
                pass

    def close(self) -> None:
        if self._opened:
            self._wav.close()
        self._pace.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def wav_fallback_path(setting: str, now: float | None = None) -> Path:
    """``audio.wav_fallback = "out/sim.wav"`` -> ``out/sim-YYYYMMDD-HHMMSS.wav`` (one file per
    run, the last few kept)."""
    p = Path(setting)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return p.with_name(f"{p.stem}-{stamp}{p.suffix or '.wav'}")

