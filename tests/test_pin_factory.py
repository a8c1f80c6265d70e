"""Choosing the pin factory as gpiozero does, and falling back to the simulator's mock pins
with a message (never a crash) where real pins cannot be driven."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from piano_buddy import panel


def test_the_environment_variable_comes_first(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    factory, why = panel.choose_pin_factory()
    assert isinstance(factory, MockFactory) and "GPIOZERO_PIN_FACTORY=mock" in why
    factory.close()


def test_a_machine_without_a_gpio_chip_gets_mock_pins(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    factory, why = panel.choose_pin_factory()
    assert isinstance(factory, MockFactory) and "no GPIO chip" in why
    factory.close()


def test_a_gpio_chip_on_a_machine_that_is_not_a_pi_falls_back_with_the_reason(monkeypatch):
    """Defect: any /dev/gpiochip* meant "a Pi", and gpiozero's BadPinFactory (or the board
    check) crashed the start-up. Here the real gpiozero factory search runs on this
    (non-Pi) machine, with a GPIO chip made to appear."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr("glob.glob", lambda pattern: ["/dev/gpiochip0"])
    factory, why = panel.choose_pin_factory()
    assert isinstance(factory, MockFactory)
    assert why.startswith("mock pins (GPIO unusable here:"), why
    factory.close()
    assert panel.has_gpio() is False


def test_an_unknown_factory_name_falls_back_too(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-driver")
    factory, why = panel.choose_pin_factory()
    assert isinstance(factory, MockFactory) and "no-such-driver" in why
    factory.close()


def test_the_box_starts_on_the_fallback_and_says_why(monkeypatch):
    from piano_buddy.app import Box
    from rig import quiet_config
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-driver")
    box = Box(quiet_config(), seed=1)
    try:
        report = str(box.start())
    finally:
        box.close()
    assert "pins:     mock pins (GPIO unusable here" in report
