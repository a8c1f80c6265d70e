"""The running box: builds every part from the config, supervises them, shuts down cleanly.

Start-up order matters: the models load first (a bad model file is fatal and must say so
before anything sounds), then the synth and the audio thread, then the inputs. The main
thread is the supervisor: it pings systemd's watchdog only while the audio thread and the
conductor both show a fresh heartbeat, so a hung thread ends in a restart.
"""

from __future__ import annotations

import logging
import math
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
DRAIN_SECONDS = 0.6     # at shutdown, let released notes (0.3 s) and the room (0.25 s) fade
GIL_SWITCH_SECONDS = 0.001  # see Box.start
MODEL_ERROR_SHOW_SECONDS = 2.0  # the error pattern stays up this long before the exit
# Shutdown: each wait bounded; together under STOP_BUDGET (systemd's TimeoutStopSec is 10).
STOP_CONDUCTOR, STOP_RECORDER, STOP_AUDIO, STOP_MIDI, STOP_KEYS = 0.8, 1.2, 1.0, 0.8, 0.2
DRAIN_WALL_SECONDS = 1.0
STOP_BUDGET = (STOP_CONDUCTOR + STOP_RECORDER + DRAIN_WALL_SECONDS + STOP_AUDIO + STOP_MIDI
               + STOP_KEYS)
GC_GEN2_THRESHOLD = 1000  # full collections 100x rarer than Python's default of 10


_gc_before: list[tuple[int, int, int]] = []     # thresholds before settle_memory()


def unsettle_memory() -> None:
    """Undo :func:`settle_memory`'s collector settings (a box closed in a longer-lived
    process: the tests, the bench)."""
    import gc
    if _gc_before:
        gc.set_threshold(*_gc_before[0])
        _gc_before.clear()
        gc.unfreeze()


def settle_memory(lock: bool = False) -> str:
    """After start-up: move everything built so far out of the garbage collector's sight
    (``gc.freeze``) and make full collections rare, so no collection walks the models and
    wavetables while the audio thread waits for the GIL (a full one held it 9-13 ms); then
    with ``lock`` (the service), lock the pages in use now (``mlockall(MCL_CURRENT)``, up to
    LimitMEMLOCK in the unit) so the models and wavetables never page out. Not MCL_FUTURE:
    with it, any allocation past the limit would fail. Returns a line for the start-up block."""
    import ctypes
    import ctypes.util
    import gc

    gc.freeze()     # no collect() first: a finalizer run here could touch a device at start-up
    g0, g1, g2 = gc.get_threshold()
    _gc_before.append((g0, g1, g2))
    gc.set_threshold(g0, g1, GC_GEN2_THRESHOLD)
    frozen = gc.get_freeze_count()
    gc_line = f"{frozen} objects frozen out of the GC, gen-2 threshold {GC_GEN2_THRESHOLD}"
    if not lock:
        return gc_line
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        MCL_CURRENT = 1
        if libc.mlockall(MCL_CURRENT) == 0:
            locked = "memory locked"
        else:
            import os
            locked = f"memory not locked ({os.strerror(ctypes.get_errno())})"
    except (OSError, AttributeError) as exc:
        locked = f"memory not locked ({exc})"
    return f"{gc_line}; {locked}"


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
                 use_counts: bool | None = None, use_keys: bool | None = None,
                 audio_label: str | None = None, lock_memory: bool = False):
        self.cfg, self.clock = cfg, clock
        self._pin_factory, self._open_sink = pin_factory, open_sink
        self._seed = seed
        self._use_midi = cfg.midi.enabled if use_midi is None else use_midi
        self._use_recorder = cfg.recording.enabled if use_recorder is None else use_recorder
        self._use_counts = cfg.stats.enabled if use_counts is None else use_counts
        self._use_keys = cfg.keys.enabled if use_keys is None else use_keys
        self._audio_label = audio_label
        self._lock_memory = lock_memory
        self.synth = self.audio = self.panel = self.conductor = None
        self.genie = self.melody = self.midi_in = self.midi_out = self.recorder = None
        self.counts = self.key_buttons = None
        self.report = StartupReport([])
        self._closed = False

    # --- start -------------------------------------------------------------------------------
    def start(self) -> StartupReport:
        import numpy as np

        from . import assembly
        from .panel import choose_pin_factory

        cfg, lines = self.cfg, self.report.lines
        # The audio thread must get the GIL back within a fraction of a period: Python's
        # default 5 ms switch interval lets another busy thread (a recording being encoded,
        # a reply being sampled) hold it for most of a 10 ms buffer.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        a = cfg.audio
        if self._pin_factory is None:
            self._pin_factory, pins_why = choose_pin_factory(self.clock)
        else:
            pins_why = type(self._pin_factory).__name__
        self.panel = assembly.build_panel(cfg, self._post, pin_factory=self._pin_factory,
                                          clock=self.clock, on_volume=self._set_volume)
        lines.append(f"pins:     {pins_why}, buttons {list(cfg.panel.buttons)}, "
                     f"LEDs {list(cfg.panel.button_leds)}, turn LED {cfg.panel.turn_led}")

        t0 = time.monotonic()
        try:
            models = assembly.load_models(cfg, np.random.default_rng(self._seed))
        except PianoBuddyError:
            self.panel.set_error(True)   # visible on the box while systemd restarts us
            time.sleep(MODEL_ERROR_SHOW_SECONDS)
            raise
        self.genie, self.melody = models.genie, models.melody
        lines.append(f"models:   {models.folder}/genie.tflite, melody.tflite via "
                     f"{models.backend} ({(time.monotonic() - t0) * 1000:.0f} ms)")
        styles = models.melody
        lines.append(f"style:    {styles.style} (of {', '.join(styles.available)})"
                     + "".join(f"; {s} left out: {why}" for s, why in styles.missing.items()))

        self.synth = assembly.build_synth(cfg)
        self._start_midi_and_recorder(lines)
        from .outputs import Outputs
        self.outputs = Outputs(live=[self.midi_out], records=[self.recorder, self.counts])
        self.conductor = assembly.build_conductor(cfg, self.synth, models, self.panel,
                                                  outputs=self.outputs, clock=self.clock)
        if self.counts is not None:
            conductor = self.conductor
            self.counts.follow(lambda: conductor.stats)
        self.audio = assembly.build_audio_thread(cfg, self.synth, self._open_sink,
                                                 on_status=self._audio_status)
        self.audio.start()
        self.conductor.start()
        if self.midi_in is not None:
            self.midi_in.start()
        if self._use_keys:
            from .key_buttons import KeyButtons
            self.key_buttons = KeyButtons(self._post, cfg.keys.map, cfg.keys.devices,
                                          clock=self.clock).start()
            lines.append(f"keys:     USB keyboards / Makey Makey as buttons "
                         f"({', '.join(cfg.keys.map)}), looked for every 2 s")
        else:
            lines.append("keys:     off")
        deadline = time.monotonic() + 1.0      # report what the audio thread found
        while (time.monotonic() < deadline and not self.audio.device_ok
               and self.audio.last_error is None):
            time.sleep(0.01)
        if self.audio.device_ok:
            found = self._audio_label or self.audio.sink_description
        else:
            found = f"NONE - {self.audio.last_error}"
        lines.append(f"audio:    {found}; {a.sample_rate} Hz, {a.period_frames}-frame periods "
                     f"x {a.periods}, {a.voices} voices, ceiling "
                     f"{20 * math.log10(self.synth.output.ceiling):.1f} dBFS")
        from .museum import describe as museum_hours
        lines.append(f"museum:   {museum_hours(cfg)}")
        lines.append(f"memory:   {settle_memory(self._lock_memory)}")
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
                out = (f"out {cfg.midi.output_name!r} (player ch {cfg.midi.player_channel}, "
                       f"AI ch {cfg.midi.ai_channel})" if self.midi_out.is_open
                       else "out unavailable (retried while playing)")
                lines.append(f"midi:     {out}; keyboards hot-plugged")
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
                                                clock=self.clock,
                                                player_channel=cfg.midi.player_channel - 1,
                                                ai_channel=cfg.midi.ai_channel - 1)
                lines.append(f"record:   {r.folder} (cap {r.max_mb:g} MB; a session ends "
                             f"after {cfg.turns.session_idle:g} s without play)")
            except Exception as exc:
                self.recorder = None
                lines.append(f"record:   off ({exc})")
        else:
            lines.append("record:   off (config)")
        if self._use_counts:
            from .counts import VisitorCounts, stats_folder
            self.counts = VisitorCounts(stats_folder(cfg))
            lines.append(f"counts:   {self.counts.folder} ({self.counts.counts['visitors']:.0f} "
                         f"visitors so far; `piano-buddy stats`)")
        else:
            lines.append("counts:   off (config)")

    def _post(self, event) -> bool:
        """The box's :class:`~piano_buddy.events.EventSink`: the conductor's contract, and
        False (dropped) for an edge that comes before the conductor exists."""
        conductor = self.conductor
        return conductor.post(event) if conductor is not None else False

    def _set_volume(self, gain: float) -> None:
        if self.synth is not None:
            self.synth.set_gain(min(gain, self.cfg.museum.max_volume))   # the museum's cap

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
            if self.midi_out is not None:
                self._quietly(self.midi_out.check)
            if watchdog is not None and not watchdog.tick() and not reported:
                reported = True
                log.error("a real-time thread stopped beating (%s): withholding the "
                          "watchdog ping so systemd restarts the service",
                          ", ".join(watchdog.failed))

    # --- stop ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Notes silenced first, the recording saved next, then devices closed; every wait
        is bounded so the whole stop fits in ``STOP_BUDGET`` seconds, well inside systemd's
        TimeoutStopSec, and each step runs whatever an earlier one raised. Safe twice."""
        if self._closed:
            return
        self._closed = True
        if self.conductor is not None:
            self._quietly(lambda: self.conductor.stop(STOP_CONDUCTOR))
        if self.recorder is not None:
            self._quietly(lambda: self.recorder.close(STOP_RECORDER))
        if self.counts is not None:      # the conductor's stop ended the session; this
            self._quietly(self.counts.save)  # also saves when its thread could not stop
        if self.synth is not None and self.audio is not None and self.audio.is_alive():
            # let released notes fade: DRAIN_SECONDS of audio, however slowly a loaded
            # machine renders it, but never more than DRAIN_WALL_SECONDS of waiting
            frames = self.audio.frames_written + DRAIN_SECONDS * self.cfg.audio.sample_rate
            deadline = time.monotonic() + DRAIN_WALL_SECONDS
            while (time.monotonic() < deadline and not self.synth.is_silent()
                   and self.audio.frames_written < frames):
                time.sleep(0.01)
        if self.audio is not None:
            self._quietly(self.audio.stop)
            self._quietly(lambda: self.audio.join(STOP_AUDIO))
        if self.panel is not None:
            self._quietly(self.panel.all_off)
            self._quietly(self.panel.close)
        if self.key_buttons is not None:
            self._quietly(lambda: self.key_buttons.close(STOP_KEYS))
        if self.midi_in is not None:
            self._quietly(lambda: self.midi_in.close(STOP_MIDI))
        if self.midi_out is not None:
            self._quietly(self.midi_out.close)
        if self.conductor is not None:
            unsettle_memory()

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
    box = Box(cfg, lock_memory=True, **box_kwargs)
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
