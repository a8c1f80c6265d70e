"""Every part built from the config in one place: the box, the demo, selftest, the test rig
and the benchmarks all call these, so what they measure and test is what the box runs.

Each builder takes the config and what only its caller can know (a clock, a random
generator, a pin factory, an output list); nothing here starts a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config


def models_folder(cfg: Config) -> Path:
    from . import paths
    return Path(cfg.models.directory) if cfg.models.directory else paths.models_dir()


@dataclass
class Models:
    genie: object          # GenieDecoder: the buttons' keys
    melody: object         # StyledMelody: the AI's replies, one MelodyModel per style
    encoder: object        # GenieEncoder: which buttons would play a reply (copy-me LEDs)
    planner: object        # a second GenieDecoder the encoder's buttons are checked through
    folder: Path
    backend: str           # the TFLite interpreter package that loaded them

    def copy_me(self, notes) -> list[int]:
        """The button to light for each note of a planned reply (conductor's ``copy_me``)."""
        return self.encoder.buttons_for([(n.pitch, n.start) for n in notes],
                                        check=self.planner)


def load_models(cfg: Config, rng: np.random.Generator | None = None,
                prefer: str | None = None) -> Models:
    """Every model from the configured folder (a melody style's file may be missing: that
    style is left out); :class:`~piano_buddy.errors.ModelError`
    names the file and what is wrong with it."""
    from .genie import GenieDecoder, GenieEncoder
    from .styles import load_styles
    from .tflite import interpreter_class

    folder = models_folder(cfg)
    rng = rng if rng is not None else np.random.default_rng()
    threads = cfg.models.threads
    genie = GenieDecoder(folder / "genie.tflite", rng=rng, prefer=prefer, num_threads=threads)
    melody = load_styles(folder, cfg.turns.style, rng=rng, prefer=prefer, num_threads=threads)
    encoder = GenieEncoder(folder / "genie_encoder.tflite", prefer=prefer)
    planner = GenieDecoder(folder / "genie.tflite", prefer=prefer)
    return Models(genie, melody, encoder, planner, folder, interpreter_class(prefer)[0])


def build_synth(cfg: Config, *, channels: int = 2, block_frames: int | None = None):
    """The synth with the ceiling and start volume of this moment's opening-hours phase
    (``[museum]``: a lower ceiling before opening, the volume cap at all hours)."""
    from .museum import audio_limits
    from .synth import Synth
    a = cfg.audio
    limits = audio_limits(cfg)
    return Synth(sample_rate=a.sample_rate, block_frames=block_frames or a.period_frames,
                 channels=channels, voices=a.voices, ceiling_dbfs=limits.ceiling_dbfs,
                 gain=limits.volume, reverb=a.reverb, reverb_amount=a.reverb_amount)


def alsa_sink_factory(cfg: Config, device: str | None = None) -> Callable[[], object]:
    """A function that makes the configured ALSA sink (the audio thread opens it, and makes
    a new one each time it reconnects)."""
    from .audio_out import AlsaSink
    a = cfg.audio
    name = a.device if device is None else device
    return lambda: AlsaSink(name, sample_rate=a.sample_rate, channels=2,
                            period_frames=a.period_frames, periods=a.periods)


def wav_fallback_factory(cfg: Config) -> Callable[[], object] | None:
    """``audio.wav_fallback``: while no ALSA device is there, keep what sounds in a WAV file
    (one per start, capped, the last few kept; paced at real time). None when it is empty."""
    from .audio_out import SoundOnlyWavSink, wav_fallback_path
    a = cfg.audio
    if not a.wav_fallback:
        return None
    return lambda: SoundOnlyWavSink(wav_fallback_path(a.wav_fallback), a.sample_rate, 2)


def build_audio_thread(cfg: Config, synth, open_sink: Callable[[], object] | None = None, *,
                       on_status=None, realtime_priority: int | None = 70):
    from .audio_out import AudioThread
    return AudioThread(synth, open_sink or alsa_sink_factory(cfg),
                       retry_seconds=cfg.audio.retry_seconds, on_status=on_status,
                       fallback_sink=wav_fallback_factory(cfg),
                       realtime_priority=realtime_priority)


def build_panel(cfg: Config, post, *, pin_factory, clock, on_volume=None):
    """The panel; a knob turn while button 8 is held is posted as a KNOB event."""
    from .events import InputEvent, Kind
    from .panel import Panel
    m = cfg.museum
    return Panel(cfg.panel, post, clock=clock, pin_factory=pin_factory, on_volume=on_volume,
                 volume=min(cfg.audio.volume, m.max_volume), max_volume=m.max_volume,
                 on_creativity=lambda steps: post(InputEvent(Kind.KNOB, steps, clock())))


def build_conductor(cfg: Config, synth, models: Models, panel, *, outputs=None,
                    clock: Callable[[], float]):
    from .conductor import Conductor
    return Conductor(cfg, synth, models.genie, models.melody, panel, outputs=outputs,
                     copy_me=models.copy_me, clock=clock, sample_rate=cfg.audio.sample_rate)
