"""The running box: builds every part from the config, supervises them, shuts down cleanly.

Start-up order matters: the models load first (a bad model file is fatal and must say so
before anything sounds), then the synth and the audio thread, then the inputs. The main
thread is the supervisor: it pings systemd's watchdog only while the audio thread and the
conductor both show a fresh heartbeat, so a hung thread ends in a restart.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import PianoBuddyError

log = logging.getLogger("piano_buddy")

HEARTBEAT_STALE = 2.0   # seconds without a heartbeat that count as a hung thread
DRAIN_SECONDS = 0.35    # at shutdown, let released notes fade out before closing the device
GIL_SWITCH_SECONDS = 0.001  # see Box.start
MODEL_ERROR_SHOW_SECONDS = 2.0  # the error pattern stays up this long before the exit


@dataclass
class StartupReport:
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


class Box:
    """Piano Buddy, assembled. ``open_sink`` and ``pin_factory`` choose real or simulated
    hardware; everything else is the same code in the service, the simulator and the tests."""

    def __init__(self, cfg: Config, *, pin_factory=None,
                 open_sink: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.monotonic, seed: int | None = None,
                 use_midi: bool | None = None, use_recorder: bool | None = None,
                 audio_label: str | None = None):
        self.cfg, self.clock = cfg, clock
        self._pin_factory, self._open_sink = pin_factory, open_sink
        self._seed = seed
        self._use_midi = cfg.midi.enabled if use_midi is None else use_midi
        self._use_recorder = cfg.recording.enabled if use_recorder is None else use_recorder
        self._audio_label = audio_label
        self.synth = self.audio = self.panel = self.conductor = None
        self.genie = self.melody = self.midi_in = self.midi_out = self.recorder = None
        self.report = StartupReport([])
        self._closed = False

    # --- start -------------------------------------------------------------------------------
    def start(self) -> StartupReport:
        import numpy as np

        from . import paths
        from .audio_out import AlsaSink, AudioThread
        from .conductor import Conductor
        from .genie import GenieDecoder
        from .melody import MelodyModel
        from .panel import Panel, has_gpio, mock_factory
        from .synth import Synth
        from .tflite import interpreter_class

        cfg, lines = self.cfg, self.report.lines
        # The audio thread must get the GIL back within a fraction of a period: Python's
        # default 5 ms switch interval lets another busy thread (a recording being encoded,
        # a reply being sampled) hold it for most of a 10 ms buffer.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        a = cfg.audio
        if self._pin_factory is None:
            self._pin_factory = None if has_gpio() else mock_factory()
        self.panel = Panel(cfg.panel, self._post, clock=self.clock,
                           pin_factory=self._pin_factory, on_volume=self._set_volume,
                           volume=a.volume)
        factory = self.panel.buttons[0].pin_factory
        lines.append(f"pins:     {type(factory).__name__}, buttons {list(cfg.panel.buttons)}, "
                     f"LEDs {list(cfg.panel.button_leds)}, turn LED {cfg.panel.turn_led}")

        models = Path(cfg.models.directory) if cfg.models.directory else paths.models_dir()
        rng = np.random.default_rng(self._seed)
        t0 = time.monotonic()
        try:
            self.genie = GenieDecoder(models / "genie.tflite", rng=rng)
            self.melody = MelodyModel(models / "melody.tflite", rng=rng)
        except PianoBuddyError:
            self.panel.set_error(True)   # visible on the box while systemd restarts us
            time.sleep(MODEL_ERROR_SHOW_SECONDS)
            raise
        backend, _ = interpreter_class()
        lines.append(f"models:   {models}/genie.tflite, melody.tflite via {backend} "
                     f"({(time.monotonic() - t0) * 1000:.0f} ms)")

        self.synth = Synth(sample_rate=a.sample_rate, block_frames=a.period_frames,
                           channels=2, voices=a.voices, ceiling_dbfs=a.ceiling_dbfs,
                           gain=a.volume)
        self._start_midi_and_recorder(lines)
        self.conductor = Conductor(cfg, self.synth, self.genie, self.melody, self.panel,
                                   midi_out=self.midi_out, recorder=self.recorder,
                                   clock=self.clock, sample_rate=a.sample_rate)
        open_sink = self._open_sink or (lambda: AlsaSink(
            a.device, sample_rate=a.sample_rate, channels=2, period_frames=a.period_frames,
            periods=a.periods))
        self.audio = AudioThread(self.synth, open_sink, retry_seconds=a.retry_seconds,
                                 on_status=self._audio_status)
        self.audio.start()
        self.conductor.start()
        if self.midi_in is not None:
            self.midi_in.start()
        deadline = time.monotonic() + 1.0      # report what the audio thread found
        while (time.monotonic() < deadline and not self.audio.device_ok
               and self.audio.last_error is None):
            time.sleep(0.01)
        if self.audio.device_ok:
            found = self._audio_label or self.audio.sink_description
        else:
            found = f"NONE - {self.audio.last_error}"
        lines.append(f"audio:    {found}; {a.sample_rate} Hz, {a.period_frames}-frame periods "
                     f"x {a.periods}, {a.voices} voices, ceiling {a.ceiling_dbfs} dBFS")
        return self.report

    def _start_midi_and_recorder(self, lines: list[str]) -> None:
        cfg = self.cfg
        if self._use_midi:
            try:
                from .midi import MidiInput, MidiOutput
                self.midi_out = MidiOutput(name=cfg.midi.output_name,
                                           player_channel=cfg.midi.player_channel - 1,
                                           ai_channel=cfg.midi.ai_channel - 1)
                self.midi_in = MidiInput(self._post, name_pattern=cfg.midi.input_pattern,
                                         clock=self.clock)
                lines.append(f"midi:     out {cfg.midi.output_name!r} (player ch "
                             f"{cfg.midi.player_channel}, AI ch {cfg.midi.ai_channel}); "
                             "keyboards hot-plugged")
            except Exception as exc:   # MIDI is an extra: the box plays without it
                self.midi_in = self.midi_out = None
                lines.append(f"midi:     off ({exc})")
        else:
            lines.append("midi:     off (config)")
        if self._use_recorder:
            try:
                from .recorder import SessionRecorder
                r = cfg.recording
                self.recorder = SessionRecorder(Path(r.folder),
                                                max_bytes=int(r.max_mb * 1_000_000),
                                                idle_seconds=r.idle_seconds, clock=self.clock,
                                                player_channel=cfg.midi.player_channel - 1,
                                                ai_channel=cfg.midi.ai_channel - 1)
                lines.append(f"record:   {r.folder} (cap {r.max_mb:g} MB)")
            except Exception as exc:
                self.recorder = None
                lines.append(f"record:   off ({exc})")
        else:
            lines.append("record:   off (config)")

    def _post(self, event) -> None:
        conductor = self.conductor
        if conductor is not None:
            conductor.post(event)

    def _set_volume(self, gain: float) -> None:
        if self.synth is not None:
            self.synth.set_gain(gain)

    def _audio_status(self, ok: bool, message: str) -> None:
        if self.conductor is not None:
            self.conductor.report_fault("audio", None if ok else message)

    # --- supervision ---------------------------------------------------------------------------
    def healthy(self, now: float | None = None) -> bool:
        """Both real-time parts alive and beating: the audio loop and the turn loop."""
        now = time.monotonic() if now is None else now
        return (self.audio is not None and self.audio.is_alive()
                and now - self.audio.heartbeat < HEARTBEAT_STALE
                and self.conductor is not None and self.conductor.alive
                and now - self.conductor.heartbeat < HEARTBEAT_STALE)

    def supervise(self, stop: threading.Event, notifier=None, tick: float = 0.5) -> None:
        """The main thread's loop until ``stop``: systemd READY, then watchdog pings that
        stop as soon as a thread hangs (systemd then restarts the service)."""
        watchdog = None
        if notifier is not None:
            from .notify import Watchdog

            def audio_and_conductor_beating() -> bool:
                return self.healthy()
            watchdog = Watchdog(notifier, [audio_and_conductor_beating])
            notifier.ready("playing")
            interval = notifier.watchdog_interval()
            tick = min(tick, interval) if interval else tick
        reported = False
        while not stop.wait(tick):
            if self.recorder is not None:
                self.recorder.tick(self.clock())
            if watchdog is not None and not watchdog.tick() and not reported:
                reported = True
                log.error("a real-time thread stopped beating (%s): withholding the "
                          "watchdog ping so systemd restarts the service",
                          ", ".join(watchdog.failed))

    # --- stop ---------------------------------------------------------------------------------
    def close(self) -> None:
        """All notes off, LEDs off, audio drained, devices closed. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.midi_in is not None:
            self._quietly(self.midi_in.close)
        if self.conductor is not None:
            self._quietly(self.conductor.stop)
        if self.synth is not None and self.audio is not None and self.audio.is_alive():
            deadline = time.monotonic() + DRAIN_SECONDS
            while time.monotonic() < deadline and not self.synth.is_silent():
                time.sleep(0.01)
        if self.audio is not None:
            self._quietly(self.audio.stop)
            self._quietly(lambda: self.audio.join(1.0))
        if self.panel is not None:
            self._quietly(self.panel.all_off)
            self._quietly(self.panel.close)
        if self.midi_out is not None:
            self._quietly(self.midi_out.close)
        if self.recorder is not None:
            self._quietly(self.recorder.close)

    @staticmethod
    def _quietly(fn) -> None:
        try:
            fn()
        except Exception:
            log.exception("error during shutdown (continuing)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_service(cfg: Config, stop: threading.Event, **box_kwargs) -> int:
    """The firmware as systemd runs it: start, log the start-up block, supervise, close."""
    from .notify import Notifier

    notifier = Notifier()
    box = Box(cfg, **box_kwargs)
    try:
        report = box.start()
    except PianoBuddyError:
        box.close()
        raise
    log.info("Piano Buddy started\n%s", report)
    try:
        box.supervise(stop, notifier)
    finally:
        if notifier.enabled:
            notifier.stopping()
        box.close()
    return 0
