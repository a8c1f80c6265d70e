"""The real MIDI input and output code on the in-package fake ports (piano_buddy.midi_fake):
bytes from a fake keyboard go through the real parser into the real box. No JACK needed."""

from __future__ import annotations

import pytest

from piano_buddy import midi_fake
from piano_buddy.app import Box
from piano_buddy.conductor import Turn
from piano_buddy.events import InputEvent, Kind
from piano_buddy.midi import MidiInput, MidiOutput
from piano_buddy.panel import mock_factory

from rig import quiet_config, wait_for

POLL = 0.05


pytestmark = pytest.mark.usefixtures("fake_midi_ports")


class Posted:
    def __init__(self, accept=lambda ev: True):
        self.events, self.accept = [], accept

    def __call__(self, ev: InputEvent) -> bool:
        if not self.accept(ev):
            return False
        self.events.append(ev)
        return True

    def kinds(self):
        return [(e.kind.value, e.source, e.velocity) for e in self.events
                if e.kind is not Kind.DEVICE]


def open_input(post, **kw) -> MidiInput:
    mi = MidiInput(post, poll_seconds=POLL, **kw)
    mi.scan()
    return mi


def test_the_environment_variable_chooses_the_fake_ports():
    posted = Posted()
    kb = midi_fake.keyboard("USB Piano")
    mi = open_input(posted)
    try:
        assert mi.devices == [kb.port_name]
        kb.send([0x90, 60, 100, 64, 90])           # running status across one message
        kb.send([0x80, 60, 0])
        assert posted.kinds() == [("key_on", 60, 100), ("key_on", 64, 90), ("key_off", 60, 0)]
        kb.unplug()
        mi.scan()
        assert posted.kinds()[-1] == ("key_off", 64, 0)    # released when it vanished
    finally:
        mi.close()


def test_a_refused_key_on_is_not_held_and_a_refused_nothing_else():
    """The hand-over contract: post() returns False for a dropped onset; the key is then not
    counted as held, so its key-off is not posted either."""
    refuse = {"on": True}
    posted = Posted(accept=lambda ev: not (ev.kind is Kind.KEY_ON and refuse["on"]))
    kb = midi_fake.keyboard()
    mi = open_input(posted)
    try:
        kb.send([0x90, 60, 100])
        refuse["on"] = False
        kb.send([0x80, 60, 0])
        kb.send([0x90, 62, 100])
        kb.send([0x80, 62, 0])
    finally:
        mi.close()
    assert posted.kinds() == [("key_on", 62, 100), ("key_off", 62, 0)]
    assert mi.stats["post_refused"] == 1 and mi.stats["note_off_without_on"] == 1


def test_a_reversed_pedal_is_learnt_from_its_first_press():
    posted = Posted()
    kb = midi_fake.keyboard()
    mi = open_input(posted)
    try:
        kb.send([0x90, 60, 100])
        kb.send([0xB0, 64, 0])          # first press of a reversed pedal reads "up"
        kb.send([0xB0, 64, 127])        # its release reads "down"
        kb.send([0x80, 60, 0])
    finally:
        mi.close()
    assert posted.kinds() == [("key_on", 60, 100), ("pedal", 64, 127), ("pedal", 64, 0),
                              ("key_off", 60, 0)]
    assert mi.stats["pedal_reversed"] == 1


def test_a_pedal_reported_at_connect_is_the_pedal_at_rest():
    posted = Posted()
    kb = midi_fake.keyboard()
    mi = open_input(posted)
    try:
        kb.send([0xB0, 64, 127])        # the keyboard reports its (reversed) pedal at rest
        kb.send([0xB0, 64, 0])          # pressed
        kb.send([0xB0, 64, 127])        # released
    finally:
        mi.close()
    assert posted.kinds() == [("pedal", 64, 127), ("pedal", 64, 0)]


def test_reset_controllers_lifts_the_pedal_but_keeps_held_keys():
    posted = Posted()
    kb = midi_fake.keyboard()
    mi = open_input(posted)
    try:
        kb.send([0x90, 60, 100])
        kb.send([0xB0, 64, 127])
        kb.send([0xB0, 121, 0])         # Reset All Controllers
        assert posted.kinds() == [("key_on", 60, 100), ("pedal", 64, 127), ("pedal", 64, 0)]
        kb.send([0xB0, 123, 0])         # All Notes Off does release the keys
        assert posted.kinds()[-1] == ("key_off", 60, 0)
    finally:
        mi.close()


def test_midi_out_comes_back_when_its_port_can_be_opened_again(caplog):
    midi_fake.fail_virtual_ports(True)
    t = [0.0]
    out = MidiOutput(name="Piano Buddy", clock=lambda: t[0])
    assert not out.is_open
    out.note_on(60, 90, ai=False)                  # dropped, no error
    midi_fake.fail_virtual_ports(False)
    out.check()
    assert not out.is_open, "not before the retry time"
    t[0] = MidiOutput.RETRY_SECONDS + 0.1
    out.check()
    assert out.is_open and out.reopened == 1
    out.note_on(62, 90, ai=True)
    out.close()
    assert midi_fake.sent_to("Piano Buddy")[0] == [0x91, 62, 90]
    assert [0x81, 62, 0] in midi_fake.sent_to("Piano Buddy")       # closed: all notes off


def test_a_keyboard_plays_the_real_box_and_the_ai_answers(tmp_path):
    """Keyboard bytes -> real parser -> box -> AI reply -> MIDI out on its channel."""
    import dataclasses
    cfg = quiet_config()
    cfg = dataclasses.replace(cfg, midi=dataclasses.replace(cfg.midi, enabled=True))
    kb = midi_fake.keyboard("USB Piano")
    box = Box(cfg, pin_factory=mock_factory(), seed=4)
    try:
        box.start()
        assert "out 'Piano Buddy'" in str(box.report)
        box.midi_in.scan()
        for pitch in (60, 62, 64, 65, 67):
            kb.send([0x90, pitch, 90])
            kb.send([0x80, pitch, 0])
        assert wait_for(lambda: box.conductor.turn is Turn.AI, 20)
        assert wait_for(lambda: any(m[0] == 0x91 for m in midi_fake.sent_to("Piano Buddy")),
                        20)
        assert box.conductor.stats["replies"] == 1
    finally:
        box.close()
    sent = midi_fake.sent_to("Piano Buddy")
    assert [0x90, 60, 90] in sent
    assert sent[-1][1] == 123 or any(m[1] == 123 for m in sent[-2:]), "all notes off at close"
