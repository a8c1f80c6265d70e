"""The one pin table (hardware/pins.toml): valid, collision-free, and what the docs show.

The rules are written out here independently of hardware/draw_wiring.py, so a mistake in
the drawing script cannot hide a bad table.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "hardware" / "pins.toml"

I2S = {18: "BCLK", 19: "LRCLK", 20: "DIN", 21: "DOUT"}   # 20 is I2S input: unused, not fenced
I2S_USED_BY_AMP = {18, 19, 21}
I2C = {2: "SDA", 3: "SCL"}
UART = {14: "TXD", 15: "RXD"}


@pytest.fixture(scope="module")
def pins() -> dict:
    with open(PINS, "rb") as f:
        return tomllib.load(f)


def all_pins(pins: dict) -> list[tuple[str, int]]:
    named = [(f"buttons[{i}]", p) for i, p in enumerate(pins["buttons"])]
    named += [(f"button_leds[{i}]", p) for i, p in enumerate(pins["button_leds"])]
    named += [("turn_led", pins["turn_led"])]
    named += [(f"volume_encoder[{i}]", p) for i, p in enumerate(pins["volume_encoder"])]
    return named


def draw_wiring():
    spec = importlib.util.spec_from_file_location("draw_wiring", REPO / "hardware" / "draw_wiring.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["draw_wiring"] = module
    spec.loader.exec_module(module)
    return module


def test_the_keys_the_firmware_reads_have_the_right_shape(pins):
    assert len(pins["buttons"]) == 8
    assert len(pins["button_leds"]) == 8
    assert isinstance(pins["turn_led"], int)
    assert len(pins["volume_encoder"]) == 2


def test_every_pin_is_a_header_gpio(pins):
    for name, p in all_pins(pins):
        assert isinstance(p, int) and 2 <= p <= 27, f"{name} = {p!r}: BCM GPIO 2-27 only"


def test_no_pin_is_used_twice(pins):
    seen: dict[int, str] = {}
    for name, p in all_pins(pins):
        assert p not in seen, f"GPIO {p} is both {seen[p]} and {name}"
        seen[p] = name


@pytest.mark.parametrize("bus,reserved", [("I2S (amplifier)", I2S_USED_BY_AMP), ("I2C", set(I2C)),
                                          ("UART", set(UART))])
def test_no_pin_collides_with_a_bus(pins, bus, reserved):
    for name, p in all_pins(pins):
        assert p not in reserved, f"{name} = GPIO {p} collides with {bus}"


def test_no_pin_is_on_the_tables_own_reserved_list(pins):
    reserved = {int(g): what for g, what in pins["reserved"].items()}
    for name, p in all_pins(pins):
        assert p not in reserved, f"{name} = GPIO {p} is reserved for {reserved[p]}"


def test_the_drawing_script_refuses_a_table_using_a_reserved_pin(pins):
    dw = draw_wiring()
    with pytest.raises(ValueError, match="GPIO 18 .* is reserved for I2S BCLK"):
        dw.draw(dict(pins, turn_led=18))


def test_the_turn_led_transistor_is_on_a_pin_pulled_down_at_power_on(pins):
    """GPIO 0-8 are pulled up until the firmware runs; ~50 uA into the BC337's base would
    light the turn lamp dimly through every boot (the ULN2803A's lamps are immune: its
    internal base-emitter resistors shunt that current)."""
    assert pins["turn_led"] >= 9, f"turn_led = GPIO {pins['turn_led']} is pulled up at power-on"


def test_the_firmware_config_reads_this_table(pins):
    from piano_buddy.config import Config

    panel = Config().panel
    assert list(panel.buttons) == pins["buttons"]
    assert list(panel.button_leds) == pins["button_leds"]
    assert panel.turn_led == pins["turn_led"]
    assert list(panel.volume_encoder) == pins["volume_encoder"]


def test_wiring_diagram_and_readme_table_are_up_to_date(pins):
    dw = draw_wiring()
    assert (REPO / "hardware" / "wiring.svg").read_text() == dw.draw(pins), \
        "hardware/wiring.svg is stale: run python3 hardware/draw_wiring.py"
    readme = (REPO / "hardware" / "README.md").read_text()
    assert dw.readme_with_table(readme, dw.pin_table(pins)) == readme, \
        "the pin table in hardware/README.md is stale: run python3 hardware/draw_wiring.py"
    assert dw.main(["--check"]) == 0


def test_the_diagram_shows_every_pin_of_the_table(pins):
    svg = (REPO / "hardware" / "wiring.svg").read_text()
    dw = draw_wiring()
    for name, p in all_pins(pins):
        assert f"GPIO {p} (pin {dw.PHYSICAL[p]})" in svg, f"{name} (GPIO {p}) is not in the diagram"


def test_the_drawing_script_refuses_a_table_with_a_duplicate(pins):
    dw = draw_wiring()
    bad = dict(pins, turn_led=pins["buttons"][0])
    with pytest.raises(ValueError, match=f"GPIO {pins['buttons'][0]} is used twice"):
        dw.draw(bad)


def test_a_changed_table_makes_the_committed_diagram_stale(pins):
    dw = draw_wiring()
    moved = dict(pins, volume_encoder=list(reversed(pins["volume_encoder"])))
    assert dw.draw(moved) != (REPO / "hardware" / "wiring.svg").read_text()


def test_header_map_is_the_standard_40_pin_layout():
    dw = draw_wiring()
    gpios = sorted(g for g in dw.HEADER.values() if isinstance(g, int))
    assert gpios == list(range(28)), "each of GPIO 0-27 exactly once"
    assert [p for p, v in dw.HEADER.items() if v == "GND"] == [6, 9, 14, 20, 25, 30, 34, 39]
    assert (dw.HEADER[12], dw.HEADER[35], dw.HEADER[40]) == (18, 19, 21)   # I2S pins


def test_hardware_readme_links_point_at_files_that_exist():
    import re

    readme = REPO / "hardware" / "README.md"
    for target in re.findall(r"\]\(([^)#:]+)\)", readme.read_text()):
        assert (readme.parent / target).exists(), f"hardware/README.md links to missing {target}"
