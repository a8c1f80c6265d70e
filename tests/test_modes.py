"""Modes switched on the box by a held button combination (issue 13): small hands.
Simulated time through the real conductor, models, synth and mock pins (tests/rig.py), and
the real box once (threads, mock pins)."""

from __future__ import annotations

import dataclasses

import pytest

from piano_buddy.app import Box
from piano_buddy.conductor import Turn
from piano_buddy.config import from_dict
from piano_buddy.modes import (HOLD_SECONDS, SMALL_HANDS_BUTTONS, ComboWatcher, cue_for,
                               nearest_active)
from piano_buddy.panel import mock_factory

try:
    from tests.rig import Rig, quiet_config, wait_for
except ImportError:
    from rig import Rig, quiet_config, wait_for


def rig_for(small_hands=False, seed=4) -> Rig:
    return Rig(from_dict({"panel": {"small_hands": small_hands},
                          "audio": {"period_frames": 256}}), seed=seed)


def hold_outer_buttons(rig: Rig, seconds: float) -> None:
    rig.press(0)
    rig.press(7)
    end, changes = rig.now() + seconds, rig.conductor.stats["mode_changes"]
    while rig.now() < end and rig.conductor.stats["mode_changes"] == changes:
        rig.step()                        # stop at the switch: the cue is still to come
    rig.release(0)
    rig.release(7)


def lit(rig: Rig) -> set[int]:
    return {i for i, on in enumerate(rig.panel.snapshot()["leds"]) if on}


def test_holding_the_outer_buttons_switches_to_small_hands_with_a_cue():
    rig = rig_for()
    try:
        c = rig.conductor
        rig.press(0)
        rig.press(7)
        rig.run(HOLD_SECONDS - 0.1)
        assert not c.small_hands
        rig.run_until(lambda: c.small_hands, limit=0.2)
        assert c.active_buttons == SMALL_HANDS_BUTTONS
        # the cue: a quick rising run whose lamps sweep over the four buttons
        assert c.turn is Turn.AI and [n.pitch for n in c.reply.notes] == [72, 76, 79, 84]
        assert list(c.reply.buttons) == [0, 2, 5, 7]
        swept = set()
        while c.turn is Turn.AI:
            swept |= lit(rig)
            rig.step()
        assert swept == {0, 2, 5, 7}
        rig.release(0)
        rig.release(7)
        rig.run(1.5)                      # no reply: a mode change is not a phrase
        assert c.turn is Turn.PLAYER and c.stats["replies"] == 0
        assert c.stats["mode_changes"] == 1
    finally:
        rig.close()


def test_in_small_hands_the_unused_buttons_do_nothing_and_their_lamps_stay_dark():
    rig = rig_for(small_hands=True)
    try:
        for b in (1, 3, 4, 6):
            rig.press(b)
            assert not rig.player_notes and not lit(rig), b
            rig.release(b)
        for b in (0, 2, 5, 7):
            rig.press(b)
            assert rig.player_notes and lit(rig) == {b}
            rig.run(0.1)
            rig.release(b)
            rig.run(0.1)
        # the AI answers; its copy-me lamps light only the four buttons
        c = rig.conductor
        rig.run_until(lambda: c.turn is Turn.AI, limit=5)
        assert set(c.reply.buttons) <= set(SMALL_HANDS_BUTTONS)
        shown = set()
        while c.turn is Turn.AI:
            shown |= lit(rig)
            rig.step()
        assert shown and shown <= set(SMALL_HANDS_BUTTONS)
        rig.assert_nothing_stuck()
    finally:
        rig.close()


def test_holding_them_again_gives_all_eight_back_with_a_falling_cue():
    rig = rig_for(small_hands=True)
    try:
        hold_outer_buttons(rig, HOLD_SECONDS + 0.1)
        c = rig.conductor
        assert not c.small_hands and c.active_buttons == tuple(range(8))
        assert [n.pitch for n in c.reply.notes][:4] == [84, 79, 76, 72]
        rig.run(1.5)
        rig.press(3)
        assert rig.player_notes
        rig.release(3)
    finally:
        rig.close()


def test_a_short_hold_or_a_third_button_changes_nothing_and_no_note_sticks():
    rig = rig_for()
    try:
        hold_outer_buttons(rig, HOLD_SECONDS - 0.5)
        rig.press(0)
        rig.press(7)
        rig.press(3)
        rig.run(HOLD_SECONDS + 0.5)
        for b in (0, 7, 3):
            rig.release(b)
        c = rig.conductor
        assert not c.small_hands and c.stats["mode_changes"] == 0
        rig.run_until(lambda: c.turn is Turn.AI, limit=5)          # played, so answered
        rig.assert_nothing_stuck()
    finally:
        rig.close()


def test_the_watcher_fires_once_per_hold():
    w = ComboWatcher([frozenset({0, 7})], hold=2.0)
    w.press(0, 0.0)
    w.press(7, 0.1)
    assert w.poll(1.0) == (1.1, None)
    assert w.poll(2.1) == (None, frozenset({0, 7}))
    assert w.poll(9.0) == (None, None)            # still held: not again
    w.release(7, 9.1)
    w.press(7, 9.2)                               # 0 never let go: still not again
    assert w.poll(20.0) == (None, None)
    w.release(0, 20.1)
    w.release(7, 20.1)
    w.press(0, 21.0)
    w.press(7, 21.0)
    assert w.poll(23.0)[1] == frozenset({0, 7})


def test_copy_me_lamps_use_the_nearest_of_the_four_and_cues_follow_the_layout():
    assert [nearest_active(b, SMALL_HANDS_BUTTONS) for b in range(8)] == [0, 0, 2, 2, 5, 5, 7, 7]
    assert [b for _p, b in cue_for(SMALL_HANDS_BUTTONS, True).notes] == [0, 2, 5, 7]
    assert [b for _p, b in cue_for(SMALL_HANDS_BUTTONS, False).notes] == [7, 5, 2, 0]


def test_the_real_box_switches_on_mock_pins():
    cfg = quiet_config()
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, seed=3)
    try:
        box.start()
        pins = [factory.pin(p) for p in cfg.panel.buttons]
        pins[0].drive_low()
        pins[7].drive_low()
        assert wait_for(lambda: box.conductor.small_hands, HOLD_SECONDS + 5)
        pins[0].drive_high()
        pins[7].drive_high()
        assert wait_for(lambda: box.conductor.turn is Turn.PLAYER, 5)
        pins[1].drive_low()
        assert wait_for(lambda: box.conductor.stats["ignored_events"] >= 1, 2)
        assert not box.synth.sounding() or all(t != 0 for _p, t in box.synth.sounding())
        pins[1].drive_high()
    finally:
        box.close()
    assert dataclasses.replace(cfg.panel, small_hands=True).small_hands


# --- creativity: button 8 held + the knob ------------------------------------------------------
CW = [(0, 1), (0, 0), (1, 0), (1, 1)]     # (A, B) levels for one clockwise click
CCW = [(1, 0), (0, 0), (0, 1), (1, 1)]


def turn_knob(rig: Rig, clicks: int) -> None:
    a, b = (rig.factory.pin(g) for g in rig.cfg.panel.volume_encoder)
    for _ in range(abs(clicks)):
        for la, lb in (CW if clicks > 0 else CCW):
            (a.drive_high if la else a.drive_low)()
            (b.drive_high if lb else b.drive_low)()
    rig.step()


def test_button_8_and_the_knob_set_how_adventurous_the_ai_is_within_the_bounds():
    rig = Rig(from_dict({"turns": {"creativity_low": 0.5, "creativity_high": 1.5},
                         "audio": {"period_frames": 256}}), seed=5)
    seen = {}
    plain = rig.conductor.melody.continue_phrase

    def spy(primer, steps, temperature, primer_steps=None, bar=None):
        seen["temperature"], seen["steps"] = temperature, steps
        return plain(primer, steps, temperature, primer_steps=primer_steps, bar=bar)
    rig.conductor.melody.continue_phrase = spy
    try:
        c = rig.conductor
        assert c.creativity.factor == 1.0 or abs(c.creativity.factor - 1.0) < 0.08
        start = c.creativity.level
        volume = rig.panel.encoder.steps
        rig.press(7)
        turn_knob(rig, 9)                          # past the top: it stops there
        assert c.creativity.level == 7 and c.creativity.factor == 1.5
        assert rig.panel.encoder.steps == volume, "the volume does not move meanwhile"
        assert sum(rig.panel.snapshot()["leds"]) == 8          # the bar: all eight lamps
        rig.release(7)
        rig.run(1.6)                                          # the bar goes
        assert sum(rig.panel.snapshot()["leds"]) == 0
        for b in (1, 3, 5, 2):
            rig.tap(b)
        rig.run_until(lambda: c.turn is Turn.AI, limit=5)
        hot, long_ = seen["temperature"], seen["steps"]
        assert hot == 1.5 * c.cfg.turns.temperature
        rig.run_until(lambda: c.turn is Turn.PLAYER, limit=15)
        rig.press(7)
        turn_knob(rig, -20)
        leds = rig.panel.snapshot()["leds"]
        assert c.creativity.level == 0 and leds[:7] == [True] + [False] * 6   # 8: held
        rig.release(7)
        for b in (1, 3, 5, 2):
            rig.tap(b)
        rig.run_until(lambda: c.turn is Turn.AI, limit=5)
        assert seen["temperature"] == 0.5 * c.cfg.turns.temperature
        assert seen["steps"] < long_ and start not in (0, 7)
        turn_knob(rig, 2)                          # without button 8: the volume
        assert rig.panel.encoder.steps == volume + 2 and c.creativity.level == 0
    finally:
        rig.close()


@pytest.mark.slow
def test_the_real_box_starts_the_copy_game_and_invites_visitors_on_mock_pins():
    """The Box's own threads: buttons 1 and 2 held start the game (its first phrase lights
    the lamps); later, with nobody there, attract mode chases and a press ends it."""
    cfg = quiet_config()
    cfg = dataclasses.replace(cfg, attract=dataclasses.replace(
        cfg.attract, after_minutes=0.1, phrase_every_minutes=0.5),
        turns=dataclasses.replace(cfg.turns, session_idle=5.0))
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, seed=4)
    try:
        box.start()
        c = box.conductor
        pins = [factory.pin(p) for p in cfg.panel.buttons]
        pins[0].drive_low()
        pins[1].drive_low()
        assert wait_for(lambda: c.game is not None, HOLD_SECONDS + 5)
        pins[0].drive_high()
        pins[1].drive_high()
        assert wait_for(lambda: c.game.task is not None and c.turn is Turn.AI, 10)
        assert wait_for(lambda: any(box.panel.snapshot()["leds"]), 5), "the phrase is lit"
        assert wait_for(lambda: c.game is None, 20), "a long silence ends the game"
        assert wait_for(lambda: c.attract.active, 15), "then the box invites visitors"
        pins[4].drive_low()
        assert wait_for(lambda: not c.attract.active, 2)
        assert wait_for(lambda: box.synth.sounding(), 2)
        pins[4].drive_high()
    finally:
        box.close()
