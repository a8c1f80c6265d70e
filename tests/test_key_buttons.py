"""A USB keyboard or Makey Makey as the eight buttons (issue 13, item 3). A FIFO carries the
kernel's struct input_event records as a keyboard's event device does, so the real watcher,
reader and box are tested here; a virtual keyboard through uinput where the kernel has it."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from piano_buddy.app import Box
from piano_buddy.config import ConfigError, from_dict
from piano_buddy.conductor import Turn
from piano_buddy.events import Kind
from piano_buddy.key_buttons import KeyButtons, keycodes_for
from piano_buddy.keyboard_evdev import EV_KEY, EVENT, KEY_NAMES
from piano_buddy.panel import mock_factory

try:
    from tests.rig import quiet_config, wait_for
except ImportError:
    from rig import quiet_config, wait_for

MAKEY = ("KEY_LEFT", "KEY_UP", "KEY_DOWN", "KEY_RIGHT", "KEY_SPACE", "BTN_LEFT", "KEY_W",
         "KEY_A")


def record(name: str, value: int) -> bytes:
    return EVENT.pack(0, 0, EV_KEY, KEY_NAMES[name], value)


class FakeKeyboard:
    """A FIFO named like udev's links; ``unplug`` removes it and closes the write end."""

    def __init__(self, folder, name="usb-Makey_Makey-event-kbd"):
        self.path = folder / name
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def send(self, *records: bytes) -> None:
        os.write(self.fd, b"".join(records))

    def unplug(self) -> None:
        os.unlink(self.path)
        os.close(self.fd)


class Posted(list):
    def __call__(self, ev):
        self.append(ev)
        return True


def test_mapped_keys_become_button_edges_and_an_unplug_releases_what_was_held(tmp_path):
    posted = Posted()
    kb = FakeKeyboard(tmp_path)
    keys = KeyButtons(posted, MAKEY, [str(tmp_path / "*-event-kbd")])
    try:
        keys.scan()
        assert keys.devices == [str(kb.path)]
        kb.send(record("KEY_SPACE", 1), record("KEY_SPACE", 2),     # auto-repeat: one press
                record("KEY_Q", 1),                                # not mapped
                record("KEY_LEFT", 1), record("KEY_SPACE", 0), record("BTN_LEFT", 1))
        keys.poll(0.2)
        assert [(e.kind, e.source) for e in posted] == [
            (Kind.PRESS, 4), (Kind.PRESS, 0), (Kind.RELEASE, 4), (Kind.PRESS, 5)]
        kb.unplug()                               # LEFT and click still held
        keys.poll(0.2)
        assert [(e.kind, e.source) for e in posted[4:]] == [(Kind.RELEASE, 0),
                                                            (Kind.RELEASE, 5)]
        assert keys.devices == [] and keys.stats["devices_closed"] == 1
    finally:
        keys.close()


def test_a_bad_key_map_is_named():
    assert keycodes_for(MAKEY)[KEY_NAMES["BTN_LEFT"]] == 5
    with pytest.raises(ConfigError, match="'KEY_BANANA' is not a key"):
        from_dict({"keys": {"map": [*MAKEY[:7], "KEY_BANANA"]}})
    with pytest.raises(ConfigError, match="exactly 8"):
        from_dict({"keys": {"map": list(MAKEY[:4])}})
    with pytest.raises(ConfigError, match="named twice"):
        from_dict({"keys": {"map": [*MAKEY[:7], "KEY_LEFT"]}})
    with pytest.raises(ConfigError, match="list of strings"):
        from_dict({"keys": {"map": [1, 2, 3, 4, 5, 6, 7, 8]}})


def test_a_makey_makey_plugged_into_the_real_box_plays_it_hot_plugged(tmp_path):
    cfg = quiet_config()
    cfg = dataclasses.replace(cfg, keys=dataclasses.replace(
        cfg.keys, enabled=True, devices=(str(tmp_path / "*-event-kbd"),)))
    box = Box(cfg, pin_factory=mock_factory(), seed=2)
    try:
        box.start()
        assert "Makey Makey" in str(box.report)
        kb = FakeKeyboard(tmp_path)                   # plugged in while the box plays
        assert wait_for(lambda: box.key_buttons.devices, 5)
        for name in ("KEY_LEFT", "KEY_DOWN", "KEY_SPACE", "KEY_W"):
            kb.send(record(name, 1))
            time.sleep(0.15)
            kb.send(record(name, 0))
            time.sleep(0.1)
        assert wait_for(lambda: box.conductor.turn is Turn.AI, 10)    # and the AI answers
        assert box.conductor.stats["replies"] == 1
        kb.send(record("KEY_UP", 1))                  # held, then unplugged
        assert wait_for(lambda: box.conductor.held_pitches, 5)
        kb.unplug()
        assert wait_for(lambda: not box.conductor.held_pitches, 5), "released at unplug"
    finally:
        box.close()


def test_a_virtual_keyboard_through_uinput():
    """The kernel's own path, where it has uinput and python-evdev is there to make one."""
    if not os.path.exists("/dev/uinput"):
        pytest.skip("no /dev/uinput here (kernel module uinput; containers and CI lack it)")
    evdev = pytest.importorskip("evdev", reason="python-evdev makes the virtual keyboard")
    posted = Posted()
    ui = evdev.UInput({evdev.ecodes.EV_KEY: [KEY_NAMES[n] for n in MAKEY]}, name="PB test kbd")
    keys = KeyButtons(posted, MAKEY, [ui.device.path])
    try:
        keys.scan()
        ui.write(evdev.ecodes.EV_KEY, KEY_NAMES["KEY_RIGHT"], 1)
        ui.syn()
        deadline = time.monotonic() + 2
        while not posted and time.monotonic() < deadline:
            keys.poll(0.1)
        assert [(e.kind, e.source) for e in posted] == [(Kind.PRESS, 3)]
    finally:
        keys.close()
        ui.close()
