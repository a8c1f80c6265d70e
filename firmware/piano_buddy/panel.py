"""The box's face: eight buttons with their LEDs, the turn LED and the volume knob (gpiozero).

Button callbacks arrive on lgpio's thread on a Pi (on the caller's thread with mock pins):
they only stamp the time, post an :class:`InputEvent` and return. LEDs are driven only by
the conductor thread. Without GPIO the same code runs on gpiozero's MockFactory, whose pins
go through the same callback path; :func:`mock_factory` adds the debouncing MockPin lacks.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Callable

from .config import PanelConfig
from .events import InputEvent, Kind
from .modes import CREATIVITY_BUTTON

log = logging.getLogger(__name__)

# LED patterns, as (on_time, off_time) for gpiozero blink/pulse
THINKING_PULSE = (0.35, 0.35)    # the turn LED breathes while the AI thinks
ATTRACT_PULSE = (2.0, 2.0)       # and slowly while the box invites a visitor (attract.py)
ERROR_BLINK = (0.08, 0.12)       # fast flicker of the turn LED + every other button LED
MOCK_HISTORY = 200               # pin states a mock pin remembers (for tests and the view)


def choose_pin_factory(clock: Callable[[], float] = time.monotonic):
    """The pin factory to drive the panel with, and a line saying which and why.

    Chosen as gpiozero chooses: ``GPIOZERO_PIN_FACTORY`` first ("mock" gives our debounced
    mock pins), else the first real driver that loads (lgpio, RPi.GPIO, pigpio, native) and
    can name the board. A Linux machine with a GPIO chip that is not a Pi, or a Pi without a
    driver installed, falls back to mock pins (the simulator) with the reason, instead of
    failing to start.
    """
    import glob
    import os
    import warnings

    name = os.environ.get("GPIOZERO_PIN_FACTORY", "").strip()
    if name.lower() == "mock":
        return mock_factory(clock), "mock pins (GPIOZERO_PIN_FACTORY=mock)"
    if not name and not glob.glob("/dev/gpiochip*"):
        return mock_factory(clock), "mock pins (no GPIO chip on this machine)"
    from gpiozero import Device
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # gpiozero warns for each driver it skips
            factory = Device._default_pin_factory()
            try:
                board = factory.board_info         # a non-Pi fails here, not at the first pin
            except Exception:
                factory.close()
                raise
        return factory, f"{type(factory).__name__} on {getattr(board, 'model', 'a Pi')}"
    except Exception as exc:
        return mock_factory(clock), (f"mock pins (GPIO unusable here: {type(exc).__name__}: "
                                     f"{exc})")


def has_gpio() -> bool:
    """True where real pins drive the panel (see :func:`choose_pin_factory`)."""
    factory, _why = choose_pin_factory()
    real = not isinstance(factory, _mock_factory_class())
    factory.close()
    return real


def _mock_factory_class():
    from gpiozero.pins.mock import MockFactory
    return MockFactory


def mock_factory(clock: Callable[[], float] = time.monotonic):
    """A gpiozero MockFactory whose pins do PWM (for the breathing LED) and honour
    ``bounce_time`` the way a debounced hardware pin does (MockPin ignores it). ``clock``
    is the time the bounce window is measured in (the offline demo runs faster than real
    time)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class DebouncedMockPin(MockPWMPin):
        """Drops an edge that follows the previous accepted edge within the bounce time,
        and keeps only the latest pin states (MockPin's history grows without bound, which a
        day of simulated play - and the breathing LED - would turn into a memory leak)."""

        def clear_states(self):
            super().clear_states()
            self.states = collections.deque(self.states, maxlen=MOCK_HISTORY)

        def _call_when_changed(self, ticks=None, state=None):
            bounce = self._bounce or 0.0
            now = clock()
            last = getattr(self, "_last_accepted", None)
            if bounce and last is not None and now - last < bounce:
                return
            self._last_accepted = now
            super()._call_when_changed()

    return MockFactory(pin_class=DebouncedMockPin)


class Panel:
    """Buttons in, LEDs out. ``post`` receives every button edge; ``on_volume`` the knob."""

    def __init__(self, cfg: PanelConfig, post: Callable[[InputEvent], object], *,
                 clock: Callable[[], float] = time.monotonic, pin_factory=None,
                 on_volume: Callable[[float], None] | None = None, volume: float = 0.8,
                 on_creativity: Callable[[int], None] | None = None,
                 max_volume: float = 1.0):
        from gpiozero import LED, Button, PWMLED, RotaryEncoder

        self._post, self._clock = post, clock
        self._devices: list = []
        kw = {"pin_factory": pin_factory} if pin_factory is not None else {}
        self.buttons = []
        for i, pin in enumerate(cfg.buttons):
            b = Button(pin, pull_up=True, bounce_time=(cfg.bounce_ms / 1000) or None, **kw)
            b.when_pressed = self._edge_handler(Kind.PRESS, i)
            b.when_released = self._edge_handler(Kind.RELEASE, i)
            self.buttons.append(b)
        self.leds = [LED(pin, **kw) for pin in cfg.button_leds]
        self.turn_led = PWMLED(cfg.turn_led, **kw)
        self.encoder = None
        self._on_volume = on_volume
        self._on_creativity = on_creativity
        self._knob_steps = 0
        # museum.max_volume: the knob stops at the cap (turning back lowers it at once)
        self.max_volume = min(max(float(max_volume), 0.0), 1.0)
        self._top_step = math.floor(self.max_volume * 40 + 1e-9) - 20
        if cfg.volume_encoder and (on_volume is not None or on_creativity is not None):
            a, b_pin = cfg.volume_encoder
            self.encoder = RotaryEncoder(a, b_pin, max_steps=20, **kw)
            self.encoder.steps = min(round(volume * 40 - 20), self._top_step)
            self._knob_steps = self.encoder.steps
            self.encoder.when_rotated = self._volume_changed
        self._devices = [*self.buttons, *self.leds, self.turn_led] + (
            [self.encoder] if self.encoder else [])
        self.mode = "player"
        self.error = False
        self._lit = [False] * len(self.leds)

    def _edge_handler(self, kind: Kind, button: int):
        post, clock = self._post, self._clock  # no reference back to the panel

        def handler(_device=None):
            post(InputEvent(kind, button, clock()))
        return handler

    def _volume_changed(self, _device=None):
        """The knob turned: the volume (never over museum.max_volume), or - while button 8
        is held - how adventurous the AI is (the box has no pin left for the knob's push
        switch; hardware/pins.toml)."""
        if self.encoder is None:
            return
        steps = self.encoder.steps
        delta, self._knob_steps = steps - self._knob_steps, steps
        if (self._on_creativity is not None and delta
                and self.buttons[CREATIVITY_BUTTON].is_pressed):
            self.encoder.steps = self._knob_steps = steps - delta   # the volume stays
            self._on_creativity(delta)
        elif self._on_volume is not None:
            if self.encoder.steps > self._top_step:
                self.encoder.steps = self._knob_steps = self._top_step
            self._on_volume(min((self.encoder.steps + 20) / 40, self.max_volume))

    def is_pressed(self, button: int) -> bool:
        """The button's level now (the conductor's safety net against a lost release edge)."""
        return bool(self.buttons[button].is_pressed)

    # --- LEDs: conductor thread only -------------------------------------------------------
    def button_led(self, button: int, on: bool) -> None:
        self._lit[button] = on
        if not self.error:
            led = self.leds[button]
            led.on() if on else led.off()

    def turn(self, mode: str) -> None:
        """Show whose turn it is: 'player' (dark), 'thinking' (breathing), 'ai' (on), or
        'attract' (breathing slowly: nobody is there)."""
        if mode == self.mode:
            return
        self.mode = mode
        if not self.error:
            self._show_turn()

    def _show_turn(self) -> None:
        if self.mode == "thinking":
            self.turn_led.pulse(fade_in_time=THINKING_PULSE[0], fade_out_time=THINKING_PULSE[1])
        elif self.mode == "attract":
            self.turn_led.pulse(fade_in_time=ATTRACT_PULSE[0], fade_out_time=ATTRACT_PULSE[1])
        elif self.mode == "ai":
            self.turn_led.on()
        else:
            self.turn_led.off()

    def set_error(self, on: bool) -> None:
        """The fault pattern (no audio device, a model failed): the turn LED and every other
        button LED flicker fast, unlike anything in play. Clearing it restores the turn."""
        if on == self.error:
            return
        self.error = on
        if on:
            self.turn_led.blink(on_time=ERROR_BLINK[0], off_time=ERROR_BLINK[1])
            for i, led in enumerate(self.leds):
                if i % 2 == 0:
                    led.blink(on_time=ERROR_BLINK[0], off_time=ERROR_BLINK[1])
                else:
                    led.off()
        else:
            for led, lit in zip(self.leds, self._lit):
                led.on() if lit else led.off()
            self._show_turn()

    def all_off(self) -> None:
        self.mode, self.error = "player", False
        self._lit = [False] * len(self.leds)
        for d in [*self.leds, self.turn_led]:
            d.off()

    def snapshot(self) -> dict:
        """What the LEDs and buttons show now (for the simulator's view and the tests)."""
        return {"buttons": [b.is_pressed for b in self.buttons],
                "leds": [bool(led.value) for led in self.leds],
                "turn": self.mode, "error": self.error, "turn_led": float(self.turn_led.value)}

    def close(self) -> None:
        for d in self._devices:
            try:
                d.close()
            except Exception:  # closing is best effort; never mask the real shutdown
                log.debug("closing %r failed", d, exc_info=True)
        self._devices = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
