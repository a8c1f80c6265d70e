"""A test rig: the real conductor, synth, models and mock pins on a clock made of audio frames.

Time advances only by rendering blocks (as in the offline demo), so a test says "0.79 s pass"
and gets exactly that, with every edge going through gpiozero's real callback path.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from piano_buddy import assembly
from piano_buddy.conductor import AI_TAG, PLAYER_TAG
from piano_buddy.config import Config
from piano_buddy.events import InputEvent, Kind
from piano_buddy.panel import mock_factory


class Rig:
    def __init__(self, cfg: Config | None = None, seed: int = 1, **turns):
        cfg = cfg or Config()
        if turns:
            cfg = dataclasses.replace(cfg, turns=dataclasses.replace(cfg.turns, **turns))
        self.cfg = cfg
        self.sr = cfg.audio.sample_rate
        self.synth = assembly.build_synth(cfg)
        self.factory = mock_factory(self.now)
        models = assembly.load_models(cfg, np.random.default_rng(seed))
        self.genie, self.melody = models.genie, models.melody
        self.panel = assembly.build_panel(cfg, self._post, pin_factory=self.factory,
                                          clock=self.now)
        self.conductor = assembly.build_conductor(cfg, self.synth, models, self.panel,
                                                  clock=self.now)
        self.pins = [self.factory.pin(p) for p in cfg.panel.buttons]
        self.audio: list[np.ndarray] = []
        self.keep_audio = False
        self.turns: list[str] = []

    def _post(self, ev) -> bool:
        return self.conductor.post(ev)

    def now(self) -> float:
        return self.synth.frame / self.sr

    def step(self) -> None:
        """One audio block: inputs handled, time passes, a block rendered."""
        self.conductor.drain(self.now())
        if not self.turns or self.turns[-1] != self.conductor.turn.value:
            self.turns.append(self.conductor.turn.value)
        block = self.synth.render()
        if self.keep_audio:
            self.audio.append(block.copy())

    def run(self, seconds: float) -> None:
        end = self.now() + seconds
        while self.now() < end - 1e-9:
            self.step()

    def run_until(self, predicate, limit: float = 30.0) -> float:
        start = self.now()
        while not predicate():
            assert self.now() - start < limit, "condition never came"
            self.step()
        return self.now() - start

    def press(self, button: int) -> None:
        self.pins[button].drive_low()
        self.step()

    def release(self, button: int) -> None:
        self.pins[button].drive_high()
        self.step()

    def tap(self, button: int, hold: float = 0.15, gap: float = 0.1) -> None:
        self.press(button)
        self.run(hold)
        self.release(button)
        self.run(gap)

    def midi(self, kind: Kind, source: int, velocity: int = 100) -> None:
        self.conductor.post(InputEvent(kind, source, self.now(), velocity))
        self.step()

    def held(self, tag: int) -> set[int]:
        return {p for p, t in self.synth.sounding() if t == tag}

    @property
    def player_notes(self) -> set[int]:
        return self.held(PLAYER_TAG)

    @property
    def ai_notes(self) -> set[int]:
        return self.held(AI_TAG)

    def assert_nothing_stuck(self, tail: float = 1.5) -> None:
        """After every key is up and any reply is over, nothing sounds at all."""
        self.run_until(lambda: self.conductor.turn.value == "player", limit=20)
        for pin in self.pins:
            pin.drive_high()
        self.run(0.05)
        assert not self.synth.sounding(), f"stuck notes: {self.synth.sounding()}"
        self.run(tail)
        assert self.synth.is_silent(), "voices still sounding after the release tail"

    def close(self) -> None:
        self.conductor.silence_everything()
        self.panel.close()
        self.factory.reset()


# Live tests into a JACK dummy server use a 128 x 4 frame buffer: the default 64 x 3 (4 ms,
# chosen by `make bench`) is a timing target for a quiet machine, and a stalled JACK stream on
# a loaded CI machine is a flake, not a finding. Behaviour does not depend on the buffer.
TEST_BUFFER = {"period_frames": 128, "periods": 4}


def quiet_config(**audio) -> Config:
    """Defaults without MIDI and recordings (tests that need them turn them on), with the
    live tests' buffer (TEST_BUFFER) unless ``audio`` says otherwise."""
    audio = {**TEST_BUFFER, **audio}
    cfg = Config()
    return dataclasses.replace(
        cfg, midi=dataclasses.replace(cfg.midi, enabled=False),
        recording=dataclasses.replace(cfg.recording, enabled=False),
        stats=dataclasses.replace(cfg.stats, enabled=False),
        keys=dataclasses.replace(cfg.keys, enabled=False),
        audio=dataclasses.replace(cfg.audio, **audio))


def wait_for(predicate, timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` in real time (for the live threads); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
