"""The wiring drawing tells a builder the truth about the board's orientation, and the one
reserved-pin table (hardware/pins.toml [reserved]) is what config validation enforces.

A builder who turns the Pi the wrong way round puts 5 V and GND on GPIOs, so the drawing's
words are checked against its own geometry and against the standard 40-pin layout, written
out here independently of hardware/draw_wiring.py.
"""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from piano_buddy import config
from piano_buddy.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SVG = REPO / "hardware" / "wiring.svg"
NS = {"s": "http://www.w3.org/2000/svg"}

# The Raspberry Pi 40-pin header (pinout.xyz): physical pin -> what is on it.
SUPPLIES = {1: "3V3", 17: "3V3", 2: "5V", 4: "5V",
            **{p: "GND" for p in (6, 9, 14, 20, 25, 30, 34, 39)}}
BCM = {3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
       19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
       33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21}


@pytest.fixture(scope="module")
def svg():
    return ET.parse(SVG).getroot()


@pytest.fixture(scope="module")
def pins() -> dict:
    with open(REPO / "hardware" / "pins.toml", "rb") as f:
        return tomllib.load(f)


def box(el) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a rect or circle."""
    if el.tag.endswith("circle"):
        x, y, r = (float(el.get(k)) for k in ("cx", "cy", "r"))
        return x - r, y - r, x + r, y + r
    x, y, w, h = (float(el.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


def centre(el) -> tuple[float, float]:
    left, top, right, bottom = box(el)
    return (left + right) / 2, (top + bottom) / 2


def by_id(svg, name):
    found = svg.findall(f".//*[@id='{name}']")
    assert len(found) == 1, f"wiring.svg: expected one element with id {name!r}"
    return found[0]


def texts(svg) -> list[tuple[float, float, str, str]]:
    return [(float(t.get("x")), float(t.get("y")), t.get("text-anchor"), t.text or "")
            for t in svg.findall(".//s:text", NS)]


def orientation_text(svg) -> str:
    return " ".join(s for *_, s in texts(svg) if "top view" in s or "pin 1" in s)


def test_the_orientation_note_matches_the_drawn_board(svg):
    note = orientation_text(svg)
    sd_end = re.search(r"microSD card end at the (top|bottom)", note)
    usb_end = re.search(r"USB and Ethernet at the (top|bottom)", note)
    pin1 = re.search(r"pin 1 \(square pad\) (top|bottom) (left|right)", note)
    assert sd_end and usb_end and pin1, f"the orientation note says too little: {note!r}"
    assert sd_end[1] != usb_end[1]
    board = box(by_id(svg, "board"))
    mid_y = (board[1] + board[3]) / 2
    sd_y, usb_y = centre(by_id(svg, "sd-card"))[1], centre(by_id(svg, "usb-ethernet"))[1]
    assert (sd_y < mid_y) == (sd_end[1] == "top"), "the note and the drawn microSD slot disagree"
    assert (usb_y < mid_y) == (usb_end[1] == "top")
    # pin 1 sits at the microSD end of the header (the real board's layout)
    p1x, p1y = centre(by_id(svg, "pin-1"))
    ys = [centre(by_id(svg, f"pin-{p}"))[1] for p in range(1, 41)]
    xs = [centre(by_id(svg, f"pin-{p}"))[0] for p in range(1, 41)]
    assert pin1[1] == sd_end[1], "pin 1 is at the microSD end of the header"
    assert (p1y == min(ys)) == (pin1[1] == "top") and (p1y == max(ys)) == (pin1[1] == "bottom")
    assert (p1x == min(xs)) == (pin1[2] == "left")


def test_pin_1_has_the_square_pad_and_5v_is_on_the_board_edge(svg):
    assert by_id(svg, "pin-1").tag.endswith("rect")
    assert all(by_id(svg, f"pin-{p}").tag.endswith("circle") for p in range(2, 41))
    left, _, right, _ = box(by_id(svg, "board"))
    odd_x = centre(by_id(svg, "pin-1"))[0]
    even_x = centre(by_id(svg, "pin-2"))[0]
    edge = right if even_x > odd_x else left
    assert abs(edge - even_x) < abs(edge - odd_x), "pins 2 and 4 (5 V) are the edge row"
    assert "pins 2 and 4 (5 V) on the board edge" in orientation_text(svg)
    # odd pins in one column, even in the other, numbered along the header from pin 1
    for p in range(1, 41):
        x, y = centre(by_id(svg, f"pin-{p}"))
        assert x == (odd_x if p % 2 else even_x)
        assert y == pytest.approx(centre(by_id(svg, "pin-1"))[1] + (p - 1) // 2 * 30, abs=0.01)


def label_beside(svg, pin: int) -> str:
    """The text drawn on the pin's row, on the pin's own side of the header."""
    x, y = centre(by_id(svg, f"pin-{pin}"))
    side = "end" if pin % 2 else "start"
    near = [(abs(tx - x), s) for tx, ty, anchor, s in texts(svg)
            if anchor == side and abs(ty - 4 - y) < 1 and abs(tx - x) < 60]
    assert near, f"no label beside pin {pin}"
    return min(near)[1]


def test_every_header_label_is_what_the_real_header_and_the_pin_table_say(svg, pins):
    used = {pins["turn_led"]: "turn LED"}
    used.update({g: f"button {i} switch" for i, g in enumerate(pins["buttons"], 1)})
    used.update({g: f"button {i} LED" for i, g in enumerate(pins["button_leds"], 1)})
    used.update({g: f"volume encoder {ab}" for ab, g in zip("AB", pins["volume_encoder"])})
    reserved = {int(g): what for g, what in pins["reserved"].items()}
    for pin in range(1, 41):
        label = label_beside(svg, pin)
        if pin in SUPPLIES:
            assert label == SUPPLIES[pin], f"pin {pin}: drawn {label!r}"
            continue
        gpio = BCM[pin]
        want = used.get(gpio) or reserved.get(gpio) or "free"
        assert label == f"GPIO{gpio} {want}", f"pin {pin}: drawn {label!r}"


def test_the_reserved_table_covers_the_buses_the_box_uses(pins):
    """Written out independently: the MAX98357A's I2S clock, frame and data lines, I2C,
    the UART console and the HAT ID EEPROM bus."""
    reserved = {int(g) for g in pins["reserved"]}
    assert {18, 19, 21, 2, 3, 14, 15, 0, 1} <= reserved
    assert config.reserved_pins() == {int(g): w for g, w in pins["reserved"].items()}


@pytest.mark.parametrize("toml,gpio,what", [
    ("turn_led = 18", 18, "I2S BCLK"),
    ("turn_led = 2", 2, "I2C SDA"),
    ("volume_encoder = [14, 11]", 14, "UART TX"),
    ("buttons = [4, 17, 27, 22, 5, 6, 13, 21]", 21, "I2S DOUT"),
])
def test_config_refuses_a_reserved_pin_and_names_its_owner(tmp_path, toml, gpio, what):
    path = tmp_path / "c.toml"
    path.write_text(f"[panel]\n{toml}\n")
    with pytest.raises(ConfigError, match=rf"GPIO {gpio} is reserved for {what}"):
        config.load(path)


def test_config_refuses_an_empty_midi_output_name(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[midi]\noutput_name = "  "\n')
    with pytest.raises(ConfigError, match="midi.output_name.*needs a name.*midi.enabled = false"):
        config.load(path)
    path.write_text('[midi]\noutput_name = "Museum box 3"\n')
    assert config.load(path).midi.output_name == "Museum box 3"
    path.write_text('[midi]\nenabled = false\noutput_name = ""\n')   # off: the name is moot
    assert config.load(path).midi.enabled is False


def test_the_hardware_readme_says_how_to_find_pin_1():
    text = (REPO / "hardware" / "README.md").read_text()
    assert "square" in text and "silkscreen" in text and "microSD" in text
